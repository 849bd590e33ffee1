"""Pixels as data sets hold them (uint8 in [0, 255]) and as the networks see them (floats in [-1, 1])."""

from __future__ import annotations

import torch


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to floats in [-1, 1], the generator's output range."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] to uint8 pixels, what an image data loader yields."""
    return ((images.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
