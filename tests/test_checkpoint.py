"""Checkpoints inside a task: a learn-task stopped mid-way continues to the version an uninterrupted run writes."""

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import genmem.checkpoint
from genmem.checkpoint import Checkpointing
from genmem.cli.render import render_summary
from genmem.errors import CorruptMemory, MemoryNotFound
from genmem.memory import Memory
from genmem.summary import summarise
from genmem.store import CHECKPOINT, VersionWriter

from tiny import tiny_config, tiny_set

TASKS = (["0", "1"], ["2"], ["3"])
EPOCHS = 4
VERSION_FILES = ("generator.safetensors", "masks.safetensors", "solver.safetensors", "samples.png")


class Stopped(Exception):
    """Stands for a kill after a checkpoint was saved."""


def learn(memory: Memory, task: int, seed: int = 0, arch: str = "dcgan", **options) -> str:
    return memory.learn_task(tiny_set(), TASKS[task], config=tiny_config(arch=arch, epochs=EPOCHS, seed=seed),
                             image_size=16, base_width=2, progress=False, arch=arch, **options)


def stop_after_epoch(monkeypatch, epoch: int) -> None:
    """Make Checkpointing raise Stopped right after it handled `epoch`'s end (and saved, if it was due)."""
    handle = Checkpointing.after_epoch

    def after_epoch_then_stop(self, state, progress, last):
        handle(self, state, progress, last)
        if progress.epoch == epoch:
            raise Stopped

    monkeypatch.setattr(Checkpointing, "after_epoch", after_epoch_then_stop)


def version_bytes(memory: Memory, version: str) -> dict[str, bytes]:
    files = memory.store.read(version)[1]
    return {name: files[name] for name in VERSION_FILES}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Both tasks learned without checkpoints: the versions every interrupted run must end at."""
    memory = Memory(tmp_path_factory.mktemp("uninterrupted") / "m")
    return [version_bytes(memory, learn(memory, task)) for task in range(2)]


@pytest.mark.parametrize("task, epoch", [(0, 2), (1, 2), (1, EPOCHS)])  # the last: stopped in the solver phase
def test_a_task_stopped_after_a_checkpoint_continues_to_the_uninterrupted_version_bit_for_bit(
        task, epoch, tmp_path, monkeypatch, uninterrupted):
    memory = Memory(tmp_path / "m")
    for earlier in range(task):
        learn(memory, earlier)
    with monkeypatch.context() as patch:
        stop_after_epoch(patch, epoch)
        with pytest.raises(Stopped):
            learn(memory, task, checkpoint_every=0)
    assert len(memory.versions()) == task, "a stopped task writes no version"
    assert (memory.path / CHECKPOINT).is_file(), "not even a first task's stop deletes its checkpoint"
    if task == 0:
        with pytest.raises(MemoryNotFound, match="first task stopped after a checkpoint: rerun that learn-task"):
            summarise(memory)
    else:
        summary = summarise(memory)
        assert summary["unfinished_task"] == {"classes": [2], "epoch": epoch, "epochs": EPOCHS, "damaged": False,
                                              "bytes": (memory.path / CHECKPOINT).stat().st_size}
        assert f"unfinished a task of labels 2, checkpointed after epoch {epoch} of 4" in render_summary(summary)

    version = learn(memory, task)  # the rerun needs no option to continue its own task's checkpoint
    record = memory.manifest(version)["tasks"][-1]
    assert record["resumed_after_epoch"] == epoch
    assert version_bytes(memory, version) == uninterrupted[task]
    assert not (memory.path / CHECKPOINT).exists(), "the committed version removes the checkpoint"
    assert summarise(memory)["unfinished_task"] is None


def test_a_residual_task_with_class_norms_continues_to_the_uninterrupted_version_bit_for_bit(tmp_path, monkeypatch):
    """As above, for the residual generator with class-conditional BatchNorms and its residual critic."""
    settings = dict(arch="resnet", class_norm=True)
    whole = Memory(tmp_path / "whole")
    expected = [version_bytes(whole, learn(whole, task, **settings)) for task in range(2)]
    memory = Memory(tmp_path / "m")
    learn(memory, 0, **settings)
    with monkeypatch.context() as patch:
        stop_after_epoch(patch, 2)
        with pytest.raises(Stopped):
            learn(memory, 1, checkpoint_every=0, **settings)
    version = learn(memory, 1, **settings)
    assert memory.manifest(version)["tasks"][-1]["resumed_after_epoch"] == 2
    assert version_bytes(memory, version) == expected[1]


def test_a_checkpoint_of_other_settings_or_a_damaged_one_is_not_used(tmp_path, monkeypatch, uninterrupted):
    memory = Memory(tmp_path / "m")
    with monkeypatch.context() as patch:
        stop_after_epoch(patch, 2)
        with pytest.raises(Stopped):
            learn(memory, 0, seed=5, checkpoint_every=0)
    version = learn(memory, 0)  # seed 0, not the checkpoint's 5: starts afresh
    assert "resumed_after_epoch" not in memory.manifest(version)["tasks"][-1]
    assert version_bytes(memory, version) == uninterrupted[0]

    with monkeypatch.context() as patch:
        stop_after_epoch(patch, 3)
        with pytest.raises(Stopped):
            learn(memory, 1, checkpoint_every=0)
    checkpoint = memory.path / CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])  # truncated
    version = learn(memory, 1)
    assert "resumed_after_epoch" not in memory.manifest(version)["tasks"][-1]
    assert version_bytes(memory, version) == uninterrupted[1]

    with monkeypatch.context() as patch:  # a checkpoint of this very task whose optimiser moments do not fit
        stop_after_epoch(patch, 2)
        with pytest.raises(Stopped):
            learn(memory, 2, checkpoint_every=0)
    tensors, header = load_file(checkpoint), safe_open(checkpoint, "pt").metadata()
    moment = next(name for name in tensors if name.startswith("optimiser.critic.") and name.endswith("exp_avg"))
    tensors[moment] = tensors[moment].flatten()[:-1]
    save_file(tensors, checkpoint, metadata=header)
    version = learn(memory, 2)
    assert "resumed_after_epoch" not in memory.manifest(version)["tasks"][-1], "passed over, not crashed on"

    checkpoint.write_bytes(b"\0" * 100)  # not even its header reads
    assert summarise(memory)["unfinished_task"] == {"bytes": 100, "damaged": True}
    assert "a damaged task checkpoint" in render_summary(summarise(memory))


def test_a_checkpoint_that_is_a_link_is_never_read_through_and_goes_with_the_next_version(tmp_path, uninterrupted):
    memory = Memory(tmp_path / "m")
    learn(memory, 0)
    target = tmp_path / "elsewhere.safetensors"
    target.write_bytes(b"not genmem's")
    (memory.path / CHECKPOINT).symlink_to(target)
    assert summarise(memory)["unfinished_task"]["damaged"], "`genmem info` names it instead of failing"
    with pytest.raises(CorruptMemory, match="symbolic link"):
        learn(memory, 1, checkpoint_every=0)  # saving through it is refused
    version = learn(memory, 1)
    assert version_bytes(memory, version) == uninterrupted[1]
    assert not (memory.path / CHECKPOINT).is_symlink() and target.read_bytes() == b"not genmem's"


def test_genmem_info_reads_a_checkpoints_header_not_its_tensors(tmp_path, monkeypatch):
    memory = Memory(tmp_path / "m")
    learn(memory, 0)
    with monkeypatch.context() as patch:
        stop_after_epoch(patch, 2)
        with pytest.raises(Stopped):
            learn(memory, 1, checkpoint_every=0)
    read = []
    whole = type(memory.store).checkpoint
    monkeypatch.setattr(type(memory.store), "checkpoint",
                        lambda store, limit=-1: read.append(limit) or whole(store, limit))
    assert summarise(memory)["unfinished_task"]["epoch"] == 2
    assert read and all(0 < limit < 64 * 1024 for limit in read), read


EPOCH_ENDS = (7, 10, 25, 26, 40, 41, 42, 70)  # seconds after the task's checkpointing started


@pytest.mark.parametrize("every, saved_after", [(0, [1, 2, 3, 4, 5, 6, 7, 8]), (10, [2, 3, 5, 8]), (15, [3, 5, 8]),
                                                (16, [3, 6, 8]), (40, [5, 8]), (3600, [8])])
def test_checkpoints_are_saved_only_as_often_as_asked(tmp_path, monkeypatch, every, saved_after):
    """With epochs ending at EPOCH_ENDS on a clock the test controls, a save comes at the first epoch end at least
    `every` seconds after the previous save (or the start), and after the last epoch, for a kill in the solver
    phase: at 15 s the saves are at 25 s and exactly 15 s later, at 40 s; at 16 s, at 25 s and 41 s."""
    clock = {"now": 0.0}
    monkeypatch.setattr(genmem.checkpoint, "time", SimpleNamespace(monotonic=lambda: clock["now"]))
    handle = Checkpointing.after_epoch

    def after_epoch_at_its_time(self, state, progress, last):
        clock["now"] = float(EPOCH_ENDS[progress.epoch - 1])
        handle(self, state, progress, last)

    saves = []
    monkeypatch.setattr(Checkpointing, "after_epoch", after_epoch_at_its_time)
    monkeypatch.setattr(VersionWriter, "save_checkpoint", lambda writer, data: saves.append(clock["now"]))
    Memory(tmp_path / "m").learn_task(tiny_set(), TASKS[0], config=tiny_config(epochs=len(EPOCH_ENDS)),
                                      image_size=16, base_width=2, progress=False, checkpoint_every=every)
    assert saves == [EPOCH_ENDS[epoch - 1] for epoch in saved_after]


@pytest.mark.timeout(900)  # three 40-epoch runs of the command, each allowed 300 s
def test_learn_task_killed_with_sigkill_continues_from_its_checkpoint(tmp_path, tiny_npz):
    """The real thing: the command killed outright mid-task, then run again, ends where one run ends."""
    options = ["--data", f"npz:{tiny_npz}", "--classes", "0,1", "--image-size", "16", "--base-width", "2",
               "--critic-width", "4", "--gan-epochs", "40", "--batch-size", "8", "--device", "cpu", "--quiet"]

    def command(memory, *extra):
        return [sys.executable, "-m", "genmem.cli.main", "learn-task", str(memory), *options, *extra]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Outside the checkout: `-m` would import the repository's genmem/ (without its cli/) before the installed one.
    run = dict(cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300)
    whole = subprocess.run(command(tmp_path / "whole"), **run)
    assert whole.returncode == 0, whole.stderr

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed, "--checkpoint-every", "0"), cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / CHECKPOINT).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / CHECKPOINT).is_file() and not Memory(killed).versions(), "killed mid-task, after a save"

    again = subprocess.run(command(killed), **run)
    assert again.returncode == 0, again.stderr
    assert "(continued from its checkpoint after epoch" in again.stdout, again.stdout
    assert version_bytes(Memory(killed), "v0001") == version_bytes(Memory(tmp_path / "whole"), "v0001")
