import math

import pytest
import torch

from genmem.expansion import expand_for_next_task, layer_capacity, plan_widths, task_capacity
from genmem.learn import learn_task
from genmem.nets import Generator, architecture

from tiny import ARCHITECTURES, tiny_config, tiny_set, tiny_spec


def test_dgma_adds_one_unit_per_newly_reserved_unit():
    assert plan_widths("dgma", (80, 40, 20), 128, [7, 0, 3]) == (87, 40, 23)


def test_dgmw_plan_follows_the_formula_and_credits_wider_inputs():
    # layer 1: ceil(5000 / (128*16)) = 3 more outputs
    # layer 2: (600 - 3*12*16) / ((24+3)*16) = 0.0694 -> 1
    # layer 3: 100 - 1*6*16 = 4 -> ceil(4 / ((12+1)*16)) = 1
    assert plan_widths("dgmw", (24, 12, 6), 128, [5000, 600, 100]) == (27, 13, 7)
    # enough new inputs already cover the need: no new outputs
    assert plan_widths("dgmw", (24, 12, 6), 128, [5000, 200, 0]) == (27, 12, 6)


def test_dgmw_plan_covers_every_layer_that_writes_a_group():
    # A ResNet of two groups, 4 and 4 wide, noise 8: the 4x4 layer writes group 0; conv_a (3x3, from group 0),
    # conv_b (3x3, group 1 to itself) and the shortcut (1x1, from group 0) write group 1.
    wires = architecture("resnet").wires(2)
    # group 0: 8 * d * 16 >= 200 -> d = 2 (6 wide). Group 1, d more outputs, group 0 now 6 wide:
    # conv_a gains (6 (4 + d) - 16) * 9 >= 100 at d = 1; conv_b ((4 + d)^2 - 16) * 9 >= 100 at d = 2;
    # the shortcut 6 (4 + d) - 16 >= 30 at d = 4: every layer must be covered, so d = 4.
    assert plan_widths("dgmw", (4, 4), 8, [200, 100, 100, 30], wires) == (6, 8)
    assert plan_widths("dgmw", (4, 4), 8, [200, 100, 100, 0], wires) == (6, 6)  # conv_b decides
    assert plan_widths("dgmw", (4, 4), 8, [0, 0, 0, 0], wires) == (4, 4)
    assert plan_widths("dgma", (4, 4), 8, [1, 3], wires) == (5, 7)


def test_layer_capacity_counts_new_reused_and_free():
    mask = torch.tensor([True, True, False, False, True])
    earlier = torch.tensor([True, False, True, False, False])
    cap = layer_capacity(mask, earlier)
    assert (cap.total, cap.new, cap.reused, cap.free) == (5, 2, 1, 1)


def _free_per_layer(generator):
    return [int((~r).sum()) for r in generator.reserved()]


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
@pytest.mark.parametrize("architecture", ARCHITECTURES[:2])
def test_expansion_keeps_free_capacity_at_its_initial_size(variant, architecture):
    data = tiny_set()
    generator = Generator(tiny_spec(variant, *architecture))
    initial = [math.prod(shape) for shape in generator.mask_shapes()]
    for task in range(3):
        keep = data.labels == task
        report = learn_task(generator, data.images[keep], torch.zeros(int(keep.sum()), dtype=torch.long), 1,
                            tiny_config(variant, architecture[0], seed=task), progress=False)
        assert sum(layer.new for layer in report.capacity) > 0, "the test needs tasks that reserve something"
        expand_for_next_task(generator, torch.Generator().manual_seed(0))
        free = _free_per_layer(generator)
        if variant == "dgma":
            assert free == initial
        else:
            assert all(f >= i for f, i in zip(free, initial)), (free, initial)
    assert generator.widths != tiny_spec(variant, *architecture).widths, "the network should have grown"


def test_expanding_twice_changes_nothing():
    data = tiny_set()
    generator = Generator(tiny_spec("dgmw"))
    keep = data.labels == 0
    learn_task(generator, data.images[keep], torch.zeros(int(keep.sum()), dtype=torch.long), 1, tiny_config(),
               progress=False)
    expand_for_next_task(generator, torch.Generator().manual_seed(0))
    grown = [layer.weight.detach().clone() for layer in generator.layers]
    expand_for_next_task(generator, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, layer.weight) for a, layer in zip(grown, generator.layers))
    assert task_capacity(generator, 0)[0].total == math.prod(generator.tasks[0].masks[0].shape)
