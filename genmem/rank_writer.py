"""How the ranks of a data-parallel task (genmem.distributed) end in one version, and how a rank ends.

Only rank 0 takes the memory's lock and writes the version; the other ranks
wait for its verdict (the lock, then the commit) and fail with it. Before
committing, rank 0 checks that every rank's generator weights and masks are
bit-identical. A rank that dies breaks the collectives of the others, so the
whole run fails and no version is written. In one process the writer is the
memory's lock itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator

import torch
import torch.distributed as dist
from safetensors.torch import load as load_safetensors

from genmem.artifact import MASKS_FILE, WEIGHTS_FILE
from genmem.distributed import DataParallel
from genmem.errors import GenmemError
from genmem.store import MemoryStore, VersionWriter


def shutdown(parallel: DataParallel | None) -> None:
    if parallel is not None and dist.is_initialized():
        dist.destroy_process_group()


def finish(parallel: DataParallel | None) -> None:
    """End a rank that has done its work: leave the process group and exit at once with status 0 (one process:
    nothing).

    Once a training step has run, torch's gloo worker threads outlive
    destroy_process_group, and when one of them dropped its last collective
    while the interpreter was tearing down, a rank whose work was written
    died of SIGABRT (about one run in 15 on 2 cores), which torchrun reports
    as a failed job. Skipping the teardown avoids it: all the rank wrote is
    closed by then.
    """
    if parallel is None:
        return
    shutdown(parallel)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@contextlib.contextmanager
def version_writer(store: MemoryStore, parallel: DataParallel | None) -> Iterator[VersionWriter]:
    """The memory's writer: the lock itself in one process; across ranks, rank 0's lock and everyone's verdict.

    Rank 0 holds the lock from here until the version is written; the other
    ranks get a writer that only waits for rank 0's commit and returns its
    version name, or raises its failure.
    """
    if parallel is None:
        with store.writer() as writer:
            yield writer
        return
    if parallel.rank != 0:
        parallel.share_outcome(None)  # raises rank 0's failure to take the lock
        yield _FollowerWriter(store, parallel)
        return
    locked = False
    try:
        with store.writer() as writer:
            locked = True
            parallel.share_outcome(None)
            yield _LeaderWriter(store, parallel, writer)
    except BaseException as exc:
        if not locked:
            parallel.share_outcome(exc)
        raise


def _generator_digest(files: dict[str, bytes]) -> bytes:
    """What must be identical on every rank: the generator's weights and masks, tensor by tensor."""
    digest = hashlib.sha256()
    for file in (WEIGHTS_FILE, MASKS_FILE):
        for name, tensor in sorted(load_safetensors(files[file]).items()):
            digest.update(name.encode())
            digest.update(tensor.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.digest()


class _LeaderWriter(VersionWriter):
    """Rank 0's writer: checks that the ranks agree, commits, and tells them how it went."""

    def __init__(self, store: MemoryStore, parallel: DataParallel, writer: VersionWriter):
        super().__init__(store)
        self.parallel = parallel
        self.writer = writer

    def commit(self, files: dict[str, bytes], manifest: dict) -> str:
        agreed = self.parallel.all_equal(_generator_digest(files))
        try:
            if not agreed:
                raise GenmemError("the ranks ended with different generators; no version written (report this: "
                                  "data-parallel training keeps them identical)")
            name = self.writer.commit(files, manifest)
        except BaseException as exc:
            self.parallel.share_outcome(exc)
            raise
        self.parallel.share_outcome(None)
        return name


class _FollowerWriter(VersionWriter):
    """A rank other than 0: it commits nothing, and returns rank 0's version or raises rank 0's failure."""

    def __init__(self, store: MemoryStore, parallel: DataParallel):
        super().__init__(store)
        self.parallel = parallel

    def commit(self, files: dict[str, bytes], manifest: dict) -> str:
        self.parallel.all_equal(_generator_digest(files))
        self.parallel.share_outcome(None)
        return manifest["version"]
