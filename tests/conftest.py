"""Shared fixtures; the tiny networks and data themselves live in tiny.py."""

from __future__ import annotations

import numpy as np
import pytest

from tiny import tiny_set


@pytest.fixture
def tiny_npz(tmp_path):
    """An .npz source with four 16x16 grey classes."""
    data = tiny_set()
    path = tmp_path / "tiny.npz"
    np.savez(path, x=data.images[:, 0].numpy(), y=data.labels.numpy())
    return path
