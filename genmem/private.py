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

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from genmem.errors import InvalidSetting
from genmem.nets import Discriminator

if TYPE_CHECKING:
    from genmem.learn import TrainingConfig

ACCOUNTANT = "rdp"
# The Renyi orders the accountant optimises over: a coarser grid than Opacus's default 150 (whose fractional
# orders make each search take seconds), costing a few percent of epsilon at most; recorded in the manifest.
ORDERS = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0, 128.0)


def check_private_config(config: TrainingConfig) -> None:
    """Refuse DP settings that would void the guarantee or cannot be met, before any training."""
    if not 0 < config.dp_epsilon < math.inf:
        raise InvalidSetting(f"--dp-epsilon must be a positive, finite number, got {config.dp_epsilon} (an "
                             f"infinite epsilon guarantees nothing: leave it out to learn without DP)")
    if not 0 < config.dp_delta < 1:
        raise InvalidSetting(f"--dp-delta must lie in (0, 1), got {config.dp_delta}")
    if config.solver == "real":
        raise InvalidSetting("a differentially private task cannot ship a solver trained on real images: "
                             "use --solver replay (the default with --dp-epsilon) or --solver none")


class PrivateCritic:
    """The critic of one task under DP-SGD: its module, optimiser, Poisson batches and accountant."""

    def __init__(self, critic: Discriminator, config: TrainingConfig, num_images: int, rng: torch.Generator):
        check_private_config(config)
        try:  # an optional dependency: genmem[dp]
            from opacus import GradSampleModule
            from opacus.accountants import RDPAccountant
            from opacus.accountants.utils import get_noise_multiplier
            from opacus.optimizers import DPOptimizer
            from opacus.validators import ModuleValidator
        except ImportError:
            raise InvalidSetting("differentially private learning needs Opacus: pip install 'genmem[dp]'") from None
        self.config = config
        self.num_images = num_images
        self.sample_rate = min(1.0, config.batch_size / num_images)
        self.steps_per_epoch = int(1 / self.sample_rate)  # as Opacus's Poisson data loader counts them
        self.steps = config.epochs * self.steps_per_epoch
        self.noise_multiplier = get_noise_multiplier(target_epsilon=config.dp_epsilon, target_delta=config.dp_delta,
                                                     sample_rate=self.sample_rate, steps=self.steps,
                                                     accountant=ACCOUNTANT, alphas=list(ORDERS))
        self.module = GradSampleModule(ModuleValidator.fix(critic).to(rng.device))
        self.module.disable_hooks()  # on only within `step`: the generator's steps backpropagate through it too
        adam = torch.optim.Adam(self.module.parameters(), lr=config.lr, betas=config.betas)
        self.optimizer = DPOptimizer(adam, noise_multiplier=self.noise_multiplier,
                                     max_grad_norm=config.dp_max_grad_norm, expected_batch_size=config.batch_size,
                                     generator=rng)
        self.accountant = RDPAccountant()
        self.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        self._sampling = torch.Generator().manual_seed(config.seed)

    def epoch_batches(self) -> Iterator[torch.Tensor]:
        """One epoch of Poisson-sampled batches: every image joins each batch independently with the sample rate."""
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        sampler = UniformWithReplacementSampler(num_samples=self.num_images, sample_rate=self.sample_rate,
                                                generator=self._sampling, steps=self.steps_per_epoch)
        for indices in sampler:
            yield torch.tensor(indices, dtype=torch.long)

    def step(self, real: torch.Tensor, real_targets: torch.Tensor, fake: torch.Tensor,
             replay: torch.Tensor | None = None, replay_targets: torch.Tensor | None = None) -> torch.Tensor:
        """One DP-SGD step of the critic; returns the Wasserstein estimate (for the progress bar only).

        Every row (real, generated or replayed) is one example to Opacus: its
        loss is the Wasserstein term (-score for real, +score for generated)
        plus the class loss where it has a target (zero, with a zero gradient,
        while the head has a single class). Rows that are not real images are
        clipped too, which only costs utility.
        """
        rows = torch.cat([real, fake] + ([replay] if replay is not None else []))
        self.module.enable_hooks()
        scores, logits = self.module(rows)
        n_real, n_fake = len(real), len(fake)
        targets = torch.cat([real_targets] + ([replay_targets] if replay is not None else []))
        class_loss = F.cross_entropy(torch.cat([logits[:n_real], logits[n_real + n_fake:]]), targets,
                                     reduction="none")
        per_row = torch.cat([class_loss[:n_real] - scores[:n_real], scores[n_real: n_real + n_fake],
                             class_loss[n_real:]])
        self.optimizer.zero_grad(set_to_none=True)
        (per_row.sum() / len(rows)).backward()  # Opacus's "mean" reduction: each row's gradient is its own loss's
        self.optimizer.step()
        self.module.disable_hooks()
        clip_weights_(self.module, self.config.dp_weight_clip)
        return (scores[:n_real].mean() - scores[n_real: n_real + n_fake].mean()).detach()

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
