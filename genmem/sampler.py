"""Fast class-conditional sampling from one version of a memory.

At load, every task's generator is frozen once (genmem.frozen): masks and slices fixed into plain
weights. Precision 'float32' is the masked forward pass bit for bit; 'auto' on the CPU is float32
with the BatchNorms folded and two layers as matrix products, faster and rounded differently (a
uint8 pixel one level off in a few per million; docs/ALGORITHM.md §17); half precisions are folded
too.

Reproducible by construction: class c's images under seed s come from a noise stream seeded by
(s, c) alone, and a frozen network computes each image on its own, so they do not depend on which
other classes a request names, on their order, on the request's size or on how the work is split
into chunks: the images are identical, floats and uint8 alike. On the CPU every chunk runs on one
of the process's sampling threads, each computing alone (one intra-op thread): with several
threads per convolution, oneDNN splits odd batches inside an image and rounds some pixels
differently. Chunks of one request run in parallel on those threads. CPU and CUDA draw different
noise streams.
"""

from __future__ import annotations

import math
import mmap
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import accumulate

import numpy as np
import torch

from genmem.artifact import ClassInfo, ClassTable
from genmem.errors import GenmemError, InvalidSetting
from genmem.frozen import FrozenNetwork, freeze

PRECISIONS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CPU_CHUNK = 256  # images per network call: a 32 px task's activations stay within a core's L2 cache
CUDA_CHUNK = 65536
MAPPED_BYTES = 1 << 20  # CPU results and noise from this size on get a mapping of their own

_workers: ThreadPoolExecutor | None = None
_workers_lock = threading.Lock()


def class_seed(seed: int, label: int) -> int:
    """A well-mixed 63-bit seed for one class's noise stream."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, label & 0xFFFFFFFF]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def result_empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor; on the CPU from MAPPED_BYTES on, in a memory mapping of its own, handed back to the
    system when the tensor is freed whatever malloc's thresholds. A server lets malloc keep buffers below 32 MiB,
    so that the sampling threads reuse their chunks' memory (genmem.admission); a reply must not be kept."""
    nbytes = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or nbytes < MAPPED_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).view(shape)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto' is float16 on CUDA and (folded) float32 on the CPU."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise InvalidSetting(f"unknown precision {precision!r}: use auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def _compute_alone() -> None:
    """Give this thread one intra-op thread, leaving every other thread's setting as it was."""
    from threadpoolctl import threadpool_limits

    torch.get_num_threads()  # torch sizes a thread's OpenMP team on its first use: let it, then limit it
    threadpool_limits(1, user_api="openmp")


def sampling_threads() -> ThreadPoolExecutor:
    """The process's CPU sampling threads, as many as torch's intra-op threads when first asked for."""
    global _workers
    with _workers_lock:
        if _workers is None:
            _workers = ThreadPoolExecutor(torch.get_num_threads(), "genmem-sampler", initializer=_compute_alone)
        return _workers


def _forget_threads() -> None:
    """A forked child has none of its parent's threads: it starts its own when it samples."""
    global _workers, _workers_lock
    _workers, _workers_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_threads)


class Sampler:
    """Draws images of the classes of one loaded version, grouped by task, in chunks of `chunk` images."""

    def __init__(self, generator: torch.nn.Module, classes: ClassTable, version: str,
                 device: str | torch.device = "cpu", precision: str = "auto", chunk: int | None = None):
        self.device = torch.device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.exact = precision == "float32"
        self.spec = generator.spec
        self.classes = classes
        self.version = version
        self.chunk = chunk or (CUDA_CHUNK if self.device.type == "cuda" else CPU_CHUNK)
        self.networks: list[FrozenNetwork] = [freeze(generator, task, self.device, self.dtype, self.exact)
                                              for task in range(len(generator.tasks))]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.spec.channels, self.spec.image_size, self.spec.image_size

    def noise(self, info: ClassInfo, count: int, seed: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Class `info`'s first `count` noise vectors under `seed` (into `out` if given)."""
        rng = torch.Generator(self.device).manual_seed(class_seed(seed, info.label))
        return torch.randn(count, self.spec.noise_dim, generator=rng, device=self.device, out=out)

    @torch.inference_mode()
    def sample(self, counts: Mapping[int | str, int], seed: int = 0, as_uint8: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels for {class (label or name): count}, classes in the order given, each contiguous.

        uint8 [N, C, H, W] by default; floats in [-1, 1] with as_uint8=False.
        Images stay on the sampler's device; labels are on the CPU.
        """
        wanted = [(self.classes.resolve(key), int(n)) for key, n in counts.items()]
        for info, n in wanted:
            if n < 0:
                raise GenmemError(f"count for class {info.name!r} is {n}; counts must be 0 or more")
        total = sum(n for _, n in wanted)
        dtype = torch.uint8 if as_uint8 else torch.float32
        images = result_empty(total, *self.image_shape, dtype=dtype, device=self.device)
        labels = torch.empty(total, dtype=torch.long)
        by_task: dict[int, list[tuple[ClassInfo, int, int]]] = {}
        start = 0
        for info, n in wanted:
            by_task.setdefault(info.task, []).append((info, n, start))
            labels[start: start + n] = info.label
            start += n
        run = self._run_on_cpu if self.device.type == "cpu" else self._run_here
        run(self._chunks(by_task, seed, images, as_uint8))
        return images, labels

    def _chunks(self, by_task: dict, seed: int, images: torch.Tensor, as_uint8: bool
                ) -> Iterator[Callable[[], None]]:
        """Per task, its classes' noise as one stream cut into chunks: each a call that draws and places them."""
        for task, parts in by_task.items():
            rows = list(accumulate((n for _, n, _ in parts), initial=0))  # each class's first row in the stream
            noise = result_empty(rows[-1], self.spec.noise_dim, dtype=torch.float32, device=self.device)
            for (info, n, _), row in zip(parts, rows):
                self.noise(info, n, seed, out=noise[row: row + n])
            index = torch.cat([torch.full((n,), info.index, device=self.device) for info, n, _ in parts])
            for start in range(0, rows[-1], self.chunk):
                end = min(start + self.chunk, rows[-1])
                places = []  # (row in the chunk, row in `images`, count) of each class the chunk holds
                for row, (_, n, first) in zip(rows, parts):
                    a, b = max(row, start), min(row + n, end)
                    if a < b:
                        places.append((a - start, first + a - row, b - a))
                yield partial(draw, self.networks[task], noise[start:end], index[start:end], images, places, as_uint8)

    @staticmethod
    def _run_here(calls: Iterator[Callable[[], None]]) -> None:
        for call in calls:
            call()

    @staticmethod
    def _run_on_cpu(calls: Iterator[Callable[[], None]]) -> None:
        """Each call on a sampling thread; the calls are made (noise drawn) while earlier ones run."""
        threads = sampling_threads()
        for future in [threads.submit(call) for call in calls]:
            future.result()


def draw(network: FrozenNetwork, noise: torch.Tensor, index: torch.Tensor, images: torch.Tensor,
         places: list[tuple[int, int, int]], as_uint8: bool) -> None:
    """Run one chunk and copy its images to their places: (row in the chunk, row in `images`, count)."""
    with torch.inference_mode():
        out = network(noise, index).float()  # a fresh tensor (half precision: converted), so changed in place
        if as_uint8:
            out = out.add_(1).mul_(127.5).round_().clamp_(0, 255)  # genmem.pixels.to_uint8, in place
        for row, first, n in places:
            images[first: first + n].copy_(out[row: row + n])
