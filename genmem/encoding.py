"""Sampled images as bytes: safetensors or .npz for programs, .npy for images alone, PNG grids for people."""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from genmem.canonical import save as save_safetensors
from genmem.errors import GenmemError
from genmem.grids import grid_png

FORMATS = {"safetensors": "application/octet-stream", "npz": "application/octet-stream",
           "npy": "application/octet-stream", "png": "image/png"}


def format_for_path(path: str | os.PathLike) -> str:
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise GenmemError(f"cannot write {path}: the file name must end in {', '.join('.' + f for f in FORMATS)}")
    return fmt


def encode_samples(images: torch.Tensor, labels: torch.Tensor, fmt: str, names: dict[int, str],
                   metadata: dict[str, str] | None = None) -> bytes:
    """images [N, C, H, W] (uint8 or float) and labels [N] in format `fmt`.

    safetensors and npz hold `images` and `labels`; npy holds the images alone
    (labels follow the request's class order); png is a grid, one row per class.
    """
    images, labels = images.cpu(), labels.cpu()
    if fmt == "safetensors":
        return save_safetensors({"images": images.contiguous(), "labels": labels.contiguous()},
                                metadata=metadata or {})
    if fmt in ("npz", "npy"):
        buffer = io.BytesIO()
        if fmt == "npz":
            np.savez(buffer, images=images.numpy(), labels=labels.numpy())
        else:
            np.save(buffer, images.numpy(), allow_pickle=False)
        return buffer.getvalue()
    if fmt == "png":
        if images.dtype != torch.uint8:
            raise GenmemError("a PNG grid needs uint8 images; ask for uint8 output")
        if len(images) == 0:
            raise GenmemError("no images to draw: ask for at least one image")
        rows = [(names.get(label, str(label)), images[labels == label]) for label in dict.fromkeys(labels.tolist())]
        return grid_png(rows)
    raise GenmemError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
