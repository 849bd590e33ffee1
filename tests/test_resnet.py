"""The residual architecture and class-conditional BatchNorms: their shapes, their masks, their critic.

That old tasks stay bit-identical, reserved weights untouched, free capacity kept, the sampler exact and the
average off reserved entries on them too is shown by the core tests (test_learn, test_expansion, test_sampler,
test_ema, test_claims, test_checkpoint), which run on every architecture in tiny.ARCHITECTURES.
"""

import pytest
import torch
from torch import nn

from genmem import plasticity
from genmem.errors import InvalidSetting
from genmem.nets import ClassNorm, Discriminator, Generator, GeneratorSpec, dcgan_init_

from tiny import ARCHITECTURES, TINY_NOISE, tiny_spec


@pytest.mark.parametrize("size, groups", [(16, 3), (32, 4), (64, 5)])
def test_a_residual_generator_has_one_stage_per_doubling(size, groups):
    spec = GeneratorSpec.for_images("dgmw", 3, size, base_width=5, arch="resnet")
    assert spec.widths == (5,) * groups
    generator = Generator(spec)
    assert len(generator.layers) == 1 + 3 * (groups - 1)
    assert [(w.source, w.group, w.kernel) for w in generator.wires[1:4]] == [(0, 1, 3), (1, 1, 3), (0, 1, 1)]
    generator.add_task(2, torch.Generator().manual_seed(0))
    out = generator.eval()(torch.randn(4, 128), 0, torch.tensor([0, 1, 0, 1]), [torch.ones(s) for s in
                                                                                generator.mask_shapes()])
    assert out.shape == (4, 3, size, size) and out.abs().max() <= 1


def test_an_unknown_architecture_or_the_wrong_depth_is_refused():
    with pytest.raises(InvalidSetting, match="unknown architecture 'vit': choose one of dcgan, resnet"):
        GeneratorSpec.for_images("dgmw", 1, 32, arch="vit")
    with pytest.raises(InvalidSetting, match="32 px images need 4 unit groups in a resnet generator"):
        GeneratorSpec("dgmw", 1, 32, 128, (8, 4, 2), "resnet")


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_task_reads_only_the_weights_its_masks_select(variant, architecture):
    """§12's argument on each architecture: with a task's binary masks, every weight entry that frozen_per_layer
    would not freeze for it (DGMw: mask 0; DGMa: a unit on either side unused) contributes exactly nothing, so
    later tasks may change it freely. DGMa's unit mask is applied to both activations of a residual stage."""
    generator = Generator(tiny_spec(variant, *architecture))
    generator.add_task(2, torch.Generator().manual_seed(1))
    draw = torch.Generator().manual_seed(2)
    masks = [torch.rand(shape, generator=draw) < 0.6 for shape in generator.mask_shapes()]
    generator.tasks[0].set_masks(masks)
    generator.eval()
    noise, classes = torch.randn(8, TINY_NOISE, generator=draw), torch.arange(8) % 2
    selected = plasticity.frozen_per_layer(variant, masks, generator.wires)
    with torch.no_grad():
        before = generator(noise, 0, classes)
        for layer, keep in zip(generator.layers, selected, strict=True):
            layer.weight.add_(torch.where(keep, 0.0, torch.randn(layer.weight.shape, generator=draw)))
        assert torch.equal(generator(noise, 0, classes), before)
        for layer, keep in zip(generator.layers, selected, strict=True):  # not vacuous: the selected ones count
            layer.weight.add_(torch.where(keep, 1.0, 0.0))
        assert not torch.equal(generator(noise, 0, classes), before)


def test_a_class_norm_scales_and_shifts_each_image_by_its_class():
    norm = ClassNorm(3, num_classes=2).eval()
    with torch.no_grad():
        norm.scale.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]))
        norm.shift.copy_(torch.tensor([[0.0, 1.0, 0.0], [5.0, 0.0, -2.0]]))
    x = torch.randn(4, 3, 2, 2)
    classes = torch.tensor([0, 1, 1, 0])
    plain = nn.BatchNorm2d(3, affine=False).eval()(x)
    expected = plain * norm.scale[classes][:, :, None, None] + norm.shift[classes][:, :, None, None]
    assert torch.equal(norm(x, classes), expected)
    assert set(dict(norm.named_parameters())) == {"scale", "shift"}


@pytest.mark.parametrize("size", [16, 32, 64])
def test_the_residual_critic_is_a_trunk_of_features_under_its_heads(size):
    critic = Discriminator(3, size, num_classes=5, width=8, arch="resnet")
    dcgan_init_(critic, torch.Generator().manual_seed(0))
    images = torch.randn(6, 3, size, size, requires_grad=True)
    features = critic.trunk(images)
    assert features.shape == (6, 8)
    score, logits = critic(images)
    assert torch.equal(score, critic.critic(features).squeeze(1)) and logits.shape == (6, 5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules()), "WGAN-GP's critic has no BatchNorm"
    (grad,) = torch.autograd.grad(score.sum(), images)
    assert grad.flatten(1).norm(dim=1).mean() > 1e-3, "He-initialised: the generator gets a gradient from the start"
