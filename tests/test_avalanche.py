"""The Avalanche plugin on a tiny class-incremental stream: it learns each experience's classes into the memory and
appends class-balanced replay of the earlier ones to every minibatch. The side-by-side benchmark and iCaRL run end
to end on tiny streams: the real-image buffer stays within genmem's bytes, iCaRL holds exactly K images per class."""

import json
import re
import shlex
import sys
from dataclasses import replace

import httpx
import pytest
import torch

avalanche = pytest.importorskip("avalanche", reason="Avalanche is not installed (pip install 'genmem[avalanche]')")

from avalanche.benchmarks import nc_benchmark  # noqa: E402
from avalanche.core import SupervisedPlugin  # noqa: E402
from avalanche.training import Naive  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402
from torchvision.transforms import Normalize  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from genmem.benchmarks import avalanche as side  # noqa: E402
from genmem.benchmarks import icarl  # noqa: E402
from genmem.benchmarks.record import COLUMNS, read_rows  # noqa: E402
from genmem.classifier import ClassifierConfig  # noqa: E402
from genmem.cli.main import main  # noqa: E402
from genmem.errors import GenmemError  # noqa: E402
from genmem.integrations.avalanche import GenmemReplayPlugin, PixelMap, critic_head_solver  # noqa: E402
from genmem.memory import Memory  # noqa: E402
from genmem.replay import ReplayStream  # noqa: E402
from genmem.benchmarks.subprocess_server import serving  # noqa: E402
from genmem.solver import phase_steps  # noqa: E402

from tiny import TINY_SIZE, tiny_config, tiny_set  # noqa: E402

MEAN, STD = (0.2,), (0.4,)


def labelled(images: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
    dataset = TensorDataset(images.float() / 255, labels)
    dataset.targets = labels
    return dataset


def tiny_stream():
    """Two experiences: classes 0 and 1 (two in one experience), then class 2; inputs are ToTensor + Normalize."""
    data = tiny_set(labels=(0, 1, 2), per_class=16)
    train = labelled(data.images, data.labels)
    return nc_benchmark(train, train, n_experiences=2, task_labels=False, shuffle=False, fixed_class_order=[0, 1, 2],
                        per_exp_classes={0: 2}, train_transform=Normalize(MEAN, STD),
                        eval_transform=Normalize(MEAN, STD))


class MinibatchSpy(SupervisedPlugin):
    """Records each training minibatch's targets and inputs as the model sees them."""

    def __init__(self):
        super().__init__()
        self.batches: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def before_forward(self, strategy, **kwargs):
        self.batches.append((strategy.experience.current_experience, strategy.mbatch[0].clone(),
                             strategy.mbatch[1].clone()))


def run(memory_path, **plugin_options):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(TINY_SIZE * TINY_SIZE, 3))
    plugin = GenmemReplayPlugin(memory_path, config=tiny_config(), image_size=TINY_SIZE, base_width=2,
                                **plugin_options)
    spy = MinibatchSpy()
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                     criterion=nn.CrossEntropyLoss(), train_mb_size=8, train_epochs=1,
                     evaluator=EvaluationPlugin(loggers=[]), plugins=[plugin, spy])
    benchmark = tiny_stream()
    for experience in benchmark.train_stream:
        strategy.train(experience)
    return plugin, spy


def test_plugin_learns_each_experience_and_replays_the_earlier_classes_balanced(tmp_path):
    plugin, spy = run(tmp_path / "m", normalize=(MEAN, STD))
    memory = Memory(tmp_path / "m")
    assert memory.versions() == ["v0001", "v0002"]
    assert [task["classes"] for task in memory.manifest()["tasks"]] == [[0, 1], [2]]
    assert plugin.learned == [0, 1, 2]

    first = [targets for exp, _, targets in spy.batches if exp == 0]
    assert first and all(len(t) == 8 and set(t.tolist()) <= {0, 1} for t in first), "nothing replayed before"
    second = [(inputs, targets) for exp, inputs, targets in spy.batches if exp == 1]
    assert second
    for inputs, targets in second:
        real, replay = targets[:8], targets[8:]
        assert set(real.tolist()) == {2}
        # class-balanced: as many images per earlier class as the minibatch has of its one new class
        assert len(replay) == 16 and (replay == 0).sum() == 8 and (replay == 1).sum() == 8
        low, high = (0 - MEAN[0]) / STD[0], (1 - MEAN[0]) / STD[0]
        assert inputs.shape[1:] == (1, TINY_SIZE, TINY_SIZE)
        assert inputs[8:].min() >= low - 1e-5 and inputs[8:].max() <= high + 1e-5
    # the replay is the memory's own stream (seeded by the experience), mapped into the stream's normalisation
    images, _ = next(iter(ReplayStream(tmp_path / "m", classes=[0, 1], batch_size=16, seed=1)))
    assert torch.allclose(PixelMap.from_normalize(MEAN, STD).to_inputs(images, (TINY_SIZE, TINY_SIZE)),
                          second[0][0][8:], atol=1e-5)


def test_a_finished_memory_is_reused_and_a_fixed_replay_size_is_kept(tmp_path):
    run(tmp_path / "m", normalize=(MEAN, STD))
    plugin, spy = run(tmp_path / "m", replay_size=5)  # pixel range read from the data this time
    assert Memory(tmp_path / "m").versions() == ["v0001", "v0002"], "no class is learned twice"
    second = [targets for exp, _, targets in spy.batches if exp == 1]
    assert all(len(t) == 8 + 5 and set(t[8:].tolist()) == {0, 1} for t in second)


def test_replay_from_a_server_is_the_local_replay(tmp_path):
    _, local = run(tmp_path / "m", normalize=(MEAN, STD))
    with serving(tmp_path / "m", ["--device", "cpu", "--watch-interval", "0"]) as url:
        _, served = run(tmp_path / "m", normalize=(MEAN, STD), replay_from=url)
        sent = re.search(r"^genmem_samples_total (\S+)$", httpx.get(f"{url}/metrics").text, re.M)
    replayed = sum(len(y) - 8 for exp, _, y in served.batches if exp == 1)
    assert sent and float(sent.group(1)) == replayed, "the replay came from the server"

    def replay_parts(spy):
        return [(x[8:], y[8:]) for exp, x, y in spy.batches if exp == 1]

    assert len(replay_parts(served)) == len(replay_parts(local)) > 0
    for (a, a_labels), (b, b_labels) in zip(replay_parts(served), replay_parts(local)):
        assert torch.equal(a_labels, b_labels) and torch.allclose(a, b, atol=1e-6)


def test_pixel_maps_invert_and_read_the_range():
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    normalised = PixelMap.from_normalize(MEAN, STD).to_inputs(pixels, (16, 16))
    assert torch.allclose(normalised, (pixels / 255 - MEAN[0]) / STD[0], atol=1e-6)
    assert torch.equal(PixelMap.from_range(normalised).to_pixels(normalised), pixels)
    with pytest.raises(GenmemError, match="constant"):
        PixelMap.from_range(torch.zeros(2, 1, 4, 4))
    with pytest.raises(GenmemError, match="replay_size"):
        GenmemReplayPlugin("unused", replay_size=0)


def test_the_default_stored_solver_is_the_critics_head_with_no_phase(tmp_path, monkeypatch):
    """Avalanche trains the classifier: the plugin's memory must not spend time on a solver phase of its own."""
    learned = {}
    monkeypatch.setattr(Memory, "learn_task", lambda self, data, classes, **options: learned.update(options))
    plugin = GenmemReplayPlugin(tmp_path / "m", epochs=3)
    data = tiny_set(labels=(0,), per_class=4)
    plugin._learn(data.images, data.labels, [0], torch.device("cpu"))
    config = learned["config"]
    assert config.epochs == 3 and config.solver == "real" and config.solver_start == "critic"
    assert phase_steps(config, 10**6) == 0


# The side-by-side benchmark on a tiny stream: three experiences of one class, 28x28 grey images (the only shape
# GenerativeReplay's VAE takes), a tiny GAN, two seeds.

def tiny_budget() -> side.Budget:
    return side.Budget(critic_head_solver(tiny_config()), base_width=2, profile="tiny", batch_size=8)


@pytest.fixture(scope="module")
def side_by_side_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("side")
    data = tiny_set(labels=(0, 1, 2), per_class=16, size=28)
    results = side.side_by_side(data, data, out, tiny_budget(), experiences=3, strategies=side.STRATEGIES,
                                seeds=(0, 1), progress=False)
    return data, out, results


def test_the_side_by_side_runs_every_strategy_and_learns_the_memory_once(side_by_side_run):
    _, out, results = side_by_side_run
    assert [(run["strategy"], run["seed"]) for run in results["runs"]] == [
        (name, seed) for seed in (0, 1) for name in ("genmem", "genmem-mb", "naive", "gr", "replay")]
    for run in results["runs"]:
        assert len(run["after"]) == 3 and all(0 <= step[side.STREAM_ACC] <= 1 for step in run["after"])
        assert run["seconds"] >= sum(step["seconds"] for step in run["after"]) > 0
    assert Memory(out / "memory").versions() == ["v0001", "v0002", "v0003"], "learned once, by the first seed"
    learned = results["memory"]["learned_seconds"]
    later = [run for run in results["runs"] if run["strategy"].startswith("genmem") and run["seed"] == 1]
    assert learned > 0 and all(run["seconds"] > learned for run in later), "a reused memory's learning counts"
    assert results["tasks"] == "3x1"
    assert "Replay's buffer holds at most" in side.report(results)


def test_the_real_image_buffer_never_holds_more_bytes_than_genmems_payload(side_by_side_run):
    _, out, results = side_by_side_run
    manifest = Memory(out / "memory").manifest()
    payload = manifest["files"]["generator.safetensors"]["bytes"] + manifest["files"]["masks.safetensors"]["bytes"]
    image_bytes = 1 * 32 * 32  # one byte per pixel at the memory's image size, not the stream's 28x28
    assert results["memory"]["payload"]["bytes"] == payload
    replays = [run for run in results["runs"] if run["strategy"] == "replay"]
    assert len(replays) == 2
    for run in replays:
        assert run["buffer_images"] == payload // image_bytes
        assert 0 < run["held_images"] <= run["buffer_images"]
        assert run["held_images"] * image_bytes <= payload


def test_the_side_by_side_rows_have_the_csv_columns(side_by_side_run):
    _, _, results = side_by_side_run
    rows = side.csv_rows(results | {"provenance": {"data": "tiny", "hardware": "cpu", "commit": "abc",
                                                   "command": "genmem bench avalanche"}})
    assert len(rows) == 10 and all(set(row) == set(COLUMNS) for row in rows)
    assert {row["method"] for row in rows} == {f"avalanche-{name}" for name in side.STRATEGIES}
    assert {(row["metric"], row["tasks"], row["profile"], row["data"]) for row in rows} == {
        ("stream_accuracy", "3x1", "tiny", "tiny")}
    assert sorted({row["seeds"] for row in rows}) == [0, 1] and all(0 <= row["value"] <= 100 for row in rows)


def test_a_memory_from_another_budget_or_data_or_missing_a_class_is_refused(side_by_side_run, tmp_path):
    data, out, _ = side_by_side_run
    memory, budget = Memory(out / "memory"), tiny_budget()
    side.check_memory(memory, data, budget, complete=True)
    with pytest.raises(GenmemError, match="epochs 2 .here 3."):
        side.check_memory(memory, data, replace(budget, gan=replace(budget.gan, epochs=3)), complete=False)
    with pytest.raises(GenmemError, match="initial_widths"):
        side.check_memory(memory, data, replace(budget, base_width=3), complete=False)
    more = tiny_set(labels=(0, 1, 2, 3), per_class=4, size=28)
    side.check_memory(memory, more, budget, complete=False)  # the plugin would learn class 3
    with pytest.raises(GenmemError, match=r"lacks classes \[3\]"):
        side.check_memory(memory, more, budget, complete=True)
    renamed = replace(data, class_names={0: "zero", 1: "1", 2: "2"})
    with pytest.raises(GenmemError, match="name '0'"):
        side.check_memory(memory, renamed, budget, complete=False)
    with pytest.raises(GenmemError, match="holds no memory"):
        side.side_by_side(data, data, tmp_path, budget, 3, ("naive", "replay"), progress=False)


def test_icarl_holds_exactly_k_real_images_per_seen_class_and_scores_the_seen_classes():
    data = tiny_set(labels=(0, 1, 2, 3), per_class=16, size=32, channels=3)
    config = ClassifierConfig(width=4, epochs=1, batch_size=8, augment="translation,cutout")
    results = icarl.icarl_study(data, data, 2, (5,), config, "tiny", seeds=(0,), progress=False)
    (run,) = results["runs"]
    assert [step["classes"] for step in run["after"]] == [[0, 1], [0, 1, 2, 3]]
    for step in run["after"]:
        assert step["exemplars"] == {str(c): 5 for c in step["classes"]}, "K per class seen, never more"
        assert set(step["per_class"]) == {str(c) for c in step["classes"]}
        assert step["average"] == pytest.approx(sum(step["per_class"].values()) / len(step["classes"]))
    rows = icarl.csv_rows(results | {"provenance": {"data": "tiny", "hardware": "cpu", "commit": "abc",
                                                    "command": "genmem bench avalanche --strategies icarl"}})
    assert len(rows) == 1 and set(rows[0]) == set(COLUMNS)
    assert (rows[0]["method"], rows[0]["tasks"], rows[0]["metric"], rows[0]["seeds"]) == ("icarl-k5", "2x2", "final",
                                                                                          0)
    assert rows[0]["value"] == round(run["after"][-1]["average"], 2)
    assert icarl.final_metric({"experiences": 10, "tasks": "10x1"}) == "A10"


def test_the_command_refuses_bad_lists_and_the_old_option_names():
    runner = CliRunner()
    for args, message in [(["--strategies", "genmem,bogus"], "unknown bogus"),
                          (["--memory-per-class", "20,0"], "whole numbers of 1 or more"),
                          (["--epochs", "2"], "No such option"), (["--gan-images-per-class", "10"], "No such option")]:
        result = runner.invoke(main, ["bench", "avalanche", "--out", "unused", *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_the_command_writes_icarls_rows_into_the_csv(tmp_path, monkeypatch):
    table = tmp_path / "BENCHMARKS.csv"
    arguments = ["bench", "avalanche", "--data", "builtin", "--strategies", "icarl", "--memory-per-class", "2,3",
                 "--profile", "smoke", "--experiences", "2", "--classifier-epochs", "1", "--out",
                 str(tmp_path / "run"), "--csv", str(table), "--device", "cpu", "--quiet"]
    monkeypatch.setattr(sys, "argv", ["genmem", *arguments])  # the command line the rows must name
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    rows = read_rows(table)
    results = json.loads((tmp_path / "run" / "icarl.json").read_text())
    assert [(r["method"], r["data"], r["metric"]) for r in rows] == [("icarl-k2", "builtin", "final"),
                                                                    ("icarl-k3", "builtin", "final")]
    assert [float(r["value"]) for r in rows] == [round(run["after"][-1]["average"], 2) for run in results["runs"]]
    assert all(r["command"] == shlex.join(["genmem", *arguments]) and r["commit"] and r["hardware"] for r in rows)


class LearningRateSpy(SupervisedPlugin):
    """Records, per training step, the experience, the learning rate and whether Adam holds any moments."""

    def __init__(self):
        super().__init__()
        self.steps: list[tuple[int, float, bool]] = []

    def before_training_iteration(self, strategy, **kwargs):
        self.steps.append((strategy.experience.current_experience, strategy.optimizer.param_groups[0]["lr"],
                           bool(strategy.optimizer.state)))


def test_icarls_classifier_restarts_adam_and_decays_its_rate_to_zero_over_each_task():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(TINY_SIZE * TINY_SIZE, 3))
    spy = LearningRateSpy()
    strategy = Naive(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.1),
                     criterion=nn.CrossEntropyLoss(), train_mb_size=8, train_epochs=2,
                     evaluator=EvaluationPlugin(loggers=[]), plugins=[icarl.CosinePerTask(0.1), spy])
    for experience in tiny_stream().train_stream:
        strategy.train(experience)
    for exp in (0, 1):
        steps = [(lr, moments) for e, lr, moments in spy.steps if e == exp]
        assert steps[0] == (0.1, False), "each task starts at the full rate with fresh moments"
        rates = [lr for lr, _ in steps]
        assert rates == sorted(rates, reverse=True) and rates[-1] < 0.1 * 0.2
    assert strategy.optimizer.param_groups[0]["lr"] == pytest.approx(0, abs=1e-12), "decayed to 0 at the task's end"
