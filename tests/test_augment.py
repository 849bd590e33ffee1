"""DiffAugment for the critic: shapes kept, gradients pass, each operation does what it says."""

import pytest
import torch

from genmem.augment import FILL, cutout, diff_augment, parse_policy, translation
from genmem.errors import InvalidSetting


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


def test_the_full_policy_keeps_shape_and_lets_gradients_through():
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    y = diff_augment(x * 2 - 1, parse_policy("colour,translation,cutout"), rng())
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_moves_a_dot_by_whole_pixels_within_an_eighth_and_fills_with_background():
    x = torch.full((200, 1, 16, 16), FILL)
    x[:, :, 8, 8] = 1.0
    y = translation(x, rng())
    for image in y[:, 0]:
        spots = torch.nonzero(image == 1.0)
        assert len(spots) <= 1  # moved off the image at most, never duplicated
        if len(spots):
            assert (spots[0] - torch.tensor([8, 8])).abs().max() <= 2
    assert set(y.unique().tolist()) <= {FILL, 1.0}
    assert not torch.equal(y, x), "some dot should have moved"


def test_cutout_erases_one_square_of_half_the_side():
    x = torch.ones(100, 1, 16, 16)
    erased = (cutout(x, rng()) == FILL).flatten(1).sum(1)
    assert int(erased.max()) == 8 * 8  # a square wholly inside the image
    assert int(erased.min()) > 0


def test_same_seed_same_augmentation():
    x = torch.rand(4, 1, 16, 16)
    policy = parse_policy("translation,cutout")
    assert torch.equal(diff_augment(x, policy, rng(3)), diff_augment(x, policy, rng(3)))
    assert not torch.equal(diff_augment(x, policy, rng(3)), diff_augment(x, policy, rng(4)))


def test_empty_policy_is_the_identity_and_unknown_names_are_refused():
    x = torch.rand(2, 1, 8, 8)
    assert diff_augment(x, parse_policy(""), rng()) is x
    with pytest.raises(InvalidSetting, match="unknown augmentation 'flip'"):
        parse_policy("translation,flip")
