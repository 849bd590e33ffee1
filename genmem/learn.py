"""Learning one task: GAN training of the masked generator on the task's images (docs/ALGORITHM.md §10).

The whole training step is `GanStep`: a critic step (genmem.critic, or its
differentially private twin in genmem.private), then a generator step whose
gradients are reshaped by the plasticity rules (embedding compensation, no
update to reserved weights). The critic's class head learns every class seen
so far, from the task's real images and from images that the memory
generates for earlier classes. The task ends by binarising its masks and
re-estimating the generator's BatchNorm statistics under them, so that eval
mode reproduces what training produced; genmem.solver then builds the solver
the version ships (the critic itself never leaves this module).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genmem import plasticity
from genmem.artifact import round_for_storage_
from genmem.augment import diff_augment, parse_policy
from genmem.checkpoint import Checkpointing, Progress, TrainingState
from genmem.conditioning import build_critic
from genmem.config import TrainingConfig, check_settings
from genmem.critic import CriticStep
from genmem.data import first_of_each_class
from genmem.distributed import ONE_PROCESS, DataParallel, SingleProcess
from genmem.ema import GeneratorAverage
from genmem.expansion import LayerCapacity, expand_for_next_task, task_capacity
from genmem.nets import Classifier, Discriminator, Generator, fresh_norm_statistics
from genmem.pixels import to_unit_range
from genmem.solver import shipped_losses, task_solver


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


@torch.no_grad()
def recalibrate_norms(generator: Generator, task: int, rng: torch.Generator, batches: int, batch_size: int) -> None:
    """Re-estimate the task's BatchNorm statistics with its binary masks (training saw soft ones)."""
    branch = generator.tasks[task]
    device = generator.layers[0].weight.device
    with fresh_norm_statistics(branch.norms):
        branch.train()
        for _ in range(batches):
            noise = torch.randn(batch_size, generator.spec.noise_dim, generator=rng, device=device)
            classes = torch.arange(batch_size, device=device) % branch.num_classes
            generator(noise, task, classes)
    branch.eval()


@dataclass
class GanStep:
    """One training step of a task: the critic's step, then the generator's under the plasticity rules.

    embeddings: the task's real-valued mask embeddings; frozen: per layer, the weight entries earlier tasks
    reserved (their gradients are zeroed); earlier: classes learned before the task (the class head's outputs
    for the task's classes follow theirs).
    """

    generator: Generator
    task: int
    critic: CriticStep
    embeddings: list[nn.Parameter]
    reserved: list[torch.Tensor]
    frozen: list[torch.Tensor]
    optimiser: torch.optim.Optimizer
    average: GeneratorAverage | None
    policy: tuple[str, ...]
    sparsity_weight: float
    class_loss_weight: float
    earlier: int
    ranks: DataParallel | SingleProcess
    generator_steps: int = 1  # generator updates after each critic step (TrainingConfig.generator_steps)

    def __call__(self, real: torch.Tensor, cls: torch.Tensor, s: float, top: float, step: int,
                 rng: torch.Generator) -> dict[str, torch.Tensor]:
        generator, task, policy = self.generator, self.task, self.policy
        fake_cls = self.critic.fake_classes(cls, generator.tasks[task].num_classes, rng)
        masks = [plasticity.soft_mask(e, s) for e in self.embeddings]

        # Critic: tell real from generated, keep the gradient norm near 1; classify every class so far.
        noise = torch.randn(len(fake_cls), generator.spec.noise_dim, generator=rng, device=real.device)
        with torch.no_grad():
            fake = generator(noise, task, fake_cls, masks)
        real, fake = self.critic.real_views(real, policy, rng), diff_augment(fake, policy, rng)
        loss_d, wasserstein = self.critic.step(real, cls + self.earlier, fake, step, rng)

        # Generator: fool the critic, claim little new capacity, produce the asked class.
        self.critic.network.requires_grad_(False)
        for index in range(self.generator_steps):
            if index:  # the embeddings moved: soft masks with a fresh graph
                masks = [plasticity.soft_mask(e, s) for e in self.embeddings]
            loss_g, penalty = self.generator_step(fake_cls, masks, s, top, rng)
        return {"critic": loss_d, "generator": loss_g, "wasserstein": wasserstein, "sparsity": penalty}

    def generator_step(self, fake_cls: torch.Tensor, masks: list[torch.Tensor], s: float, top: float,
                       rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step of the generator against the critic as it is; its loss and sparsity penalty."""
        generator, task = self.generator, self.task
        noise = torch.randn(len(fake_cls), generator.spec.noise_dim, generator=rng, device=fake_cls.device)
        score_fake, logits_fake = self.critic.network(diff_augment(generator(noise, task, fake_cls, masks),
                                                                   self.policy, rng), fake_cls + self.earlier)
        penalty = plasticity.sparsity_penalty(masks, self.reserved)
        loss_g = self.critic.generator_loss(score_fake) + self.sparsity_weight * penalty
        if self.class_loss_weight > 0:
            loss_g = loss_g + self.class_loss_weight * F.cross_entropy(logits_fake, fake_cls + self.earlier)
        self.optimiser.zero_grad(set_to_none=True)
        loss_g.backward()
        self.ranks.average_gradients(self.optimiser.param_groups[0]["params"])  # before the plasticity rules
        for embedding in self.embeddings:
            plasticity.compensate_embedding_gradient_(embedding, s, top)
        for layer, keep in zip(generator.layers, self.frozen, strict=True):
            if layer.weight.grad is not None:
                layer.weight.grad.masked_fill_(keep, 0.0)
        self.optimiser.step()
        if self.average is not None:
            self.average.update()
        return loss_g.detach(), penalty.detach()


def critic_step(critic: Discriminator, config: TrainingConfig, replay: torch.Tensor | None, classify: bool,
                images: int, rng: torch.Generator, ranks: DataParallel | SingleProcess) -> CriticStep:
    """The task's critic step: plain, or under DP-SGD when the config asks for privacy (genmem.private)."""
    per_class = config.solver_replay or config.batch_size
    if not config.private:
        return CriticStep(critic, config, replay, per_class, classify, ranks)
    from genmem.private import PrivateCritic  # imports Opacus, an optional dependency

    return PrivateCritic(critic, config, replay, per_class, images, rng)


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
    ranks = parallel or ONE_PROCESS
    # Before the generator grows in place: a refused task leaves it as it was.
    check_settings(config, ranks.world_size, generator.spec.arch)
    started = time.perf_counter()
    device = torch.device(device)
    spec = generator.spec
    generator.to(device)
    rng = torch.Generator(device).manual_seed(config.seed)

    expand_for_next_task(generator, rng)
    task = len(generator.tasks)
    branch = generator.add_task(num_classes, rng)
    earlier = past.num_classes if past is not None else 0
    network = build_critic(config, rng, device, spec.channels, spec.image_size, earlier + num_classes,
                           config.critic_width, spec.arch)

    embeddings = [nn.Parameter(torch.zeros(shape, device=device)) for shape in generator.mask_shapes()]
    reserved = generator.reserved()
    frozen = plasticity.frozen_per_layer(spec.variant, reserved, generator.wires)
    # Fresh optimisers per task: no Adam state can carry an update into reserved weights.
    optimiser = torch.optim.Adam([layer.weight for layer in generator.layers] + list(branch.parameters())
                                 + embeddings, lr=config.lr, betas=config.betas)
    data = to_unit_range(images).to(device)
    labels = class_index.to(device)
    gan_rows = first_of_each_class(labels, config.gan_images_per_class)  # the solver phase still uses all
    replay = to_unit_range(past.images).to(device) if past is not None and earlier > 0 else None
    classify = earlier + num_classes > 1
    critic = critic_step(network, config, replay, classify, len(gan_rows), rng, ranks)
    average = GeneratorAverage(generator, task, frozen, config.average_decay) if config.average_decay else None
    train = GanStep(generator, task, critic, embeddings, reserved, frozen, optimiser, average,
                    parse_policy(config.critic_augment),
                    config.sparsity_weight * sum(generator.widths) / sum(spec.widths),  # scaled by the growth
                    config.class_loss_weight if classify else 0.0, earlier, ranks, config.generator_steps)

    state = TrainingState(generator, critic.network, embeddings, {"generator": optimiser,
                                                                  "critic": critic.optimiser}, average, rng, critic)
    resumed = checkpoint.restore(state) if checkpoint is not None else None
    batches_per_epoch = critic.batches_per_epoch(len(gan_rows))
    unshard = ranks.shard_batches(generator, critic.network)  # each rank computes its rows of every batch
    branch.train()
    start = resumed or Progress(epoch=0, step=0, losses={})
    losses = _train_epochs(train, data, labels, gan_rows, config, rng, start, state, checkpoint, batches_per_epoch,
                           progress)
    unshard()

    _finish_generator(generator, task, embeddings, average, frozen, rng, config)
    solver = task_solver(config, critic.network, generator, task, num_classes, data, labels + earlier, replay, rng,
                         ranks)
    return TaskReport(task=task, widths=branch.widths, capacity=task_capacity(generator, task),
                      iterations=config.epochs * batches_per_epoch, seconds=time.perf_counter() - started,
                      final_losses=shipped_losses(config.solver, losses), solver=solver, privacy=critic.record(),
                      processes=ranks.world_size, resumed_after_epoch=resumed.epoch if resumed else None)


def _train_epochs(train: GanStep, data: torch.Tensor, labels: torch.Tensor, gan_rows: torch.Tensor,
                  config: TrainingConfig, rng: torch.Generator, start: Progress, state: TrainingState,
                  checkpoint: Checkpointing | None, batches_per_epoch: int, progress: bool) -> dict[str, float]:
    """The task's GAN epochs from `start` (a restored checkpoint's, or the first), saving checkpoints as asked;
    the last epoch's losses. Apart from learn_task, which builds what they train and finishes it after."""
    critic, variant = train.critic, train.generator.spec.variant
    losses, step = start.losses, start.step
    bar = tqdm(total=config.epochs * batches_per_epoch, initial=step, desc=f"task {train.task}", unit="it",
               disable=not progress, dynamic_ncols=True, leave=True)
    for epoch in range(start.epoch, config.epochs):
        top = plasticity.epoch_scale(epoch, config.epochs, config.s_max)
        for index, rows in enumerate(critic.epoch_batches(gan_rows, rng)):
            s = plasticity.batch_scale(top, index * config.batch_size, len(gan_rows)) if variant == "dgmw" else top
            last = train(data[rows], labels[rows], s, top, step, rng)
            step += 1
            bar.update(1)
        losses = {name: value.item() for name, value in last.items()}
        bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", D=f"{losses['critic']:.3f}",
                        G=f"{losses['generator']:.3f}", used=f"{_used_fraction(train.embeddings):.1%}")
        if checkpoint is not None:
            checkpoint.after_epoch(state, Progress(epoch + 1, step, losses), last=epoch + 1 == config.epochs)
    bar.close()
    return losses


def _finish_generator(generator: Generator, task: int, embeddings: list[nn.Parameter],
                      average: GeneratorAverage | None, frozen: list[torch.Tensor], rng: torch.Generator,
                      config: TrainingConfig) -> None:
    """Fix the task for good: the averaged weights where free, binary masks, BatchNorm statistics under them, and
    everything the task changed on the storage grid (§19): the weights before the statistics are estimated, so that
    the statistics are those of the stored weights, then the statistics themselves. From here on the generator
    computes with exactly what its version stores."""
    if average is not None:
        average.apply()
    generator.tasks[task].set_masks([plasticity.binarise(e) for e in embeddings])
    round_for_storage_(generator, task, frozen, config.storage_dtype)
    if config.recalibration_batches > 0:
        recalibrate_norms(generator, task, rng, config.recalibration_batches, config.batch_size)
        round_for_storage_(generator, task, frozen, config.storage_dtype)  # leaves the weights as they are
    generator.eval()


def _used_fraction(embeddings: list[torch.Tensor]) -> float:
    """Share of mask entries currently above 0.5: how much of the network the task is using."""
    used = sum(int((e > 0).sum()) for e in embeddings)
    return used / sum(e.numel() for e in embeddings)
