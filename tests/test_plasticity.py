import math

import pytest
import torch

from genmem import plasticity


def test_epoch_scale_rises_linearly_to_s_max():
    s_max, epochs = 1e4, 4
    tops = [plasticity.epoch_scale(e, epochs, s_max) for e in range(epochs)]
    assert tops[-1] == pytest.approx(s_max)
    assert tops[0] == pytest.approx((s_max - 1 / s_max) / 4 + 1 / s_max)
    assert all(b > a for a, b in zip(tops, tops[1:])), "s must never run downwards"


def test_batch_scale_sweeps_from_inverse_to_top_within_an_epoch():
    top = 2500.0
    assert plasticity.batch_scale(top, 0, 1000) == pytest.approx(1 / top)
    assert plasticity.batch_scale(top, 500, 1000) == pytest.approx((top - 1 / top) * 0.5 + 1 / top)
    assert plasticity.batch_scale(top, 1000, 1000) == pytest.approx(top)


def test_compensation_matches_the_formula_at_chosen_points():
    e = torch.tensor([-2.0, -0.01, 0.0, 0.003, 1.5], requires_grad=True)
    e.grad = torch.tensor([0.5, -1.0, 2.0, 0.25, -0.75])
    s, top = 40.0, 1000.0
    expected = [g * (top / s) * (math.cosh(max(-50, min(50, s * x))) + 1) / (math.cosh(x) + 1)
                for g, x in zip(e.grad.tolist(), e.detach().tolist())]
    plasticity.compensate_embedding_gradient_(e, s, top)
    assert e.grad.tolist() == pytest.approx(expected, rel=1e-5)


def test_compensation_clamps_cosh_so_large_scales_stay_finite():
    e = torch.tensor([3.0], requires_grad=True)
    e.grad = torch.tensor([1.0])
    plasticity.compensate_embedding_gradient_(e, 1e4, 1e4)  # s * e = 3e4 would overflow cosh
    assert torch.isfinite(e.grad).all()
    assert e.grad.item() == pytest.approx((math.cosh(50) + 1) / (math.cosh(3.0) + 1), rel=1e-4)


def test_compensated_gradient_no_longer_depends_on_s():
    """The point of the rule: d mask/d e times the factor is s_max / (2 (cosh e + 1)) wherever s is."""
    values = []
    for s in (0.01, 1.0, 30.0):
        e = torch.tensor([0.2], requires_grad=True)
        plasticity.soft_mask(e, s).sum().backward()
        plasticity.compensate_embedding_gradient_(e, s, 100.0)
        values.append(e.grad.item())
    assert values == pytest.approx([100.0 / (2 * (math.cosh(0.2) + 1))] * 3, rel=1e-4)


def test_binarise_reserves_strictly_positive_embeddings_only():
    e = torch.tensor([-1e-6, 0.0, 1e-6, 3.0])
    assert plasticity.binarise(e).tolist() == [False, False, True, True]


def test_sparsity_penalty_charges_only_free_entries_pooled_over_layers():
    masks = [torch.tensor([1.0, 0.5, 0.0, 1.0]), torch.tensor([0.25, 0.75])]
    reserved = [torch.tensor([True, False, False, False]), torch.tensor([False, True])]
    # free entries: layer 0 -> 0.5 + 0.0 + 1.0, layer 1 -> 0.25; four free entries in all
    assert plasticity.sparsity_penalty(masks, reserved).item() == pytest.approx(1.75 / 4)


def test_sparsity_penalty_of_the_first_task_is_the_mean_mask():
    masks = [torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5, 0.5])]
    reserved = [torch.zeros(2, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)]
    assert plasticity.sparsity_penalty(masks, reserved).item() == pytest.approx(2.5 / 5)


def test_dgma_freezes_a_weight_only_between_two_reserved_units():
    below = torch.tensor([True, False])
    here = torch.tensor([True, True, False])
    frozen = plasticity.frozen_weights("dgma", below, here).expand(2, 3, 4, 4)
    assert frozen[:, :, 0, 0].tolist() == [[True, True, False], [False, False, False]]
    first = plasticity.frozen_weights("dgma", None, here).expand(5, 3, 4, 4)
    assert first[:, :, 1, 2].tolist() == [[True, True, False]] * 5


def test_dgmw_freezes_exactly_the_reserved_weights():
    reserved = torch.rand(3, 2, 4, 4) > 0.5
    assert torch.equal(plasticity.frozen_weights("dgmw", None, reserved), reserved)
