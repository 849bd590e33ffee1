"""Differentially private critic training with Opacus (DP-SGD), so that a version is (epsilon, delta)-DP.

DPGAN-style (Xie et al. 2018): only the critic reads the task's real images,
and it does so through DP-SGD: Poisson-sampled batches, every example's
gradient clipped to `dp_max_grad_norm`, Gaussian noise of
`noise_multiplier * dp_max_grad_norm` added to their sum. The generator sees
the real images only through the critic, so it is private by
post-processing, as is everything computed from it (the `replay` solver). The
critic itself is never published. Opacus's RDP accountant turns the noise,
the sampling rate and the number of steps into the epsilon spent; the noise
multiplier is the accountant's for the target epsilon (PRIVACY.md).

What DP-SGD cannot handle is replaced:
- BatchNorm mixes examples within a batch, so the critic uses GroupNorm
  (Opacus's ModuleValidator.fix);
- the gradient penalty needs a second derivative per example, so a
  Wasserstein critic is kept Lipschitz by clipping its weights to [-c, c]
  after every step (the original WGAN's rule, as in DPGAN; GroupNorm's affine
  parameters to [-1, 1]); the logistic loss (`dp_loss`) needs no such rule;
- the generated images the critic compares with a real batch are drawn for
  classes chosen at random, not the real batch's labels, and always as many
  as the expected batch, so nothing but the clipped gradients depends on
  which real images a batch holds.

The Gaussian noise and the Poisson sampling draw from generators seeded from
the operating system's entropy (`noise_seed`), not from the task's recorded
seed: with the seed in the manifest, anyone could replay training bit for
bit with and without a candidate image and tell exactly whether it was a
member. Everything else (generated images, augmentations, replay draws) stays
on the task's seeded generator; DP-SGD's guarantee holds for any value of
that public randomness.

Levers meant to make the noise cost less (each a setting of genmem.config; measured on MNIST, neither helped on
top of the logistic loss: docs/experiments/2026-12-02-dp-levers.md):
- augmentation multiplicity (`dp_augmentations`, De et al. 2022): K augmented
  views of each real image, whose gradients are averaged into that image's
  one per-example gradient before it is clipped, so the image still moves the
  sum by at most the clipping norm while its gradient is less noisy;
- a tempered activation (`dp_activation` tanh, Papernot et al. 2021): bounded
  activations keep per-example gradients small, so clipping distorts less.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from genmem.augment import diff_augment
from genmem.config import TrainingConfig
from genmem.critic import replay_batch
from genmem.nets import Discriminator
from genmem.presets import paper_config

ACCOUNTANT = "rdp"
# The Renyi orders the accountant optimises over: a coarser grid than Opacus's default 150 (whose fractional
# orders make each search take seconds), costing a few percent of epsilon at most; recorded in the manifest.
ORDERS = (1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0,
          128.0, 256.0)
ACTIVATIONS = {"leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh}
# genmem's DP defaults: epochs chosen for cost (few noised steps). learn-task --dp-epsilon and bench privacy take
# them, with the settings dp_defaults chooses by epsilon, where no option says otherwise.
DP_PROFILE = {"epochs": 20, "critic_width": 16, "solver_width": 32, "solver_replay": 8}
# On ten MNIST digits (docs/experiments/2026-12-04-dp-critic-loss-by-epsilon.md) the Wasserstein critic's replay
# trained the better classifier at epsilon 1 (+7.6 points, two seeds each), tied at 4 (two seeds each) where the
# logistic one's replay was closer to the data, and lost at 10 (-1.6, one Wasserstein seed): the switch sits
# between 1 and 4, at their geometric mean.
WASSERSTEIN_UP_TO = 2.0
# At epsilon 10, batches of 256 (twice the steps, each noisier) took ten MNIST digits from 93.79 % (512) to 95.65
# (two seeds each; docs/experiments/2026-12-04-dp-batch-size.md). On ten digits they tied at 1 and gained 2.0 points
# at 4 on one seed: the switch sits between 4 and 10, at their geometric mean, until a second seed at 4 agrees.
SMALL_BATCHES_FROM = 6.3
BATCH_SIZES = (512, 256)  # below SMALL_BATCHES_FROM, and from it


def dp_defaults(epsilon: float) -> dict:
    """genmem's DP settings at `epsilon`: DP_PROFILE, the critic's loss (under strong noise the logistic critic's
    replay is recognisable but narrow, and the Wasserstein critic's more varied replay trains a better
    classifier) and the batch size (more, smaller, noisier steps: a clear gain at epsilon 10)."""
    return {**DP_PROFILE, "dp_loss": "wasserstein" if epsilon <= WASSERSTEIN_UP_TO else "logistic",
            "batch_size": BATCH_SIZES[epsilon >= SMALL_BATCHES_FROM]}


def dp_config(epsilon: float, recipe: str = "mnist", variant: str = "dgmw", **overrides) -> TrainingConfig:
    """The paper's settings for `recipe` with genmem's DP defaults at `epsilon` (dp_defaults), then
    `overrides` (None values are left out), the solver `replay`."""
    return paper_config(recipe, variant, **{**dp_defaults(epsilon), "dp_epsilon": epsilon,
                                            "solver": "replay",
                                            **{k: v for k, v in overrides.items() if v is not None}})


def noise_seed() -> int:
    """A fresh secret seed for a task's DP noise and sampling, never recorded (tests replace it to replay a task)."""
    return secrets.randbits(63)


def dp_network(critic: Discriminator, activation: str) -> nn.Module:
    """The critic as DP-SGD can train it: GroupNorm for BatchNorm, and `activation` for every LeakyReLU."""
    from opacus.validators import ModuleValidator  # an optional dependency: genmem[dp]

    network = ModuleValidator.fix(critic)
    for parent in network.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.LeakyReLU):
                setattr(parent, name, ACTIVATIONS[activation]())
    return network


class PrivateCritic:
    """The critic step of one task under DP-SGD: its module, optimiser, Poisson batches and accountant, in the
    shape of genmem.critic.CriticStep. The settings were checked by genmem.config.check_settings."""

    def __init__(self, critic: Discriminator, config: TrainingConfig, replay: torch.Tensor | None, per_class: int,
                 num_images: int, rng: torch.Generator):
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        self.config, self.replay, self.per_class = config, replay, per_class
        self.num_images = num_images
        self.sample_rate = min(1.0, config.batch_size / num_images)
        self.steps_per_epoch = int(1 / self.sample_rate)  # as Opacus's Poisson data loader counts them
        self.steps = config.epochs * self.steps_per_epoch
        self.noise_multiplier = get_noise_multiplier(target_epsilon=config.dp_epsilon, target_delta=config.dp_delta,
                                                     sample_rate=self.sample_rate, steps=self.steps,
                                                     accountant=ACCOUNTANT, alphas=list(ORDERS))
        self.network = GradSampleModule(dp_network(critic, config.dp_activation).to(rng.device))
        self.network.disable_hooks()  # on only within `step`: the generator's steps backpropagate through it too
        self._noise = torch.Generator(rng.device).manual_seed(noise_seed())
        self._sampling = torch.Generator().manual_seed(noise_seed())
        adam = torch.optim.Adam(self.network.parameters(), lr=config.lr, betas=config.betas)
        self.optimiser = DPOptimizer(adam, noise_multiplier=self.noise_multiplier,
                                     max_grad_norm=config.dp_max_grad_norm, expected_batch_size=config.batch_size,
                                     generator=self._noise)
        self.accountant = RDPAccountant()
        self.optimiser.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))

    def batches_per_epoch(self, images: int) -> int:
        return self.steps_per_epoch

    def epoch_batches(self, rows: torch.Tensor, rng: torch.Generator) -> Iterator[torch.Tensor]:
        """One epoch of Poisson-sampled batches of `rows`: every image joins each batch independently with the
        sample rate (drawn from the task's secret sampling stream, not `rng`)."""
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        sampler = UniformWithReplacementSampler(num_samples=self.num_images, sample_rate=self.sample_rate,
                                                generator=self._sampling, steps=self.steps_per_epoch)
        for indices in sampler:
            yield rows[torch.tensor(indices, dtype=torch.long)]

    def real_views(self, real: torch.Tensor, policy: tuple[str, ...], rng: torch.Generator) -> torch.Tensor:
        """dp_augmentations augmented views of every real image, each image's views consecutive."""
        return diff_augment(real.repeat_interleave(self.config.dp_augmentations, dim=0), policy, rng)

    def fake_classes(self, real_classes: torch.Tensor, num_classes: int, rng: torch.Generator) -> torch.Tensor:
        """Classes drawn at random, as many as the expected batch: nothing of them depends on the real batch."""
        return torch.randint(num_classes, (self.config.batch_size,), generator=rng, device=real_classes.device)

    def generator_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        """What the generator minimises of the critic's scores of its images (the critic's loss decides)."""
        if self.config.dp_loss == "logistic":
            return F.softplus(-fake_scores).mean()  # the non-saturating GAN loss
        return -fake_scores.mean()

    def step(self, real: torch.Tensor, real_targets: torch.Tensor, fake: torch.Tensor, step: int,
             rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One DP-SGD step of the critic; returns its loss and the Wasserstein estimate (both for the progress
        bar only).

        real: the views of the real images, len(real) / len(real_targets) consecutive rows per image
        (`real_views`). Every row (a real image's view, a generated or a replayed image) has its own loss: the
        critic's term (for the Wasserstein loss -score for real, +score for generated) plus the class loss
        where it has a target (zero, with a zero gradient, while the head has a single class). A real image's
        views' gradients are averaged into its one example before clipping; generated and replayed rows are
        examples too and are clipped as well, which only costs utility.
        """
        replay, replay_targets = replay_batch(self.replay, self.per_class, rng) if self.replay is not None \
            else (None, None)
        views = len(real) // max(len(real_targets), 1)
        self.network.requires_grad_(True)
        rows = torch.cat([real, fake] + ([replay] if replay is not None else []))
        self.network.enable_hooks()
        scores, logits = self.network(rows)
        n_real, n_fake = len(real), len(fake)
        targets = torch.cat([real_targets.repeat_interleave(views)] + ([replay_targets] if replay is not None
                                                                        else []))
        class_loss = F.cross_entropy(torch.cat([logits[:n_real], logits[n_real + n_fake:]]), targets,
                                     reduction="none")
        real_term, fake_term = ((F.softplus(-scores[:n_real]), F.softplus(scores[n_real: n_real + n_fake]))
                                if self.config.dp_loss == "logistic" else
                                (-scores[:n_real], scores[n_real: n_real + n_fake]))
        per_row = torch.cat([class_loss[:n_real] + real_term, fake_term, class_loss[n_real:]])
        self.optimiser.zero_grad(set_to_none=True)
        (per_row.sum() / len(rows)).backward()  # Opacus's "mean" reduction: each row's gradient is its own loss's
        if views > 1 and n_real:
            average_views_(self.network, n_real, views)
        self.optimiser.step()
        self.network.disable_hooks()
        if self.config.dp_loss == "wasserstein":
            clip_weights_(self.network, self.config.dp_weight_clip)
        wasserstein = (scores[:n_real].mean() - scores[n_real: n_real + n_fake].mean()).detach()
        return per_row.mean().detach(), wasserstein

    def state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must hold beyond the critic's weights and Adam moments: the accountant's history
        (noise multiplier, sample rate, steps per row, exact in float64) and the secret noise and Poisson
        sampling streams (so a checkpoint is as sensitive as the task's images: PRIVACY.md)."""
        history = torch.tensor(self.accountant.history, dtype=torch.float64).reshape(-1, 3)
        return {"accountant_history": history, "noise": self._noise.get_state(),
                "sampling": self._sampling.get_state()}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `state` saved; a missing entry raises KeyError, a wrong one RuntimeError or ValueError."""
        history = tensors["accountant_history"]
        if history.dim() != 2 or history.shape[1] != 3:
            raise ValueError(f"an accountant history of shape {tuple(history.shape)}")
        self._noise.set_state(tensors["noise"])
        self._sampling.set_state(tensors["sampling"])
        self.accountant.history = [(sigma, rate, int(steps)) for sigma, rate, steps in history.tolist()]

    def record(self) -> dict:
        """What the manifest and model card state about this task's guarantee and how it was trained."""
        return {
            "epsilon": self.accountant.get_epsilon(self.config.dp_delta, alphas=list(ORDERS)),
            "target_epsilon": self.config.dp_epsilon,
            "delta": self.config.dp_delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.config.dp_max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": sum(steps for _, _, steps in self.accountant.history),
            "history": [list(entry) for entry in self.accountant.history],
            "accountant": f"opacus {ACCOUNTANT} (RDP, Poisson subsampling, add/remove one image)",
            "noise_source": "operating system entropy, not recorded",
            "orders": list(ORDERS),
            "weight_clip": self.config.dp_weight_clip if self.config.dp_loss == "wasserstein" else None,
            "loss": self.config.dp_loss,
            "augmentations": self.config.dp_augmentations,
            "activation": self.config.dp_activation,
            "images": self.num_images,
        }


@torch.no_grad()
def average_views_(network: nn.Module, n_real: int, views: int) -> None:
    """Replace the per-row gradients of the first n_real rows (views consecutive rows per real image) by their
    mean per image, so that Opacus clips and counts each image once (augmentation multiplicity)."""
    for parameter in network.parameters():
        rows = getattr(parameter, "grad_sample", None)
        if rows is not None:
            parameter.grad_sample = torch.cat([rows[:n_real].unflatten(0, (-1, views)).mean(1), rows[n_real:]])


@torch.no_grad()
def clip_weights_(critic: torch.nn.Module, bound: float) -> None:
    """WGAN's Lipschitz control: convolution and linear parameters into [-bound, bound].

    GroupNorm's scale and shift are kept in [-1, 1] instead: clipped to a tiny
    bound they would shrink the critic's output, and with it the generator's
    signal, by that factor per layer.
    """
    for module in critic.modules():
        limit = 1.0 if isinstance(module, torch.nn.GroupNorm) else bound
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm)):
            for parameter in module.parameters(recurse=False):
                parameter.clamp_(-limit, limit)
