"""The replay stream from a local memory: balanced, reproducible, and split (not repeated) across workers."""

import pytest
import torch
from torch.utils.data import DataLoader

from genmem.errors import GenmemError
from genmem.memory import Memory
from genmem.replay import ReplayStream, balanced_counts, open_replay

from tiny import tiny_config, tiny_set


@pytest.fixture(scope="module")
def memory_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("r") / "m"
    memory = Memory(path)
    data = tiny_set()
    memory.learn_task(data, ["0", "1"], config=tiny_config(), image_size=16, base_width=2, progress=False)
    memory.learn_task(data, ["2"], config=tiny_config(seed=1), progress=False)
    return path


def test_balanced_counts_spread_the_remainder_over_batches():
    assert balanced_counts([4, 7, 9], 9, 0) == {4: 3, 7: 3, 9: 3}
    totals = {4: 0, 7: 0, 9: 0}
    for b in range(3):
        counts = balanced_counts([4, 7, 9], 10, b)
        assert sum(counts.values()) == 10 and max(counts.values()) - min(counts.values()) <= 1
        for label, n in counts.items():
            totals[label] += n
    assert totals == {4: 10, 7: 10, 9: 10}


def test_stream_yields_balanced_batches_of_the_requested_classes(memory_path):
    stream = ReplayStream(memory_path, classes=["2", 0], batch_size=7, batches=4, seed=1)
    batches = list(stream)
    assert len(batches) == len(stream) == 4
    for images, labels in batches:
        assert images.shape == (7, 1, 16, 16) and images.dtype == torch.uint8
        assert set(labels.tolist()) == {0, 2}
        assert abs((labels == 0).sum().item() - (labels == 2).sum().item()) <= 1
    assert not torch.equal(batches[0][0][:3], batches[1][0][:3]), "each batch draws fresh images"


def test_stream_is_reproducible_and_defaults_to_every_class(memory_path):
    a = list(ReplayStream(memory_path, batch_size=6, batches=2, seed=5))
    b = list(ReplayStream(memory_path, batch_size=6, batches=2, seed=5))
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert set(torch.cat([labels for _, labels in a]).tolist()) == {0, 1, 2}


def test_dataloader_workers_split_the_batches_instead_of_repeating_them(memory_path):
    stream = ReplayStream(memory_path, batch_size=6, batches=6, seed=2)
    alone = list(stream)
    together = list(DataLoader(ReplayStream(memory_path, batch_size=6, batches=6, seed=2), batch_size=None,
                               num_workers=2))
    assert len(together) == 6
    assert all(torch.equal(x[0], y[0]) for x, y in zip(alone, together))


def test_sampler_objects_and_versions_are_accepted(memory_path):
    sampler = Memory(memory_path).sampler("v0001")
    assert open_replay(sampler) is sampler
    images, labels = next(iter(ReplayStream(memory_path, version="v0001", batch_size=4)))
    assert set(labels.tolist()) <= {0, 1}


def test_stream_errors_are_clear(memory_path):
    with pytest.raises(GenmemError, match="batch_size must be at least 1"):
        ReplayStream(memory_path, batch_size=0)
    with pytest.raises(GenmemError, match="no class 5"):
        next(iter(ReplayStream(memory_path, classes=[5])))
    with pytest.raises(TypeError, match="endless"):
        len(ReplayStream(memory_path))
