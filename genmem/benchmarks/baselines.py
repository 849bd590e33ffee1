"""The paper's baselines, DGR, MeRGAN and EWC-M, trained with DGM's GAN step and budget for the protocol.

Each keeps one plain conditional generator for every class, with no masks
and no growth, and relearns it on every task:

    dgr     deep generative replay (Shin et al. 2017): before the task, the
            generator draws as many images of every earlier class as the task
            has real ones of each of its classes; it then trains on the task's
            real images plus that replay, as if both were real (a task may
            bring several classes). What it forgets or distorts of an old
            class is what it replays of it next time: the semantic drift the
            DGM paper measures.
    mergan  MeRGAN's replay alignment (Wu et al. 2018) on top of DGR: an L2 loss
            between the new generator's images and the frozen previous
            generator's for the same noise and earlier classes. (Wu et al.'s
            alignment variant trains the GAN on the current task alone; keeping
            DGR's replay makes the two baselines differ by the alignment only.)
    ewc     EWC on the generator (the DGM paper's EWC-M; Seff et al. 2017): no
            replay in the GAN; a quadratic penalty holds every weight near its
            value after the last task, in proportion to its diagonal Fisher
            information summed over the tasks so far. The Fisher is the mean
            squared gradient of the generator's loss for the task's class under
            the task's final critic, over small batches. Its weight (1e3) is
            not tuned.

Same architecture as DGM: genmem.nets's transposed-convolution layers, the
class written as a one-hot over the first noise dimensions, and the same
critic. The widths are fixed at base width 24 (96/48/24 channels at 32 px,
0.29 M parameters): the size DGMw reaches after ten MNIST tasks (0.30 M,
BENCHMARKS.md) in DCGAN's halving shape, at least DGM's initial widths for
every recipe, and under MeRGAN's 0.5 M. DGMw's initial widths (0.06 M) would
have to hold ten classes in a fifth of what DGM ends with; its final widths
are only known after the run.

Same GAN step as DGM (genmem.learn): WGAN-GP critic with the AC-GAN class
head over every class seen, the class loss on generated images, a fresh
critic and fresh Adam states every task, the recipe's learning rate, betas,
penalty weight and epochs, the lazy penalty (`gp_every`) and sampling from
the moving average of the generator's weights (`average_decay`, genmem.ema;
here every weight may change, so all are averaged), with the BatchNorm
statistics re-estimated for the averaged weights as DGM re-estimates its own.
Same budget: the same batches of the task's real images for the same epochs;
with replay, each step adds as many replayed images of the earlier classes (so
a step holds twice DGM's batch, the price of rehearsal).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genmem.artifact import ClassInfo, ClassTable
from genmem.classifier import balanced_cross_entropy
from genmem.config import TrainingConfig
from genmem.critic import critic_loss
from genmem.ema import ParameterAverage
from genmem.nets import (KERNEL, Discriminator, SharedDeconv, condition, dcgan_init_, default_widths,
                         fresh_norm_statistics)
from genmem.pixels import to_uint8, to_unit_range
from genmem.sampler import class_seed

BASE_WIDTH = 24
NOISE_DIM = 128
# MeRGAN's MNIST factor, 1e-3 on half the summed squared error of a 64-image batch, as a weight per image.
ALIGNMENT_WEIGHT = 1e-3 * 64 / 2
EWC_WEIGHT = 1e3
FISHER_BATCHES = 16


@dataclass(frozen=True)
class Baseline:
    """How a baseline keeps its old classes."""

    replay: bool = True  # the GAN trains on replay of old classes beside the task's real images
    alignment_weight: float = 0.0  # MeRGAN's replay alignment to the previous generator
    ewc_weight: float = 0.0  # EWC's penalty on moving weights that earlier tasks needed



class PlainGenerator(nn.Module):
    """A conditional DCGAN generator for a fixed set of classes: DGM's layers without masks, growth or tasks."""

    def __init__(self, channels: int, image_size: int, num_classes: int, base_width: int = BASE_WIDTH,
                 noise_dim: int = NOISE_DIM, rng: torch.Generator | None = None):
        super().__init__()
        self.num_classes, self.noise_dim = num_classes, noise_dim
        widths = default_widths("dgmw", image_size, base_width)
        inputs = (noise_dim,) + widths[:-1]
        self.layers = nn.ModuleList(SharedDeconv(i, o, first=index == 0)
                                    for index, (i, o) in enumerate(zip(inputs, widths)))
        self.norms = nn.ModuleList(nn.BatchNorm2d(w) for w in widths)
        self.out = nn.ConvTranspose2d(widths[-1], channels, KERNEL, 2, 1)
        dcgan_init_(self, rng if rng is not None else torch.Generator().manual_seed(0))

    def forward(self, noise: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        x = condition(noise, class_index, self.num_classes)[:, :, None, None]
        for layer, norm in zip(self.layers, self.norms, strict=True):
            x = F.relu(norm(layer(x, layer.weight.shape[1])))
        return torch.tanh(self.out(x))


@torch.no_grad()
def generate(generator: PlainGenerator, class_index: int, count: int, seed: int, batch_size: int = 512
             ) -> torch.Tensor:
    """uint8 images of one class, from a noise stream seeded by (seed, class) alone, in eval mode."""
    device = generator.out.weight.device
    rng = torch.Generator(device).manual_seed(class_seed(seed, class_index))
    generator.eval()
    parts = []
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        noise = torch.randn(n, generator.noise_dim, generator=rng, device=device)
        parts.append(to_uint8(generator(noise, torch.full((n,), class_index, device=device))).cpu())
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.uint8)


class BaselineReplay:
    """A baseline generator as a replay source (`genmem.replay.ReplaySource`), so a `ReplayStream` draws from it.

    classes: the data set's labels in the generator's condition order, and their names.
    """

    def __init__(self, generator: PlainGenerator, labels: Sequence[int], names: Mapping[int, str], version: str):
        self.generator, self.version = generator, version
        self.index = {label: i for i, label in enumerate(labels)}
        self.classes = ClassTable([ClassInfo(label, names[label], i, 0) for i, label in enumerate(labels)])

    def sample(self, counts: Mapping[int | str, int], seed: int = 0, as_uint8: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for key, count in counts.items():
            label = self.classes.resolve(key).label
            images.append(generate(self.generator, self.index[label], count, seed))
            labels.append(torch.full((count,), label))
        batch = torch.cat(images)
        return (batch if as_uint8 else to_unit_range(batch)), torch.cat(labels)


def alignment_loss(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean over images of the summed squared difference from the previous generator's images (MeRGAN)."""
    return (images - reference).pow(2).flatten(1).sum(1).mean()


def _frozen_copy(generator: PlainGenerator) -> PlainGenerator:
    """The previous generator, fixed: in training mode like the one that learns (so that both use batch
    statistics and start out equal), with its running statistics frozen (momentum 0) and no gradients."""
    previous = copy.deepcopy(generator).requires_grad_(False).train()
    for norm in previous.norms:
        norm.momentum = 0.0
    return previous


class BaselineSteps:
    """One task's GAN training of a baseline generator: a fresh critic and optimisers, and what keeps the earlier
    classes (replay drawn before training, the frozen previous generator, EWC's anchor and Fisher information).

    The task's classes are the generator's conditions `new`; the earlier
    classes are every condition below them.
    """

    def __init__(self, generator: PlainGenerator, data: torch.Tensor, new: list[int], config: TrainingConfig,
                 baseline: Baseline, fisher: dict[str, torch.Tensor] | None, rng: torch.Generator):
        device = data.device
        self.generator, self.config, self.baseline, self.fisher, self.rng = generator, config, baseline, fisher, rng
        self.new, self.earlier, self.known = new, min(new), max(new) + 1
        per_class = len(data) // len(new)  # as many of every earlier class as the task has of each of its own
        self.previous = _frozen_copy(generator) if self.earlier and baseline.alignment_weight > 0 else None
        self.replay = (torch.stack([to_unit_range(generate(generator, c, per_class, config.seed))
                                    for c in range(self.earlier)]).to(device)
                       if self.earlier and baseline.replay else None)  # [earlier, per_class, C, H, W], drawn first
        self.anchor = {name: p.detach().clone() for name, p in generator.named_parameters()}
        self.critic = Discriminator(data.shape[1], data.shape[2], self.known, config.critic_width).to(device)
        dcgan_init_(self.critic, rng)
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=config.lr, betas=config.betas)
        self.average = (ParameterAverage(list(generator.parameters()), config.average_decay) if config.average_decay
                        else None)

    def batch(self, real: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's real images with their classes, and as many replayed images of earlier classes (DGR,
        MeRGAN)."""
        if self.replay is None:
            return real, cls
        old = torch.randint(self.earlier, (len(real),), generator=self.rng, device=real.device)
        pick = torch.randint(self.replay.shape[1], (len(real),), generator=self.rng, device=real.device)
        return torch.cat([real, self.replay[old, pick]]), torch.cat([cls, old])

    def critic_step(self, real: torch.Tensor, cls: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Real (and replayed) against generated, gradient norm near 1, classes of the real batch."""
        self.critic.requires_grad_(True)
        noise = torch.randn(len(real), self.generator.noise_dim, generator=self.rng, device=real.device)
        with torch.no_grad():
            fake = self.generator(noise, cls)
        loss, wasserstein, logits_real = critic_loss(self.critic, real, fake, step, self.config, self.rng)
        if self.known > 1:
            loss = loss + balanced_cross_entropy(logits_real, cls)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss, wasserstein

    def generator_step(self, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fool the critic, produce the asked class, and (MeRGAN) stay where the old generator was, (EWC) keep the
        weights earlier tasks need."""
        self.critic.requires_grad_(False)
        noise = torch.randn(len(cls), self.generator.noise_dim, generator=self.rng, device=cls.device)
        fake = self.generator(noise, cls)
        score_fake, logits_fake = self.critic(fake)
        loss = -score_fake.mean()
        if self.known > 1:
            loss = loss + self.config.class_loss_weight * F.cross_entropy(logits_fake, cls)
        aligned = torch.zeros((), device=cls.device)
        if self.previous is not None:
            old_rows = cls < self.earlier
            with torch.no_grad():
                reference = self.previous(noise, cls)
            aligned = alignment_loss(fake[old_rows], reference[old_rows])
            loss = loss + self.baseline.alignment_weight * aligned
        if self.fisher is not None and self.baseline.ewc_weight > 0:
            loss = loss + self.baseline.ewc_weight / 2 * ewc_penalty(self.generator, self.fisher, self.anchor)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        if self.average is not None:
            self.average.update()
        return loss, aligned

    def finish(self) -> dict[str, torch.Tensor] | None:
        """Leave the generator as it samples (averaged, statistics re-estimated, eval mode); for EWC, return the
        Fisher information summed over the tasks including this one."""
        if self.average is not None:
            self.average.apply()
        if self.average is not None and self.config.recalibration_batches > 0:  # 0: the statistics training left
            recalibrate_norms(self.generator, self.known, self.rng, self.config.recalibration_batches,
                              self.config.batch_size)
        self.generator.eval()
        if self.baseline.ewc_weight <= 0:
            return None
        mine = generator_fisher(self.generator, self.critic, self.new,
                                torch.Generator(self.rng.device).manual_seed(self.config.seed))
        return mine if self.fisher is None else {name: self.fisher[name] + mine[name] for name in mine}


@torch.enable_grad()
def learn_baseline_task(generator: PlainGenerator, images: torch.Tensor, conditions: torch.Tensor,
                        config: TrainingConfig, baseline: Baseline = Baseline(),
                        fisher: dict[str, torch.Tensor] | None = None, device: str | torch.device = "cpu",
                        progress: bool = True, desc: str = "baseline") -> dict:
    """Train `generator` (in place) on a task's uint8 images [N, C, H, W], image i of the generator's condition
    conditions[i], and on what keeps the earlier classes: every condition below the task's.

    Condition i is also the critic's class output i. fisher: EWC's Fisher
    information summed over the earlier tasks (None before the first).
    Returns the final losses, iterations and seconds, and for EWC the Fisher
    information summed over the tasks including this one.
    """
    started = time.perf_counter()
    device = torch.device(device)
    generator.to(device)
    rng = torch.Generator(device).manual_seed(config.seed)
    data, conditions = to_unit_range(images).to(device), conditions.to(device)
    steps = BaselineSteps(generator, data, sorted(set(conditions.tolist())), config, baseline, fisher, rng)
    batches_per_epoch = -(-len(data) // config.batch_size)
    bar = tqdm(total=config.epochs * batches_per_epoch, desc=desc, unit="it", disable=not progress,
               dynamic_ncols=True, leave=True)
    generator.train()
    losses: dict[str, float] = {}
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(len(data), generator=rng, device=device)
        for offset in range(0, len(data), config.batch_size):
            chosen = order[offset: offset + config.batch_size]
            real, cls = steps.batch(data[chosen], conditions[chosen])
            loss_d, wasserstein = steps.critic_step(real, cls, step)
            loss_g, aligned = steps.generator_step(cls)
            step += 1
            bar.update(1)
        losses = {"critic": loss_d.item(), "generator": loss_g.item(), "wasserstein": wasserstein.item(),
                  "alignment": aligned.item()}
        bar.set_postfix(D=f"{losses['critic']:.3f}", G=f"{losses['generator']:.3f}")
    bar.close()
    return {"final_losses": losses, "iterations": config.epochs * batches_per_epoch,
            "seconds": time.perf_counter() - started, "fisher": steps.finish()}


@torch.no_grad()
def recalibrate_norms(generator: PlainGenerator, classes: int, rng: torch.Generator, batches: int, batch_size: int
                      ) -> None:
    """Re-estimate the BatchNorm statistics over classes 0..classes-1 for the generator's current weights."""
    device = generator.out.weight.device
    generator.train()
    with fresh_norm_statistics(generator.norms):
        for _ in range(batches):
            noise = torch.randn(batch_size, generator.noise_dim, generator=rng, device=device)
            generator(noise, torch.arange(batch_size, device=device) % classes)


def ewc_penalty(generator: PlainGenerator, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]
                ) -> torch.Tensor:
    """EWC: the Fisher-weighted squared distance of every weight from its value after the earlier tasks."""
    return sum((fisher[name] * (p - anchor[name]).pow(2)).sum() for name, p in generator.named_parameters())


def generator_fisher(generator: PlainGenerator, critic: Discriminator, new: list[int], rng: torch.Generator,
                     batches: int = FISHER_BATCHES, batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Diagonal Fisher information of the generator for the task's conditions `new` (in turn within a batch):
    its loss's mean squared gradient over small batches, under the task's final critic, with the generator as it
    samples (eval mode)."""
    device = generator.out.weight.device
    generator.eval()
    params = dict(generator.named_parameters())
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    cls = torch.tensor(new, device=device)[torch.arange(batch_size, device=device) % len(new)]
    for _ in range(batches):
        noise = torch.randn(batch_size, generator.noise_dim, generator=rng, device=device)
        score, logits = critic(generator(noise, cls))
        loss = -score.mean() + (F.cross_entropy(logits, cls) if logits.shape[1] > 1 else 0.0)
        for name, grad in zip(params, torch.autograd.grad(loss, list(params.values()))):
            fisher[name] += grad.pow(2) / batches
    return fisher
