"""The core invariant: learning later tasks never changes what an earlier task generates."""

import pytest
import torch

from genmem import plasticity
from genmem.data import first_of_each_class
from genmem.learn import learn_task
from genmem.nets import Generator

from tiny import ARCHITECTURES, TINY_NOISE, tiny_config, tiny_set, tiny_spec


def learn(generator, data, labels, variant, seed=0, device="cpu", **config):
    keep = torch.isin(data.labels, torch.tensor(labels))
    index = torch.tensor([labels.index(int(label)) for label in data.labels[keep]])
    config = tiny_config(variant, generator.spec.arch, seed=seed, **config)
    return learn_task(generator, data.images[keep], index, len(labels), config, device=device, progress=False)


AVERAGE = pytest.mark.parametrize("average", [None, 0.9], ids=["last-weights", "averaged"])  # genmem.ema
DEVICES = pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU here: the invariant on the GPU is checked where one is"))])


@DEVICES
@AVERAGE
@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_old_task_output_is_bit_identical_after_later_tasks(variant, average, device, architecture):
    data = tiny_set(labels=(0, 1, 2, 3))
    generator = Generator(tiny_spec(variant, *architecture))
    learn(generator, data, [0, 1], variant, average_decay=average, device=device)  # task 0 holds two classes
    noise = torch.randn(50, TINY_NOISE, generator=torch.Generator().manual_seed(5)).to(device)
    classes = (torch.arange(50) % 2).to(device)
    with torch.no_grad():
        before = generator(noise, 0, classes)
    weights_after_task0 = [layer.weight.detach().clone() for layer in generator.layers]

    learn(generator, data, [2], variant, seed=1, average_decay=average, device=device)
    learn(generator, data, [3], variant, seed=2, average_decay=average, device=device)

    with torch.no_grad():
        after = generator(noise, 0, classes)
    assert torch.equal(before, after)
    # Not vacuous: the later tasks did change and grow the shared weights that task 0 reads.
    assert generator.widths != generator.tasks[0].widths
    first = generator.layers[1].weight[: weights_after_task0[1].shape[0], : weights_after_task0[1].shape[1]]
    assert not torch.equal(first, weights_after_task0[1])


@AVERAGE
@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_reserved_weights_do_not_change_while_a_later_task_trains(variant, average, architecture):
    data = tiny_set()
    generator = Generator(tiny_spec(variant, *architecture))
    learn(generator, data, [0], variant, average_decay=average)
    learn(generator, data, [1], variant, seed=1, average_decay=average)
    frozen = [keep.expand_as(layer.weight) for keep, layer in zip(
        plasticity.frozen_per_layer(variant, generator.reserved(), generator.wires), generator.layers, strict=True)]
    snapshot = [layer.weight.detach().clone() for layer in generator.layers]

    learn(generator, data, [2], variant, seed=2, average_decay=average)

    for old, layer, keep in zip(snapshot, generator.layers, frozen):
        now = layer.weight.detach()[: old.shape[0], : old.shape[1]]
        assert keep.any(), "earlier tasks should have reserved something"
        assert torch.equal(now[keep], old[keep])
        assert not torch.equal(now[~keep], old[~keep]), "free weights should have trained"


def test_learning_is_deterministic_for_a_seed_on_cpu():
    data = tiny_set()
    results = []
    for seed in (3, 3, 4):
        generator = Generator(tiny_spec("dgmw"), torch.Generator().manual_seed(seed))
        learn(generator, data, [0], "dgmw", seed=seed)
        results.append(torch.cat([p.detach().flatten() for p in generator.state_dict().values()
                                  if p.is_floating_point()]))
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])


def test_masks_end_binary_and_samples_stay_in_range():
    data = tiny_set()
    generator = Generator(tiny_spec("dgmw"))
    report = learn(generator, data, [0], "dgmw")
    assert all(mask.dtype == torch.bool for mask in generator.tasks[0].masks)
    assert 0 < sum(layer.new for layer in report.capacity) < sum(layer.total for layer in report.capacity)
    with torch.no_grad():
        out = generator(torch.randn(8, TINY_NOISE), 0, torch.zeros(8, dtype=torch.long))
    assert out.shape == (8, 1, 16, 16) and out.abs().max() <= 1
    assert set(report.final_losses) == {"critic", "generator", "wasserstein", "sparsity"}


def test_the_gan_trains_on_the_first_images_of_each_class_only():
    data = tiny_set(per_class=24)
    generator = Generator(tiny_spec("dgmw"))
    report = learn(generator, data, [0, 1], "dgmw", gan_images_per_class=6, epochs=2)  # 12 images: 1 batch of 12
    assert report.iterations == 2
    assert first_of_each_class(torch.tensor([0, 1, 0, 1, 0, 1, 1]), 2).tolist() == [0, 1, 2, 3]
    assert first_of_each_class(torch.tensor([1, 0]), None).tolist() == [0, 1]


@pytest.mark.parametrize("settings", [{"gp_every": 3}, {"critic_augment": "translation,cutout"},
                                      {"average_decay": None}])
def test_every_replay_technique_can_be_switched_and_changes_training(settings):
    data = tiny_set()
    generators = [Generator(tiny_spec("dgmw")) for _ in range(2)]
    learn(generators[0], data, [0], "dgmw")
    learn(generators[1], data, [0], "dgmw", **settings)
    noise = torch.randn(8, TINY_NOISE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = [g(noise, 0, torch.zeros(8, dtype=torch.long)) for g in generators]
    assert outputs[1].abs().max() <= 1
    assert not torch.equal(outputs[0], outputs[1])
