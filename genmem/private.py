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
- the gradient penalty needs a second derivative per example, so the critic
  is kept Lipschitz by clipping its weights to [-c, c] after every step (the
  original WGAN's rule, as in DPGAN; GroupNorm's affine parameters to [-1, 1]);
- the generated images the critic compares with a real batch are drawn for
  classes chosen at random, not the real batch's labels, and always as many
  as the expected batch, so nothing but the clipped gradients depends on
  which real images a batch holds.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from genmem.config import TrainingConfig
from genmem.critic import replay_batch
from genmem.nets import Discriminator

ACCOUNTANT = "rdp"
# The Renyi orders the accountant optimises over: a coarser grid than Opacus's default 150 (whose fractional
# orders make each search take seconds), costing a few percent of epsilon at most; recorded in the manifest.
ORDERS = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0, 128.0)


class PrivateCritic:
    """The critic step of one task under DP-SGD: its module, optimiser, Poisson batches and accountant, in the
    shape of genmem.critic.CriticStep. The settings were checked by genmem.config.check_settings."""

    def __init__(self, critic: Discriminator, config: TrainingConfig, replay: torch.Tensor | None, per_class: int,
                 num_images: int, rng: torch.Generator):
        from opacus import GradSampleModule  # an optional dependency: genmem[dp]
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer
        from opacus.validators import ModuleValidator

        self.config, self.replay, self.per_class = config, replay, per_class
        self.num_images = num_images
        self.sample_rate = min(1.0, config.batch_size / num_images)
        self.steps_per_epoch = int(1 / self.sample_rate)  # as Opacus's Poisson data loader counts them
        self.steps = config.epochs * self.steps_per_epoch
        self.noise_multiplier = get_noise_multiplier(target_epsilon=config.dp_epsilon, target_delta=config.dp_delta,
                                                     sample_rate=self.sample_rate, steps=self.steps,
                                                     accountant=ACCOUNTANT, alphas=list(ORDERS))
        self.network = GradSampleModule(ModuleValidator.fix(critic).to(rng.device))
        self.network.disable_hooks()  # on only within `step`: the generator's steps backpropagate through it too
        adam = torch.optim.Adam(self.network.parameters(), lr=config.lr, betas=config.betas)
        self.optimiser = DPOptimizer(adam, noise_multiplier=self.noise_multiplier,
                                     max_grad_norm=config.dp_max_grad_norm, expected_batch_size=config.batch_size,
                                     generator=rng)
        self.accountant = RDPAccountant()
        self.optimiser.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        self._sampling = torch.Generator().manual_seed(config.seed)

    def batches_per_epoch(self, images: int) -> int:
        return self.steps_per_epoch

    def epoch_batches(self, rows: torch.Tensor, rng: torch.Generator) -> Iterator[torch.Tensor]:
        """One epoch of Poisson-sampled batches of `rows`: every image joins each batch independently with the
        sample rate (drawn from the task's own sampling stream, not `rng`)."""
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        sampler = UniformWithReplacementSampler(num_samples=self.num_images, sample_rate=self.sample_rate,
                                                generator=self._sampling, steps=self.steps_per_epoch)
        for indices in sampler:
            yield rows[torch.tensor(indices, dtype=torch.long)]

    def fake_classes(self, real_classes: torch.Tensor, num_classes: int, rng: torch.Generator) -> torch.Tensor:
        """Classes drawn at random, as many as the expected batch: nothing of them depends on the real batch."""
        return torch.randint(num_classes, (self.config.batch_size,), generator=rng, device=real_classes.device)

    def step(self, real: torch.Tensor, real_targets: torch.Tensor, fake: torch.Tensor, step: int,
             rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One DP-SGD step of the critic; returns minus the Wasserstein estimate as its loss, and the estimate
        (both for the progress bar only).

        Every row (real, generated or replayed) is one example to Opacus: its
        loss is the Wasserstein term (-score for real, +score for generated)
        plus the class loss where it has a target (zero, with a zero gradient,
        while the head has a single class). Rows that are not real images are
        clipped too, which only costs utility.
        """
        replay, replay_targets = replay_batch(self.replay, self.per_class, rng) if self.replay is not None \
            else (None, None)
        self.network.requires_grad_(True)
        rows = torch.cat([real, fake] + ([replay] if replay is not None else []))
        self.network.enable_hooks()
        scores, logits = self.network(rows)
        n_real, n_fake = len(real), len(fake)
        targets = torch.cat([real_targets] + ([replay_targets] if replay is not None else []))
        class_loss = F.cross_entropy(torch.cat([logits[:n_real], logits[n_real + n_fake:]]), targets,
                                     reduction="none")
        per_row = torch.cat([class_loss[:n_real] - scores[:n_real], scores[n_real: n_real + n_fake],
                             class_loss[n_real:]])
        self.optimiser.zero_grad(set_to_none=True)
        (per_row.sum() / len(rows)).backward()  # Opacus's "mean" reduction: each row's gradient is its own loss's
        self.optimiser.step()
        self.network.disable_hooks()
        clip_weights_(self.network, self.config.dp_weight_clip)
        wasserstein = (scores[:n_real].mean() - scores[n_real: n_real + n_fake].mean()).detach()
        return -wasserstein, wasserstein

    def record(self) -> dict:
        """What the manifest and model card state about this task's guarantee."""
        return {
            "epsilon": self.accountant.get_epsilon(self.config.dp_delta, alphas=list(ORDERS)),
            "target_epsilon": self.config.dp_epsilon,
            "delta": self.config.dp_delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.config.dp_max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": sum(steps for _, _, steps in self.accountant.history),
            "accountant": f"opacus {ACCOUNTANT} (RDP, Poisson subsampling, add/remove one image)",
            "orders": list(ORDERS),
            "weight_clip": self.config.dp_weight_clip,
            "images": self.num_images,
        }


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
