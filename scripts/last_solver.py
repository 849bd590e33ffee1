"""Retrain the stored solver of a protocol run's last task as a fresh network, and score both.

A paper-profile run costs a GPU hour; its solver phase costs a minute. This keeps the run's generator and
redoes only the last task's solver phase as `genmem.learn` does it (the task's real images and as many
generated images of every earlier class), from a fresh network, so solver recipes compare on one memory
without another GAN. The memory is not changed.

Usage: python scripts/last_solver.py RUN_DIR DATA_DIR [--epochs 5] [--augment translation] [--solver real]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from genmem.data import ImageSet, fit_images, load_source
from genmem.evaluate import evaluate_model, images_of_classes, solver_score
from genmem.learn import TrainingConfig, to_unit_range
from genmem.memory import Memory
from genmem.solver import task_solver


def retrain_last_solver(run: Path, train: ImageSet, test: ImageSet, epochs: float, augment: str,
                        mode: str = "real") -> dict:
    """The stored solver's A_T and a fresh one's, trained on the last task's images (mode `real`) or the
    generator's images of it (`replay`), and the memory's replay of the earlier classes."""
    results = json.loads((run / "results.json").read_text())
    memory = Memory(run / "memory")
    generator, manifest = memory.load()
    task = len(manifest["tasks"]) - 1
    saved = {k: v for k, v in results["gan_config"].items() if k in TrainingConfig.__dataclass_fields__}
    config = replace(TrainingConfig(**saved | {"betas": tuple(saved["betas"])}), seed=results["seed"] + task,
                     solver_start="fresh", solver_epochs=epochs, solver_augment=augment, solver=mode)
    spec = generator.spec
    *earlier, newest = manifest["classes"]
    real = fit_images(train.images[train.labels == newest["label"]], spec.channels, spec.image_size, train.source)
    real = to_unit_range(real)
    replay, _ = memory.sampler(manifest["version"], precision="float32").sample(
        {c["label"]: len(real) for c in earlier}, seed=config.seed)
    replay = to_unit_range(replay).view(len(earlier), len(real), *replay.shape[1:])

    started = time.perf_counter()
    solver = task_solver(config, None, generator, task, 1, real, torch.full((len(real),), len(earlier)), replay,
                         torch.Generator().manual_seed(config.seed))
    seconds = time.perf_counter() - started
    outputs = [c["label"] for c in manifest["classes"]]
    images, labels = images_of_classes(outputs, {c["label"]: c["name"] for c in manifest["classes"]}, test,
                                       spec.channels, spec.image_size)
    return {"stored": solver_score(memory, test).average, "retrained": evaluate_model(solver, outputs, images,
                                                                                       labels).average,
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished `genmem bench protocol` folder")
    parser.add_argument("data_dir", help="where the run's data set is (as --data-dir)")
    parser.add_argument("--epochs", type=float, default=5.0, help="the solver phase's passes over its images")
    parser.add_argument("--augment", default="translation", help="a genmem.augment policy ('' for none)")
    parser.add_argument("--solver", choices=("real", "replay"), default="real",
                        help="real: the task's real images; replay: as many generated ones (genmem.solver)")
    args = parser.parse_args()
    data = json.loads((args.run / "results.json").read_text())["data"]
    train = load_source(data["source"], args.data_dir, train=True)
    test = load_source(data["test_source"] or data["source"], args.data_dir, train=data["test_source"] is not None)
    scores = retrain_last_solver(args.run, train, test, args.epochs, args.augment, args.solver)
    print(f"| {args.run.name} | {scores['stored']:.2f} | {scores['retrained']:.2f} | {args.solver} solver, "
          f"{args.epochs:g} passes, augment {args.augment or 'none'} | {scores['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
