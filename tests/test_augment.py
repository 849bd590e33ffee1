"""DiffAugment for the critic: shapes kept, gradients pass, each operation does what it says."""

import pytest
import torch

from genmem.augment import FILL, cutout, diff_augment, parse_policy, translation
from genmem.classifier import ClassifierConfig, train_classifier
from genmem.errors import InvalidSetting
from tiny import RecordingClassifier


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


def test_a_classifier_with_an_augmentation_policy_trains_on_shifted_batches_and_without_one_on_the_images():
    images = torch.zeros(8, 1, 16, 16, dtype=torch.uint8)
    images[:, :, 6:10, 6:10] = 255  # a bright square in the middle of every image
    batches = [(images, torch.arange(8) % 2)] * 5
    trained = {}
    for policy in ("", "translation"):
        model = RecordingClassifier()
        train_classifier(iter(batches), 5, 2, 1, 16, ClassifierConfig(augment=policy), model=model)
        trained[policy] = torch.stack(model.seen)
    assert torch.equal(trained[""], (images.float() / 127.5 - 1).expand(5, -1, -1, -1, -1))
    moved = (trained["translation"] != trained[""]).flatten(2).any(2)  # which images were shifted, per step
    assert moved.float().mean() > 0.5  # most are (a shift of 0 in both directions is 1 in 25)
    assert torch.equal(trained["translation"].sum((2, 3, 4)), trained[""].sum((2, 3, 4)))  # moved, not cut


def test_an_unknown_classifier_augmentation_is_refused_by_name():
    with pytest.raises(InvalidSetting, match="unknown augmentation 'flip'"):
        train_classifier(iter([]), 0, 2, 1, 16, ClassifierConfig(augment="flip"))
