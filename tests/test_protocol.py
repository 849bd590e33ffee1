"""The protocol runner and its command on a tiny profile: every method after every task, and its outputs."""

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from genmem.benchmarks.protocol import METHODS, PROFILES, run_protocol
from genmem.cli.main import main

from tiny import tiny_set


def test_run_produces_every_method_after_every_task(tmp_path):
    results = run_protocol(tiny_set(labels=(0, 1, 2)), tiny_set(labels=(0, 1, 2), per_class=8), "mnist", "dgmw",
                           PROFILES["smoke"], tmp_path / "run", progress=False)
    assert set(results["accuracy"]) == set(METHODS)
    assert all(len(curve) == 3 for curve in results["accuracy"].values())
    assert all(curve[0] == 100.0 for curve in results["accuracy"].values()), "one class cannot be confused"
    for method in METHODS:
        for step, per_class in enumerate(results["per_class"][method]):
            assert sorted(map(int, per_class)) == list(range(step + 1))
            assert results["accuracy"][method][step] == sum(per_class.values()) / len(per_class)
    assert [g["task"] for g in results["growth"]] == [0, 1, 2]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["accuracy"] == results["accuracy"]
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["task00.png", "task01.png",
                                                                                "task02.png"]


def test_bench_protocol_command_writes_table_plots_and_json(tmp_path):
    train, test = tiny_set(labels=(0, 1)), tiny_set(labels=(0, 1), per_class=8)
    for name, data in (("train", train), ("test", test)):
        np.savez(tmp_path / f"{name}.npz", x=data.images[:, 0].numpy(), y=data.labels.numpy())
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["bench", "protocol", "--data", f"npz:{tmp_path / 'train.npz'}",
                                       "--test-data", f"npz:{tmp_path / 'test.npz'}", "--profile", "smoke",
                                       "--images-per-class", "5", "--gan-epochs", "2", "--out", str(out),
                                       "--device", "cpu", "--quiet", "--record", str(tmp_path / "B.md")])
    assert result.exit_code == 0, result.output
    assert "| dgm-replay |" in result.output and "A2" in result.output
    for png in ("accuracy.png", "growth.png", "confusion.png"):
        with Image.open(out / png) as image:
            assert image.size[0] > 200
    results = json.loads((out / "results.json").read_text())
    assert results["gan_config"]["epochs"] == 2 and results["profile"]["images_per_class"] == 5
    assert "smoke, custom budget profile" in (tmp_path / "B.md").read_text(), "a changed budget is named as such"
    again = CliRunner().invoke(main, ["bench", "protocol", "--data", f"npz:{tmp_path / 'train.npz'}",
                                      "--test-data", f"npz:{tmp_path / 'test.npz'}", "--profile", "smoke",
                                      "--out", str(out), "--quiet"])
    assert again.exit_code != 0 and "already holds a protocol run" in again.output
