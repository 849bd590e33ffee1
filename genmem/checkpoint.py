"""Checkpoints inside a task: a learn-task that is killed continues from its last saved epoch.

A version is written only when its task ends, so without checkpoints a task
that a pre-empted or time-limited machine cuts off is lost whole (a task of
the paper's CIFAR-10 profile takes minutes of a GPU, more with every class).
With them, `learn_task` saves at epoch boundaries, at most every so many
seconds, everything its remaining epochs read: the generator (grown, with the
task's branch), the critic, the mask embeddings, both Adam optimisers'
moments, the moving average, the random generator's state and the epoch and
step counters. Restored into the same objects, the rest of the task takes the
very steps an uninterrupted one would, so the version it writes is
bit-identical (tests/test_checkpoint.py). A save after the last epoch lets a
kill in the solver phase skip the GAN.

A checkpoint belongs to one task: its key is a digest of the parent version,
the classes, every training setting, the device type and the task's images.
One with another key, or a damaged one, is not used, and this task's first
save replaces it. It is one safetensors file of the memory with its counters
as JSON metadata (no pickle), written atomically and removed when the next
version is committed (genmem.store).

Under torchrun every rank holds the same state, so rank 0 alone saves, when
its clock says so (the others follow its decision), and every rank restores
from the file, which must be on storage they all see, as the memory is. A
task may continue on another number of ranks: it then equals an
uninterrupted run up to float rounding, as data-parallel runs do.

The critic step adds what it holds beyond its network and optimiser
(`state()`): for a differentially private task, the RDP accountant's history
and the Poisson sampler's random stream (genmem.private), so a continued DP
task counts exactly the steps an uninterrupted one does and spends the same
epsilon.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from torch import nn

from genmem import canonical
from genmem.distributed import ONE_PROCESS, DataParallel, SingleProcess
from genmem.ema import GeneratorAverage
from genmem.errors import CorruptMemory, GenmemError
from genmem.nets import Generator

if TYPE_CHECKING:
    from genmem.critic import CriticStep
    from genmem.private import PrivateCritic
from genmem.store import MemoryStore, VersionWriter

METADATA_KEY = "genmem_checkpoint"
MAX_HEADER_BYTES = 16 * 2**20  # a checkpoint's safetensors header lists a few hundred tensors: kilobytes


def task_key(parent_sha256: str | None, labels: list[int], config: dict, device: torch.device,
             images: torch.Tensor, class_index: torch.Tensor) -> str:
    """A digest of everything that decides a task's training; a checkpoint continues only a task with its key."""
    digest = hashlib.sha256(json.dumps({"parent": parent_sha256, "labels": labels, "config": config,
                                        "device": device.type}, sort_keys=True).encode())
    for tensor in (images, class_index):
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class TrainingState:
    """The live objects of a task's GAN training that later epochs read: saved from, and restored into, in place."""

    generator: Generator
    critic: nn.Module
    embeddings: list[nn.Parameter]
    optimisers: dict[str, torch.optim.Optimizer]
    average: GeneratorAverage | None
    rng: torch.Generator
    step: CriticStep | PrivateCritic | None = None  # the critic step, for what it holds besides `critic`

    def tensors(self) -> dict[str, torch.Tensor]:
        found = {f"generator.{k}": v for k, v in self.generator.state_dict().items()}
        found |= {f"critic.{k}": v for k, v in self.critic.state_dict().items()}
        found |= {f"embedding.{i}": e for i, e in enumerate(self.embeddings)}
        for name, optimiser in self.optimisers.items():
            for index, entries in optimiser.state_dict()["state"].items():
                found |= {f"optimiser.{name}.{index}.{k}": v for k, v in entries.items()}
        if self.average is not None:
            found |= {f"average.{i}": s for i, s in enumerate(self.average.average.shadow)}
        found["rng"] = self.rng.get_state()
        if self.step is not None:
            found |= {f"critic_step.{k}": v for k, v in self.step.state().items()}
        return {k: v.detach().cpu().contiguous().clone() for k, v in found.items()}

    @torch.no_grad()
    def load(self, tensors: dict[str, torch.Tensor], average_steps: int) -> None:
        """Overwrite every object with the saved tensors; a missing or misshapen one raises KeyError, IndexError,
        RuntimeError or ValueError."""
        self.generator.load_state_dict(_under(tensors, "generator."))
        self.critic.load_state_dict(_under(tensors, "critic."))
        for index, embedding in enumerate(self.embeddings):
            embedding.copy_(tensors[f"embedding.{index}"])
        for name, optimiser in self.optimisers.items():
            params = [p for group in optimiser.param_groups for p in group["params"]]
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in _under(tensors, f"optimiser.{name}.").items():
                index, entry = key.split(".", 1)
                if entry != "step" and value.shape != params[int(index)].shape:  # Adam would not check
                    raise ValueError(f"the {name} optimiser's {entry} {index} has the wrong shape")
                state.setdefault(int(index), {})[entry] = value
            optimiser.load_state_dict({**optimiser.state_dict(), "state": state})
        if self.average is not None:
            for index, shadow in enumerate(self.average.average.shadow):
                shadow.copy_(tensors[f"average.{index}"])
            self.average.average.steps = average_steps
        self.rng.set_state(tensors["rng"])
        if self.step is not None:
            self.step.load_state(_under(tensors, "critic_step."))


def _under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


@dataclass
class Progress:
    """Where a restored task stands: the next epoch to run, optimiser steps taken, the last epoch's losses."""

    epoch: int
    step: int
    losses: dict[str, float]


class Checkpointing:
    """Saves a task's state into its memory every `every` seconds (None: never), and restores a matching one.

    classes, epochs: the task's labels and epochs, recorded for `pending`. ranks: this process's place among
    data-parallel ranks. notice: where to say that a checkpoint was used or passed over (a progress bar's
    write, say).
    """

    def __init__(self, writer: VersionWriter, key: str, every: float | None, classes: list[int], epochs: int,
                 ranks: DataParallel | SingleProcess = ONE_PROCESS, notice: Callable[[str], None] = lambda line: None):
        self.writer, self.key, self.every, self.ranks, self.notice = writer, key, every, ranks, notice
        self.about = {"classes": classes, "epochs": epochs}  # for people (`genmem info`); the key decides
        self.saved_at = time.monotonic()

    def restore(self, state: TrainingState) -> Progress | None:
        """Load the memory's checkpoint into `state` if it is this task's; None (state untouched) otherwise."""
        progress = self._restore(state)
        outcome = json.dumps(None if progress is None else [progress.epoch, progress.step]).encode()
        if not self.ranks.all_equal(hashlib.sha256(outcome).digest()):
            raise GenmemError(f"the ranks read different task checkpoints in {self.writer.store.path}; keep the "
                              f"memory on storage that every rank sees")
        return progress

    def _restore(self, state: TrainingState) -> Progress | None:
        try:
            data = self.writer.store.checkpoint()
            if data is None:
                return None
            meta = json.loads(_metadata(data)[METADATA_KEY])
            if meta["key"] != self.key:
                self.notice(f"not using the task checkpoint in {self.writer.store.path}: it was taken for another "
                            f"task or other settings; this task starts at epoch 1 and replaces it when it saves")
                return None
            tensors = load_tensors(data)
            progress = Progress(int(meta["epoch"]), int(meta["step"]), dict(meta["losses"]))
            snapshot = state.tensors(), _average_steps(state)  # to put back if the checkpoint turns out not to fit
            try:
                state.load(tensors, int(meta["average_steps"]))
            except (KeyError, IndexError, RuntimeError, ValueError):
                state.load(*snapshot)
                raise
        except (CorruptMemory, SafetensorError, KeyError, IndexError, RuntimeError, ValueError, TypeError,
                UnicodeDecodeError):  # a link or a pipe there too: saving refuses it, the next version removes it
            self.notice(f"not using the task checkpoint in {self.writer.store.path}: it is damaged; this task starts "
                        f"at epoch 1 and replaces it when it saves")
            return None
        self.notice(f"continuing from the task checkpoint after epoch {progress.epoch}")
        return progress

    def after_epoch(self, state: TrainingState, progress: Progress, last: bool) -> None:
        """Save if `every` seconds have passed since the last save (always after the last epoch, if saving)."""
        if self.every is None or not self.ranks.rank0_decides(last or time.monotonic() - self.saved_at >= self.every):
            return
        self.saved_at = time.monotonic()
        if self.ranks.rank != 0:  # every rank holds the same state; rank 0 writes it
            return
        meta = {"key": self.key, "epoch": progress.epoch, "step": progress.step, "losses": progress.losses,
                "average_steps": _average_steps(state), **self.about}
        self.writer.save_checkpoint(canonical.save(state.tensors(), {METADATA_KEY: json.dumps(meta)}))


def _average_steps(state: TrainingState) -> int:
    return state.average.average.steps if state.average is not None else 0


def pending(store: MemoryStore) -> dict | None:
    """What the memory's checkpoint holds, for people: its classes, epoch and epochs and size (or that it is
    damaged: unreadable, a link, not a plain file); None without one. Reads its header only: `genmem info` and
    the server's info route call this while a task may be writing tens of MiB there."""
    if not store.has_checkpoint():
        return None
    try:
        size = int.from_bytes(store.checkpoint(limit=8) or b"", "little")
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"a header of {size} bytes")
        meta = json.loads(_metadata(store.checkpoint(limit=8 + size) or b"")[METADATA_KEY])
        about = {"classes": list(meta["classes"]), "epoch": int(meta["epoch"]), "epochs": int(meta["epochs"]),
                 "damaged": False}
    except (CorruptMemory, KeyError, ValueError, TypeError, UnicodeDecodeError):
        about = {"damaged": True}
    try:
        return {**about, "bytes": store.checkpoint_size()}
    except FileNotFoundError:  # the task finished meanwhile
        return None


def _metadata(data: bytes) -> dict[str, str]:
    """The JSON metadata of safetensors bytes, or of their first 8 + header-size bytes (the library reads it
    only from files)."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8: 8 + size])["__metadata__"]
