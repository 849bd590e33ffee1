"""The replay service: what `genmem serve` does, without the HTTP.

It keeps the memory's latest version loaded and serves samples of it as
bytes. A learner that writes a new version while the service runs is picked
up by `refresh()`: the new version is loaded completely first and then swapped
in by one assignment, so a request that already holds the old sampler
finishes on it and no request ever sees a half-loaded version. A new version
that fails to load (damaged files) is recorded and skipped; the old one stays
served. Older versions asked for by name are loaded on demand and kept in a
small least-recently-used cache, so that a client can pin the version it
started with for a whole training run.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch

from genmem.artifact import ClassTable
from genmem.device import resolve_device
from genmem.encoding import FORMATS, encode_samples
from genmem.errors import InvalidRequest, ServiceUnavailable, TooManySamples
from genmem.memory import Memory
from genmem.replay import balanced_counts
from genmem.sampler import Sampler, resolve_precision

DTYPES = ("uint8", "float32")
PNG_LIMIT = 4096  # a grid is for people; a larger one only costs the server memory


class EncodedSamples(NamedTuple):
    """A sample reply: the bytes, their content type, and headers saying what the bytes hold."""

    body: bytes
    media_type: str
    headers: dict[str, str]
    count: int


def label_runs(labels: torch.Tensor) -> str:
    """Labels in run-length form, "3:100,5:100": what an .npy reply, which holds images alone, cannot carry."""
    values, counts = torch.unique_consecutive(labels, return_counts=True)
    return ",".join(f"{value}:{count}" for value, count in zip(values.tolist(), counts.tolist()))


def requested_counts(classes: ClassTable, counts: Mapping[int | str, int] | None,
                     chosen: Sequence[int | str] | None, total: int | None) -> dict[int | str, int]:
    """{class: n} from either explicit counts, or a total spread evenly over the chosen classes (default: all)."""
    if counts is not None:
        if chosen is not None or total is not None:
            raise InvalidRequest('give either "counts", or "total" with optional "classes", not both')
        return dict(counts)
    if total is None:
        raise InvalidRequest('say how many images: "counts" ({class: n}) or "total" (spread over "classes")')
    labels = [classes.resolve(key).label for key in (chosen if chosen is not None else [c.label for c in classes])]
    if not labels:
        raise InvalidRequest('"classes" is empty: name at least one class, or leave it out for all')
    return balanced_counts(labels, total, 0)


class ReplayService:
    """Samplers of one memory, ready to answer sample requests from any thread."""

    def __init__(self, memory_path: str | os.PathLike, device: str | torch.device = "cpu", precision: str = "auto",
                 max_samples: int = 262144, cache_size: int = 4):
        self.memory = Memory(memory_path)
        self.device = resolve_device(str(device))
        resolve_precision(precision, self.device)  # a bad name fails here, not later as a failed load
        self.precision = precision
        self.max_samples = max_samples
        self.cache_size = cache_size
        self.failed: dict[str, str] = {}  # versions that would not load, and why; a version never changes: no retry
        self._latest: Sampler | None = None
        self._pinned: OrderedDict[str, Sampler] = OrderedDict()
        self._refresh_lock = threading.Lock()
        self._pinned_lock = threading.Lock()
        self.refresh()

    @property
    def version(self) -> str | None:
        """The version served by default, None until one is loaded."""
        latest = self._latest
        return latest.version if latest is not None else None

    @property
    def last_error(self) -> str | None:
        """Why the newest version on disk is not served, if it is not."""
        newest = self.memory.store.latest()
        return self.failed.get(newest) if newest is not None else None

    def refresh(self) -> str | None:
        """Serve the memory's newest version if it is newer than the one served; returns the version served."""
        with self._refresh_lock:  # the watcher and the reload route may ask at once; load each version once
            newest = self.memory.store.latest()
            if newest is None or newest == self.version or newest in self.failed:
                return self.version
            try:
                sampler = self.memory.sampler(newest, self.device, self.precision)
            except Exception as exc:  # whatever a damaged version raises, the old one must stay served
                self.failed[newest] = f"version {newest} could not be loaded: {exc}"
                return self.version
            self._latest = sampler  # the swap: one assignment, after the load has finished
            return sampler.version

    def sampler(self, version: str | None = None) -> Sampler:
        """The sampler of a version: the served one by default, an older one from the cache or the disk."""
        latest = self._latest
        if version in (None, "latest"):
            if latest is None:
                reason = self.last_error or f"memory {self.memory.path} has no finished version yet"
                raise ServiceUnavailable(f"no version is loaded: {reason}; the service picks one up when it appears")
            return latest
        name = self.memory.store.resolve(version)
        if latest is not None and name == latest.version:
            return latest
        with self._pinned_lock:
            if name not in self._pinned:
                self._pinned[name] = self.memory.sampler(name, self.device, self.precision)
                if len(self._pinned) > self.cache_size:
                    self._pinned.popitem(last=False)
            self._pinned.move_to_end(name)
            return self._pinned[name]

    def sample(self, counts: Mapping[int | str, int] | None = None, classes: Sequence[int | str] | None = None,
               total: int | None = None, seed: int = 0, version: str | None = None, fmt: str = "safetensors",
               dtype: str = "uint8") -> EncodedSamples:
        """Sampled images encoded in `fmt`, with headers for the version, image shape, labels and timings."""
        if fmt not in FORMATS:
            raise InvalidRequest(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
        if dtype not in DTYPES:
            raise InvalidRequest(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        sampler = self.sampler(version)
        wanted = requested_counts(sampler.classes, counts, classes, total)
        requested = sum(wanted.values())
        limit = min(self.max_samples, PNG_LIMIT) if fmt == "png" else self.max_samples
        if requested > limit:
            what = "a PNG grid" if limit < self.max_samples else "this server"
            raise TooManySamples(f"the request asks for {requested:,} images but {what} allows at most {limit:,} "
                                 f"per request: split it into several requests")
        start = time.perf_counter()
        images, labels = sampler.sample(wanted, seed=seed, as_uint8=dtype == "uint8")
        images = images.cpu()  # on CUDA, waits for the sampling to finish
        sampled = time.perf_counter()
        names = {c.label: c.name for c in sampler.classes}
        meta = {"memory": str(self.memory.path), "version": sampler.version, "seed": str(seed)}
        body = encode_samples(images, labels, fmt, names, meta)
        encoded = time.perf_counter()
        headers = {
            "X-Genmem-Version": sampler.version,
            "X-Genmem-Image-Shape": ",".join(map(str, sampler.image_shape)),
            "X-Genmem-Dtype": dtype,
            "X-Genmem-Labels": label_runs(labels),
            "Server-Timing": f"sample;dur={(sampled - start) * 1e3:.3f}, encode;dur={(encoded - sampled) * 1e3:.3f}",
        }
        return EncodedSamples(body, FORMATS[fmt], headers, len(labels))
