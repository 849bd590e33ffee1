"""dgm-confident: replay filtered by the version's own stored solver (genmem.filtering) in the protocol."""

import itertools
from dataclasses import replace

import pytest
import torch
from tiny import tiny_set

from genmem.artifact import decode_solver
from genmem.benchmarks.methods import base
from genmem.benchmarks.profiles import PROFILES
from genmem.benchmarks.protocol import run_protocol
from genmem.benchmarks.rows import csv_name
from genmem.errors import InvalidSetting
from genmem.memory import Memory
from genmem.pixels import to_unit_range

PROFILE = replace(PROFILES["smoke"], images_per_class=12, classifier_epochs=0.25, solver_steps=5, critic_width=4,
                  classifier_width=4)
TRAIN = tiny_set(labels=(0, 1, 2), per_class=24, size=32)
TEST = tiny_set(labels=(0, 1, 2), per_class=4, size=32)


def run(out, **kwargs) -> dict:
    return run_protocol(TRAIN, TEST, "mnist", "dgmw", PROFILE, out, progress=False, base_width=2, **kwargs)


def recognised(memory: Memory, version: str, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Whether the version's stored solver gives each image's class a probability of at least one half."""
    manifest, files = memory.store.read(version)
    solver, classes = decode_solver(manifest, files), manifest["solver"]["classes"]
    with torch.no_grad():
        probabilities = solver(to_unit_range(images)).softmax(1)
    outputs = torch.tensor([classes.index(int(label)) for label in labels])
    return probabilities[torch.arange(len(labels)), outputs] >= 0.5


def test_the_replay_of_earlier_classes_is_what_the_stored_solver_recognises(tmp_path, monkeypatch):
    seen: dict[str, list] = {}
    train = base.train_classifier

    def spy(batches, *args, desc, **kwargs):  # every replay classifier's first batch of each task
        batches = iter(batches)
        first = next(batches)
        seen.setdefault(desc, []).append(first)
        return train(itertools.chain([first], batches), *args, desc=desc, **kwargs)

    monkeypatch.setattr(base, "train_classifier", spy)
    results = run(tmp_path / "run", methods=("dgm-replay", "dgm-confident"), method_options={"min_confidence": [0.5]})
    assert list(results["accuracy"]) == ["dgm-replay", "dgm-confident-50"]
    memory = Memory(tmp_path / "run" / "memory")
    shares = {}
    for name in ("dgm-replay", "dgm-confident-50"):
        shares[name] = []
        for task, (images, labels) in enumerate(seen[f"{name} classifier"][1:], start=1):
            earlier = labels < task
            shares[name].append(float(recognised(memory, memory.versions()[task], images[earlier],
                                                 labels[earlier]).float().mean()))
    assert all(c >= r for c, r in zip(shares["dgm-confident-50"], shares["dgm-replay"])), shares
    assert shares["dgm-confident-50"] != shares["dgm-replay"], "the filter set some replay aside"


def test_a_threshold_outside_0_to_1_is_refused_before_anything_is_learned(tmp_path):
    for thresholds in ([0.0], [1.0], [], [0.5, 0.999]):  # 0.999 would run as dgm-confident-100
        with pytest.raises(InvalidSetting, match="above 0 and under 1"):
            run(tmp_path / "run", methods=("dgm-confident",), method_options={"min_confidence": thresholds})
    assert not (tmp_path / "run").exists()
    assert csv_name("dgm-confident-50", {"variant": "dgmw", "arch": "dcgan"}) == "dgmw-confident-50"
