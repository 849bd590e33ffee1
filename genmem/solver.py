"""The task solver a version ships: a classifier over every class seen, trained in one of three ways.

    real    trained on the task's real images and on generated images of earlier classes. It starts
            (config.solver_start) from a fresh network (the default), or from the critic's trunk and class
            head, which learnt them during the GAN (the paper's solver; only the classification parts are
            kept, the critic's real-or-fake head never leaves training) and ends less accurate on MNIST
            (BENCHMARKS.md).
    replay  a fresh classifier trained only on generated images of every class, the task's own drawn from
            the generator just trained. Nothing it holds has touched a real image except through the
            generator, so it is as private as the generator (post-processing).
    none    no solver: the version holds the generator alone.

The published network is `genmem.nets.Classifier` (`features.*`, `classes.*`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genmem.augment import diff_augment, parse_policy
from genmem.classifier import balanced_cross_entropy, classifier_optimiser
from genmem.config import TrainingConfig, stored_solver_width
from genmem.distributed import ONE_PROCESS, DataParallel, SingleProcess
from genmem.nets import Classifier, Discriminator, Generator, dcgan_init_, fresh_norm_statistics

SOLVER_BATCHES = 2  # a solver step classifies this many GAN batches' worth of images

# Figures of training computed on the task's real images (the last batch's critic loss and Wasserstein estimate).
REAL_IMAGE_LOSSES = ("critic", "wasserstein")


def records_real_image_figures(mode: str) -> bool:
    """Whether a version may store figures computed from the task's real images (REAL_IMAGE_LOSSES, the
    diversity ratio of genmem.learned_quality): only with the `real` solver, which has seen those images
    anyway; `replay` and `none` (and so DP mode) promise that nothing stored has, except through the generator."""
    return mode == "real"


def shipped_losses(mode: str, losses: dict[str, float]) -> dict[str, float]:
    """The training losses a version may record under solver `mode` (records_real_image_figures)."""
    return losses if records_real_image_figures(mode) else {k: v for k, v in losses.items()
                                                            if k not in REAL_IMAGE_LOSSES}


def classification_part(critic: Discriminator) -> Classifier:
    """The critic's trunk and class head as a standalone classifier; the real-or-fake head is left behind."""
    convs = [m for m in critic.features if isinstance(m, nn.Conv2d)]
    model = Classifier(convs[0].in_channels, 2 ** (len(convs) + 2), critic.classes.out_features,
                       convs[0].out_channels).to(critic.classes.weight.device)
    model.load_state_dict({k: v for k, v in critic.state_dict().items() if not k.startswith("critic.")})
    return model


def phase_steps(config: TrainingConfig, images: int) -> int:
    """Steps of the classification-only phase: config.solver_steps, or more where config.solver_epochs asks for
    that many passes over the solver's `images` (the task's and the replayed earlier classes': a budget that
    grows with the classes seen, as the replay classifier's does)."""
    if config.solver_epochs is None:
        return config.solver_steps
    return max(config.solver_steps, math.ceil(config.solver_epochs * images / (SOLVER_BATCHES * config.batch_size)))


def train_solver(solver: Classifier, images: torch.Tensor, targets: torch.Tensor, config: TrainingConfig,
                 rng: torch.Generator, ranks: DataParallel | SingleProcess = ONE_PROCESS) -> None:
    """Train the solver on classification alone, class-balanced.

    For a `real` solver this follows the GAN: while the GAN trains, the
    critic's features serve the Wasserstein estimate and the class head lags
    on the newest class; a short classification-only phase fixes that
    (BENCHMARKS.md). Under data-parallel learning each rank computes its rows
    of every batch, as in the GAN (genmem.distributed).
    """
    policy = parse_policy(config.solver_augment)
    solver.requires_grad_(True)
    solver.train()
    unshard = ranks.shard(solver)
    steps = phase_steps(config, len(images))
    optimiser, schedule = classifier_optimiser(solver.parameters(), config.solver_lr, steps)  # as classifiers train
    for _ in range(steps):
        pick = torch.randint(len(images), (SOLVER_BATCHES * config.batch_size,), generator=rng, device=images.device)
        loss = balanced_cross_entropy(solver(diff_augment(images[pick], policy, rng)), targets[pick])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        ranks.average_gradients(solver.parameters())
        optimiser.step()
        schedule.step()
    unshard()
    solver.requires_grad_(False)


@torch.no_grad()
def recalibrate_solver(solver: nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Re-estimate the solver's BatchNorm statistics on the images it classifies (GAN training mixed in fakes)."""
    with fresh_norm_statistics(m for m in solver.modules() if isinstance(m, nn.BatchNorm2d)):
        solver.train()
        for start in range(0, len(images), batch_size):
            solver(images[start: start + batch_size])
    solver.eval()


@torch.no_grad()
def generated_images(generator: Generator, task: int, num_classes: int, per_class: int, rng: torch.Generator,
                     batch_size: int = 256) -> torch.Tensor:
    """per_class images of each of the task's classes from the finished generator, floats in [-1, 1]."""
    device = generator.layers[0].weight.device
    classes = torch.arange(num_classes, device=device).repeat_interleave(per_class)
    parts = []
    for start in range(0, len(classes), batch_size):
        chunk = classes[start: start + batch_size]
        noise = torch.randn(len(chunk), generator.spec.noise_dim, generator=rng, device=device)
        parts.append(generator(noise, task, chunk))
    return torch.cat(parts)


def task_solver(config: TrainingConfig, critic: Discriminator, generator: Generator, task: int, num_classes: int,
                real: torch.Tensor, real_targets: torch.Tensor, replay: torch.Tensor | None, rng: torch.Generator,
                ranks: DataParallel | SingleProcess = ONE_PROCESS) -> Classifier | None:
    """The solver this version ships, over every class so far (earlier classes first, then the task's).

    real: the task's images in [-1, 1] and their solver outputs (read in mode `real` only); replay:
    generated images of the earlier classes [classes, per_class, C, H, W] in [-1, 1], or None.
    The generator must be finished (binary masks, eval mode). Mode: config.solver. ranks: this process's
    place when several learn the task (genmem.distributed).
    """
    earlier = 0 if replay is None else replay.shape[0]
    past = [] if replay is None else [replay.flatten(0, 1)]
    past_targets = [] if replay is None else [torch.arange(earlier, device=replay.device)
                                              .repeat_interleave(replay.shape[1])]
    if config.solver == "none":
        return None
    if config.solver == "real":
        images, targets = torch.cat([real, *past]), torch.cat([real_targets, *past_targets])
    else:
        per_class = replay.shape[1] if replay is not None else -(-len(real_targets) // num_classes)
        own = generated_images(generator, task, num_classes, per_class, rng)
        own_targets = torch.arange(earlier, earlier + num_classes, device=own.device).repeat_interleave(per_class)
        images, targets = torch.cat([*past, own]), torch.cat([*past_targets, own_targets])
    if config.solver == "real" and config.solver_start == "critic":
        solver = classification_part(critic)
    else:
        solver = Classifier(generator.spec.channels, generator.spec.image_size, earlier + num_classes,
                            stored_solver_width(config)).to(images.device)
        dcgan_init_(solver, rng)
    if earlier + num_classes > 1 and phase_steps(config, len(images)) > 0:
        train_solver(solver, images, targets, config, rng, ranks)
    solver.requires_grad_(False)
    recalibrate_solver(solver, images, config.batch_size)
    return solver
