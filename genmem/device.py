"""Choosing where tensors live: 'auto' means the GPU when there is one."""

from __future__ import annotations

import torch

from genmem.errors import GenmemError


def resolve_device(name: str) -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N', checked against what this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GenmemError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenmemError(f"device {name!r} asked for, but no CUDA GPU is available here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise GenmemError(f"device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    return device
