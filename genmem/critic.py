"""The critic's side of a task's GAN step: its loss, WGAN-GP or hinge, and its class head (docs/ALGORITHM.md §10, §15).

The critic tells the task's real images from generated ones and, through its
class head, learns every class seen so far, from the real batch and from
generated images of the earlier classes. `CriticStep` is one such step;
genmem.private's `PrivateCritic` is its differentially private twin with the
same shape, so that the training loop (genmem.learn) never asks which one it
holds:

    network              the critic as the generator's loss reads it
    optimiser            its optimiser (what a checkpoint saves)
    batches_per_epoch()  optimiser steps in one pass over the task's images
    epoch_batches(...)   one epoch's batches, as row indices into the task's images
    real_views(...)      the real batch as the critic sees it (augmented; DP: several views of each image)
    fake_classes(...)    the classes of the generated images a real batch is compared with
    step(...)            one optimiser step; the loss and the Wasserstein estimate
    generator_loss(...)  what the generator minimises of the critic's scores of its images
    state(), load_state  what a checkpoint holds of the step beyond its network and optimiser (genmem.checkpoint)
    record()             what the manifest states about privacy (None: no guarantee)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from genmem.augment import diff_augment
from genmem.classifier import balanced_cross_entropy
from genmem.config import TrainingConfig
from genmem.distributed import ONE_PROCESS, DataParallel, SingleProcess
from genmem.nets import Discriminator


def gradient_penalty(critic: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], real: torch.Tensor,
                     fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """WGAN-GP: (||grad D(x_hat)|| - 1)^2 at random points between real and generated images. critic: images to
    (scores, logits), a Discriminator or one bound to the images' classes."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=rng, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score, _ = critic(mixed)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def hinge_loss(score_real: torch.Tensor, score_fake: torch.Tensor) -> torch.Tensor:
    """The critic's hinge loss (Lim and Ye 2017; SN-GAN): mean relu(1 - D(real)) + mean relu(1 + D(fake)). It stops
    pushing a score once it is past its margin; the generator's loss stays -mean D(fake), as with WGAN-GP."""
    return F.relu(1 - score_real).mean() + F.relu(1 + score_fake).mean()


def critic_loss(critic: Discriminator, real: torch.Tensor, fake: torch.Tensor, step: int, config: TrainingConfig,
                rng: torch.Generator, labels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The critic's loss (config.gan_loss), with the Wasserstein estimate (the mean score gap, for hinge too) and
    the class logits of the real batch. WGAN-GP adds its penalty lazily every gp_every steps, weighted by
    gp_every; hinge has none. labels: the class of the real and the generated images alike (the same classes,
    row by row), for a head that reads them (genmem.conditioning)."""
    score_real, logits_real = critic(real, labels)
    score_fake, _ = critic(fake, labels)
    wasserstein = score_real.mean() - score_fake.mean()
    if config.gan_loss == "hinge":
        return hinge_loss(score_real, score_fake), wasserstein, logits_real
    loss = -wasserstein
    if step % config.gp_every == 0:
        conditioned = critic if labels is None else lambda images: critic(images, labels)
        loss = loss + config.gp_every * config.gp_weight * gradient_penalty(conditioned, real, fake, rng)
    return loss, wasserstein, logits_real


def replay_batch(replay: torch.Tensor, per_class: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """per_class random images of each earlier class from the fixed replay [classes, N, C, H, W], with targets."""
    earlier = replay.shape[0]
    classes = torch.arange(earlier, device=replay.device)
    pick = torch.randint(replay.shape[1], (earlier, per_class), generator=rng, device=replay.device)
    return replay[classes[:, None], pick].flatten(0, 1), classes.repeat_interleave(per_class)


class CriticStep:
    """The plain critic step: the GAN loss (config.gan_loss) on the real batch against generated images of the same
    classes, plus a class-balanced cross-entropy over the real batch and `per_class` replayed images of every
    earlier class.

    replay: the earlier classes' generated images in [-1, 1], [classes, N, C, H, W], or None.
    classify: whether the class head has more than one class to tell apart.
    """

    def __init__(self, critic: Discriminator, config: TrainingConfig, replay: torch.Tensor | None, per_class: int,
                 classify: bool, ranks: DataParallel | SingleProcess = ONE_PROCESS):
        self.network = critic
        self.optimiser = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=config.betas)
        self.config, self.replay, self.per_class, self.classify, self.ranks = config, replay, per_class, classify, ranks

    def epoch_batches(self, rows: torch.Tensor, rng: torch.Generator) -> Iterator[torch.Tensor]:
        """The rows in a fresh random order, cut into batches (the last one may be smaller)."""
        order = rows[torch.randperm(len(rows), generator=rng, device=rows.device)]
        size = self.config.batch_size
        return (order[offset: offset + size] for offset in range(0, len(order), size))

    def batches_per_epoch(self, images: int) -> int:
        return -(-images // self.config.batch_size)

    def real_views(self, real: torch.Tensor, policy: tuple[str, ...], rng: torch.Generator) -> torch.Tensor:
        return diff_augment(real, policy, rng)

    def fake_classes(self, real_classes: torch.Tensor, num_classes: int, rng: torch.Generator) -> torch.Tensor:
        """The generated images take the real batch's classes (the task's class indices)."""
        return real_classes

    def generator_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        return -fake_scores.mean()

    def step(self, real: torch.Tensor, targets: torch.Tensor, fake: torch.Tensor, step: int,
             rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step; returns the critic's loss and the Wasserstein estimate. targets: the real batch's
        outputs of the class head (earlier classes first)."""
        critic = self.network
        critic.requires_grad_(True)
        loss, wasserstein, logits = critic_loss(critic, real, fake, step, self.config, rng, targets)
        if self.classify:
            if self.replay is not None:
                old_images, old_targets = replay_batch(self.replay, self.per_class, rng)
                _, logits_replay = critic(old_images, old_targets)
                logits = torch.cat([logits, logits_replay])
                targets = torch.cat([targets, old_targets])
            loss = loss + balanced_cross_entropy(logits, targets)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.ranks.average_gradients(critic.parameters())
        self.optimiser.step()
        return loss.detach(), wasserstein.detach()

    def state(self) -> dict[str, torch.Tensor]:
        return {}  # the network and its optimiser are all there is

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def record(self) -> dict | None:
        return None
