"""Compute budgets for the protocol (genmem.benchmarks.protocol): how long the GAN and the classifiers train.

A profile is recorded whole in a run's results.json, so a resumed run can be
held to the budget it was started with.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields, replace

from genmem.augment import parse_policy
from genmem.classifier import ClassifierConfig
from genmem.config import TrainingConfig
from genmem.errors import InvalidSetting
from genmem.presets import base_width_for, paper_config


@dataclass(frozen=True)
class Profile:
    """A compute budget for the protocol: the GAN's, and separately the classifiers'.

    Every method may use every real image of the current class, so only the
    GAN's budget is cut to fit a machine: it trains on `images_per_class` of
    them for `gan_epochs` (`variant_gan_epochs` where a variant's differ).
    The classifiers (the solver's classification phase, the replay
    classifier, joint training, fine-tuning) train on
    `classifier_images_per_class` real images of the current class (None: all)
    for `classifier_epochs` passes over the images of the classes they learn.
    """

    name: str
    images_per_class: int | None  # real images per class the GAN trains on; None: all
    gan_epochs: int | None  # None: the paper's (101 MNIST, 151 SVHN, 251 CIFAR-10)
    solver_replay: int | None  # generated images per earlier class in each solver step; None: the batch size
    classifier_epochs: float
    about: str
    solver_steps: int | None = None  # None: TrainingConfig's default
    solver_epochs: float | None = None  # the solver phase's passes over its images at least (None: solver_steps)
    solver_start: str = "critic"  # the real solver starts from the critic or from a fresh network (genmem.solver)
    solver_augment: str = ""  # the solver phase's augmentation (genmem.augment policy)
    critic_width: int | None = None  # the GAN critic's first width (None: the recipe's, 32 for MNIST)
    gan_lr: float | None = None  # the GAN's learning rate (None: the recipe's, tuned for the paper's epochs)
    classifier_width: int = ClassifierConfig.width  # first width of the replay, joint and fine-tuned classifiers
    solver_width: int | None = None  # the stored solver's first width (None: the critic's)
    classifier_augment: str = ""  # their augmentation (genmem.augment policy), the same for every method
    classifier_images_per_class: int | None = None  # real images per class for every classifier; None: all
    # DGM's initial generator base width per variant on this budget ({}: the recipe's). DGMa's growth per task
    # scales with it and its time with the growth's square, so a CPU budget wants it small.
    base_widths: dict[str, int] = field(default_factory=dict)
    # GAN epochs per task for a variant where they differ from `gan_epochs` ({}: none differs).
    variant_gan_epochs: dict[str, int] = field(default_factory=dict)
    # TrainingConfig fields set last, over the recipe and every field above, None included ({}: none): what a
    # budget alone cannot say, such as switching genmem's additions to the paper's GAN off.
    gan_overrides: dict[str, object] = field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.gan_overrides) - {f.name for f in fields(TrainingConfig)})
        if unknown:
            raise InvalidSetting(f"profile {self.name} overrides {', '.join(unknown)}, which are no TrainingConfig "
                                 f"fields")

    @classmethod
    def from_record(cls, record: dict, about: str | None = None) -> Profile:
        """The profile a results.json recorded. A field added since the run started was at its default then;
        `about`: the description to use instead of the recorded one (the wording may have changed since)."""
        defaults = {f.name: f.default if f.default_factory is MISSING else f.default_factory() for f in fields(cls)
                    if f.default is not MISSING or f.default_factory is not MISSING}
        record = defaults | record | ({"about": about} if about is not None else {})
        # JSON has no tuples; TrainingConfig's only sequence fields (the betas) are tuples
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in record["gan_overrides"].items()}
        return cls(**record | {"gan_overrides": overrides})

    def base_width(self, variant: str, recipe: str, chosen: int | None = None) -> int | None:
        """DGM's initial base width: the one chosen, else this budget's for the variant, else the recipe's
        (None: the variant's own default)."""
        return chosen or self.base_widths.get(variant) or base_width_for(recipe)

    def gan_epochs_for(self, variant: str) -> int | None:
        """The GAN's epochs per task for DGM's variant (None: the paper's)."""
        return self.variant_gan_epochs.get(variant, self.gan_epochs)

    def training_config(self, recipe: str, variant: str, solver: str = "real", arch: str = "dcgan"
                        ) -> TrainingConfig:
        """The GAN's TrainingConfig on this budget: the recipe's and the generator family's (`arch`), with this
        profile's settings and then its overrides. A budget field left None leaves the recipe's value where the
        setting needs one (genmem.presets.paper_config)."""
        budget = {"epochs": self.gan_epochs_for(variant), "solver_replay": self.solver_replay,
                  "solver_steps": self.solver_steps, "solver_epochs": self.solver_epochs,
                  "critic_width": self.critic_width, "solver_width": self.solver_width, "lr": self.gan_lr,
                  "gan_images_per_class": self.images_per_class}
        config = paper_config(recipe, variant, arch, solver_start=self.solver_start,
                              solver_augment=self.solver_augment, solver=solver, **budget)
        return replace(config, **self.gan_overrides)

    @property
    def storage_dtype(self) -> str:
        """The type DGM's generator weights are stored in on this profile (TrainingConfig.storage_dtype)."""
        return self.gan_overrides.get("storage_dtype", TrainingConfig.storage_dtype)

    def with_storage(self, dtype: str) -> Profile:
        """This profile with DGM's generator weights stored in `dtype` (TrainingConfig.storage_dtype), named so
        unless it is the default: every figure of the run, the buffer's and joint training's too, is apart from
        the default's. A profile named for another storage type (a run from before bfloat16 became the default
        names bfloat16) loses that name, so that one storage type has one name."""
        name = self.name.removesuffix(f", {self.storage_dtype} storage")  # a name from before bfloat16 was the default
        overrides = {key: value for key, value in self.gan_overrides.items() if key != "storage_dtype"}
        if dtype == TrainingConfig.storage_dtype:
            return replace(self, name=name, gan_overrides=overrides)
        return replace(self, name=named_for_storage(name, dtype), gan_overrides=overrides | {"storage_dtype": dtype})

    def with_gan_settings(self, overrides: dict) -> Profile:
        """This profile with DGM's GAN trained otherwise (TrainingConfig fields, e.g. a critic head of
        docs/ALGORITHM.md §18), named by them: every figure of the run is apart from the profile's own."""
        if not overrides:
            return self
        named = ", ".join(f"{key}={value if isinstance(value, str) else json.dumps(value)}"
                          for key, value in overrides.items())
        return replace(self, name=f"{self.name}, {named}", gan_overrides=self.gan_overrides | overrides)

    def with_budget(self, images_per_class: int | None = None, gan_epochs: int | None = None,
                    augment: str | None = None, classifier_epochs: float | None = None,
                    classifier_width: int | None = None) -> Profile:
        """This profile with another GAN budget, another augmentation, or other passes or another width for the
        classifiers and the solver phase.

        The name says what changed (quick, 10 classifier passes), so that a
        table's profile column tells runs on other budgets apart. Colour images
        want more than shifts: on CIFAR-10 a classifier shown real images of the
        newest class only learns "real means newest" unless cutout hides the
        generator's traces too (BENCHMARKS.md).
        """
        changed, named, described = self, [], []
        if images_per_class is not None and images_per_class != self.images_per_class:
            changed = replace(changed, images_per_class=images_per_class)
            named.append(f"GAN on {images_per_class} images per class")
        if gan_epochs is not None and (gan_epochs != self.gan_epochs or self.variant_gan_epochs):
            changed = replace(changed, gan_epochs=gan_epochs, variant_gan_epochs={})
            named.append(f"{gan_epochs} GAN epochs")
        if augment is not None and (augment != self.classifier_augment or augment != self.solver_augment):
            parse_policy(augment)
            changed = replace(changed, classifier_augment=augment, solver_augment=augment)
            named.append(f"classifiers augmented by {augment}" if augment else "classifiers not augmented")
            described.append(f"classifiers and solver augmented by {augment or 'nothing'}")
        if classifier_epochs is not None and (classifier_epochs != self.classifier_epochs
                                              or classifier_epochs != self.solver_epochs):
            changed = replace(changed, classifier_epochs=classifier_epochs, solver_epochs=classifier_epochs)
            named.append(f"{classifier_epochs:g} classifier passes")
            described.append(f"classifiers and solver for {classifier_epochs:g} passes")
        if classifier_width is not None and classifier_width != self.classifier_width:
            # a solver started from the critic keeps the critic's width
            changed = replace(changed, classifier_width=classifier_width,
                              solver_width=classifier_width if changed.solver_start == "fresh" else None)
            named.append(f"classifiers {classifier_width} wide")
            described.append(f"classifiers and solver {classifier_width} wide")
        if not named:
            return self
        images = changed.images_per_class or "all"
        epochs = changed.gan_epochs or "the paper's"
        if changed.variant_gan_epochs:
            epochs = f"{epochs} ({', '.join(f'{v} {e}' for v, e in changed.variant_gan_epochs.items())})"
        return replace(changed, name=f"{self.name}, {', '.join(named)}",
                       about=f"{self.name} with the GAN on {images} images per class for {epochs} epochs per task"
                             + "".join(f"; {change}" for change in described))


def named_for_storage(name: str, dtype: str) -> str:
    """A profile's name for runs whose memories store `dtype`: the default type is not named."""
    return name if dtype == TrainingConfig.storage_dtype else f"{name}, {dtype} storage"


# The paper's method as published: every genmem addition to its GAN and solver that a TrainingConfig field can
# switch off is off (the annealing, the mask placement and the solver's BatchNorm re-estimation are fixed). The
# stored solver is the critic's trunk and class head as the GAN leaves them,
# with no classification phase after it; the generator samples its last weights, not a moving average, with the
# BatchNorm statistics training left (0 recalibration batches); the gradient penalty at every critic step; Adam's
# betas the paper's. The AC-GAN class loss on generated images is off, as in the official MNIST and SVHN code
# (the paper's text has it on).
PAPER_EXACT = {"average_decay": None, "gp_every": 1, "betas": (0.5, 0.999), "solver_start": "critic",
               "solver_epochs": None, "solver_steps": 0, "solver_augment": "", "class_loss_weight": 0.0,
               "recalibration_batches": 0}

PROFILES = {
    "quick": Profile("quick", 1000, 40, 8, 2.0, "2 CPU cores: the GAN on 1000 images per class for 40 epochs per "
                     "task (DGMa 38), DGMw at base width 10 and DGMa at 8; classifiers, the solver a fresh one, on "
                     "every real image for 2 epochs, shifted by up to 4 pixels; critic and classifiers half as wide "
                     "as the paper's",
                     solver_epochs=2.0, solver_start="fresh", solver_augment="translation", critic_width=16,
                     classifier_width=16, classifier_augment="translation", base_widths={"dgmw": 10, "dgma": 8},
                     variant_gan_epochs={"dgma": 38}),
    "paper": Profile("paper", None, None, None, 5.0, "the paper's budgets on all the data, for a GPU; the solver a "
                     "fresh one, 5 passes over its images shifted by up to 4 pixels",
                     solver_epochs=5.0, solver_start="fresh", solver_augment="translation"),
    "paper-exact": Profile("paper-exact", None, None, None, 5.0, "the paper's method as published, on its budgets "
                           "and all the data, for a GPU: the critic's class head as the stored solver, no moving "
                           "average, no BatchNorm re-estimation, the penalty at every step, betas (0.5, 0.999), no "
                           "class loss on generated images (the official MNIST and SVHN code); the protocol's own "
                           "classifiers 5 passes",
                           gan_overrides=PAPER_EXACT),
    "smoke": Profile("smoke", 24, 1, 2, 0.5, "seconds on tiny data: checks the pipeline, not the accuracy",
                     solver_steps=20, classifier_images_per_class=24),
}
COLOUR_AUGMENT = "translation,cutout"
# The profiles on CIFAR-10, where they differ (profile_for says why).
CIFAR10_PROFILES = {
    "quick": replace(PROFILES["quick"], images_per_class=5000, gan_epochs=30, gan_lr=1e-3,
                     classifier_augment=COLOUR_AUGMENT, solver_augment=COLOUR_AUGMENT,
                     base_widths={"dgmw": 10, "dgma": 10}, variant_gan_epochs={},
                     about="2 CPU cores, CIFAR-10: the GAN on all 5000 images per class for 30 epochs per task at "
                           "learning rate 1e-3, DGM at base width 10; classifiers, the solver a fresh one, on every "
                           "real image for 2 epochs, shifted by up to 4 pixels and cut out; critic and classifiers "
                           "16 wide"),
    "paper": replace(PROFILES["paper"], classifier_augment=COLOUR_AUGMENT, solver_augment=COLOUR_AUGMENT,
                     about="the paper's budgets on all the data, for a GPU; the solver a fresh one, 5 passes over "
                           "its images, and the classifiers, shifted by up to 4 pixels and cut out (CIFAR-10)"),
    "paper-exact": replace(PROFILES["paper-exact"], classifier_augment=COLOUR_AUGMENT,
                           about=PROFILES["paper-exact"].about + ", shifted by up to 4 pixels and cut out "
                                                                 "(CIFAR-10)"),
}


def profile_for(name: str, recipe: str) -> Profile:
    """The named profile as it applies to a recipe's data.

    On CIFAR-10 a classifier shown real images of the newest class and
    generated ones of the others learns "real means newest" unless its images
    are shifted and cut out, so every profile's classifiers and solver are
    (BENCHMARKS.md, "CIFAR-10 on 2 CPU cores"); paper-exact's solver has no
    phase of its own to augment. The quick profile's MNIST budget also left
    them collapsed there (A10 10 to 23); the GAN on all 5000 images per class
    for 30 epochs reached A10 43 in 88 minutes on 2 cores. The recipe's
    learning rate (2e-4) is the paper's for 251 epochs; the quick profile's 30
    take 1e-3, which brought the replay far closer to the real images on a
    short budget and A10 from 43 to 49 on this one (BENCHMARKS.md, "The GAN's
    learning rate on CIFAR-10"). At base width 10 instead of the recipe's 20,
    DGMw's A10 rose from 48.8 to 50.5 in a third of the GAN time, and DGMa's
    ten tasks took 2,427 s where at 20 its first seven took 5,012 s
    (BENCHMARKS.md, "DGMa on CIFAR-10 at base width 10"). Colour folders of
    your own (the colour recipe) take the same shifts and cutout.
    """
    if recipe == "cifar10" and name in CIFAR10_PROFILES:
        return CIFAR10_PROFILES[name]
    profile = PROFILES[name]
    if recipe == "colour" and profile.solver_augment:  # your colour images: CIFAR-10's lesson, cutout too
        return replace(profile, classifier_augment=COLOUR_AUGMENT, solver_augment=COLOUR_AUGMENT)
    return profile
