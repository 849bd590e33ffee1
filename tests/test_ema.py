"""The generator average (genmem.ema) may only ever touch what the task being learned may change.

That old tasks stay bit-identical, and reserved weights untouched, with the average on is shown by the
core tests in test_learn.py, which run with and without it.
"""

import pytest
import torch

from genmem.ema import GeneratorAverage
from genmem.nets import Generator

from tiny import ARCHITECTURES, tiny_spec


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_apply_writes_the_average_to_free_entries_only(architecture):
    generator = Generator(tiny_spec("dgmw", *architecture), torch.Generator().manual_seed(0))
    generator.add_task(1, torch.Generator().manual_seed(1))
    frozen = [torch.rand(layer.weight.shape, generator=torch.Generator().manual_seed(i)) < 0.5
              for i, layer in enumerate(generator.layers)]
    average = GeneratorAverage(generator, 0, frozen, decay=0.5)
    before = [layer.weight.detach().clone() for layer in generator.layers]
    originals = [p.detach().clone() for p in generator.parameters()]
    # Pretend an optimiser moved every entry, reserved ones included, fold that into the average, then undo it.
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(1.0)
    average.update()
    with torch.no_grad():
        for p, original in zip(generator.parameters(), originals):
            p.copy_(original)
    private_before = generator.tasks[0].out.weight.detach().clone()

    average.apply()

    for layer, old, keep in zip(generator.layers, before, frozen):
        assert torch.equal(layer.weight[keep], old[keep]), "a reserved entry took the average"
        assert not torch.equal(layer.weight[~keep], old[~keep]), "free entries should hold the average"
    assert not torch.equal(generator.tasks[0].out.weight, private_before), "private layers should be averaged"


def test_the_average_forgets_the_start():
    generator = Generator(tiny_spec("dgmw"), torch.Generator().manual_seed(0))
    generator.add_task(1, torch.Generator().manual_seed(1))
    frozen = [torch.zeros(layer.weight.shape, dtype=torch.bool) for layer in generator.layers]
    average = GeneratorAverage(generator, 0, frozen, decay=0.9)
    weight = generator.layers[0].weight
    start = weight.detach().clone()
    with torch.no_grad():
        weight.copy_(start + 1.0)
    for _ in range(200):
        average.update()
    average.apply()
    torch.testing.assert_close(weight.detach(), start + 1.0)  # a constant's average is itself


def test_a_decay_outside_zero_and_one_is_refused():
    generator = Generator(tiny_spec("dgmw"))
    generator.add_task(1, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="decay"):
        GeneratorAverage(generator, 0, [torch.zeros(1, dtype=torch.bool)] * 2, decay=1.0)
