"""Sampling: grouped by task, reproducible by seed whatever else a request holds or however it is split."""

from dataclasses import replace

import pytest
import torch

from genmem.errors import GenmemError, UnknownClass
from genmem.memory import Memory
from genmem.sampler import Sampler

from tiny import ARCHITECTURES, tiny_config, tiny_set


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    memory = Memory(tmp_path_factory.mktemp("s") / "m")
    data = tiny_set()
    memory.learn_task(data, ["0", "1"], config=tiny_config(), image_size=16, base_width=2, progress=False)
    memory.learn_task(data, ["2"], config=tiny_config(seed=1), progress=False)
    return memory


def test_shapes_labels_and_ranges(memory):
    sampler = memory.sampler()
    images, labels = sampler.sample({"2": 3, 0: 2}, seed=0)
    assert images.shape == (5, 1, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [2, 2, 2, 0, 0]
    floats, _ = sampler.sample({"1": 4}, seed=0, as_uint8=False)
    assert floats.dtype == torch.float32 and floats.abs().max() <= 1


def test_same_seed_same_images_and_another_seed_others(memory):
    sampler = memory.sampler()
    a, _ = sampler.sample({0: 6, 2: 6}, seed=11)
    b, _ = memory.sampler().sample({0: 6, 2: 6}, seed=11)
    c, _ = sampler.sample({0: 6, 2: 6}, seed=12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_a_class_draws_the_same_images_whatever_else_is_asked(memory):
    sampler = memory.sampler()
    alone, _ = sampler.sample({2: 5}, seed=3, as_uint8=False)
    mixed, labels = sampler.sample({0: 4, 2: 5, 1: 2}, seed=3, as_uint8=False)
    assert torch.equal(mixed[labels == 2], alone)
    # classes 0 and 1 share task 0: asking for one or both gives the same images of each
    both, labels = sampler.sample({1: 2, 0: 4}, seed=3)
    assert torch.equal(both[labels == 0], sampler.sample({0: 4}, seed=3)[0])


def test_the_batch_split_does_not_change_the_images(memory):
    generator, manifest = memory.load()
    from genmem.artifact import ClassTable

    whole = Sampler(generator, ClassTable.from_manifest(manifest), "v", chunk=4096)
    split = Sampler(generator, ClassTable.from_manifest(manifest), "v", chunk=3)
    request = {0: 7, 1: 5, 2: 9}
    assert torch.equal(whole.sample(request, seed=5)[0], split.sample(request, seed=5)[0])
    a, b = whole.sample(request, seed=5, as_uint8=False)[0], split.sample(request, seed=5, as_uint8=False)[0]
    assert torch.allclose(a, b, atol=1e-6)


def test_unknown_precision_is_refused(memory):
    with pytest.raises(GenmemError, match="unknown precision 'float8'"):
        memory.sampler(precision="float8")


def _reference(memory, sampler, key, count, seed):
    """The masked generator's own forward pass on the class's noise."""
    generator, _ = memory.load(sampler.version)
    info = sampler.classes.resolve(key)
    with torch.no_grad():
        return generator(sampler.noise(info, count, seed), info.task, torch.full((count,), info.index))


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_float32_samples_equal_the_reference_masked_forward_exactly(tmp_path, variant, architecture):
    arch, class_norm = architecture
    # Beside the plain DCGAN's, tiny tasks may keep no unit of a group under the penalty, and sample a constant.
    config, base = (tiny_config(variant), 2) if architecture == ("dcgan", False) else \
        (tiny_config(variant, arch, sparsity_weight=0), 4)
    memory = Memory(tmp_path / "m")
    data = tiny_set()
    memory.learn_task(data, ["0", "1"], variant=variant, config=config, image_size=16, base_width=base,
                      progress=False, arch=arch, class_norm=class_norm)
    memory.learn_task(data, ["2"], config=replace(config, seed=1), progress=False)
    sampler = memory.sampler(precision="float32")
    folded = memory.sampler(precision="float16")  # BatchNorms folded into the convolutions
    for key in (0, 1, 2):
        fast = sampler.sample({key: 6}, seed=9, as_uint8=False)[0]
        reference = _reference(memory, sampler, key, 6, seed=9)
        assert torch.equal(fast, reference)
        assert fast.std(0).mean() > 1e-3, "not vacuous: the images vary with the noise"
        assert (folded.sample({key: 6}, seed=9, as_uint8=False)[0] - reference).abs().max() < 2e-2


@pytest.mark.parametrize("precision,tolerance", [("float16", 2e-2), ("bfloat16", 6e-2)])
def test_half_precision_with_folded_norms_stays_close_to_the_reference(memory, precision, tolerance):
    """Stated tolerance: max abs error on the [-1, 1] output, which is at most a few uint8 levels."""
    sampler = memory.sampler(precision=precision)
    for key in (0, 1, 2):
        fast = sampler.sample({key: 32}, seed=2, as_uint8=False)[0]
        assert (fast - _reference(memory, sampler, key, 32, seed=2)).abs().max() < tolerance


def test_bad_requests_are_explained(memory):
    sampler = memory.sampler()
    with pytest.raises(UnknownClass, match="no class 7; it holds 0, 1, 2"):
        sampler.sample({7: 1})
    with pytest.raises(GenmemError, match="counts must be 0 or more"):
        sampler.sample({0: -1})
    images, labels = sampler.sample({0: 0})
    assert images.shape == (0, 1, 16, 16) and labels.shape == (0,)
