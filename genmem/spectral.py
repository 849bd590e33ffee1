"""Spectral normalisation of the critic (Miyato et al. 2018): each layer's largest singular value held at 1.

Every convolution, linear layer and embedding that the real-or-fake score
passes through (the trunk and the score head, not the class head, whose logits
may need any scale) divides its weight by an estimate of the weight's largest
singular value, refreshed by one power iteration per forward pass in training.
The critic is then 1-Lipschitz up to its nonlinearities without a gradient
penalty, as the hinge loss wants (genmem.critic). BatchNorm would rescale the
activations and undo the bound, so the trunk's BatchNorms are removed.

The power iteration's vectors are buffers of the critic, which is built afresh
for every task and never stored: the generator, its masks and what a version
holds are untouched, so an old class's images stay bit-identical. They are
drawn from the task's random generator, so that a seed still gives the same
memory.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genmem.nets import Discriminator

NORMALISED = (nn.Conv2d, nn.Linear, nn.Embedding)


def spectrally_normalise_(critic: Discriminator, rng: torch.Generator) -> None:
    """Remove the trunk's BatchNorms and spectrally normalise the trunk's and the score head's layers, in place."""
    _remove_batch_norm_(critic.features)
    seed = int(torch.randint(2**62, (1,), generator=rng, device=rng.device))
    cuda = [rng.device] if rng.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # torch draws the first vectors from the global generator
        torch.manual_seed(seed)
        for part in (critic.features, critic.critic):
            for module in list(part.modules()):
                if isinstance(module, NORMALISED):
                    spectral_norm(module)


def _remove_batch_norm_(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _remove_batch_norm_(child)
