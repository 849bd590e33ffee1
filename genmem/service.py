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

A damaged version never takes the service down: at start, and on every
refresh, the newest version that loads is served, every damaged one is
named with the reason in `damaged` (and logged), and a damaged version is
tried again as soon as its files change on disk. Replies never contain the
memory's path on the server, only its name. Work in flight is bounded by
genmem.admission, and large replies are handed over as parts (a header and
views of the tensors) so that the server sends them without first copying
them into one buffer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from genmem.admission import Admission, Claim
from genmem.artifact import ClassTable
from genmem.device import resolve_device
from genmem.encoding import FORMATS, Parts, sample_parts
from genmem.errors import CorruptMemory, InvalidRequest, ServiceUnavailable, TooManySamples
from genmem.memory import Memory
from genmem.names import shown
from genmem.replay import balanced_counts
from genmem.sampler import Sampler, resolve_precision
from genmem.signing import SignatureCheck, signature_path

DTYPES = ("uint8", "float32")
PNG_LIMIT = 4096  # a grid is for people; a larger one only costs the server memory
DEFAULT_MAX_SAMPLES = 65536
DEFAULT_BUDGET_MIB = 256  # images in flight; with the loaded networks, what a small server (1 GB) survives
SEED_RANGE = (-(2**63), 2**64 - 1)  # the sampler uses a seed's low 64 bits

log = logging.getLogger("genmem.service")


class EncodedSamples(NamedTuple):
    """A sample reply: its bytes in parts, their content type, headers saying what they hold, and its claim."""

    parts: Parts  # together the reply; views of the sampled tensors, not copies of them
    media_type: str
    headers: dict[str, str]
    count: int
    claim: Claim | None = None  # the bytes in flight this reply holds until it is sent (sample(keep_claim=True))

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


class Damage(NamedTuple):
    """Why a version is not served, and what its folder looked like then (a change means: try again)."""

    reason: str
    signature: tuple | None


def folder_signature(folder: Path) -> tuple | None:
    """Names, sizes and modification times of a version folder's files: cheap to read, changes on any repair."""
    try:
        return tuple(sorted((entry.name, entry.stat(follow_symlinks=False).st_size,
                             entry.stat(follow_symlinks=False).st_mtime_ns) for entry in os.scandir(folder)))
    except OSError:
        return None


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
        for key, n in counts.items():
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise InvalidRequest(f"the count of class {shown(key)} is {shown(n)}: counts are whole numbers, "
                                     f"0 or more")
        return dict(counts)
    if total is None:
        raise InvalidRequest('say how many images: "counts" ({class: n}) or "total" (spread over "classes")')
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise InvalidRequest(f'"total" is {shown(total)}: a whole number of images, 0 or more')
    labels = [classes.resolve(key).label for key in (chosen if chosen is not None else [c.label for c in classes])]
    if not labels:
        raise InvalidRequest('"classes" is empty: name at least one class, or leave it out for all')
    return balanced_counts(labels, total, 0)


class ReplayService:
    """Samplers of one memory, ready to answer sample requests from any thread.

    name: how replies call the memory (default: its folder's name without suffix), never its path.
    budget_mib, wait_seconds, max_running: the bounds on work in flight (genmem.admission).
    signature: when set, a version is served only if its signature verifies (genmem.signing).
    """

    def __init__(self, memory_path: str | os.PathLike, device: str | torch.device = "cpu", precision: str = "auto",
                 max_samples: int = DEFAULT_MAX_SAMPLES, cache_size: int = 4, name: str | None = None,
                 budget_mib: float = DEFAULT_BUDGET_MIB, wait_seconds: float = 30.0, max_running: int = 2,
                 signature: SignatureCheck | None = None):
        self.memory = Memory(memory_path)
        self.name = name or Path(memory_path).stem
        self.device = resolve_device(str(device))
        resolve_precision(precision, self.device)  # a bad name fails here, not later as a failed load
        self.precision = precision
        self.max_samples = max_samples
        self.cache_size = cache_size
        self.admission = Admission(int(budget_mib * 2**20), wait_seconds, max_running)
        self.signature = signature
        self.damaged: dict[str, Damage] = {}  # versions that would not load, why, and their files then
        self._latest: Sampler | None = None
        self._pinned: OrderedDict[str, Sampler] = OrderedDict()
        self._refresh_lock = threading.Lock()
        self._pinned_lock = threading.Lock()
        self._paths = sorted({str(self.memory.path), str(self.memory.path.resolve())}, key=len, reverse=True)
        self.refresh()

    def public(self, value):
        """A message (or JSON-like data) with the memory's path on this machine replaced by its name, for replies."""
        if isinstance(value, dict):
            return {key: self.public(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.public(item) for item in value]
        if isinstance(value, str):
            for path in self._paths:
                value = value.replace(path, self.name)
        return value

    @property
    def version(self) -> str | None:
        """The version served by default, None until one is loaded."""
        latest = self._latest
        return latest.version if latest is not None else None

    @property
    def last_error(self) -> str | None:
        """Why the newest version on disk is not served, if it is not."""
        newest = self.memory.store.latest()
        damage = self.damaged.get(newest) if newest is not None else None
        return damage.reason if damage is not None else None

    def available(self) -> list[str]:
        """The versions on disk that are not known to be damaged, oldest first."""
        return [name for name in self.memory.versions() if name not in self.damaged]

    def alternatives(self) -> str:
        """What a client asking for a damaged version can do instead."""
        intact = self.available()
        return (f"ask for an intact version ({', '.join(intact)}) until it is repaired" if intact
                else "no version of this memory loads; it must be repaired")

    def describe(self) -> str:
        """One line for people: the version served, and every damaged version with why."""
        served = self.version or "no version"
        damage = "; ".join(d.reason for d in self.damaged.values())
        return f"{served}{' (' + damage + ')' if damage else ''}"

    def refresh(self) -> str | None:
        """Serve the newest version that loads, if it is newer than the one served; returns the version served.

        Versions newer than the served one are tried newest first; each that
        fails is recorded in `damaged` and tried again only once its files
        change, so a watcher may call this every second at the cost of a
        directory listing.
        """
        with self._refresh_lock:  # the watcher and the reload route may ask at once; load each version once
            served = self.version
            for name in reversed(self.memory.versions()):
                if served is not None and int(name[1:]) <= int(served[1:]):
                    break
                signature = self._fingerprint(name)
                known = self.damaged.get(name)
                if known is not None and known.signature == signature:
                    continue
                try:
                    sampler = self._load(name, signature)
                except CorruptMemory:
                    continue
                self._latest = sampler  # the swap: one assignment, after the load has finished
                if self.damaged:
                    log.warning("serving %s, the newest intact version of %s", name, self.name)
                break
            return self.version

    def _fingerprint(self, name: str) -> tuple:
        """What changes when a version's files (or its signature) are repaired."""
        stored = signature_path(self.memory.store, name)
        return folder_signature(self.memory.store.versions_dir / name), \
            folder_signature(stored.parent) if self.signature is not None else None

    def _load(self, name: str, signature: tuple | None = None) -> Sampler:
        """A version's sampler; a version that fails to load is recorded as damaged, logged, and CorruptMemory."""
        try:
            signed = self.signature.verify(self.memory.store, name) if self.signature is not None else None
            generator, manifest = self.memory.load(name)
            if signed is not None and manifest != signed:
                raise CorruptMemory(f"the manifest of version {name} changed between its signature check and its "
                                    f"load; check who writes to the memory")
            sampler = Sampler(generator, ClassTable.from_manifest(manifest), manifest["version"], self.device,
                              self.precision)
        except Exception as exc:  # whatever a damaged version raises, the service must stay up
            reason = self.public(f"version {name} could not be loaded: {exc}")
            self.damaged[name] = Damage(reason, signature)
            log.warning("%s", reason)
            raise CorruptMemory(reason) from None
        self.damaged.pop(name, None)
        return sampler

    def sampler(self, version: str | None = None) -> Sampler:
        """The sampler of a version: the served one by default, an older one from the cache or the disk."""
        latest = self._latest
        if version in (None, "latest"):
            if latest is None:
                reason = self.last_error or f"memory {self.name} has no finished version yet"
                raise ServiceUnavailable(f"no version is loaded: {reason}; the service picks one up when it appears")
            return latest
        name = self.memory.store.resolve(version)
        if latest is not None and name == latest.version:
            return latest
        with self._pinned_lock:
            if name not in self._pinned:
                signature = self._fingerprint(name)
                known = self.damaged.get(name)
                if known is not None and known.signature == signature:  # a client asking again reads nothing
                    raise CorruptMemory(f"{known.reason}; {self.alternatives()}")
                try:
                    self._pinned[name] = self._load(name, signature)
                except CorruptMemory as exc:
                    raise CorruptMemory(f"{exc}; {self.alternatives()}") from None
                if len(self._pinned) > self.cache_size:
                    self._pinned.popitem(last=False)
            self._pinned.move_to_end(name)
            return self._pinned[name]

    def sample(self, counts: Mapping[int | str, int] | None = None, classes: Sequence[int | str] | None = None,
               total: int | None = None, seed: int = 0, version: str | None = None, fmt: str = "safetensors",
               dtype: str = "uint8", keep_claim: bool = False) -> EncodedSamples:
        """Sampled images encoded in `fmt`, with headers for the version, image shape, labels and timings.

        The reply's bytes are claimed from the budget of work in flight before
        sampling starts (waiting for room, or ServerBusy). keep_claim: keep the
        claim until `reply.claim.release()`, as the server does until the
        reply is sent; by default it is handed back on return.
        """
        if fmt not in FORMATS:
            raise InvalidRequest(f"unknown format {shown(fmt)}: use one of {', '.join(FORMATS)}")
        if dtype not in DTYPES:
            raise InvalidRequest(f"unknown dtype {shown(dtype)}: use one of {', '.join(DTYPES)}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise InvalidRequest(f"the seed is {shown(seed)}: a whole number from {SEED_RANGE[0]} to {SEED_RANGE[1]}")
        sampler = self.sampler(version)
        wanted = requested_counts(sampler.classes, counts, classes, total)
        requested = sum(wanted.values())
        limit = min(self.max_samples, PNG_LIMIT) if fmt == "png" else self.max_samples
        if requested > limit:
            what = "a PNG grid" if limit < self.max_samples else "this server"
            asked = f"{requested:,}" if requested.bit_length() < 64 else shown(requested)
            raise TooManySamples(f"the request asks for {asked} images but {what} allows at most {limit:,} "
                                 f"per request: split it into several requests")
        for key in wanted:
            sampler.classes.resolve(key)  # an unknown class is refused before any work is claimed
        pixels = int(np.prod(sampler.image_shape)) * (1 if dtype == "uint8" else 4)
        claim = self.admission.claim(requested * (pixels + 8))
        try:
            reply = self._draw(sampler, wanted, seed, fmt, dtype, claim)
        except BaseException:
            claim.release()
            raise
        if not keep_claim:
            claim.release()
        return reply

    def _draw(self, sampler: Sampler, wanted: dict, seed: int, fmt: str, dtype: str, claim: Claim
              ) -> EncodedSamples:
        with self.admission.generating():
            start = time.perf_counter()
            images, labels = sampler.sample(wanted, seed=seed, as_uint8=dtype == "uint8")
            images = images.cpu()  # on CUDA, waits for the sampling to finish
            sampled = time.perf_counter()
            meta = {"memory": self.name, "version": sampler.version, "seed": str(seed)}
            names = {c.label: c.name for c in sampler.classes}
            parts = sample_parts(images, labels, fmt, names, meta)
            encoded = time.perf_counter()
        headers = {
            "X-Genmem-Version": sampler.version,
            "X-Genmem-Image-Shape": ",".join(map(str, sampler.image_shape)),
            "X-Genmem-Dtype": dtype,
            "X-Genmem-Labels": label_runs(labels),
            "Server-Timing": f"sample;dur={(sampled - start) * 1e3:.3f}, encode;dur={(encoded - sampled) * 1e3:.3f}",
        }
        return EncodedSamples(parts, FORMATS[fmt], headers, len(labels), claim)
