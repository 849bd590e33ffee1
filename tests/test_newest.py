"""dgm-newest (the newest classes partly generated, against "a real image is the newest class") and a run that
starts from another run's memory."""

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny import tiny_set

from genmem.benchmarks.methods import base
from genmem.benchmarks.profiles import PROFILES
from genmem.benchmarks.protocol import run_protocol
from genmem.benchmarks.rows import csv_name
from genmem.classifier import ClassifierConfig
from genmem.cli.main import main
from genmem.errors import GenmemError, InvalidSetting
from genmem.memory import Memory

PROFILE = replace(PROFILES["smoke"], images_per_class=12, classifier_epochs=0.25, solver_steps=5, critic_width=4,
                  classifier_width=4)
WIDTH = 2  # DGM's base width: a tiny generator
REAL_PER_CLASS = 24
TRAIN = tiny_set(labels=(0, 1, 2), per_class=REAL_PER_CLASS, size=32)
TEST = tiny_set(labels=(0, 1, 2), per_class=4, size=32)


def run(out, **kwargs) -> dict:
    return run_protocol(TRAIN, TEST, "mnist", "dgmw", PROFILE, out, progress=False, base_width=WIDTH, **kwargs)


def first_batches(monkeypatch) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Every replay classifier's first batch of each task, by the classifier's name, as the runs train them."""
    seen: dict[str, list] = {}
    train = base.train_classifier

    def spy(batches, *args, desc, **kwargs):
        batches = iter(batches)
        first = next(batches)
        seen.setdefault(desc, []).append(first)
        return train(itertools.chain([first], batches), *args, desc=desc, **kwargs)

    monkeypatch.setattr(base, "train_classifier", spy)
    return seen


def is_real(image: torch.Tensor, label: int) -> bool:
    pool = TRAIN.images[TRAIN.labels == label]
    return bool((pool == image).flatten(1).all(1).any())


def test_a_share_of_the_newest_classes_images_is_generated_and_the_batch_keeps_its_balance(tmp_path, monkeypatch):
    batches = first_batches(monkeypatch)
    results = run(tmp_path / "run", methods=("dgm-replay", "dgm-newest"),
                  method_options={"newest_generated": [0.5, 1]})
    assert list(results["accuracy"]) == ["dgm-replay", "dgm-newest-50", "dgm-newest-100"]
    size = ClassifierConfig().batch_size
    for name, share in (("dgm-replay", 0.0), ("dgm-newest-50", 0.5), ("dgm-newest-100", 1.0)):
        for task, (images, labels) in enumerate(batches[f"{name} classifier"]):
            newest = round(size / (task + 1))  # the newest class's share of a batch
            generated = round(newest * share)
            real = torch.tensor([is_real(image, int(label)) for image, label in zip(images, labels)])
            is_newest = labels == task
            assert int((is_newest & ~real).sum()) == generated
            assert int((is_newest & real).sum()) == min(newest - generated, REAL_PER_CLASS), \
                "the rest real (a class with fewer real images than its share gives them all)"
            assert not real[~is_newest].any(), "earlier classes are replay only"
            assert int((~is_newest).sum()) == size - newest
            if task:
                counts = torch.bincount(labels[~is_newest], minlength=task)
                assert int(counts.max() - counts.min()) <= 1, "earlier classes evenly"


def test_a_share_outside_0_to_1_is_refused_before_anything_is_learned(tmp_path):
    for shares in ([0.0], [1.5], [], [0.004]):  # 0.004 would run as dgm-newest-0
        with pytest.raises(InvalidSetting, match="above 0 and at most 1"):
            run(tmp_path / "run", methods=("dgm-newest",), method_options={"newest_generated": shares})
    assert not (tmp_path / "run").exists()
    assert csv_name("dgm-newest-50", {"variant": "dgma", "arch": "dcgan"}) == "dgma-newest-50"


def test_a_run_from_another_runs_memory_learns_nothing_again_and_scores_as_that_run(tmp_path, monkeypatch):
    first = run(tmp_path / "first", methods=("dgm-replay",))

    def learn_task(*args, **kwargs):
        raise AssertionError("a task was learned again")

    monkeypatch.setattr(Memory, "learn_task", learn_task)
    again = run(tmp_path / "again", methods=("dgm-replay", "dgm-newest"), memory_from=tmp_path / "first",
                method_options={"newest_generated": [1]})
    assert again["accuracy"]["dgm-replay"] == first["accuracy"]["dgm-replay"]
    assert again["memory_from"] == str(tmp_path / "first") and again["growth"] == first["growth"]
    assert again["seconds"]["gan"] >= first["seconds"]["gan"], "the memory's GAN is part of what DGM's figures cost"
    copied, source = Memory(tmp_path / "again" / "memory"), Memory(tmp_path / "first" / "memory")
    assert copied.versions() == source.versions()
    for version in source.versions():
        assert copied.manifest(version) == source.manifest(version)
    with pytest.raises(GenmemError, match="learned with other seed than this run.s; start from a run of the same data"):
        run(tmp_path / "other", methods=("dgm-replay",), memory_from=tmp_path / "first", seed=1)
    assert not (tmp_path / "other" / "memory").exists()
    with pytest.raises(GenmemError, match="holds no protocol run with a memory to start from"):
        run(tmp_path / "none", methods=("dgm-replay",), memory_from=tmp_path / "missing")


def test_a_memory_from_a_run_on_another_classifier_budget_scores_as_a_run_that_learns_it_but_its_solver_is_refused(
        tmp_path):
    first = run(tmp_path / "first", methods=("dgm-replay",))
    longer = replace(PROFILE, name="longer", classifier_epochs=3, solver_epochs=3, classifier_width=6)
    learned = run_protocol(TRAIN, TEST, "mnist", "dgmw", longer, tmp_path / "learned", progress=False,
                           base_width=WIDTH, methods=("dgm-replay",))
    copied = run_protocol(TRAIN, TEST, "mnist", "dgmw", longer, tmp_path / "copied", progress=False,
                          base_width=WIDTH, methods=("dgm-replay",), memory_from=tmp_path / "first")
    assert copied["accuracy"] == learned["accuracy"] and copied["growth"] == learned["growth"]
    assert copied["classifier_config"]["epochs"] == 3 != first["classifier_config"]["epochs"]
    with pytest.raises(GenmemError, match="stores solvers trained on that run's classifier budget"):
        run_protocol(TRAIN, TEST, "mnist", "dgmw", longer, tmp_path / "solver", progress=False, base_width=WIDTH,
                     methods=("dgm-solver", "dgm-replay"), memory_from=tmp_path / "first")
    for other_gan in (replace(longer, images_per_class=8), replace(longer, solver_replay=3),
                      replace(longer, classifier_images_per_class=8)):  # each shapes what the GAN trains on
        with pytest.raises(GenmemError, match="learned with other profile than this run.s"):
            run_protocol(TRAIN, TEST, "mnist", "dgmw", other_gan, tmp_path / "gan", progress=False,
                         base_width=WIDTH, methods=("dgm-replay",), memory_from=tmp_path / "first")


def test_the_command_starts_from_a_runs_memory_and_runs_the_shares_asked(tmp_path):
    train, test = tiny_set(labels=(0, 1)), tiny_set(labels=(0, 1), per_class=8)
    for name, data in (("train", train), ("test", test)):
        np.savez(tmp_path / f"{name}.npz", x=data.images[:, 0].numpy(), y=data.labels.numpy())
    common = ["bench", "protocol", "--data", f"npz:{tmp_path / 'train.npz'}", "--test-data",
              f"npz:{tmp_path / 'test.npz'}", "--profile", "smoke", "--images-per-class", "5", "--quiet"]
    first = CliRunner().invoke(main, [*common, "--methods", "dgm-replay", "--out", str(tmp_path / "first")])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(main, [*common, "--methods", "dgm-replay,dgm-newest", "--newest-generated", "0.25,1",
                                      "--memory-from", str(tmp_path / "first"), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert "| dgm-newest-25 |" in again.output and "| dgm-newest-100 |" in again.output
    for wrong, hint in ((["--resume", str(tmp_path / "again"), "--memory-from", str(tmp_path / "first")],
                         "drop --memory-from"),
                        ([*common[2:], "--methods", "dgm-replay", "--newest-generated", "0.5", "--out",
                          str(tmp_path / "n")], "--newest-generated is an option of dgm-newest")):
        refused = CliRunner().invoke(main, ["bench", "protocol", *wrong])
        assert refused.exit_code != 0 and "Traceback" not in refused.output and hint in refused.output, wrong
