"""Samples as an image folder: one sub-folder of PNGs per class, as torchvision's ImageFolder reads them.

ImageFolder numbers classes by sorting the folder names alphabetically, so
each folder is named by its label, zero-padded to the widest label, then its
name when that differs ("03_cat"): alphabetical order is label order, and
ImageFolder's class i is the i-th smallest label written. The label itself
is the number before the first underscore (`label_of_folder`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from PIL import Image

from genmem.errors import GenmemError


def folder_names(names: dict[int, str]) -> dict[int, str]:
    """{label: folder name} for the classes written; alphabetical order of the names is label order."""
    if any(label < 0 for label in names):
        raise GenmemError("an image folder needs labels of 0 or more")
    width = len(str(max(names, default=0)))
    folders = {}
    for label, name in names.items():
        safe = re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-.")
        folders[label] = f"{label:0{width}d}" + (f"_{safe}" if safe and name != str(label) else "")
    return folders


def label_of_folder(folder: str) -> int:
    """The label a folder written here stands for ("03_cat" -> 3)."""
    return int(folder.split("_", 1)[0])


def write_image_folder(directory: str | os.PathLike, images: torch.Tensor, labels: torch.Tensor,
                       names: dict[int, str]) -> dict[int, Path]:
    """Write uint8 images [N, C, H, W] as DIRECTORY/<folder>/<index>.png; returns {label: folder}.

    The directory must be new or empty, so that no stale image joins a class.
    """
    directory = Path(directory)
    if images.dtype != torch.uint8:
        raise GenmemError("an image folder needs uint8 images; ask for uint8 output")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise GenmemError(f"{directory} already exists and is not an empty folder; name a new one")
    present = dict.fromkeys(labels.tolist())
    named = folder_names({label: names.get(label, str(label)) for label in present})
    folders = {label: directory / name for label, name in named.items()}
    for folder in folders.values():
        folder.mkdir(parents=True)
    count = {label: 0 for label in present}
    for image, label in zip(images.cpu(), labels.tolist()):
        pixels = image.permute(1, 2, 0).numpy()
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(
            folders[label] / f"{count[label]:05d}.png")
        count[label] += 1
    return folders
