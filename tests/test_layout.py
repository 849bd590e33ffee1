"""The critic and classifiers compute on channels-last images for speed; their scores, logits and every gradient
(the parameters' and, for the gradient penalty, the images') equal those of the default layout: bit for bit on grey
images, within float32's rounding on colour ones."""

from __future__ import annotations

import pytest
import torch

from genmem.nets import Classifier, Discriminator, dcgan_init_


def outputs_and_gradients(model: torch.nn.Module, images: torch.Tensor, forward) -> list[torch.Tensor]:
    images = images.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    outputs = forward(model, images)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    sum(out.square().sum() for out in outputs).backward()
    return [*(out.detach() for out in outputs), images.grad, *(p.grad for p in model.parameters())]


def default_layout(model: torch.nn.Module, images: torch.Tensor):
    """The model's heads on its trunk run on the images as given (contiguous, channels first)."""
    features = model.features(images.contiguous())
    if isinstance(model, Discriminator):
        return model.critic(features).squeeze(1), model.classes(features)
    return model.classes(features)


BUILDERS = {"dcgan-critic": lambda c: Discriminator(c, 32, 5, 8),
            "resnet-critic": lambda c: Discriminator(c, 32, 5, 8, "resnet"),
            "classifier": lambda c: Classifier(c, 32, 5, 8)}


def both_layouts(name: str, channels: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    model = BUILDERS[name](channels)
    dcgan_init_(model, torch.Generator().manual_seed(0))
    images = torch.rand(6, channels, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    fast = outputs_and_gradients(model, images, lambda m, x: m(x))
    reference = outputs_and_gradients(model, images, default_layout)
    assert len(fast) == len(reference)
    return fast, reference


@pytest.mark.parametrize("name", BUILDERS)
def test_on_grey_images_channels_last_gives_the_default_layouts_numbers_bit_for_bit(name):
    fast, reference = both_layouts(name, 1)
    assert [i for i, (got, expected) in enumerate(zip(fast, reference)) if not torch.equal(got, expected)] == []


@pytest.mark.parametrize("name", BUILDERS)
def test_on_colour_images_channels_last_rounds_within_float32s_precision(name):
    """Colour images really change layout, and oneDNN sums in another order: equal up to rounding, relative to the
    largest value (a convolution's bias before a BatchNorm has a gradient of rounding noise alone)."""
    fast, reference = both_layouts(name, 3)
    scale = max(t.abs().max().item() for t in reference)
    for got, expected in zip(fast, reference):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * scale)
