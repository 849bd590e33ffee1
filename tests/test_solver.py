"""What a version ships as its solver: never the critic's real-or-fake head; `replay` never reads a real image."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors

import genmem.learn
from genmem.artifact import SOLVER_FILE, decode_shipped_critic, decode_solver
from genmem.errors import GenmemError
from genmem.evaluate import solver_score
from genmem.memory import Memory
from genmem.nets import Classifier, Discriminator
from genmem.presets import paper_config
from genmem.solver import train_solver
from tiny import TINY_SIZE, RecordingClassifier, tiny_config, tiny_set

FORMAT_1 = Path(__file__).parent / "fixtures" / "format-1-memory"


class RealImageRead(Exception):
    pass


class Poisoned(torch.Tensor):
    """A tensor of real images that raises as soon as anything reads it."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise RealImageRead(f"the solver phase read the task's real images ({getattr(func, '__name__', func)})")


def learn(path, mode=None, classes=("0", "1"), memory=None, seed=0):
    memory = memory or Memory(path)
    memory.learn_task(tiny_set(), list(classes), config=tiny_config(seed=seed), image_size=TINY_SIZE, base_width=2,
                      progress=False, solver=mode)
    return memory


def test_a_default_version_ships_no_critic_weights(two_versions):
    memory = Memory(two_versions)
    for version in memory.versions():
        manifest, files = memory.store.read(version)
        names = set(load_safetensors(files[SOLVER_FILE]))
        assert not any(name.startswith("critic.") for name in names)
        assert names == set(Classifier(1, TINY_SIZE, len(manifest["solver"]["classes"]), 4).state_dict())
        assert manifest["solver"]["mode"] == "real" and decode_shipped_critic(manifest, files) is None


@pytest.fixture
def poisoned_solver_phase(monkeypatch):
    """learn_task's solver phase receives the real images as a tensor that raises when read."""
    original = genmem.learn.task_solver

    def solver_phase(config, critic, generator, task, num_classes, real, *rest):
        return original(config, critic, generator, task, num_classes, real.as_subclass(Poisoned), *rest)

    monkeypatch.setattr(genmem.learn, "task_solver", solver_phase)


def test_a_replay_solver_reads_no_real_image(tmp_path, poisoned_solver_phase):
    memory = learn(tmp_path / "replay", "replay")
    learn(None, "replay", classes=("2",), memory=memory, seed=1)  # with replay of earlier classes too
    manifest, files = memory.store.read()
    assert manifest["solver"]["mode"] == "replay" and manifest["solver"]["classes"] == [0, 1, 2]
    for task in manifest["tasks"]:  # no figure computed from real images is stored either
        assert set(task["final_losses"]) == {"generator", "sparsity"}
        assert all(q["diversity"] is None and q["recognised"] is not None for q in task["quality"].values())
    solver = decode_solver(manifest, files)
    assert all(torch.isfinite(p).all() for p in solver.state_dict().values())
    with pytest.raises(RealImageRead):  # the poison works: the real-image solver trips it
        learn(tmp_path / "real", "real")


def test_no_solver_stores_no_solver_file(tmp_path):
    memory = learn(tmp_path / "m", "none")
    manifest, files = memory.store.read()
    assert SOLVER_FILE not in files and manifest["solver"]["mode"] == "none"
    assert "solver: `none`" in files["MODEL_CARD.md"].decode()
    with pytest.raises(GenmemError, match="stores no solver"):
        solver_score(memory, tiny_set(per_class=4))
    memory.sampler().sample({"0": 2, "1": 2})  # replay works as before


def test_a_format_1_version_from_an_old_release_decodes_to_its_stored_weights(tmp_path):
    """tests/fixtures/format-1-memory was written by the last genmem that wrote format 1 (its README says how):
    readers drop its critic's real-or-fake head from the solver, audits can still reach it, and every network
    holds exactly the tensors stored."""
    shutil.copytree(FORMAT_1, tmp_path / "m")
    memory = Memory(tmp_path / "m")
    manifest, files = memory.store.read("v0001")  # every checksum verified
    assert manifest["format_version"] == 1 and "mode" not in manifest["solver"]
    stored = load_safetensors(files[SOLVER_FILE])
    head = {k for k in stored if k.startswith("critic.")}
    assert head == {"critic.weight", "critic.bias"}

    solver, critic = decode_solver(manifest, files), decode_shipped_critic(manifest, files)
    assert isinstance(solver, Classifier) and isinstance(critic, Discriminator)
    assert solver.state_dict().keys() == stored.keys() - head
    assert critic.state_dict().keys() == stored.keys()
    for network in (solver, critic):
        assert all(torch.equal(tensor, stored[name]) for name, tensor in network.state_dict().items())
    probe = torch.rand(5, 1, TINY_SIZE, TINY_SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(solver(probe), critic(probe)[1])  # the solver is the critic's trunk and class head

    generator, _ = memory.load()
    weights = load_safetensors(files["generator.safetensors"])
    assert generator.state_dict().keys() == weights.keys()
    assert all(torch.equal(tensor, weights[name]) for name, tensor in generator.state_dict().items())
    for layer, mask in enumerate(generator.tasks[0].masks):
        packed = load_safetensors(files["masks.safetensors"])[f"task0.layer{layer}"].numpy()
        bits = np.unpackbits(packed)[: mask.numel()].reshape(mask.shape)  # FORMAT.md: numpy.packbits, C order
        assert torch.equal(mask, torch.from_numpy(bits).bool())
    images, labels = memory.sampler().sample({"0": 2, "1": 2}, seed=0)
    assert images.shape == (4, 1, TINY_SIZE, TINY_SIZE) and labels.tolist() == [0, 0, 1, 1]


def test_the_solver_phase_augments_its_batches_only_when_asked():
    images = torch.full((10, 1, TINY_SIZE, TINY_SIZE), -1.0)
    images[:, :, 6:10, 6:10] = 1.0  # a bright square in the middle of every image
    targets = torch.arange(10) % 2
    seen = {}
    for policy in ("", "translation"):
        solver = RecordingClassifier()
        train_solver(solver, images, targets, tiny_config(solver_steps=4, solver_augment=policy),
                     torch.Generator().manual_seed(0))
        seen[policy] = torch.cat(solver.seen)
    assert (seen[""] == images[0]).all(), "without a policy every batch is the images as they are"
    moved = (seen["translation"] != images[0]).flatten(1).any(1)
    assert moved.float().mean() > 0.5 and torch.equal(seen["translation"].sum((1, 2, 3)), seen[""].sum((1, 2, 3)))


@pytest.mark.parametrize("start", ["critic", "fresh", None])
def test_a_fresh_solver_owes_nothing_to_the_critic(tmp_path, monkeypatch, start):
    """solver_start="fresh", the default (None), trains a new network: a critic of NaN weights leaves it finite."""
    original = genmem.learn.task_solver

    def poisoned_critic(config, critic, *rest):
        for weight in critic.parameters():
            weight.data.fill_(float("nan"))
        return original(config, critic, *rest)

    monkeypatch.setattr(genmem.learn, "task_solver", poisoned_critic)
    memory = Memory(tmp_path / "m")
    config = tiny_config(**({"solver_start": start} if start else {}))
    memory.learn_task(tiny_set(), ["0", "1"], config=config, image_size=TINY_SIZE, base_width=2, progress=False)
    manifest, files = memory.store.read(memory.versions()[-1])
    finite = all(torch.isfinite(weight).all() for weight in load_safetensors(files[SOLVER_FILE]).values())
    assert finite == (start != "critic")


def test_the_default_solver_phase_is_five_shifted_passes_and_cuts_out_colour_images_too():
    for recipe, augment in (("mnist", "translation"), ("svhn", "translation"), ("cifar10", "translation,cutout")):
        config = paper_config(recipe, "dgmw")
        assert (config.solver_start, config.solver_epochs, config.solver_augment) == ("fresh", 5.0, augment)


def test_an_unknown_solver_start_is_refused(tmp_path):
    with pytest.raises(GenmemError, match="solver start 'warm'.*critic, fresh"):
        Memory(tmp_path / "m").learn_task(tiny_set(), ["0", "1"], config=tiny_config(solver_start="warm"),
                                          image_size=TINY_SIZE, base_width=2, progress=False)


def test_a_wider_solver_is_stored_at_its_width_and_scores_as_stored(tmp_path):
    memory = Memory(tmp_path / "m")
    memory.learn_task(tiny_set(), ["0", "1"], config=tiny_config(solver_width=6), image_size=TINY_SIZE,
                      base_width=2, progress=False)
    manifest, files = memory.store.read()
    assert manifest["solver"]["width"] == 6 and manifest["tasks"][-1]["training"]["solver_width"] == 6
    solver = decode_solver(manifest, files)
    assert solver.features[0].out_channels == 6, "the critic is 4 wide: the solver's width is its own"
    assert solver_score(memory, tiny_set(labels=(0, 1), per_class=8)).average > 50


def test_a_solver_started_from_the_critic_keeps_the_critics_width(tmp_path):
    with pytest.raises(GenmemError, match="starts from the critic has its width"):
        Memory(tmp_path / "m").learn_task(tiny_set(), ["0", "1"],
                                          config=tiny_config(solver_start="critic", solver_width=8),
                                          image_size=TINY_SIZE, base_width=2, progress=False)
    assert not (tmp_path / "m").exists()
