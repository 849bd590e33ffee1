"""Holding a random share of a task's images out of training, so that an audit can use them as non-members.

The manifest records which images were held out (their positions among the
task's images, in the source's order), the seed, and a sha256 of the task's
images, never the images themselves: `genmem audit` reads the same source
again, checks the hash, and splits it the same way.
"""

from __future__ import annotations

import hashlib

import torch

from genmem.data import ImageSet
from genmem.errors import DataError, InvalidSetting


def images_sha256(images: torch.Tensor) -> str:
    """A fingerprint of a task's images, to check that an audit reads the very images the task learned from."""
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()


def hold_out(task_data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, dict]:
    """The images to train on, and the manifest's record of the held-out share (a stratified random sample)."""
    if not 0 <= fraction < 1:
        raise InvalidSetting(f"--holdout must be a fraction in [0, 1), got {fraction}")
    rng = torch.Generator().manual_seed(seed)
    held = []
    for label in sorted(set(task_data.labels.tolist())):
        rows = torch.nonzero(task_data.labels == label).flatten()
        count = round(fraction * len(rows))
        if count >= len(rows):
            raise DataError(f"holding out {fraction:.0%} of class {task_data.class_names[label]!r} leaves no image "
                            f"to train on; hold out less")
        held.append(rows[torch.randperm(len(rows), generator=rng)[:count]])
    held_rows = torch.sort(torch.cat(held)).values if held else torch.empty(0, dtype=torch.long)
    keep = torch.ones(len(task_data.labels), dtype=torch.bool)
    keep[held_rows] = False
    record = {"fraction": fraction, "seed": seed, "count": len(held_rows), "indices": held_rows.tolist(),
              "images_sha256": images_sha256(task_data.images)}
    train = ImageSet(task_data.images[keep], task_data.labels[keep], task_data.class_names, task_data.source)
    return train, record


def split_recorded(task_data: ImageSet, record: dict, task: int) -> tuple[ImageSet, ImageSet]:
    """A task's images split as its manifest recorded: (trained on, held out); the images must be the same."""
    if images_sha256(task_data.images) != record["images_sha256"]:
        raise DataError(f"the images given for task {task} are not the ones it learned from (their sha256 differs "
                        f"from the manifest's); pass the source and --data-dir that learn-task used")
    held = torch.zeros(len(task_data.labels), dtype=torch.bool)
    held[torch.tensor(record["indices"], dtype=torch.long)] = True
    parts = [ImageSet(task_data.images[mask], task_data.labels[mask], task_data.class_names, task_data.source)
             for mask in (~held, held)]
    return parts[0], parts[1]
