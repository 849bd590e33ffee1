"""The protocol runner and its command on a tiny profile: every method after every task, and its outputs."""

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file
from tiny import tiny_set

from genmem.benchmarks.charts import method_label
from genmem.benchmarks.classifiers import MLPClassifier, new_classifier
from genmem.benchmarks.methods import DEFAULT_METHODS, REGISTRY
from genmem.benchmarks.profiles import PROFILES, Profile, profile_for
from genmem.benchmarks.protocol import run_classes, run_protocol
from genmem.benchmarks.results import describe_data, markdown_table, newest_table, run_title
from genmem.cli.main import main
from genmem.config import TrainingConfig
from genmem.errors import GenmemError, InvalidSetting
from genmem.memory import Memory
from genmem.presets import RECIPES, base_width_for, paper_config
from genmem.solver import phase_steps


def test_run_produces_every_method_after_every_task(tmp_path):
    results = run_protocol(tiny_set(labels=(0, 1, 2)), tiny_set(labels=(0, 1, 2), per_class=8), "mnist", "dgmw",
                           PROFILES["smoke"], tmp_path / "run", progress=False)
    assert list(results["accuracy"]) == list(DEFAULT_METHODS)
    assert all(len(curve) == 3 for curve in results["accuracy"].values())
    assert all(curve[0] == 100.0 for curve in results["accuracy"].values()), "one class cannot be confused"
    for method in DEFAULT_METHODS:
        for step, per_class in enumerate(results["per_class"][method]):
            assert sorted(map(int, per_class)) == list(range(step + 1))
            assert results["accuracy"][method][step] == sum(per_class.values()) / len(per_class)
    assert [g["task"] for g in results["growth"]] == [0, 1, 2]
    seconds = results["seconds"]  # each classifier's cost apart, within the classifiers' total
    assert {"gan", "classifiers", "dgm-replay classifier", "joint classifier"} <= set(seconds)
    assert seconds["dgm-replay classifier"] + seconds["joint classifier"] <= seconds["classifiers"] + 0.1  # rounding
    assert json.loads((tmp_path / "run" / "results.json").read_text())["accuracy"] == results["accuracy"]
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["task00.png", "task01.png",
                                                                                "task02.png"]


def test_a_changed_budget_is_named_by_what_it_changes_and_an_unchanged_one_keeps_the_profile():
    quick = PROFILES["quick"]
    assert quick.with_budget(classifier_epochs=10).name == "quick, 10 classifier passes"
    assert quick.with_budget(classifier_width=64, augment="").name == \
        "quick, classifiers not augmented, classifiers 64 wide"
    same = quick.with_budget(images_per_class=quick.images_per_class, classifier_epochs=quick.classifier_epochs,
                             classifier_width=quick.classifier_width)
    assert same is quick


def test_bench_protocol_command_writes_table_plots_and_json(tmp_path):
    train, test = tiny_set(labels=(0, 1)), tiny_set(labels=(0, 1), per_class=8)
    for name, data in (("train", train), ("test", test)):
        np.savez(tmp_path / f"{name}.npz", x=data.images[:, 0].numpy(), y=data.labels.numpy())
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["bench", "protocol", "--data", f"npz:{tmp_path / 'train.npz'}",
                                       "--test-data", f"npz:{tmp_path / 'test.npz'}", "--profile", "smoke",
                                       "--images-per-class", "5", "--gan-epochs", "2", "--augment", "cutout",
                                       "--classifier-epochs", "0.75", "--out", str(out), "--device", "cpu", "--quiet",
                                       "--record", str(tmp_path / "B.md")])
    assert result.exit_code == 0, result.output
    assert "| dgm-replay |" in result.output and "A2" in result.output
    assert "paper" not in result.output, "the paper did not measure this data set"
    for png in ("accuracy.png", "growth.png", "confusion.png"):
        with Image.open(out / png) as image:
            assert image.size[0] > 200
    results = json.loads((out / "results.json").read_text())
    assert results["gan_config"]["epochs"] == 2 and results["profile"]["images_per_class"] == 5
    assert results["classifier_config"]["augment"] == "cutout" == results["gan_config"]["solver_augment"]
    assert results["classifier_config"]["epochs"] == 0.75 == results["gan_config"]["solver_epochs"]
    changed = "smoke, GAN on 5 images per class, 2 GAN epochs, classifiers augmented by cutout, 0.75 classifier passes"
    assert f"{changed} profile" in (tmp_path / "B.md").read_text(), "a changed budget is named by what changed"
    again = CliRunner().invoke(main, ["bench", "protocol", "--data", f"npz:{tmp_path / 'train.npz'}",
                                      "--test-data", f"npz:{tmp_path / 'test.npz'}", "--profile", "smoke",
                                      "--out", str(out), "--quiet"])
    assert again.exit_code != 0 and "already holds a protocol run" in again.output

    finished = CliRunner().invoke(main, ["bench", "protocol", "--resume", str(out), "--quiet",
                                         "--checkpoint-every", "60"])  # how often to save is no part of the run
    assert finished.exit_code == 0, finished.output
    assert "| dgm-replay |" in finished.output and json.loads((out / "results.json").read_text()) == results
    for wrong, hint in ((["--resume", str(out), "--variant", "dgma"], "drop --variant"),
                        (["--resume", str(out), "--augment", ""], "drop --augment"),
                        (["--resume", str(out), "--classifier-epochs", "3"], "drop --classifier-epochs"),
                        (["--resume", str(out), "--classifier-width", "8"], "drop --classifier-width"),
                        (["--data", f"npz:{tmp_path / 'train.npz'}", "--test-data", f"npz:{tmp_path / 'test.npz'}",
                          "--classifier-epochs", "1e300", "--out", str(tmp_path / "forever")], "--classifier-epochs"),
                        (["--data", f"npz:{tmp_path / 'missing.npz'}", "--test-data", f"npz:{tmp_path / 'test.npz'}",
                          "--augment", "blur", "--out", str(tmp_path / "blur")], "unknown augmentation 'blur'"),
                        (["--resume", str(tmp_path)], "no protocol run to resume"),
                        (["--combine", str(out), "--base-width", "4", "--out", str(tmp_path / "table")],
                         "drop --base-width"),
                        ([], "give --out NEW_FOLDER for a new run, or --resume OUT"),
                        (["--data", f"npz:{tmp_path / 'train.npz'}", "--test-data", f"npz:{tmp_path / 'test.npz'}",
                          "--methods", "dgm-replay,ewk", "--out", str(tmp_path / "typo")], "unknown method ewk")):
        refused = CliRunner().invoke(main, ["bench", "protocol", *wrong])
        assert refused.exit_code != 0 and "Traceback" not in refused.output and hint in refused.output, wrong


def test_profiles_on_cifar10_shift_and_cut_out_and_the_quick_one_takes_the_budget_that_does_not_collapse():
    cifar = profile_for("quick", "cifar10")
    assert (cifar.images_per_class, cifar.gan_epochs) == (5000, 30) and cifar.name == "quick"
    assert cifar.classifier_augment == cifar.solver_augment == "translation,cutout"
    assert cifar.gan_lr == 1e-3 and "CIFAR-10" in cifar.about and "1e-3" in cifar.about
    assert profile_for("quick", "mnist") == profile_for("quick", "svhn") == PROFILES["quick"]
    paper = profile_for("paper", "cifar10")
    assert paper.classifier_augment == paper.solver_augment == "translation,cutout" and "cut out" in paper.about
    assert (paper.images_per_class, paper.gan_epochs) == (None, None), "the paper's GAN budget is kept"
    assert profile_for("paper", "mnist") == PROFILES["paper"] and profile_for("smoke", "cifar10") == PROFILES["smoke"]
    assert cifar.with_budget(gan_epochs=2).images_per_class == 5000, "the user's overrides apply on top"


def test_the_quick_profile_starts_dgm_at_the_base_widths_its_figures_were_measured_at_unless_told_otherwise():
    mnist, cifar, paper = profile_for("quick", "mnist"), profile_for("quick", "cifar10"), profile_for("paper", "mnist")
    assert (mnist.base_width("dgmw", "mnist"), mnist.base_width("dgma", "mnist")) == (10, 8)
    assert (cifar.base_width("dgmw", "cifar10"), cifar.base_width("dgma", "cifar10")) == (10, 10)
    assert paper.base_width("dgma", "mnist") is None and paper.base_width("dgma", "cifar10") == 20, "the paper's"
    assert mnist.base_width("dgma", "mnist", chosen=4) == cifar.base_width("dgmw", "cifar10", chosen=4) == 4


def test_the_quick_profile_gives_dgma_the_gan_epochs_that_fit_its_time_target_and_an_override_applies_to_both():
    mnist, cifar = profile_for("quick", "mnist"), profile_for("quick", "cifar10")
    assert (mnist.gan_epochs_for("dgmw"), mnist.gan_epochs_for("dgma")) == (40, 38) and "DGMa 38" in mnist.about
    assert (cifar.gan_epochs_for("dgmw"), cifar.gan_epochs_for("dgma")) == (30, 30), "measured at 30 on CIFAR-10"
    assert profile_for("paper", "mnist").gan_epochs_for("dgma") is None, "the paper's"
    chosen = mnist.with_budget(gan_epochs=12)
    assert (chosen.gan_epochs_for("dgmw"), chosen.gan_epochs_for("dgma")) == (12, 12) and "DGMa" not in chosen.about
    assert "40 (dgma 38) epochs" in mnist.with_budget(images_per_class=50).about


def results_on(source: str, variant: str = "dgmw", methods=("dgm-replay", "dgr", "joint")) -> dict:
    """A hand-made results.json after five tasks."""
    return {"recipe": "mnist", "variant": variant, "methods": list(methods), "data": describe_data(source),
            "accuracy": {m: [100.0, 99.0, 98.0, 97.0, 96.0] for m in methods},
            "gan_config": {"storage_dtype": TrainingConfig.storage_dtype}}


def test_a_profile_sets_the_gans_learning_rate_or_leaves_the_recipes(tmp_path):
    data, test = tiny_set(labels=(0, 1)), tiny_set(labels=(0, 1), per_class=8)
    for lr, expected in ((None, paper_config("mnist", "dgmw").lr), (0.0123, 0.0123)):
        profile = replace(PROFILES["smoke"], gan_lr=lr)
        out = tmp_path / str(lr)
        results = run_protocol(data, test, "mnist", "dgmw", profile, out, methods=("dgm-solver",), num_tasks=1,
                               progress=False)
        trained = Memory(out / "memory").manifest()["tasks"][-1]["training"]["lr"]
        assert results["gan_config"]["lr"] == trained == expected


def test_a_classifier_width_override_widens_every_classifier_and_the_stored_solver(tmp_path):
    assert PROFILES["smoke"].with_budget(classifier_width=6).solver_width is None, "its solver starts from the critic"
    wide = replace(PROFILES["smoke"], solver_start="fresh").with_budget(classifier_width=6)
    assert (wide.classifier_width, wide.solver_width) == (6, 6) and "classifiers and solver 6 wide" in wide.about
    quick = PROFILES["quick"]
    longer = quick.with_budget(augment=quick.classifier_augment, classifier_epochs=10, classifier_width=16)
    assert longer.name == "quick, 10 classifier passes" and longer.about.endswith("; classifiers and solver for 10 "
                                                                               "passes"), "only what changed"
    assert PROFILES["quick"].solver_width is None, "the quick profile's solver is the critic's width (16)"
    data, test = tiny_set(labels=(0, 1)), tiny_set(labels=(0, 1), per_class=8)
    run_protocol(data, test, "mnist", "dgmw", wide, tmp_path / "run", methods=("dgm-solver",), num_tasks=2,
                 progress=False)
    assert Memory(tmp_path / "run" / "memory").manifest()["solver"]["width"] == 6


def test_paper_figures_and_titles_follow_the_data_set_not_the_recipe():
    mnist = markdown_table(results_on("mnist"))
    assert "| paper A5 | paper A10 |" in mnist
    assert "| dgm-replay | 96.00 | 98.75 | 96.46 |" in mnist and "| dgr | 96.00 | 90.39 | 85.40 |" in mnist
    assert "| dgm-replay | 96.00 | 99.17 | 97.92 |" in markdown_table(results_on("mnist", "dgma"))
    assert "| dgr | 96.00 | – | – |" in markdown_table(results_on("cifar10")), "the paper has no DGR on CIFAR-10"
    for source, name in (("fashion-mnist", "Fashion-MNIST"), ("npz:/d/letters.npz", "letters.npz"),
                         ("folder:/d/flowers", "flowers"), ("builtin", "builtin MNIST sample")):
        results = results_on(source)
        assert "paper" not in markdown_table(results), source
        assert run_title(results, display=True) == f"{name}: DGMW vs DGR"
    assert run_title(results_on("mnist")) == "Paper protocol: mnist DGMW vs DGR"
    assert run_title(results_on("mnist") | {"seed": 2, "gan_config": {"storage_dtype": "float16"}}) == (
        "Paper protocol: mnist DGMW float16 vs DGR, seed 2"), "another seed or memory has a section of its own"
    older = {key: value for key, value in results_on("mnist").items() if key != "gan_config"}
    assert run_title(older) == "Paper protocol: mnist DGMW float32 vs DGR", "a run from before the storage option"
    assert run_title(results_on("npz:/d/letters.npz", methods=("joint",))) == "Paper protocol: letters.npz bounds"


def test_runs_of_both_variants_combine_into_one_table_and_plot(tmp_path):
    dgmw = results_on("mnist", "dgmw", ("dgm-solver", "dgm-replay", "dgr", "mergan", "joint", "finetune"))
    dgma = results_on("mnist", "dgma", ("dgm-solver", "dgm-replay", "joint", "finetune"))
    dgma["accuracy"]["dgm-replay"] = [100.0, 99.0, 98.0, 97.0, 95.5]
    dgma.update(classes_per_task=1, classifier="conv")  # recorded since the options exist; the DGMw run is older
    for run in (dgmw, dgma):
        run.update(profile={"name": "quick"}, seed=0, classes=[{"label": 0, "name": "0"}])
        (tmp_path / run["variant"]).mkdir()
        (tmp_path / run["variant"] / "results.json").write_text(json.dumps(run))
    result = CliRunner().invoke(main, ["bench", "protocol", "--combine", str(tmp_path / "dgmw"), "--combine",
                                       str(tmp_path / "dgma"), "--out", str(tmp_path / "both")])
    assert result.exit_code == 0, result.output
    assert "| dgma-replay | 95.50 | 99.17 | 97.92 |" in result.output
    assert "| dgmw-replay | 96.00 | 98.75 | 96.46 |" in result.output
    assert "| mergan | 96.00 | 98.19 | 97.00 |" in result.output
    assert result.output.index("| dgmw-solver |") < result.output.index("| dgma-solver |")
    with Image.open(tmp_path / "both" / "accuracy.png") as image:
        assert image.size[0] > 200
    dgma["seed"] = 1
    (tmp_path / "dgma" / "results.json").write_text(json.dumps(dgma))
    refused = CliRunner().invoke(main, ["bench", "protocol", "--combine", str(tmp_path / "dgmw"), "--combine",
                                        str(tmp_path / "dgma"), "--out", str(tmp_path / "both")])
    assert refused.exit_code != 0 and "runs with other seed cannot share a table" in refused.output


def test_the_stored_solvers_legend_says_when_it_was_trained_on_replay():
    run = {"variant": "dgmw", "gan_config": {"solver": "real"}}
    assert method_label("dgm-solver", run) == "DGM stored solver"
    replay = run | {"gan_config": {"solver": "replay"}}
    assert method_label("dgm-solver", replay) == "DGM stored solver, trained on replay"
    assert method_label("dgma-solver", replay) == "DGMa stored solver, trained on replay"
    assert method_label("dgm-replay", replay) == "classifier + DGM replay"
    assert method_label("joint", replay) == "joint training (upper bound)"


def test_a_new_method_takes_one_module_and_one_registry_line_and_resumes(tmp_path, monkeypatch):
    import nearest_mean_method

    monkeypatch.setitem(REGISTRY, "nearest-mean", "nearest_mean_method:NearestMean")  # the one line
    train, test = tiny_set(labels=(0, 1, 2)), tiny_set(labels=(0, 1, 2), per_class=8)

    def run(out, **kwargs):
        return run_protocol(train, test, "mnist", "dgmw", PROFILES["smoke"], tmp_path / out, progress=False,
                            methods=("nearest-mean", "joint"), **kwargs)

    whole = run("whole")
    assert whole["methods"] == ["joint", "nearest-mean"], "registered after the others, so tabled after them"
    assert whole["accuracy"]["nearest-mean"] == [100.0] * 3, "the tiny classes' bars are apart"
    assert [sorted(map(int, step)) for step in whole["per_class"]["nearest-mean"]] == [[0], [0, 1], [0, 1, 2]]
    assert whole["confusion"]["nearest-mean"] == [[8, 0, 0], [0, 8, 0], [0, 0, 8]]
    assert "| nearest-mean | 100.00 |" in markdown_table(whole)
    assert method_label("nearest-mean", whole) == nearest_mean_method.NearestMean.label

    real_score = nearest_mean_method.NearestMean.score

    def killed_in_the_last_task(self, task):
        if task.index == 2:
            raise RuntimeError("killed")
        return real_score(self, task)

    monkeypatch.setattr(nearest_mean_method.NearestMean, "score", killed_in_the_last_task)
    with pytest.raises(RuntimeError, match="killed"):
        run("killed")
    monkeypatch.setattr(nearest_mean_method.NearestMean, "score", real_score)
    resumed = run("killed", resume=True)
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in whole.items() if k != "seconds"}


def test_paper_exact_runs_the_papers_gan_and_solver_with_every_addition_off():
    for recipe in RECIPES:
        profile = profile_for("paper-exact", recipe)
        config = profile.training_config(recipe, "dgmw")
        assert config.average_decay is None and config.gp_every == 1 and config.betas == (0.5, 0.999)
        assert (config.solver_start, config.solver_epochs, config.solver_steps) == ("critic", None, 0)
        assert phase_steps(config, 50_000) == 0, "the stored solver is the critic's class head as the GAN left it"
        assert config.solver_augment == "" and config.class_loss_weight == 0, "as the official MNIST and SVHN code"
        assert config.recalibration_batches == 0, "BatchNorm statistics as training left them"
        assert (config.epochs, config.lr, config.critic_width) == tuple(RECIPES[recipe][k] for k in
                                                                      ("epochs", "lr", "critic_width"))
        assert profile.images_per_class is None and profile.base_width("dgmw", recipe) == base_width_for(recipe)
        recorded = json.loads(json.dumps(asdict(profile)))
        assert recorded["gan_overrides"]["betas"] == [0.5, 0.999] and Profile.from_record(recorded) == profile
    with pytest.raises(InvalidSetting, match="warmup"):
        replace(PROFILES["smoke"], gan_overrides={"warmup": 3})


def test_paper_exacts_overrides_reach_training_are_recorded_and_resume(tmp_path):
    overrides = PROFILES["paper-exact"].gan_overrides
    profile = replace(PROFILES["smoke"], gan_overrides=overrides)  # the paper's method on the smoke budget
    data, test = tiny_set(labels=(0, 1)), tiny_set(labels=(0, 1), per_class=8)
    results = run_protocol(data, test, "mnist", "dgmw", profile, tmp_path / "run", methods=("dgm-solver", "dgr"),
                           num_tasks=1, progress=False)
    trained = Memory(tmp_path / "run" / "memory").manifest()["tasks"][-1]["training"]
    assert {k: trained[k] for k in overrides} == {**overrides, "betas": [0.5, 0.999]}
    assert results["profile"]["gan_overrides"]["average_decay"] is None and results["gan_config"]["gp_every"] == 1
    assert results["gan_config"]["solver_epochs"] is None, "None reaches the config (paper_config would drop it)"
    again = run_protocol(data, test, "mnist", "dgmw", profile, tmp_path / "run", methods=("dgm-solver", "dgr"),
                         num_tasks=1, progress=False, resume=True)
    assert again["accuracy"] == results["accuracy"]
    with pytest.raises(GenmemError, match="started with other profile"):
        run_protocol(data, test, "mnist", "dgmw", PROFILES["smoke"], tmp_path / "run", methods=("dgm-solver", "dgr"),
                     num_tasks=1, progress=False, resume=True)


def test_the_commands_profiles_are_the_librarys():
    result = CliRunner().invoke(main, ["bench", "protocol", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert f"[{'|'.join(PROFILES)}]" in result.output.replace("\n", "").replace(" ", "")


def test_tasks_of_several_classes_in_a_chosen_order_are_learned_and_scored_together(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "nearest-mean", "nearest_mean_method:NearestMean")
    train, test = tiny_set(labels=(0, 1, 2, 3)), tiny_set(labels=(0, 1, 2, 3), per_class=8)
    assert run_classes(train, 2, ["3", "1", "0", "2"]) == [3, 1, 0, 2]
    assert run_classes(train, 2, num_tasks=1) == [0, 1] and run_classes(train) == [0, 1, 2, 3]
    for wrong, message in (((3, None), "4 classes do not split into tasks of 3"), ((1, ["3", "9"]), "no class"),
                           ((0, None), "0 classes per task")):
        with pytest.raises(GenmemError, match=message):
            run_classes(train, *wrong)
    methods = ("dgm-solver", "dgm-replay", "dgr", "joint", "finetune", "nearest-mean")
    results = run_protocol(train, test, "mnist", "dgmw", PROFILES["smoke"], tmp_path / "run", methods=methods,
                           classes_per_task=2, class_order=[3, 1, 0, 2], progress=False)
    assert [c["label"] for c in results["classes"]] == [3, 1, 0, 2] and results["classes_per_task"] == 2
    for method in methods:
        assert [sorted(map(int, step)) for step in results["per_class"][method]] == [[1, 3], [0, 1, 2, 3]], method
        assert results["accuracy"][method] == [sum(step.values()) / len(step) for step in results["per_class"][method]]
    assert results["accuracy"]["nearest-mean"] == [100.0, 100.0], "each task's two classes are told apart"
    assert [t["classes"] for t in Memory(tmp_path / "run" / "memory").manifest()["tasks"]] == [[3, 1], [0, 2]]
    assert [g["task"] for g in results["growth"]] == [0, 1]
    assert "paper" not in markdown_table(results | {"data": describe_data("mnist")}), "the paper ran 1 class a task"
    assert run_title(results, display=True).startswith("tiny 2x2")


def test_the_mlp_classifier_trains_every_protocol_classifier_and_is_recorded(tmp_path):
    mlp = MLPClassifier(3 * 32 * 32, 10, rng=torch.Generator().manual_seed(4))
    assert [m.out_features for m in mlp.modules() if isinstance(m, torch.nn.Linear)] == [400, 400, 10]
    assert sum(isinstance(m, torch.nn.ReLU) for m in mlp.modules()) == 2
    again = MLPClassifier(3 * 32 * 32, 10, rng=torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(mlp.parameters(), again.parameters())), "drawn from its seed"
    data, test = tiny_set(labels=(0, 1, 2, 3)), tiny_set(labels=(0, 1, 2, 3), per_class=8)
    results = run_protocol(data, test, "mnist", "dgmw", PROFILES["smoke"], tmp_path / "run",
                           methods=("joint", "finetune"), classes_per_task=2, classifier="mlp", progress=False)
    assert results["classifier"] == "mlp" and len(results["accuracy"]["joint"]) == 2
    finetuned = load_file(tmp_path / "run" / "state" / "task01" / "finetune.safetensors")
    assert finetuned["layers.1.weight"].shape == (400, 32 * 32), "the fine-tuned classifier is the MLP"
    with pytest.raises(GenmemError, match="unknown classifier 'resnet'"):
        run_protocol(data, test, "mnist", "dgmw", PROFILES["smoke"], tmp_path / "other", methods=("joint",),
                     classifier="resnet", progress=False)


def test_the_resnet18_classifier_sees_small_images_whole_and_trains_the_protocols_classifiers(tmp_path):
    before = torch.get_rng_state()
    net = new_classifier("resnet18", 1, 32, 4, width=16, seed=3)
    assert torch.equal(torch.get_rng_state(), before), "drawing its weights leaves the global generator alone"
    assert (net.conv1.kernel_size, net.conv1.stride, net.conv1.in_channels) == ((3, 3), (1, 1), 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()), "the small-image stem pools nothing"
    assert net.layer4(net.layer3(net.layer2(net.layer1(net.conv1(torch.zeros(1, 1, 32, 32)))))).shape[-2:] == (4, 4)
    again, other = new_classifier("resnet18", 1, 32, 4, 16, seed=3), new_classifier("resnet18", 1, 32, 4, 16, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters())), "drawn from its seed"
    assert not torch.equal(net.conv1.weight, other.conv1.weight)
    data, test = tiny_set(labels=(0, 1, 2, 3)), tiny_set(labels=(0, 1, 2, 3), per_class=8)
    results = run_protocol(data, test, "mnist", "dgmw", PROFILES["smoke"], tmp_path / "run",
                           methods=("joint", "finetune"), classes_per_task=2, classifier="resnet18", progress=False)
    assert results["classifier"] == "resnet18" and len(results["accuracy"]["finetune"]) == 2
    finetuned = load_file(tmp_path / "run" / "state" / "task01" / "finetune.safetensors")
    assert finetuned["conv1.weight"].shape == (64, 1, 3, 3) and finetuned["fc.weight"].shape == (4, 512)
    assert "90.79" not in markdown_table(results | {"data": describe_data("mnist")}), "the MLP's figures only"


def split_run(classes_per_task: int = 2, classifier: str = "mlp", order=range(10), tasks: int = 5) -> dict:
    """A hand-made results.json of a finished MNIST run."""
    return {"recipe": "mnist", "variant": "dgmw", "methods": ["dgm-replay", "dgr"], "data": describe_data("mnist"),
            "classes": [{"label": c, "name": str(c)} for c in order], "classes_per_task": classes_per_task,
            "classifier": classifier, "accuracy": {m: [99.0] * tasks for m in ("dgm-replay", "dgr")},
            "gan_config": {"storage_dtype": TrainingConfig.storage_dtype}}


def test_the_literatures_split_mnist_figures_are_printed_only_beside_split_mnist_with_the_mlp():
    table = markdown_table(split_run())
    assert "90.79" in table and "94.57" in table and "van de Ven & Tolias 2019" in table
    assert "paper A5" not in table, "the DGM paper measured one class per task"
    for other in (split_run(classifier="conv"), split_run(order=[1, 0, *range(2, 10)]),
                  split_run(classes_per_task=1, tasks=10), split_run(tasks=3)):
        assert "90.79" not in markdown_table(other)
    assert run_title(split_run()) == "Split protocol: mnist 5x2 (mlp classifier) DGMW vs DGR"
    assert run_title(split_run() | {"method_options": {"hybrid_ratio": 0.25, "hybrid_per_class": [20, 50]}}) == (
        "Split protocol: mnist 5x2 (mlp classifier) DGMW vs DGR (--hybrid-per-class 20,50; --hybrid-ratio 0.25)"), \
        "a run with other options of its methods keeps a section of its own"
    assert "paper A5" in markdown_table(split_run(classes_per_task=1, classifier="conv", tasks=10))


def test_a_budget_field_left_none_keeps_the_recipes_value_or_means_none_where_a_setting_takes_it():
    smoke = PROFILES["smoke"].training_config("mnist", "dgmw")
    assert (smoke.solver_epochs, smoke.solver_steps, smoke.epochs) == (None, 20, 1), "its 20 steps, as it says"
    paper = PROFILES["paper"].training_config("cifar10", "dgma")
    assert (paper.epochs, paper.lr, paper.critic_width) == (251, 2e-4, 128), "the recipe's where the profile is None"
    assert PROFILES["quick"].training_config("mnist", "dgma").epochs == 38


def test_bench_protocol_hands_its_architecture_to_dgms_memory(tmp_path):
    train, test = tiny_set(labels=(0, 1)), tiny_set(labels=(0, 1), per_class=8)
    for name, data in (("train", train), ("test", test)):
        np.savez(tmp_path / f"{name}.npz", x=data.images[:, 0].numpy(), y=data.labels.numpy())
    # The smoke profile's solver starts from the critic, which only the DCGAN's can give: the residual memory's
    # settings are refused before anything is learned, which shows they reached it.
    result = CliRunner().invoke(main, ["bench", "protocol", "--data", f"npz:{tmp_path / 'train.npz'}",
                                       "--test-data", f"npz:{tmp_path / 'test.npz'}", "--profile", "smoke",
                                       "--arch", "resnet", "--class-norm", "--out", str(tmp_path / "run"),
                                       "--device", "cpu", "--quiet"])
    assert result.exit_code != 0 and "not the resnet critic" in result.output
    assert not (tmp_path / "run" / "memory").exists()


def test_the_newest_table_sets_each_tasks_new_classes_against_the_earlier_ones():
    classes = [{"label": label, "name": str(label)} for label in (3, 1, 0, 2)]  # tasks {3, 1} then {0, 2}
    results = {"classes": classes, "classes_per_task": 2,
               "per_class": {"replay": [{"3": 90.0, "1": 80.0}, {"3": 40.0, "1": 50.0, "0": 70.0, "2": 90.0}]}}
    row = newest_table(results).splitlines()[-1]
    assert row == "| replay | 80.0 | 45.0 | +35.0 |", "newest {0, 2} at 80 against {3, 1} at 45"
