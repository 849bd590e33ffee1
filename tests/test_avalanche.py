"""The Avalanche plugin on a tiny class-incremental stream: it learns each experience's classes into the memory and
appends class-balanced replay of the earlier ones to every minibatch."""

import re

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

from genmem.errors import GenmemError  # noqa: E402
from genmem.integrations.avalanche import GenmemReplayPlugin, PixelMap  # noqa: E402
from genmem.memory import Memory  # noqa: E402
from genmem.replay import ReplayStream  # noqa: E402
from genmem.benchmarks.subprocess_server import serving  # noqa: E402

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
