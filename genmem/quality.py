"""How good replay is, without a GPU: a fixed judge classifier trained on real images scores generated ones.

Two figures per class, both in the judge's terms so that runs are comparable
whenever they share a judge:

    judge accuracy  the share of a class's generated images that the judge puts in that class
                    (is the replay recognisable as its class?)
    Fréchet distance between the class's real and generated images, in the judge's
                    penultimate features pooled over space (is it as varied as the real class?)

The judge is trained once on real images and is not part of any memory; it
only measures. Lower Fréchet distance and higher judge accuracy are better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from genmem.classifier import ClassifierConfig, output_targets, predict, shuffled_batches, train_classifier
from genmem.nets import Classifier
from genmem.pixels import to_unit_range


@dataclass(frozen=True)
class ClassQuality:
    """One class's replay as the judge sees it."""

    judge_accuracy: float  # %, of the generated images
    frechet: float

    def to_dict(self) -> dict[str, float]:
        return {"judge_accuracy": self.judge_accuracy, "frechet": self.frechet}


def train_judge(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int], config: ClassifierConfig,
                device: str | torch.device = "cpu", progress: bool = False) -> Classifier:
    """A classifier of `classes` (its output i is classes[i]) trained on real uint8 images for config.epochs."""
    outputs = {label: i for i, label in enumerate(classes)}
    steps = max(1, round(config.epochs * len(images) / config.batch_size))
    batches = shuffled_batches(images, output_targets(labels, outputs), config.batch_size, config.seed)
    return train_classifier(batches, steps, len(classes), images.shape[1], images.shape[2], config, device,
                            progress=progress, desc="judge")


@torch.no_grad()
def judge_features(judge: Classifier, images: torch.Tensor, device: str | torch.device = "cpu",
                   batch_size: int = 1024) -> torch.Tensor:
    """The judge's last convolutional features of uint8 images, averaged over space: [N, channels], float64."""
    trunk = judge.features[:-1]  # everything but the final Flatten
    out = []
    for start in range(0, len(images), batch_size):
        maps = trunk(to_unit_range(images[start: start + batch_size].to(device)))
        out.append(maps.mean(dim=(2, 3)).double().cpu())
    return torch.cat(out)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D]:

    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), computed with
    symmetric eigendecompositions so that it stays real and needs no SciPy.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least two feature vectors on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def class_quality(judge: Classifier, judge_classes: Sequence[int], generated: torch.Tensor,
                  generated_labels: torch.Tensor, real: torch.Tensor, real_labels: torch.Tensor,
                  device: str | torch.device = "cpu") -> dict[int, ClassQuality]:
    """Per class present in `generated_labels`: judge accuracy and Fréchet distance to that class's real images."""
    predicted = torch.tensor(list(judge_classes))[predict(judge, generated, device)]
    fake_features = judge_features(judge, generated, device)
    real_features = judge_features(judge, real, device)
    scores = {}
    for label in sorted(set(generated_labels.tolist())):
        mine, theirs = generated_labels == label, real_labels == label
        if not bool(theirs.any()):
            raise ValueError(f"no real images of class {label} to compare its replay with")
        scores[label] = ClassQuality(
            judge_accuracy=100.0 * float((predicted[mine] == label).float().mean()),
            frechet=frechet_distance(fake_features[mine], real_features[theirs]))
    return scores


def mean_quality(per_class: dict[int, ClassQuality]) -> ClassQuality:
    """The unweighted mean over classes, as A_t is."""
    n = len(per_class)
    return ClassQuality(sum(q.judge_accuracy for q in per_class.values()) / n,
                        sum(q.frechet for q in per_class.values()) / n)
