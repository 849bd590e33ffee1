"""Shared fixtures; the tiny networks and data themselves live in tiny.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings

from tiny import tiny_memory, tiny_set

# Hypothesis draws the same examples on every run (seeded from each test's source), so that a failure found in CI
# reproduces anywhere; `pytest --hypothesis-profile explore` draws new ones.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")


@pytest.fixture
def tiny_npz(tmp_path):
    """An .npz source with four 16x16 grey classes."""
    data = tiny_set()
    path = tmp_path / "tiny.npz"
    np.savez(path, x=data.images[:, 0].numpy(), y=data.labels.numpy())
    return path


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory):
    """A memory of two versions (classes 0 and 1, then 2); tests that change a memory change a copy."""
    return tiny_memory(tmp_path_factory.mktemp("two-versions") / "m").path
