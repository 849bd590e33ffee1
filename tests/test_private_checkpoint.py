"""A differentially private task stopped after a checkpoint continues to the uninterrupted run's version and
accountant state, byte for byte on the CPU (genmem.checkpoint with genmem.private's state)."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from genmem import private
from genmem.memory import Memory
from genmem.store import CHECKPOINT
from test_checkpoint import Stopped, stop_after_epoch
from tiny import TINY_SIZE, tiny_config, tiny_set

TASKS = (["0", "1"], ["2"])
EPOCHS = 3
VERSION_FILES = ("generator.safetensors", "masks.safetensors", "solver.safetensors", "samples.png")
LEVERS = dict(dp_augmentations=2, critic_augment="translation", dp_activation="tanh", dp_loss="logistic",
              generator_steps=2)


def learn(memory: Memory, task: int, **options) -> str:
    config = tiny_config(epochs=EPOCHS, seed=task, dp_epsilon=4.0, solver="replay", **LEVERS)
    return memory.learn_task(tiny_set(), TASKS[task], config=config, image_size=TINY_SIZE, base_width=2,
                             progress=False, **options)


def finished(memory: Memory, version: str) -> tuple[dict, dict]:
    files = memory.store.read(version)[1]
    return {name: files[name] for name in VERSION_FILES}, memory.manifest(version)["tasks"][-1]["privacy"]


@pytest.fixture(autouse=True, scope="module")
def replayable_noise():
    """The secret noise seed made a known one, so that two runs can be compared (only a test may do this)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(private, "noise_seed", lambda: 1234)
        yield


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, replayable_noise):
    memory = Memory(tmp_path_factory.mktemp("dp-whole") / "m")
    return [finished(memory, learn(memory, task)) for task in range(2)]


@pytest.mark.parametrize("task, epoch", [(0, 1), (1, 2)])
def test_a_private_task_continues_from_its_checkpoint_to_the_uninterrupted_version_and_accountant(
        task, epoch, tmp_path, monkeypatch, uninterrupted):
    memory = Memory(tmp_path / "m")
    for earlier in range(task):
        learn(memory, earlier)
    with monkeypatch.context() as patch:
        stop_after_epoch(patch, epoch)
        with pytest.raises(Stopped):
            learn(memory, task, checkpoint_every=0)
    saved = load_file(memory.path / CHECKPOINT)
    steps_per_epoch = uninterrupted[task][1]["steps"] // EPOCHS
    assert saved["critic_step.accountant_history"][0, 2] == epoch * steps_per_epoch, "the steps taken, counted"

    version = learn(memory, task)
    files, record = finished(memory, version)
    assert memory.manifest(version)["tasks"][-1]["resumed_after_epoch"] == epoch
    assert files == uninterrupted[task][0]
    assert record == uninterrupted[task][1], "the accountant continued its count: same steps, same epsilon"


def test_a_checkpoint_without_the_accountants_history_is_passed_over(tmp_path, monkeypatch, uninterrupted):
    memory = Memory(tmp_path / "m")
    with monkeypatch.context() as patch:
        stop_after_epoch(patch, 1)
        with pytest.raises(Stopped):
            learn(memory, 0, checkpoint_every=0)
    checkpoint = memory.path / CHECKPOINT
    tensors, header = load_file(checkpoint), safe_open(checkpoint, "pt").metadata()
    del tensors["critic_step.accountant_history"]  # a continuation would count too few steps, and spend too little
    save_file(tensors, checkpoint, metadata=header)
    version = learn(memory, 0)
    assert "resumed_after_epoch" not in memory.manifest(version)["tasks"][-1]
    assert finished(memory, version) == uninterrupted[0]
