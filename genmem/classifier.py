"""Training a classifier from any stream of batches, and using it: the yardstick of every accuracy genmem reports.

Batches are (uint8 images, targets) with targets already mapped to the
classifier's outputs, so real data, replay from a memory (a `ReplayStream`,
the same path users train with) or a mix of both go through one loop.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genmem.augment import diff_augment, parse_policy
from genmem.config import MAX_CLASSIFIER_EPOCHS, MAX_SEED
from genmem.errors import InvalidSetting
from genmem.nets import Classifier, dcgan_init_
from genmem.pixels import to_unit_range


@dataclass
class ClassifierConfig:
    width: int = 32  # channels of the first convolution, doubling per layer (the critic's trunk)
    lr: float = 1e-3
    batch_size: int = 128
    epochs: float = 3.0  # passes over the images of the classes trained on (real and replayed alike)
    augment: str = ""  # genmem.augment policy for every training batch, e.g. "translation"; "" for none
    seed: int = 0

    def __post_init__(self):
        """Refuse what could never train or finish here, not after a memory has been sampled for it."""
        if self.width < 1 or self.batch_size < 1:
            raise InvalidSetting(f"classifier width {self.width} and batch size {self.batch_size} must be 1 or more")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InvalidSetting(f"classifier learning rate {self.lr} is out of range: give a finite number above 0")
        if not 0 < self.epochs <= MAX_CLASSIFIER_EPOCHS:
            raise InvalidSetting(f"classifier epochs {self.epochs} are out of range: give passes over its images "
                                 f"above 0 and at most {MAX_CLASSIFIER_EPOCHS:g}")
        if not 0 <= self.seed <= MAX_SEED:
            raise InvalidSetting(f"classifier seed {self.seed} is out of range: give an integer from 0 to {MAX_SEED}")
        parse_policy(self.augment)

    def to_dict(self) -> dict:
        return asdict(self)


def classifier_optimiser(parameters: Iterable[torch.Tensor], lr: float, steps: int
                         ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """How every classifier genmem trains is optimised (the solver phase's included): Adam with momentum and a
    learning rate decayed to 0 over `steps` by a cosine, not the GAN's optimiser."""
    optimiser = torch.optim.Adam(parameters, lr=lr, betas=(0.9, 0.999))
    return optimiser, torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(steps, 1))


def balanced_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the classes present of each class's mean loss, so that no class outweighs another."""
    losses = F.cross_entropy(logits, targets, reduction="none")
    counts = torch.bincount(targets, minlength=logits.shape[1]).float()
    return (losses / counts[targets]).sum() / (counts > 0).sum()


def shuffled_batches(images: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches of a labelled tensor set, reshuffled every epoch (a set smaller than a batch is one batch)."""
    if len(images) == 0:
        raise ValueError("cannot draw batches from an empty set")
    rng = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, len(images))
    while True:
        order = torch.randperm(len(images), generator=rng)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            pick = order[start: start + batch_size]
            yield images[pick], targets[pick]


def output_targets(labels: torch.Tensor, outputs: dict[int, int]) -> torch.Tensor:
    """Class labels mapped to a classifier's outputs ({label: output})."""
    return torch.tensor([outputs[int(label)] for label in labels])


def relabelled(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], outputs: dict[int, int]
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches whose class labels are mapped to a classifier's outputs."""
    for images, labels in batches:
        yield images, output_targets(labels, outputs)


def mixed_batches(*streams: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One batch from every stream, concatenated (e.g. real images of new classes with replay of old ones)."""
    for parts in zip(*streams):
        yield torch.cat([images.cpu() for images, _ in parts]), torch.cat([t.cpu() for _, t in parts])


def fresh_classifier(channels: int, image_size: int, num_classes: int, width: int, seed: int) -> Classifier:
    """A new Classifier (the critic's trunk), its weights drawn from `seed`."""
    model = Classifier(channels, image_size, num_classes, width)
    dcgan_init_(model, torch.Generator().manual_seed(seed))
    return model


def train_classifier(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], steps: int, num_classes: int,
                     channels: int, image_size: int, config: ClassifierConfig, device: str | torch.device = "cpu",
                     model: nn.Module | None = None, progress: bool = False, desc: str = "classifier") -> nn.Module:
    """Train `model` (any network of images to logits; a fresh Classifier by default) for `steps` batches with
    Adam and a cosine-decayed rate.

    With config.augment every batch is augmented afresh (whole-pixel shifts,
    say), which helps a classifier trained on generated images generalise to
    real ones (BENCHMARKS.md).
    """
    device = torch.device(device)
    policy = parse_policy(config.augment)
    rng = torch.Generator(device).manual_seed(config.seed)
    if model is None:
        model = fresh_classifier(channels, image_size, num_classes, config.width, config.seed)
    model.to(device).train()
    optimiser, schedule = classifier_optimiser(model.parameters(), config.lr, steps)
    with torch.enable_grad():
        for images, targets in tqdm(itertools.islice(batches, steps), total=steps, desc=desc, disable=not progress,
                                    leave=False, dynamic_ncols=True):
            inputs = diff_augment(to_unit_range(images.to(device)), policy, rng)
            loss = F.cross_entropy(model(inputs), targets.to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def predict(logits_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device: str | torch.device = "cpu",
            batch_size: int = 1024, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Predicted output index per uint8 image; `allowed` restricts the choice to some outputs (seen classes)."""
    predictions = []
    for start in range(0, len(images), batch_size):
        logits = logits_of(to_unit_range(images[start: start + batch_size].to(device)))
        if allowed is not None:
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
        predictions.append(logits.argmax(1).cpu())
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)
