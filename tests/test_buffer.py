"""A buffer of real images against DGM's bytes, and DGM with real images mixed in (hybrid), in the protocol."""

import json
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from tiny import tiny_set

import genmem.benchmarks.methods.base as base
from genmem.artifact import MASKS_FILE, WEIGHTS_FILE
from genmem.benchmarks.footprint import memory_points
from genmem.benchmarks.methods.buffer import Buffer
from genmem.benchmarks.methods.exemplars import Exemplars, Herding
from genmem.benchmarks.methods.hybrid import Hybrid, HybridReplay
from genmem.benchmarks.profiles import PROFILES
from genmem.benchmarks.protocol import run_protocol
from genmem.benchmarks.record import COLUMNS, read_rows, record_rows
from genmem.benchmarks.rows import protocol_rows
from genmem.cli.main import main
from genmem.errors import InvalidSetting
from genmem.memory import Memory

# float32 storage: the buffer scales below are fractions of its payload (bfloat16's is under half, too small for them)
PROFILE = replace(PROFILES["smoke"], images_per_class=12, classifier_epochs=0.25, solver_steps=5, critic_width=4,
                  classifier_width=4).with_storage("float32")
WIDTH = 2  # DGM's base width: a tiny generator
TRAIN, TEST = tiny_set(labels=(0, 1, 2), size=32), tiny_set(labels=(0, 1, 2), per_class=4, size=32)


def real_images(label: int) -> torch.Tensor:
    """The classifiers' real training images of a class (the smoke profile's first 24, at 32 px as they are)."""
    return TRAIN.images[TRAIN.labels == label][: PROFILE.classifier_images_per_class]


def is_one_of(image: torch.Tensor, pool: torch.Tensor) -> bool:
    return bool((pool == image).flatten(1).all(1).any())


def test_herding_picks_the_image_that_brings_the_mean_of_those_chosen_closest_to_the_class_mean():
    # Two clusters either side of the class mean (0, 0) and two far outliers: taking the nearest images to the
    # mean would fill up on one cluster; herding alternates, so every even prefix has the class mean exactly.
    features = torch.tensor([[1.0, 0]] * 4 + [[-1.0, 0]] * 4 + [[0, 3.0], [0, -3.0]])
    herding = Herding(features)
    assert herding.first(4).tolist() == [0, 4, 1, 5]
    assert herding.first(10).tolist() == [0, 4, 1, 5, 2, 6, 3, 7, 8, 9], "extended on demand, never twice"
    assert herding.first(2).tolist() == [0, 4], "a smaller budget keeps a prefix: iCaRL's reduction"
    for k in (2, 4, 6, 8, 10):
        assert torch.equal(features[herding.first(k)].mean(0), torch.zeros(2))


class BlankSampler:
    """A stand-in for DGM's sampler whose images are all 0, so that real images (never 0) stand out."""

    version = "v0001"

    def __init__(self, classes):
        self.classes = classes

    def sample(self, counts, seed=0, as_uint8=True):
        labels = torch.cat([torch.full((n,), int(c)) for c, n in counts.items()])
        return torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8), labels


def test_hybrid_replay_makes_a_share_r_of_each_class_real_drawn_from_the_images_kept_only():
    kept = Exemplars({0: "0", 1: "1"})
    for label in (0, 1):
        kept.add(label, torch.arange(1, 4, dtype=torch.uint8).repeat_interleave(16).reshape(3, 1, 4, 4) + 10 * label)
    sampler = BlankSampler(kept.classes)
    for ratio in (0.0, 0.3, 1.0):
        source = HybridReplay(sampler, kept, ratio)
        real = total = 0
        for seed in range(200):
            images, labels = source.sample({0: 7, 1: 6}, seed=seed)
            assert sorted(labels.tolist()) == [0] * 7 + [1] * 6
            for image, label in zip(images, labels):
                if image.any():  # a real one: exactly one of the three kept of its class
                    assert is_one_of(image, kept.images[int(label)])
                    real += 1
                total += 1
        assert real / total == pytest.approx(ratio, abs=0.03), ratio


def test_the_buffer_holds_only_finished_classes_within_its_budget_which_is_dgms_payload(tmp_path, monkeypatch):
    """One run with the buffer at two scales of DGM's bytes and hybrid with 3 real images per class."""
    took = []
    take = Buffer.take

    def checked_take(self, task):
        finished = task.seen[: len(task.seen) - len(task.classes)]
        assert list(self.kept.images) == finished, "before: the classes of the tasks before only"
        take(self, task)
        assert list(self.kept.images) == task.seen and self.kept.nbytes <= self.budget()
        for label, images in self.kept.images.items():
            assert all(is_one_of(image, real_images(label)) for image in images), "real images of their class"
            assert len(torch.unique(images.flatten(1), dim=0)) == len(images), "never the same image twice"
        took.append((self.name, task.index, self.kept.counts()))

    batches: list[list] = []  # every batch hybrid's classifier trained on, per task
    train = base.train_classifier

    def recording_train(stream, steps, *args, desc="", **kwargs):
        if desc.startswith("hybrid"):
            batches.append([])
            stream = tee(stream, batches[-1])
        return train(stream, steps, *args, desc=desc, **kwargs)

    def tee(stream, into):
        for batch in stream:
            into.append(batch)
            yield batch

    monkeypatch.setattr(Buffer, "take", checked_take)
    monkeypatch.setattr(base, "train_classifier", recording_train)
    results = run_protocol(TRAIN, TEST, "mnist", "dgmw", PROFILE, tmp_path / "run", progress=False, base_width=WIDTH,
                           methods=("dgm-replay", "buffer", "hybrid", "joint"),
                           method_options={"buffer_scales": [0.05, 0.02], "hybrid_per_class": [3]})
    assert list(results["accuracy"]) == ["dgm-replay", "hybrid-k3", "buffer-x0.02", "buffer-x0.05", "joint"]
    assert len(took) == 6

    memory = Memory(tmp_path / "run" / "memory")
    payloads = [sum(memory.manifest(v)["files"][f]["bytes"] for f in (WEIGHTS_FILE, MASKS_FILE))
                for v in memory.versions()]
    for name, scale in (("buffer-x0.02", 0.02), ("buffer-x0.05", 0.05)):
        record = results["buffers"][name]
        assert [t["budget_bytes"] for t in record["tasks"]] == [int(scale * p) for p in payloads]
        for task in record["tasks"]:
            per_class = task["budget_bytes"] // (1024 * (task["task"] + 1))
            assert task["images_per_class"] == [min(per_class, 24)] * (task["task"] + 1), "balanced, iCaRL's reduction"
            assert task["bytes"] == 1024 * sum(task["images_per_class"]) <= task["budget_bytes"]
    assert results["buffers"]["buffer-x0.05"]["tasks"][0]["images_per_class"] > \
        results["buffers"]["buffer-x0.05"]["tasks"][2]["images_per_class"][:1], "not vacuous: the buffer shrank"

    kept = results["hybrid"]["hybrid-k3"]
    assert kept["images_per_class"] == [3, 3, 3] and kept["real_bytes"] == 9 * 1024 and kept["ratio"] == 0.5
    seen_real = {0: set(), 1: set()}  # the real images of earlier classes hybrid's classifiers were shown
    shown = 0
    for task, task_batches in enumerate(batches):
        for images, targets in task_batches:
            for image, target in zip(images, targets):
                if int(target) < task:  # an earlier class: replay or one of the 3 kept
                    shown += 1
                    if is_one_of(image, real_images(int(target))):
                        seen_real[int(target)].add(image.numpy().tobytes())
    assert shown and all(0 < len(images) <= 3 for images in seen_real.values()), "within its 3 per class"

    rows = protocol_rows(results, hardware="2 cores", commit="abc", command="genmem bench protocol")
    record_rows(tmp_path / "B.csv", rows)
    written = read_rows(tmp_path / "B.csv")
    assert [r["method"] for r in written] == ["dgmw-replay", "dgmw-hybrid-k3", "buffer-x0.02", "buffer-x0.05", "joint",
                                              "dgmw"]
    for row in written[:-1]:
        assert all(row[c] != "" for c in COLUMNS), row
        assert (row["tasks"], row["metric"], row["profile"], row["seeds"]) == ("3x1", "final", PROFILE.name, "0")
        assert float(row["joint"]) == pytest.approx(results["accuracy"]["joint"][-1], abs=1e-4)
    assert written[-1]["metric"] == "payload_bytes" and int(written[-1]["value"]) == payloads[-1]
    seconds, timed = {r["method"]: float(r["seconds"]) for r in written[:-1]}, results["seconds"]
    assert seconds["dgmw-replay"] == pytest.approx(timed["gan"] + timed["dgm-replay classifier"]), "and its GAN's"
    assert seconds["buffer-x0.02"] == pytest.approx(timed["buffer-x0.02 classifier"] + timed["exemplar order"])
    assert {p.method: p.bytes for p in memory_points(results)} == {
        "dgmw-replay": payloads[-1], "dgmw-hybrid-k3": payloads[-1] + 9 * 1024,
        "buffer-x0.02": results["buffers"]["buffer-x0.02"]["tasks"][-1]["bytes"],
        "buffer-x0.05": results["buffers"]["buffer-x0.05"]["tasks"][-1]["bytes"]}


def test_a_resumed_run_with_buffer_and_hybrid_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    def run(out, **kwargs):
        return run_protocol(TRAIN, TEST, "mnist", "dgmw", PROFILE, tmp_path / out, progress=False, base_width=WIDTH,
                            methods=("hybrid", "buffer"), **kwargs,
                            method_options={"buffer_scales": [0.02, 1], "hybrid_per_class": [2, 4],
                                            "hybrid_ratio": 0.25})

    whole = run("whole")
    score = Hybrid.score

    def killed_in_the_last_task(self, task):
        if task.index == 2:
            raise RuntimeError("killed")
        return score(self, task)

    monkeypatch.setattr(Hybrid, "score", killed_in_the_last_task)
    with pytest.raises(RuntimeError, match="killed"):
        run("killed")
    monkeypatch.setattr(Hybrid, "score", score)
    resumed = run("killed", resume=True)
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in whole.items() if k != "seconds"}
    assert resumed["buffers"]["buffer-x0.02"]["tasks"][2]["images_per_class"] == \
        whole["buffers"]["buffer-x0.02"]["tasks"][2]["images_per_class"]


def test_a_budget_that_cannot_work_is_refused_before_anything_is_learned(tmp_path):
    for methods, options, message in (
            (("buffer",), {}, "no method of this run learns one"),
            (("buffer",), {"buffer_bytes": 2 * 1024}, "cannot hold one 1,024-byte image of each of the run's 3"),
            (("dgm-replay", "buffer"), {"buffer_scales": [0.5, -1]}, "must be finite numbers above 0"),
            (("hybrid",), {"hybrid_ratio": 1.5}, "give 0 to 1"),
            (("hybrid",), {"exemplar_selection": "best"}, "unknown exemplar selection 'best'")):
        with pytest.raises(InvalidSetting, match=message):
            run_protocol(TRAIN, TEST, "mnist", "dgmw", PROFILE, tmp_path / "run", progress=False, methods=methods,
                         method_options=options)
    assert not (tmp_path / "run" / "memory").exists()


def test_the_command_runs_the_buffer_at_several_scales_and_writes_the_plot_and_the_rows(tmp_path, monkeypatch):
    train, test = tiny_set(labels=(0, 1)), tiny_set(labels=(0, 1), per_class=8)
    for name, data in (("train", train), ("test", test)):
        np.savez(tmp_path / f"{name}.npz", x=data.images[:, 0].numpy(), y=data.labels.numpy())
    data = ["--data", f"npz:{tmp_path / 'train.npz'}", "--test-data", f"npz:{tmp_path / 'test.npz'}"]
    out, table = tmp_path / "run", tmp_path / "BENCHMARKS.csv"
    monkeypatch.setattr(sys, "argv", ["genmem", "bench", "protocol", "--out", str(out)])  # what rows name
    result = CliRunner().invoke(main, ["bench", "protocol", *data, "--profile", "smoke", "--images-per-class", "5",
                                       "--methods", "buffer", "--buffer-bytes", "8192", "--buffer-scales", "0.5,1",
                                       "--exemplar-selection", "random", "--out", str(out), "--device", "cpu",
                                       "--quiet", "--csv", str(table)])
    assert result.exit_code == 0, result.output
    assert "| buffer-x0.5 | 4,096 | – | 4,096 | 2 |" in result.output, "the bytes table"
    with Image.open(out / "bytes.png") as image:
        assert image.size[0] > 200
    results = json.loads((out / "results.json").read_text())
    assert results["method_options"] == {"buffer_bytes": 8192, "buffer_scales": [0.5, 1.0],
                                         "exemplar_selection": "random"}
    assert [t["images_per_class"] for t in results["buffers"]["buffer-x0.5"]["tasks"]] == [[4], [2, 2]]
    rows = read_rows(table)
    assert [(r["method"], r["tasks"], r["metric"]) for r in rows] == [("buffer-x0.5", "2x1", "final"),
                                                                     ("buffer", "2x1", "final")]
    assert all(r["command"].startswith("genmem ") and r["hardware"] and r["commit"] for r in rows)
    monkeypatch.setattr(sys, "argv", ["genmem", "bench", "protocol", "--resume", str(out)])
    resumed = CliRunner().invoke(main, ["bench", "protocol", "--resume", str(out), "--quiet", "--csv", str(table)])
    assert resumed.exit_code == 0, resumed.output
    assert {r["command"] for r in read_rows(table)} == {f"genmem bench protocol --out {out}"}, \
        "a resumed run's rows name the command that started it"
    for wrong, hint in ((["--resume", str(out), "--buffer-scales", "2"], "drop --buffer-scales"),
                        ([*data, "--methods", "dgm-replay", "--hybrid-ratio", "0.3", "--out", str(tmp_path / "h")],
                         "--hybrid-ratio is an option of hybrid"),
                        ([*data, "--methods", "buffer", "--buffer-scales", "1,0", "--out", str(tmp_path / "z")],
                         "numbers above 0"),
                        ([*data, "--methods", "buffer", "--out", str(tmp_path / "b")], "give --buffer-bytes")):
        refused = CliRunner().invoke(main, ["bench", "protocol", *wrong])
        assert refused.exit_code != 0 and "Traceback" not in refused.output and hint in refused.output, wrong


def test_combined_runs_plot_the_buffer_against_both_variants_at_their_own_bytes(tmp_path):
    def finished(variant, methods, payload, **facts):
        return {"recipe": "mnist", "variant": variant, "methods": methods, "data": {"source": "mnist", "name": "MNIST",
                "test_source": None, "paper": "mnist"}, "profile": {"name": "quick"}, "seed": 0,
                "classes": [{"label": 0, "name": "0"}], "accuracy": {m: [100.0, 90.0] for m in methods},
                "storage_bytes": {WEIGHTS_FILE: payload - 1000, MASKS_FILE: 1000, "solver.safetensors": 5}} | facts

    buffers = {"buffer-x0.5": {"tasks": [{"bytes": 10240, "budget_bytes": 10250, "images_per_class": [5, 5]}]},
               "buffer": {"tasks": [{"bytes": 20480, "budget_bytes": 20500, "images_per_class": [10, 10]}]}}
    runs = {"dgmw": finished("dgmw", ["dgm-replay", "buffer-x0.5", "buffer"], 20500, buffers=buffers),
            "dgma": finished("dgma", ["dgm-replay"], 41000)}
    for variant, results in runs.items():
        (tmp_path / variant).mkdir()
        (tmp_path / variant / "results.json").write_text(json.dumps(results))
    result = CliRunner().invoke(main, ["bench", "protocol", "--combine", str(tmp_path / "dgmw"), "--combine",
                                       str(tmp_path / "dgma"), "--out", str(tmp_path / "both")])
    assert result.exit_code == 0, result.output
    assert "| buffer-x0.5 | 10,240 | 0.50 | 10,250 | 5 | 90.00 |" in result.output
    assert "| dgma-replay | 41,000 | 2.00 | – | – | 90.00 |" in result.output, "each variant at its own bytes"
    with Image.open(tmp_path / "both" / "bytes.png") as image:
        assert image.size[0] > 200
