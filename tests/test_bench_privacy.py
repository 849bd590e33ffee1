"""`genmem bench privacy --combine`: runs of one budget that learned other epsilons, merged into one table."""

import json

from click.testing import CliRunner

from genmem.cli.main import main

BUDGET = {"classes": [0, 1], "images_per_class": 10, "epochs": 1, "holdout": 0.2, "delta": 1e-5}


def row(epsilon, accuracy):
    setting = "no DP" if epsilon is None else f"epsilon {epsilon:g}"
    return {"setting": setting, "epsilon": epsilon, "spent": epsilon,
            "noise_multiplier": None if epsilon is None else 1.0,
            "replay_classifier": accuracy, "recognised": accuracy, "worst_auc": 0.5, "copy_rate": 0.0,
            "solver": "real" if epsilon is None else "replay",
            "attacks": [{"part": "generator", "attack": "pixel distance", "auc": 0.5}]}


def saved(folder, rows, **changes):
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({**BUDGET, **changes, "rows": rows}))
    return str(folder)


def test_combine_merges_settings_in_epsilon_order_with_no_dp_last(tmp_path):
    runs = [saved(tmp_path / "none", [row(None, 90.0)]), saved(tmp_path / "ten", [row(10.0, 80.0)]),
            saved(tmp_path / "one", [row(1.0, 40.0)])]
    record = tmp_path / "BENCHMARKS.md"
    out = tmp_path / "merged"
    result = CliRunner().invoke(main, ["bench", "privacy", "--out", str(out), "--record", str(record),
                                       *(a for run in runs for a in ("--combine", run))])
    assert result.exit_code == 0, result.output
    merged = json.loads((out / "results.json").read_text())
    assert [r["setting"] for r in merged["rows"]] == ["epsilon 1", "epsilon 10", "no DP"]
    assert {k: merged[k] for k in BUDGET} == BUDGET
    assert (out / "privacy-utility.png").read_bytes().startswith(b"\x89PNG")
    assert "| epsilon 10 | 10.00 | 1.000 | replay | 80.00 |" in record.read_text()


def test_combine_refuses_runs_of_another_budget_or_the_same_setting(tmp_path):
    first = saved(tmp_path / "a", [row(10.0, 80.0)])
    other_budget = saved(tmp_path / "b", [row(1.0, 40.0)], epochs=40)
    same_setting = saved(tmp_path / "c", [row(10.0, 81.0)])
    for second, message in ((other_budget, "other epochs"), (same_setting, "same setting (epsilon 10)")):
        result = CliRunner().invoke(main, ["bench", "privacy", "--out", str(tmp_path / "m"), "--combine", first,
                                           "--combine", second])
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
