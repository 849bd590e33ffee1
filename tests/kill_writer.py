"""Run as a child process by test_store.py: learn a task into a memory, and SIGKILL ourselves at one stage of the
commit (half-way through writing file N, just before or just after the rename that publishes the version)."""

import os
import signal
import sys

import genmem.store as store
from genmem.memory import Memory

from tiny import tiny_config, tiny_set

memory, stage = sys.argv[1], sys.argv[2]
written = 0
real_write, real_rename = store._write_synced, os.rename


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def dying_write(path, data):
    global written
    if stage == f"file{written}":
        with open(path, "xb") as f:
            f.write(data[: len(data) // 2])
        die()
    written += 1
    real_write(path, data)


def dying_rename(src, dst):
    if stage == "before-rename":
        die()
    real_rename(src, dst)
    if stage == "after-rename":
        die()


store._write_synced = dying_write
store.os.rename = dying_rename
Memory(memory).learn_task(tiny_set(), ["1"], config=tiny_config(), image_size=16, base_width=2, progress=False)
sys.exit("the writer was meant to be killed before finishing")
