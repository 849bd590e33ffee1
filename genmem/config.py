"""The settings of one task and the rules they must obey, checked once before anything changes.

`TrainingConfig` is the vocabulary every part of learning reads (the GAN, the
solver phase, differential privacy); `check_settings` is the one place that
refuses a setting that could never finish, fit or keep its promise, so that a
refused task leaves the memory, the generator and the caller's data as they
were.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import asdict, dataclass, fields

from genmem.augment import parse_policy
from genmem.errors import InvalidSetting

MAX_EPOCHS = 100_000  # far past any budget in use (the paper's largest is 251); more is a typo
MAX_BATCH_SIZE = 65_536  # GAN batches this large are already unusual; larger ones fail for memory after the GAN
MAX_GENERATOR_STEPS = 64  # generator updates per critic step; more would train against a stale critic
MAX_SEED = 2**64 - 1  # seeds are torch generator seeds, which stop at 64 bits
# Passes over its images for any classifier genmem trains (the solver, evaluation and the benchmarks'):
# far past any plateau, so more is a typo, and infinity would never end.
MAX_CLASSIFIER_EPOCHS = 1000.0

# What a version ships as its task solver (genmem.solver says what each may store).
SOLVER_MODES = {
    "real": "trained on this task's real images and on generated images of earlier classes; it has seen the "
            "task's training images, so a membership-inference attack on it can succeed",
    "replay": "trained only on images the generator produced (every class, this task's included); it has touched "
              "no real image except through the generator, so it is as private as the generator",
    "none": "no solver is stored; the version holds only the generator",
}
SOLVER_STARTS = ("critic", "fresh")  # where a real solver's classification phase starts (genmem.solver)
# The DP critic's losses (genmem.private): the WGAN's with clipped weights, or the non-saturating GAN loss.
DP_LOSSES = ("wasserstein", "logistic")
DP_ACTIVATIONS = ("leaky_relu", "tanh")
MAX_DP_AUGMENTATIONS = 64  # each view is a row of the critic's batch: more only multiplies the step's cost
CRITIC_HEADS = ("acgan", "projection")  # the critic's real-or-fake head (genmem.conditioning)
GAN_LOSSES = ("wgan-gp", "hinge")  # the critic's loss (genmem.critic); the generator's is -D(fake) for both
CRITIC_SETTINGS = ("critic_head", "gan_loss", "spectral_norm")  # docs/ALGORITHM.md §18
STORAGE_DTYPES = ("float32", "bfloat16", "float16")  # the types a task's generator weights may be stored in


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
    solver_steps: int = 300  # classification-only steps after the GAN, at least (genmem.solver.phase_steps)
    solver_epochs: float | None = 5.0  # at least this many passes over the solver's images (genmem.solver)
    solver_augment: str = "translation"  # genmem.augment policy for the solver phase's batches; "" for none
    solver_start: str = "fresh"  # a new network, or "critic": the critic's trunk and class head (the paper's)
    solver_width: int | None = None  # a fresh solver's first width (None: critic_width); the stored classifier's
    solver_lr: float = 1e-3
    solver: str = "real"  # what the version ships as its task solver: real, replay or none (SOLVER_MODES)
    dp_epsilon: float | None = None  # train the critic with DP-SGD for this epsilon (genmem.private); None: off
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0  # per-example gradient clipping norm of DP-SGD
    dp_weight_clip: float = 0.01  # the DP Wasserstein critic's weights are clipped to [-c, c] (no gradient penalty)
    dp_loss: str = "wasserstein"  # the DP critic's loss (DP_LOSSES); genmem.private.dp_defaults chooses by epsilon
    dp_augmentations: int = 1  # augmented views of each real image averaged in its DP gradient (critic_augment's)
    dp_activation: str = "leaky_relu"  # the DP critic's nonlinearity: leaky_relu or tanh (genmem.private)
    # Batches that re-estimate the generator's BatchNorm statistics under its binary masks after the GAN;
    # 0 keeps the running statistics training left (the paper's code), which saw soft masks.
    recalibration_batches: int = 16
    gan_images_per_class: int | None = None  # the GAN trains on the first N images of each class; None: all
    average_decay: float | None = 0.99  # sample from an EMA of the task's free entries (genmem.ema); None: off
    critic_augment: str = ""  # DiffAugment policy for the critic, e.g. "translation,cutout" (genmem.augment)
    # Generator updates after each critic step: under DP a critic step costs privacy and a generator step none,
    # so a few large-batch critic steps can drive more generator steps (docs/experiments/2026-12-02-dp-levers.md)
    generator_steps: int = 1
    gp_every: int = 4  # lazy gradient penalty: every k critic steps, weighted by k (1.4x the steps/s, BENCHMARKS.md)
    critic_head: str = "acgan"  # the real-or-fake head: class-blind (AC-GAN) or "projection" (genmem.conditioning)
    gan_loss: str = "wgan-gp"  # "hinge": the hinge loss, no gradient penalty (genmem.critic)
    spectral_norm: bool = False  # spectrally normalise the critic, without BatchNorm (genmem.spectral)
    # The type the task's generator weights are stored in (genmem.artifact): what the task may change is rounded
    # onto that grid as it ends, so the version stores exactly what replay computes with (docs/ALGORITHM.md §19).
    # bfloat16 halves the payload and moved A10 by under 0.2 points (BENCHMARKS.md); float32 rounds nothing.
    storage_dtype: str = "bfloat16"  # or float16 (both format 4, compressed), float32 (formats 2 and 3)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def private(self) -> bool:
        """Whether the task trains under differential privacy (genmem.private)."""
        return self.dp_epsilon is not None


def parse_overrides(text: str) -> dict:
    """'field=value; field=value' as {field: value} of TrainingConfig fields, for the benchmarks that compare
    settings; a value is JSON where it parses (0.99, 4, true, null), else text (translation,cutout)."""
    known = {f.name for f in fields(TrainingConfig)}
    overrides = {}
    for pair in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise InvalidSetting(f"{pair!r} is not FIELD=VALUE with a TrainingConfig field (e.g. average_decay=0.99; "
                                 f"critic_augment=translation,cutout; critic_head=projection)")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value.strip()
    return overrides


POSITIVE_SETTINGS = ("lr", "s_max", "solver_lr")
NON_NEGATIVE_SETTINGS = ("sparsity_weight", "gp_weight", "class_loss_weight")


def check_settings(config: TrainingConfig, processes: int = 1, arch: str = "dcgan") -> None:
    """Refuse settings that could never finish, fit, learn or keep their promise, before any training.

    A NaN rate or weight trains a version of NaN weights; the batch is
    allocated whole in the solver phase and the recalibration after the GAN,
    so a batch too large would fail only after the whole GAN. `processes`:
    the data-parallel ranks that will share the task; `arch`: the
    generator's architecture, whose critic a solver may start from.
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
    if config.recalibration_batches < 0:
        raise InvalidSetting(f"recalibration batches {config.recalibration_batches} are out of range: give 0 (keep "
                             f"the statistics training left) or more (re-estimate them under the binary masks)")
    if not 1 <= config.generator_steps <= MAX_GENERATOR_STEPS:
        raise InvalidSetting(f"{config.generator_steps} generator steps per critic step are out of range: give 1 to "
                             f"{MAX_GENERATOR_STEPS}")
    if config.gp_every < 1:
        raise InvalidSetting(f"gp_every {config.gp_every} is out of range: give 1 (every critic step) or more")
    if config.average_decay is not None and not 0 < config.average_decay < 1:
        raise InvalidSetting(f"average decay {config.average_decay} is out of range: give a number in (0, 1), or "
                             f"None for no average")
    if config.storage_dtype not in STORAGE_DTYPES:
        raise InvalidSetting(f"unknown storage dtype {config.storage_dtype!r}: choose one of "
                             f"{', '.join(STORAGE_DTYPES)}")
    parse_policy(config.critic_augment)
    _check_solver_phase(config, arch)  # first: a residual critic refuses a critic-started solver for its own reason
    _check_critic(config, processes)
    if config.private:
        _check_privacy(config, processes)


def stored_solver_width(config: TrainingConfig) -> int:
    """The stored solver's first width: solver_width, else the critic's (a solver started from the critic keeps
    it)."""
    return config.solver_width or config.critic_width


def check_solver_mode(mode: str) -> str:
    if mode not in SOLVER_MODES:
        raise InvalidSetting(f"unknown solver mode {mode!r}: choose one of {', '.join(SOLVER_MODES)}")
    return mode


def _check_solver_phase(config: TrainingConfig, arch: str) -> None:
    check_solver_mode(config.solver)
    if config.solver == "real" and config.solver_start == "critic" and arch != "dcgan":
        raise InvalidSetting(f"a solver that starts from the critic needs the DCGAN critic (the stored solver has its "
                             f"trunk), not the {arch} critic; start a fresh solver")
    if config.solver_start not in SOLVER_STARTS:
        raise InvalidSetting(f"unknown solver start {config.solver_start!r}: choose one of "
                             f"{', '.join(SOLVER_STARTS)}")
    if config.solver_width is not None and config.solver_width < 1:
        raise InvalidSetting(f"solver width {config.solver_width} is out of range: give 1 or more channels")
    if config.solver_start == "critic" and stored_solver_width(config) != config.critic_width:
        raise InvalidSetting(f"a solver that starts from the critic has its width ({config.critic_width}); drop the "
                             f"solver width {config.solver_width} or start a fresh solver")
    parse_policy(config.solver_augment)
    epochs = config.solver_epochs
    if epochs is not None and not 0 < epochs <= MAX_CLASSIFIER_EPOCHS:
        raise InvalidSetting(f"solver epochs {epochs} are out of range: give passes over the solver's images above "
                             f"0 and at most {MAX_CLASSIFIER_EPOCHS:g}")


def _check_critic(config: TrainingConfig, processes: int) -> None:
    """The critic's head, loss and normalisation are known, and fit the rest of the task."""
    for name, value, known in (("critic head", config.critic_head, CRITIC_HEADS),
                               ("GAN loss", config.gan_loss, GAN_LOSSES)):
        if value not in known:
            raise InvalidSetting(f"unknown {name} {value!r}: choose one of {', '.join(known)}")
    if not isinstance(config.spectral_norm, bool):
        raise InvalidSetting(f"spectral_norm {config.spectral_norm!r} must be true or false")
    if config.spectral_norm and config.solver_start == "critic":
        raise InvalidSetting("a solver that starts from the critic keeps its trunk, and a spectrally normalised "
                             "critic has no BatchNorm to keep: start a fresh solver or drop spectral_norm")
    if processes > 1 and config.critic_head == "projection":
        raise InvalidSetting("the projection critic (the residual generator's default) reads every image's class, "
                             "which data-parallel ranks do not split yet: learn the task in one process (without "
                             "torchrun), or in Python with critic_head='acgan'")
    changed = critic_settings_changed(config)
    if config.private and changed:
        raise InvalidSetting(f"the differentially private critic (genmem.private) has its own loss, weight clipping "
                             f"and class-blind head; drop {', '.join(changed)} or the DP epsilon")


def critic_settings_changed(config: TrainingConfig) -> list[str]:
    """The critic settings of docs/ALGORITHM.md §18 that `config` sets otherwise than §10's critic, as field=value."""
    return [f"{name}={getattr(config, name)!r}" for name in CRITIC_SETTINGS
            if getattr(config, name) != getattr(TrainingConfig, name)]


def _check_privacy(config: TrainingConfig, processes: int) -> None:
    """Refuse DP settings that would void the guarantee or cannot be met (PRIVACY.md)."""
    if not 0 < config.dp_epsilon < math.inf:
        raise InvalidSetting(f"--dp-epsilon must be a positive, finite number, got {config.dp_epsilon} (an "
                             f"infinite epsilon guarantees nothing: leave it out to learn without DP)")
    if not 0 < config.dp_delta < 1:
        raise InvalidSetting(f"--dp-delta must lie in (0, 1), got {config.dp_delta}")
    if not (math.isfinite(config.dp_max_grad_norm) and config.dp_max_grad_norm > 0):
        raise InvalidSetting(f"the DP clipping norm must be a finite number above 0, got {config.dp_max_grad_norm}")
    if config.dp_loss not in DP_LOSSES:
        raise InvalidSetting(f"unknown DP critic loss {config.dp_loss!r}: choose one of {', '.join(DP_LOSSES)}")
    if config.dp_activation not in DP_ACTIVATIONS:
        raise InvalidSetting(f"unknown DP critic activation {config.dp_activation!r}: choose one of "
                             f"{', '.join(DP_ACTIVATIONS)}")
    if not 1 <= config.dp_augmentations <= MAX_DP_AUGMENTATIONS:
        raise InvalidSetting(f"{config.dp_augmentations} DP augmentations are out of range: give 1 (no "
                             f"multiplicity) to {MAX_DP_AUGMENTATIONS} views of each real image")
    if config.dp_augmentations > 1 and not parse_policy(config.critic_augment):
        raise InvalidSetting(f"{config.dp_augmentations} DP augmentations of each image would be identical without "
                             f"a critic augmentation: give one (e.g. translation) or a single view")
    if config.solver == "real":
        raise InvalidSetting("a differentially private task cannot ship a solver trained on real images: "
                             "use --solver replay (the default with --dp-epsilon) or --solver none")
    if processes > 1:
        raise InvalidSetting("differentially private training runs in one process; start it without torchrun")
    if importlib.util.find_spec("opacus") is None:
        raise InvalidSetting("differentially private learning needs Opacus: pip install 'genmem[dp]'")
