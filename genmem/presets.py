"""The paper's hyperparameters per data family and variant (docs/ALGORITHM.md §2, §4, §8 and §10).

Epoch counts are the paper's GPU budgets; pass fewer epochs for CPU runs.
Custom data (folder:, npz:) takes the MNIST recipe for grey images and the
colour recipe for colour images: SVHN's settings, with the solver's images
cut out as well as shifted, which is what kept colour classifiers from
collapsing onto the newest class (docs/ALGORITHM.md §10, BENCHMARKS.md).
The residual family (`arch` resnet) trains its critic otherwise: see
ARCH_SETTINGS.
"""

from __future__ import annotations

import typing

from genmem.config import TrainingConfig

S_MAX = {"dgmw": 1e4, "dgma": 1e5}
RECIPES = {
    "mnist": {"lr": 2e-3, "epochs": 101, "gp_weight": 1.0, "sparsity_weight": {"dgmw": 0.08, "dgma": 0.01},
              "critic_width": 32, "base_width": None},
    "svhn": {"lr": 5e-4, "epochs": 151, "gp_weight": 1.0, "sparsity_weight": {"dgmw": 0.001, "dgma": 0.001},
             "critic_width": 32, "base_width": None},
    "cifar10": {"lr": 2e-4, "epochs": 251, "gp_weight": 0.6, "sparsity_weight": {"dgmw": 0.001, "dgma": 0.001},
                "critic_width": 128, "base_width": 20, "solver_augment": "translation,cutout"},
}
# The critic each generator family trains with unless told otherwise. Under WGAN-GP the residual critic let
# split-CIFAR-10's first task collapse to one image per class (A2 38.90); of seven critics tried only SNGAN's, a
# spectrally normalised projection critic under the hinge loss, kept them apart (A2 50.20; the DCGAN's 66.50):
# docs/experiments/2026-12-04-split-cifar10-resnet.md.
ARCH_SETTINGS = {"dcgan": {}, "resnet": {"critic_head": "projection", "gan_loss": "hinge", "spectral_norm": True}}
RECIPES["colour"] = {**RECIPES["svhn"], "solver_augment": "translation,cutout"}  # custom colour data
SOURCE_RECIPE = {"builtin": "mnist", "mnist": "mnist", "fashion-mnist": "mnist", "svhn": "svhn", "cifar10": "cifar10"}
# The settings for which None is a value of its own (off, or "use the other setting"), read from their types.
NULLABLE_SETTINGS = frozenset(name for name, kind in typing.get_type_hints(TrainingConfig).items()
                              if type(None) in typing.get_args(kind))


def recipe_for(source: str, channels: int) -> str:
    """The recipe of a source spec ('mnist', 'folder:PATH', ...); custom data is judged by its channels."""
    return SOURCE_RECIPE.get(source.partition(":")[0], recipe_for_channels(channels))


def recipe_for_channels(channels: int) -> str:
    """The recipe for custom data: MNIST's for grey images, the colour recipe for colour ones."""
    return "mnist" if channels == 1 else "colour"


def paper_config(recipe: str, variant: str, arch: str = "dcgan", **overrides) -> TrainingConfig:
    """The paper's settings for `recipe` and `variant`, with the critic of the generator family `arch`
    (ARCH_SETTINGS) and any field overridden.

    An override is kept as given, None included where a setting takes None
    (solver_epochs=None: the solver phase runs solver_steps alone;
    average_decay=None: no moving average). For a setting that needs a value
    (epochs, lr, critic_width, ...), None leaves the recipe's, so that a
    budget whose fields are optional passes through as it is.
    """
    r = RECIPES[recipe]
    settings = {"lr": r["lr"], "epochs": r["epochs"], "gp_weight": r["gp_weight"], "critic_width": r["critic_width"],
                "sparsity_weight": r["sparsity_weight"][variant], "s_max": S_MAX[variant],
                "solver_augment": r.get("solver_augment", TrainingConfig.solver_augment),  # colour wants cutout too
                **ARCH_SETTINGS[arch]}
    settings.update({k: v for k, v in overrides.items() if v is not None or k in NULLABLE_SETTINGS})
    return TrainingConfig(**settings)


def base_width_for(recipe: str) -> int | None:
    """The generator's initial base width for a recipe; None means the variant's default (6 DGMw, 20 DGMa)."""
    return RECIPES[recipe]["base_width"]
