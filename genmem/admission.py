"""How much sampling work the replay service takes on at once, so that a burst of large requests cannot exhaust it.

Each sample request claims the bytes of the images it will send before it is
generated, and keeps the claim until its answer has left the server. While
the claims already granted and the new one exceed the budget, the request
waits, up to `wait_seconds`; then it is refused with ServerBusy (HTTP 503 and
Retry-After), which clients retry. A single request larger than the budget is
refused outright (it could never run); at most `max_running` requests generate
at once, whatever their size, since generation itself needs working memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
import time
from collections.abc import Iterator

from genmem.errors import ServerBusy, TooManySamples

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


class Claim:
    """Bytes granted to one request; `release()` (idempotent) hands them back."""

    def __init__(self, admission: "Admission", nbytes: int):
        self.admission, self.nbytes, self.released = admission, nbytes, False

    def release(self) -> None:
        with self.admission.changed:
            if not self.released:
                self.released = True
                self.admission.in_flight -= self.nbytes
                self.admission.changed.notify_all()


class Admission:
    """A budget of bytes in flight, shared by every request of one service."""

    def __init__(self, budget_bytes: int, wait_seconds: float = 30.0, max_running: int = 4):
        self.budget_bytes = budget_bytes
        self.wait_seconds = wait_seconds
        self.in_flight = 0
        self.changed = threading.Condition()
        self.running = threading.BoundedSemaphore(max_running)

    @contextlib.contextmanager
    def generating(self) -> Iterator[None]:
        """One of the `max_running` places to generate in, waited for like bytes."""
        if not self.running.acquire(timeout=self.wait_seconds):
            raise ServerBusy(f"the server is busy (every place to generate images is taken); send the request again "
                             f"in {ServerBusy.retry_after} s")
        try:
            yield
        finally:
            self.running.release()

    def claim(self, nbytes: int) -> Claim:
        """Wait for room for `nbytes`; ServerBusy if none frees up in time, TooManySamples if it never could."""
        if nbytes > self.budget_bytes:
            raise TooManySamples(f"the request would send {nbytes / 2**20:,.1f} MiB of images but this server holds "
                                 f"at most {self.budget_bytes / 2**20:,.1f} MiB in flight: ask for fewer images per "
                                 f"request (or uint8 rather than float32)")
        deadline = time.monotonic() + self.wait_seconds
        with self.changed:
            while self.in_flight + nbytes > self.budget_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServerBusy(f"the server is busy ({self.in_flight / 2**20:,.1f} MiB of images in flight, "
                                     f"at most {self.budget_bytes / 2**20:,.1f} MiB); send the request again in "
                                     f"{ServerBusy.retry_after} s")
                self.changed.wait(left)
            self.in_flight += nbytes
        return Claim(self, nbytes)


def return_large_buffers_to_the_system(threshold: int = 32 << 20) -> bool:
    """Make glibc give every buffer of `threshold` bytes or more its own mapping, returned to the system when freed,
    and let each thread's heap keep at most `threshold` bytes free.

    By default glibc raises its mapping threshold after large frees, and the
    next large replies are carved from per-thread heaps that keep their
    memory: eight worker threads each kept a 20 MB reply's worth resident,
    and the budget bounded the live bytes but not the process's memory.
    Setting it once fixes it (glibc's mallopt); False where there is no glibc.
    The sampler maps its replies and noise on its own from 1 MiB on
    (genmem.sampler.result_empty), so the threshold can be glibc's largest,
    32 MiB: below it each sampling thread keeps its chunks' working memory
    (with both at 1 MiB every chunk faulted its activations in afresh, 60,000
    page faults and a third more CPU time per request of 4,096 MNIST images).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
