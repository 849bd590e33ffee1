"""Replay for any classifier: class-balanced batches streamed from a memory, local or served over HTTP.

    stream = ReplayStream("digits.mem", batch_size=128)                 # a memory on disk
    stream = ReplayStream("http://127.0.0.1:8000", batch_size=128)      # the same, from `genmem serve`
    for images, labels in DataLoader(stream, batch_size=None): ...

Both sources expose the same `ReplaySource` interface, so a training loop
switches between them with one argument. Batch b under seed s is a pure
function of (s, b): the stream is reproducible, and DataLoader workers split
the batch indices between them instead of repeating each other.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from genmem.artifact import ClassTable
from genmem.errors import GenmemError


class ReplaySource(Protocol):
    """What a stream draws from: a local `Sampler` or a `ReplayClient`."""

    classes: ClassTable
    version: str

    def sample(self, counts: Mapping[int | str, int], seed: int = 0, as_uint8: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]: ...


def open_replay(source: str | os.PathLike | ReplaySource, version: str | None = None, token: str | None = None,
                device: str | torch.device = "cpu") -> ReplaySource:
    """A replay source from a memory path, a server URL, or an object that already is one."""
    if hasattr(source, "sample") and hasattr(source, "classes"):
        return source
    text = os.fspath(source)
    if text.startswith(("http://", "https://")):
        from genmem.client import ReplayClient

        return ReplayClient(text, token=token, version=version)
    from genmem.memory import Memory

    return Memory(text).sampler(version, device)


def balanced_counts(classes: Sequence[int], batch_size: int, batch_index: int) -> dict[int, int]:
    """batch_size spread evenly over classes; the remainder rotates, so every class gets its share over batches."""
    share, extra = divmod(batch_size, len(classes))
    return {label: share + (1 if (i - batch_index) % len(classes) < extra else 0) for i, label in enumerate(classes)}


def batch_seed(seed: int, batch_index: int) -> int:
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, batch_index]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


class ReplayStream(IterableDataset):
    """Class-balanced replay batches (images, labels) of a memory's classes.

    classes: labels or names to replay (default: all). batches: how many to
    yield (default: endless). Images are uint8 [B, C, H, W] unless
    as_uint8=False, grouped by class within a batch. Use with
    DataLoader(stream, batch_size=None).
    """

    def __init__(self, source: str | os.PathLike | ReplaySource, classes: Sequence[int | str] | None = None,
                 batch_size: int = 64, batches: int | None = None, seed: int = 0, version: str | None = None,
                 token: str | None = None, device: str | torch.device = "cpu", as_uint8: bool = True):
        if batch_size < 1:
            raise GenmemError(f"batch_size must be at least 1, got {batch_size}")
        self.source, self.token, self.device = source, token, device
        self.requested = list(classes) if classes is not None else None
        self.batch_size, self.batches, self.seed, self.as_uint8 = batch_size, batches, seed, as_uint8
        # Connect now and pin the version: every copy (DataLoader workers) replays it for the whole run.
        self._replay: ReplaySource | None = open_replay(source, version, token, device)
        self._opened_in = os.getpid()
        self.version = self._replay.version

    def __getstate__(self) -> dict:
        """Copies (DataLoader workers under spawn) open their own source: a sampler or HTTP client stays here."""
        return {**self.__dict__, "_replay": None}

    @property
    def replay(self) -> ReplaySource:
        """The pinned version's source; a forked or spawned DataLoader worker opens its own (no shared sockets)."""
        if self._replay is None or self._opened_in != os.getpid():
            self._replay = open_replay(self.source, self.version, self.token, self.device)
            self._opened_in = os.getpid()
        return self._replay

    @property
    def labels(self) -> list[int]:
        keys = self.requested if self.requested is not None else [c.label for c in self.replay.classes]
        labels = [self.replay.classes.resolve(key).label for key in keys]
        if not labels:
            raise GenmemError("no classes to replay")
        return labels

    def __len__(self) -> int:
        if self.batches is None:
            raise TypeError("an endless ReplayStream has no length; pass batches=N")
        return self.batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = get_worker_info()
        first, step = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        indices = itertools.count(first, step) if self.batches is None else range(first, self.batches, step)
        labels = self.labels
        for index in indices:
            counts = balanced_counts(labels, self.batch_size, index)
            yield self.replay.sample(counts, seed=batch_seed(self.seed, index), as_uint8=self.as_uint8)
