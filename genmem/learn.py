"""Learning one task: WGAN-GP training of the masked generator on the task's images (docs/ALGORITHM.md §10).

The whole training step is `learn_task`'s inner loop: a critic step, then a
generator step whose gradients are reshaped by the plasticity rules (embedding
compensation, no update to reserved weights). The critic's class head is the
paper's task solver: it learns every class seen so far, from the task's real
images and from images that the memory generates for earlier classes. The
task ends by binarising its masks and re-estimating the generator's BatchNorm
statistics under them, so that eval mode reproduces what training produced;
genmem.solver then builds the solver the version ships (the critic itself
never leaves this function).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genmem import plasticity
from genmem.augment import diff_augment, parse_policy
from genmem.checkpoint import Checkpointing, Progress, TrainingState
from genmem.distributed import ONE_PROCESS, DataParallel
from genmem.ema import GeneratorAverage
from genmem.errors import InvalidSetting
from genmem.expansion import LayerCapacity, expand_for_next_task, task_capacity
from genmem.nets import Classifier, Discriminator, Generator, dcgan_init_
from genmem.private import PrivateCritic
from genmem.solver import (REAL_IMAGE_LOSSES, balanced_cross_entropy, check_phase, records_real_image_figures,
                           task_solver)


MAX_EPOCHS = 100_000  # far past any budget in use (the paper's largest is 251); more is a typo
MAX_BATCH_SIZE = 65_536  # GAN batches this large are already unusual; larger ones fail for memory after the GAN
MAX_SEED = 2**64 - 1  # seeds are torch generator seeds, which stop at 64 bits


@dataclass
class TrainingConfig:
    """Hyperparameters of one task. Defaults are the paper's MNIST DGMw values except the epoch budget, the betas
    and the stored solver, a fresh network trained after the GAN rather than the critic's head (BENCHMARKS.md)."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    betas: tuple[float, float] = (0.0, 0.9)  # the paper's (0.5, 0.999) collapsed 2 of 3 seeds (BENCHMARKS.md)
    gp_weight: float = 1.0
    sparsity_weight: float = 0.08  # lambda, scaled per task by the network's growth
    s_max: float = 1e4
    critic_width: int = 32
    class_loss_weight: float = 1.0  # AC-GAN loss on generated images, when the class head has several classes
    solver_replay: int | None = None  # generated images per earlier class in each solver step; None: batch_size
    solver_steps: int = 300  # classification-only steps after the GAN, at least (genmem.solver.solver_steps)
    solver_epochs: float | None = 5.0  # at least this many passes over the solver's images (genmem.solver)
    solver_augment: str = "translation"  # genmem.augment policy for the solver phase's batches; "" for none
    solver_start: str = "fresh"  # a new network, or "critic": the critic's trunk and class head (the paper's)
    solver_width: int | None = None  # a fresh solver's first width (None: critic_width); the stored classifier's
    solver_lr: float = 1e-3
    solver: str = "real"  # what the version ships as its task solver: real, replay or none (genmem.solver)
    dp_epsilon: float | None = None  # train the critic with DP-SGD for this epsilon (genmem.private); None: off
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0  # per-example gradient clipping norm of DP-SGD
    dp_weight_clip: float = 0.01  # the DP critic's weights are clipped to [-c, c] (it has no gradient penalty)
    recalibration_batches: int = 16
    gan_images_per_class: int | None = None  # the GAN trains on the first N images of each class; None: all
    average_decay: float | None = 0.99  # sample from an EMA of the task's free entries (genmem.ema); None: off
    critic_augment: str = ""  # DiffAugment policy for the critic, e.g. "translation,cutout" (genmem.augment)
    gp_every: int = 4  # lazy gradient penalty: every k critic steps, weighted by k (1.4x the steps/s, BENCHMARKS.md)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


POSITIVE_SETTINGS = ("lr", "s_max", "solver_lr")
NON_NEGATIVE_SETTINGS = ("sparsity_weight", "gp_weight", "class_loss_weight")


def check_settings(config: TrainingConfig) -> None:
    """Refuse settings that could never finish, fit or learn, before any training.

    A NaN rate or weight trains a version of NaN weights; the batch is allocated whole in the solver phase
    and the recalibration after the GAN, so a batch too large would fail only after the whole GAN.
    """
    for name in POSITIVE_SETTINGS + NON_NEGATIVE_SETTINGS:
        value = getattr(config, name)
        if not (math.isfinite(value) and (value > 0 if name in POSITIVE_SETTINGS else value >= 0)):
            bound = "above 0" if name in POSITIVE_SETTINGS else "0 or more"
            raise InvalidSetting(f"{name} {value} is out of range: give a finite number {bound}")
    if not 0 <= config.seed <= MAX_SEED:
        raise InvalidSetting(f"seed {config.seed} is out of range: give an integer from 0 to {MAX_SEED}")
    if not 1 <= config.epochs <= MAX_EPOCHS:
        raise InvalidSetting(f"{config.epochs} epochs are out of range: give 1 to {MAX_EPOCHS:,} passes over the "
                             f"task's images (the paper's are 101 to 251)")
    if not 2 <= config.batch_size <= MAX_BATCH_SIZE:
        raise InvalidSetting(f"batch size {config.batch_size} is out of range: give 2 to {MAX_BATCH_SIZE:,} images "
                             f"per step (the paper's is 64)")
    check_phase(config)


@dataclass
class PastReplay:
    """Generated images of the earlier classes for the solver, fixed for the task: [classes, per_class, C, H, W].

    Class i of this tensor is the solver's output i; the task's own classes follow them.
    """

    images: torch.Tensor  # uint8

    @property
    def num_classes(self) -> int:
        return self.images.shape[0]


@dataclass
class TaskReport:
    """What learning one task did: its widths, how it used capacity, how training ended, and its solver."""

    task: int
    widths: tuple[int, ...]
    capacity: list[LayerCapacity]
    iterations: int
    seconds: float
    final_losses: dict[str, float] = field(default_factory=dict)
    solver: Classifier | None = None  # None: the task ships no solver
    privacy: dict | None = None  # the DP guarantee and its settings (genmem.private), None without DP
    processes: int = 1  # data-parallel ranks that shared every batch (genmem.distributed)
    resumed_after_epoch: int | None = None  # the epoch of the checkpoint it continued from (genmem.checkpoint)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to floats in [-1, 1], the generator's output range."""
    return images.float() / 127.5 - 1.0


def gradient_penalty(critic: Discriminator, real: torch.Tensor, fake: torch.Tensor,
                     rng: torch.Generator) -> torch.Tensor:
    """WGAN-GP: (||grad D(x_hat)|| - 1)^2 at random points between real and generated images."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=rng, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score, _ = critic(mixed)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def critic_loss(critic: Discriminator, real: torch.Tensor, fake: torch.Tensor, step: int, config: TrainingConfig,
                rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The critic's WGAN-GP loss, the penalty lazily every gp_every steps (weighted by gp_every), with the
    Wasserstein estimate and the class logits of the real batch."""
    score_real, logits_real = critic(real)
    score_fake, _ = critic(fake)
    wasserstein = score_real.mean() - score_fake.mean()
    loss = -wasserstein
    if step % config.gp_every == 0:
        loss = loss + config.gp_every * config.gp_weight * gradient_penalty(critic, real, fake, rng)
    return loss, wasserstein, logits_real


@torch.no_grad()
def recalibrate_norms(generator: Generator, task: int, rng: torch.Generator, batches: int, batch_size: int) -> None:
    """Re-estimate the task's BatchNorm statistics with its binary masks (training saw soft ones)."""
    branch = generator.tasks[task]
    device = generator.layers[0].weight.device
    for norm in branch.norms:
        norm.reset_running_stats()
        norm.momentum = None  # plain average over the batches below
    branch.train()
    for _ in range(batches):
        noise = torch.randn(batch_size, generator.spec.noise_dim, generator=rng, device=device)
        classes = torch.arange(batch_size, device=device) % branch.num_classes
        generator(noise, task, classes)
    for norm in branch.norms:
        norm.momentum = 0.1
    branch.eval()


@torch.enable_grad()
def learn_task(generator: Generator, images: torch.Tensor, class_index: torch.Tensor, num_classes: int,
               config: TrainingConfig, device: str | torch.device = "cpu", progress: bool = True,
               past: PastReplay | None = None, parallel: DataParallel | None = None,
               checkpoint: Checkpointing | None = None) -> TaskReport:
    """Learn one new task into `generator` (in place) and return its report.

    images: uint8 [N, C, H, W] at the generator's image size; class_index: [N]
    in 0..num_classes-1, the class of each image within this task. past: the
    earlier classes' generated images for the solver (None: a solver of this
    task's classes only). parallel: this process's rank when several share
    every batch (genmem.distributed); None: one process does all.
    checkpoint: where and how often to save the task's state, and a saved
    state to continue from (genmem.checkpoint); None: no checkpoints.
    """
    check_settings(config)  # before the generator grows in place: a refused task leaves it as it was
    started = time.perf_counter()
    device = torch.device(device)
    spec = generator.spec
    generator.to(device)
    rng = torch.Generator(device).manual_seed(config.seed)

    expand_for_next_task(generator, rng)
    task = len(generator.tasks)
    branch = generator.add_task(num_classes, rng)
    earlier = past.num_classes if past is not None else 0
    critic = Discriminator(spec.channels, spec.image_size, earlier + num_classes, config.critic_width).to(device)
    dcgan_init_(critic, rng)

    embeddings = [nn.Parameter(torch.zeros(shape, device=device)) for shape in generator.mask_shapes()]
    reserved = generator.reserved()
    frozen = plasticity.frozen_per_layer(spec.variant, reserved)
    # Fresh optimisers per task: no Adam state can carry an update into reserved weights.
    opt_g = torch.optim.Adam([layer.weight for layer in generator.layers] + list(branch.parameters()) + embeddings,
                             lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=config.betas)
    growth = sum(generator.widths) / sum(spec.widths)
    sparsity_weight = config.sparsity_weight * growth
    classify = earlier + num_classes > 1
    class_loss_weight = config.class_loss_weight if classify else 0.0

    data = to_unit_range(images).to(device)
    labels = class_index.to(device)
    gan_rows = first_of_each_class(labels, config.gan_images_per_class)  # the solver phase still uses all
    policy = parse_policy(config.critic_augment)
    average = GeneratorAverage(generator, task, frozen, config.average_decay) if config.average_decay else None
    replay = to_unit_range(past.images).to(device) if past is not None and earlier > 0 else None
    per_class = config.solver_replay or config.batch_size
    n = len(gan_rows)
    batches_per_epoch = -(-n // config.batch_size)
    private = PrivateCritic(critic, config, n, rng) if config.dp_epsilon is not None else None
    if private is not None:  # DP-SGD steps on Poisson-sampled batches instead (genmem.private)
        critic, batches_per_epoch = private.module, private.steps_per_epoch
    ranks = parallel or ONE_PROCESS
    if private is not None and ranks.world_size > 1:
        raise InvalidSetting("differentially private training runs in one process; start it without torchrun")
    if checkpoint is not None and private is not None:
        raise InvalidSetting("a differentially private task takes no checkpoints; drop the checkpoint interval")
    state = TrainingState(generator, critic, embeddings, {"generator": opt_g, "critic": opt_d}, average, rng)
    resumed = checkpoint.restore(state) if checkpoint is not None else None
    start = resumed or Progress(epoch=0, step=0, losses={})
    unshard = ranks.shard_batches(generator, critic)  # each rank computes its rows of every batch
    bar = tqdm(total=config.epochs * batches_per_epoch, initial=start.step, desc=f"task {task}", unit="it",
               disable=not progress, dynamic_ncols=True, leave=True)
    branch.train()
    losses, step = start.losses, start.step
    for epoch in range(start.epoch, config.epochs):
        top = plasticity.epoch_scale(epoch, config.epochs, config.s_max)
        order = gan_rows[torch.randperm(n, generator=rng, device=device)]
        batches = (order[offset: offset + config.batch_size] for offset in range(0, n, config.batch_size)) \
            if private is None else (gan_rows[rows] for rows in private.epoch_batches())
        for index, batch in enumerate(batches):
            offset = index * config.batch_size
            s = plasticity.batch_scale(top, offset, n) if spec.variant == "dgmw" else top
            real, cls = data[batch], labels[batch]
            # Under DP the generated images' classes must not depend on the real batch (genmem.private).
            fake_cls = cls if private is None else torch.randint(num_classes, (config.batch_size,), generator=rng,
                                                                 device=device)
            masks = [plasticity.soft_mask(e, s) for e in embeddings]

            # Critic: tell real from generated, keep the gradient norm near 1; solver: classify every class so far.
            critic.requires_grad_(True)
            noise = torch.randn(len(fake_cls), spec.noise_dim, generator=rng, device=device)
            with torch.no_grad():
                fake = generator(noise, task, fake_cls, masks)
            real, fake = diff_augment(real, policy, rng), diff_augment(fake, policy, rng)
            if private is not None:
                old = replay_batch(replay, per_class, rng) if replay is not None else (None, None)
                wasserstein = private.step(real, cls + earlier, fake, *old)
                loss_d = -wasserstein
            else:
                loss_d, wasserstein, logits_real = critic_loss(critic, real, fake, step, config, rng)
                if classify:
                    logits, targets = logits_real, cls + earlier
                    if replay is not None:
                        old_images, old_targets = replay_batch(replay, per_class, rng)
                        _, logits_replay = critic(old_images)
                        logits = torch.cat([logits, logits_replay])
                        targets = torch.cat([targets, old_targets])
                    loss_d = loss_d + balanced_cross_entropy(logits, targets)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                ranks.average_gradients(critic.parameters())
                opt_d.step()

            # Generator: fool the critic, claim little new capacity, produce the asked class.
            critic.requires_grad_(False)
            noise = torch.randn(len(fake_cls), spec.noise_dim, generator=rng, device=device)
            score_fake, logits_fake = critic(diff_augment(generator(noise, task, fake_cls, masks), policy, rng))
            penalty = plasticity.sparsity_penalty(masks, reserved)
            loss_g = -score_fake.mean() + sparsity_weight * penalty
            if class_loss_weight > 0:
                loss_g = loss_g + class_loss_weight * F.cross_entropy(logits_fake, fake_cls + earlier)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            ranks.average_gradients(opt_g.param_groups[0]["params"])  # before the plasticity rules, on every rank
            for embedding in embeddings:
                plasticity.compensate_embedding_gradient_(embedding, s, top)
            for layer, keep in zip(generator.layers, frozen, strict=True):
                if layer.weight.grad is not None:
                    layer.weight.grad.masked_fill_(keep, 0.0)
            opt_g.step()
            if average is not None:
                average.update()
            step += 1
            bar.update(1)
        losses = {"critic": loss_d.item(), "generator": loss_g.item(), "wasserstein": wasserstein.item(),
                  "sparsity": penalty.item()}
        bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", D=f"{losses['critic']:.3f}",
                        G=f"{losses['generator']:.3f}", used=f"{_used_fraction(embeddings):.1%}")
        if checkpoint is not None:
            checkpoint.after_epoch(state, Progress(epoch + 1, step, losses), last=epoch + 1 == config.epochs)
    bar.close()
    unshard()

    if average is not None:
        average.apply()
    branch.set_masks([plasticity.binarise(e) for e in embeddings])
    recalibrate_norms(generator, task, rng, config.recalibration_batches, config.batch_size)
    generator.eval()
    solver = task_solver(config, critic, generator, task, num_classes, data, labels + earlier, replay, rng, ranks)
    return TaskReport(task=task, widths=branch.widths, capacity=task_capacity(generator, task),
                      iterations=config.epochs * batches_per_epoch, seconds=time.perf_counter() - started,
                      final_losses=losses if records_real_image_figures(config.solver) else
                      {k: v for k, v in losses.items() if k not in REAL_IMAGE_LOSSES},
                      solver=solver, privacy=private.record() if private is not None else None,
                      processes=ranks.world_size, resumed_after_epoch=resumed.epoch if resumed else None)


def replay_batch(replay: torch.Tensor, per_class: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """per_class random images of each earlier class from the fixed replay [classes, N, C, H, W], with targets."""
    earlier = replay.shape[0]
    classes = torch.arange(earlier, device=replay.device)
    pick = torch.randint(replay.shape[1], (earlier, per_class), generator=rng, device=replay.device)
    return replay[classes[:, None], pick].flatten(0, 1), classes.repeat_interleave(per_class)


def first_of_each_class(labels: torch.Tensor, count: int | None) -> torch.Tensor:
    """Row indices of the first `count` images of every class in `labels` (all rows for None), in order."""
    if count is None:
        return torch.arange(len(labels), device=labels.device)
    rank = torch.zeros_like(labels)
    for label in labels.unique():
        mine = labels == label
        rank[mine] = torch.arange(int(mine.sum()), device=labels.device)
    return torch.nonzero(rank < count).flatten()


def _used_fraction(embeddings: list[torch.Tensor]) -> float:
    """Share of mask entries currently above 0.5: how much of the network the task is using."""
    used = sum(int((e > 0).sum()) for e in embeddings)
    return used / sum(e.numel() for e in embeddings)
