"""How the class enters the critic: its real-or-fake head, over whatever trunk maps images to features.

The critic (genmem.nets.Discriminator) is a trunk, `features` (images to a
feature vector phi), and two heads that read phi alone:

    critic   the real-or-fake score, never shipped. `acgan` (the paper's): psi(phi), blind to the class; the
             class enters through the class head and the generator's AC-GAN loss. `projection` (Miyato and
             Koyama 2018): psi(phi) + <embed(y), phi>, with y the image's class among the classes seen, so the
             critic judges "a real image of class y" rather than "a real image".
    classes  the class head over every class seen. It stays whatever the score head: the critic trains it on
             the task's real images and the earlier classes' replay, the generator's AC-GAN loss reads it when
             class_loss_weight > 0 (set it to 0 for projection alone), and a solver that starts from the critic
             (genmem.solver.classification_part) keeps it with the trunk. Everything under `critic.` is left
             behind there, the projection's embedding included.

A task's critic is built afresh and never stored, so nothing here changes
what a version holds or reads.
"""

from __future__ import annotations

import torch
from torch import nn

from genmem.config import TrainingConfig
from genmem.nets import INIT_STD, Discriminator, dcgan_init_
from genmem.spectral import spectrally_normalise_


class ProjectionScore(nn.Module):
    """psi(phi) + <embed(y), phi>: an unconditional score plus the features' projection on the class's embedding."""

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.embed = nn.Embedding(num_classes, features)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            raise ValueError("a projection critic scores an image as a member of a class: pass the images' labels")
        return self.linear(features).squeeze(1) + (self.embed(labels) * features).sum(dim=1)


class ProjectionDiscriminator(Discriminator):
    """genmem.nets.Discriminator (its trunk and class head, built from the same arguments) with the projection
    score in place of the class-blind one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.critic = ProjectionScore(self.critic.in_features, self.classes.out_features)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(images)
        return self.critic(h, labels), self.classes(h)


def build_critic(config: TrainingConfig, rng: torch.Generator, device: torch.device, *args, **kwargs
                 ) -> Discriminator:
    """A task's critic: genmem.nets.Discriminator(*args, **kwargs) with the score head config.critic_head names,
    DCGAN-initialised from `rng` on `device`, and spectrally normalised where config.spectral_norm asks
    (genmem.spectral). The default (`acgan`, no spectral norm) draws from `rng` exactly as before these options."""
    kind = ProjectionDiscriminator if config.critic_head == "projection" else Discriminator
    network = kind(*args, **kwargs).to(device)
    dcgan_init_(network, rng)
    if isinstance(network.critic, ProjectionScore):
        with torch.no_grad():
            network.critic.embed.weight.normal_(0.0, INIT_STD, generator=rng)
    if config.spectral_norm:
        spectrally_normalise_(network, rng)
    return network
