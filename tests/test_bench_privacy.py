"""`genmem bench privacy`: the downstream classifier is chosen on generated images only, the CSV rows say what
BENCHMARKS.csv needs, and runs of one budget that learned other epsilons merge into one table."""

import json

import pytest
from click.testing import CliRunner

from genmem.benchmarks import privacy
from genmem.classifier import ClassifierConfig
from genmem.benchmarks.record import read_rows
from genmem.cli.main import main
from genmem.config import TrainingConfig
from genmem.private import dp_defaults
from tiny import tiny_memory, tiny_set

BUDGET = {"classes": [0, 1], "images_per_class": 10, "epochs": 1, "holdout": 0.2, "delta": 1e-5,
          "synthetic_per_class": 50, "storage_dtype": TrainingConfig.storage_dtype}
CSV_COLUMNS = ["data", "tasks", "method", "profile", "metric", "value", "joint", "seconds", "hardware", "commit",
               "seeds", "command"]


def row(epsilon, accuracy, seed=0, **settings):
    """A result row of a memory that learned genmem's defaults at `epsilon`, but for `settings`."""
    training = {**privacy.task_config(epsilon, 1e-5, None).to_dict(), **settings}
    setting = privacy.setting_name(epsilon, training)
    return {"setting": setting, "epsilon": epsilon, "seed": seed, "seconds": 60.0, "spent": epsilon,
            "noise_multiplier": None if epsilon is None else 1.0, "accuracy": accuracy, "frechet": 1.0,
            "recognised": accuracy, "worst_auc": 0.5, "copy_rate": 0.0, "solver": "real" if epsilon is None
            else "replay", "hardware": "a CPU", "commit": "abc1234", "command": "genmem bench privacy ...",
            "attacks": [{"part": "generator", "attack": "pixel distance", "auc": 0.5}],
            "training": training}


def saved(folder, rows=(), **changes):
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({**BUDGET, **changes, "joint": 99.0, "rows": rows}))
    return str(folder)


def test_the_classifier_is_chosen_on_held_out_generated_images_and_only_the_chosen_one_sees_the_test_set(
        tmp_path, monkeypatch):
    memory = tiny_memory(tmp_path / "m")
    grid = (ClassifierConfig(lr=1e-9, epochs=1.0, width=4), ClassifierConfig(lr=3e-3, epochs=30.0, width=4))
    monkeypatch.setattr(privacy, "CLASSIFIER_GRID", grid)
    tested = []
    evaluate = privacy.evaluate_model
    monkeypatch.setattr(privacy, "evaluate_model", lambda model, *args: tested.append(model) or evaluate(model, *args))
    result = privacy.downstream_accuracy(memory, tiny_set(), [0, 1, 2], 40, "cpu")
    assert len(tested) == 1, "the test set scores the chosen classifier alone"
    assert result["chosen"]["lr"] == 3e-3, "a rate of 1e-9 learns nothing, and the held-out replay says so"
    assert result["held_out_accuracy"] > 50 and 0 <= result["accuracy"] <= 100


def test_csv_rows_are_one_per_dp_setting_and_seed():
    results = {**BUDGET, "classes": list(range(10)), "joint": 99.123,
               "rows": [row(None, 95.0), row(1.0, 60.0), row(10.0, 90.0), row(10.0, 92.0, seed=1)]}
    rows = privacy.csv_rows(results)
    assert [list(r) for r in rows] == [CSV_COLUMNS] * 3
    assert [(r["method"], r["seeds"], r["value"]) for r in rows] == [
        ("dgmw-replay-dp-eps1", 0, 60.0), ("dgmw-replay-dp-eps10", 0, 90.0), ("dgmw-replay-dp-eps10", 1, 92.0)]
    assert {(r["data"], r["tasks"], r["metric"], r["profile"], r["joint"]) for r in rows} == {
        ("mnist", "10x1", "A10", "dp", 99.12)}, "a run from before the data set was recorded learned MNIST"
    named = privacy.csv_rows({**results, "data": {"source": "folder:/photos/pets", "name": "pets"}})
    assert {r["data"] for r in named} == {"pets"}, "the rows name the data set the run learned"
    older = privacy.csv_rows({key: value for key, value in results.items() if key != "storage_dtype"})
    assert {r["profile"] for r in older} == {"dp, float32 storage"}, "stored before the type was recorded"
    assert {r["profile"] for r in privacy.csv_rows({**results, "storage_dtype": "float16"})} == {"dp, float16 storage"}


def test_settings_other_than_the_defaults_at_their_epsilon_are_named_in_the_setting_and_the_rows_profile():
    assert [privacy.task_config(e, 1e-5, None).dp_loss for e in (1.0, 10.0)] == [
        dp_defaults(1.0)["dp_loss"], dp_defaults(10.0)["dp_loss"]]
    other_batch = 2 * dp_defaults(1.0)["batch_size"]
    chosen = privacy.task_config(1.0, 1e-5, None, dp_loss="logistic", batch_size=other_batch)
    assert (chosen.dp_loss, chosen.batch_size) == ("logistic", other_batch)
    assert privacy.setting_name(1.0, {"dp_loss": "wasserstein"}) == privacy.setting_name(1.0) == "epsilon 1"
    assert privacy.setting_name(1.0, chosen.to_dict()) == f"epsilon 1, logistic critic, batch {other_batch}"
    assert privacy.setting_name(10.0, {"dp_loss": "wasserstein"}) == "epsilon 10, wasserstein critic"
    results = {**BUDGET, "storage_dtype": "float32",
               "rows": [row(1.0, 80.0, dp_loss="logistic"), row(1.0, 75.0), row(10.0, 90.0, dp_loss="wasserstein"),
                        row(10.0, 91.0, batch_size=other_batch)]}
    assert [(r["method"], r["profile"]) for r in privacy.csv_rows(results)] == [
        ("dgmw-replay-dp-eps1", "dp, logistic critic, float32 storage"),
        ("dgmw-replay-dp-eps1", "dp, float32 storage"),
        ("dgmw-replay-dp-eps10", "dp, wasserstein critic, float32 storage"),
        ("dgmw-replay-dp-eps10", f"dp, batch {other_batch}, float32 storage")]
    older = {key: value for key, value in row(10.0, 80.0).items() if key != "training"}
    assert privacy.csv_rows({**results, "rows": [older]})[0]["profile"] == "dp, wasserstein critic, float32 storage", \
        "a run from before the loss was recorded learned with the Wasserstein critic"


def test_the_accuracy_plot_draws_every_series_however_many(monkeypatch):
    drawn = []
    monkeypatch.setattr(privacy, "png_bytes", lambda figure, **_: drawn.extend(
        text.get_text() for text in figure.axes[0].get_legend().get_texts()) or b"")
    series = {f"genmem setting {i}": [(1.0, [50.0 + i]), (10.0, [60.0 + i])] for i in range(9)}
    privacy.accuracy_epsilon_plot(series, 1e-5)
    assert [label for label in drawn if label.startswith("genmem")] == list(series)


def test_a_run_of_a_built_in_data_set_names_it_as_the_user_did_in_its_rows(tmp_path, monkeypatch):
    """MNIST's images call themselves "MNIST (train)"; the rows must say `mnist`, as the protocol's do."""
    import genmem.data
    from genmem.benchmarks.results import describe_data

    def learned(train, test, out_dir, epsilons, **options):  # records the data set as run_privacy does
        data = options.get("data_record") or describe_data(train.source)
        return {**BUDGET, "data": data, "joint": 99.0, "rows": [row(10.0, 80.0)]}

    monkeypatch.setattr(genmem.data, "load_source", lambda source, data_dir, train: tiny_set(labels=(0, 1)))
    monkeypatch.setattr(privacy, "run_privacy", learned)
    table = tmp_path / "BENCHMARKS.csv"
    result = CliRunner().invoke(main, ["bench", "privacy", "--data", "mnist", "--out", str(tmp_path / "run"),
                                       "--epsilons", "10", "--device", "cpu", "--csv", str(table)])
    assert result.exit_code == 0, result.output
    assert [(r["data"], r["method"]) for r in read_rows(table)] == [("mnist", "dgmw-replay-dp-eps10")]


def test_first_seed_reaches_the_run_and_its_command(tmp_path, monkeypatch):
    import genmem.data

    asked = {}

    def learned(train, test, out_dir, epsilons, **options):
        asked.update(options)
        return {**BUDGET, "data": options["data_record"], "joint": 99.0,
                "rows": [{**row(10.0, 80.0, seed=1), "command": options["provenance"]["command"]}]}

    monkeypatch.setattr(genmem.data, "load_source", lambda source, data_dir, train: tiny_set(labels=(0, 1)))
    monkeypatch.setattr(privacy, "run_privacy", learned)
    table = tmp_path / "BENCHMARKS.csv"
    result = CliRunner().invoke(main, ["bench", "privacy", "--out", str(tmp_path / "run"), "--epsilons", "10",
                                       "--first-seed", "1", "--device", "cpu", "--csv", str(table)])
    assert result.exit_code == 0, result.output
    assert (asked["seeds"], asked["first_seed"], asked["dp_loss"], asked["batch_size"]) == (1, 1, None, None), \
        "None: the default for epsilon"
    [written] = read_rows(table)
    assert written["seeds"] == "1" and "--seeds 1 --first-seed 1" in written["command"]
    assert "--dp-loss" not in written["command"] and "--batch-size" not in written["command"], \
        "the defaults are not spelled out"
    result = CliRunner().invoke(main, ["bench", "privacy", "--out", str(tmp_path / "other"), "--epsilons", "10",
                                       "--dp-loss", "wasserstein", "--batch-size", "128", "--device", "cpu",
                                       "--csv", str(tmp_path / "other.csv")])
    assert result.exit_code == 0 and (asked["dp_loss"], asked["batch_size"]) == ("wasserstein", 128), result.output
    assert read_rows(tmp_path / "other.csv")[0]["command"].endswith("--dp-loss wasserstein --batch-size 128")


@pytest.mark.parametrize("option", [["--dp-loss", "logistic"], ["--batch-size", "128"]])
def test_a_dp_only_option_beside_the_no_dp_setting_is_refused_before_anything_is_learned(tmp_path, option):
    """The `none` setting learns at genmem's non-DP defaults: an option it would ignore must not pass silently."""
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["bench", "privacy", "--out", str(out), "--epsilons", "none,10", *option,
                                       "--device", "cpu"])
    assert result.exit_code == 2 and "'none' setting learns without DP" in result.output, result.output
    assert not out.exists(), "refused before the output folder is made"


def test_combine_merges_settings_in_epsilon_order_with_no_dp_last(tmp_path):
    runs = [saved(tmp_path / "none", [row(None, 90.0)]), saved(tmp_path / "ten", [row(10.0, 80.0),
                                                                                   row(10.0, 84.0, seed=1)]),
            saved(tmp_path / "one", [row(1.0, 40.0)])]
    record = tmp_path / "BENCHMARKS.md"
    out = tmp_path / "merged"
    table = tmp_path / "BENCHMARKS.csv"
    result = CliRunner().invoke(main, ["bench", "privacy", "--out", str(out), "--record", str(record),
                                       "--csv", str(table), *(a for run in runs for a in ("--combine", run))])
    assert result.exit_code == 0, result.output
    assert [(r["method"], r["seeds"], r["value"]) for r in read_rows(table)] == [
        ("dgmw-replay-dp-eps1", "0", "40"), ("dgmw-replay-dp-eps10", "0", "80"), ("dgmw-replay-dp-eps10", "1", "84")]
    merged = json.loads((out / "results.json").read_text())
    assert [(r["setting"], r["seed"]) for r in merged["rows"]] == [("epsilon 1", 0), ("epsilon 10", 0),
                                                                   ("epsilon 10", 1), ("no DP", 0)]
    assert {k: merged[k] for k in BUDGET} == BUDGET
    assert (out / "privacy-utility.png").read_bytes().startswith(b"\x89PNG")
    assert "| epsilon 10 | 2 | 10.00 | 1.000 | 82.00 ± 2.83 |" in record.read_text()


def test_combine_keeps_runs_of_two_critic_losses_apart_and_names_an_older_runs_loss(tmp_path):
    older = {key: value for key, value in row(1.0, 81.0).items() if key != "training"}  # before the loss was recorded
    runs = [saved(tmp_path / "logistic", [row(1.0, 78.0, dp_loss="logistic")]), saved(tmp_path / "older", [older]),
            saved(tmp_path / "wasserstein", [row(1.0, 79.0, seed=1, dp_loss="wasserstein")])]
    out = tmp_path / "merged"
    result = CliRunner().invoke(main, ["bench", "privacy", "--out", str(out),
                                       *(a for run in runs for a in ("--combine", run))])
    assert result.exit_code == 0, result.output
    merged = json.loads((out / "results.json").read_text())
    assert [(r["setting"], r["seed"]) for r in merged["rows"]] == [
        ("epsilon 1", 0), ("epsilon 1", 1), ("epsilon 1, logistic critic", 0)]
    assert "| epsilon 1 | 2 | 1.00 | 1.000 | 80.00 ± 1.41 |" in result.output


@pytest.mark.parametrize("second, message", [({"rows": [row(1.0, 40.0)], "epochs": 40}, "other epochs"),
                                             ({"rows": [row(1.0, 40.0)], "storage_dtype": "float32"},
                                              "other storage_dtype"),
                                             ({"rows": [row(10.0, 81.0)]}, "same setting (epsilon 10, seed 0)")])
def test_combine_refuses_runs_of_another_budget_or_the_same_setting_and_seed(tmp_path, second, message):
    first = saved(tmp_path / "a", [row(10.0, 80.0)])
    other = saved(tmp_path / "b", **second)
    result = CliRunner().invoke(main, ["bench", "privacy", "--out", str(tmp_path / "m"), "--combine", first,
                                       "--combine", other])
    assert result.exit_code != 0 and message in result.output, result.output


def test_combine_names_a_folder_that_holds_no_run(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["bench", "privacy", "--out", str(tmp_path / "m"), "--combine",
                                       str(tmp_path / "empty")])
    assert result.exit_code != 0 and "holds no privacy run" in result.output


def test_combine_names_a_damaged_results_file(tmp_path):
    for name, text in (("garbled", "{not json"), ("foreign", '{"accuracy": {}}'), ("binary", None)):
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "results.json"
        path.write_bytes(b"\xff\xfe\x00" if text is None else text.encode())
        result = CliRunner().invoke(main, ["bench", "privacy", "--out", str(tmp_path / "m"), "--combine",
                                           str(folder)])
        assert result.exit_code == 1 and str(path) in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_tiny_run_learns_tests_and_audits_every_seed_and_a_seed_learned_alone_is_the_same(tmp_path, monkeypatch):
    from tiny import tiny_config

    import genmem.private

    monkeypatch.setattr(genmem.private, "noise_seed", lambda: 1234)  # DP noise's seeds are secret: fixed to compare
    monkeypatch.setattr(privacy, "task_config", lambda epsilon, delta, epochs, storage, dp_loss, batch: tiny_config(
        dp_epsilon=epsilon, dp_delta=delta, dp_loss=dp_loss or dp_defaults(epsilon)["dp_loss"], solver="replay",
        solver_width=4, storage_dtype=storage))
    monkeypatch.setattr(privacy, "CLASSIFIER_GRID", (ClassifierConfig(epochs=2.0, width=4),))
    monkeypatch.setattr(privacy, "JUDGE", ClassifierConfig(epochs=1.0, width=4))
    data = tiny_set(labels=(0, 1))
    results = privacy.run_privacy(data, data, tmp_path, [4.0], num_tasks=2, seeds=2, synthetic_per_class=30,
                                  holdout=0.25, provenance={"hardware": "a CPU", "commit": "abc", "command": "x"},
                                  progress=False)
    name = f"epsilon 4, batch {tiny_config().batch_size}"  # tiny batches: not genmem's DP default
    assert [(r["setting"], r["seed"]) for r in results["rows"]] == [(name, 0), (name, 1)]
    for r in results["rows"]:
        assert r["spent"] <= 4.0 and 0 <= r["accuracy"] <= 100 and r["frechet"] >= 0 and r["solver"] == "replay"
        assert {a["part"] for a in r["attacks"]} == {"generator", "solver"}
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    assert [(c["data"], c["seeds"], c["hardware"]) for c in privacy.csv_rows(results)] == [
        ("tiny", 0, "a CPU"), ("tiny", 1, "a CPU")]
    assert f"| {name} | 2 |" in privacy.privacy_table(results)

    alone = privacy.run_privacy(data, data, tmp_path / "seed-1", [4.0], num_tasks=2, first_seed=1,
                                synthetic_per_class=30, holdout=0.25, progress=False)
    seed_one = results["rows"][1]
    assert [r["seed"] for r in alone["rows"]] == [1] and (tmp_path / "seed-1" / "eps-4-seed-1").is_dir()
    assert {k: v for k, v in alone["rows"][0].items() if k not in ("seconds", "hardware", "commit", "command")} == {
        k: v for k, v in seed_one.items() if k not in ("seconds", "hardware", "commit", "command")}, \
        "a seed learned alone, in its own process, is the seed a run of several seeds learns"
