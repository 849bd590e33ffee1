"""`genmem bench quality`: memories that already exist, their replay scored side by side by one fixed judge."""

from __future__ import annotations

import json
from pathlib import Path

import click

from genmem.cli.common import friendly_errors, run_options


@click.command()
@click.argument("memories", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="MEMORY...")
@click.option("--data", "source", required=True, metavar="SOURCE",
              help="The data set the memories learned from: its training split trains the judge, its test split "
                   "is what the replay is compared with (mnist, fashion-mnist, svhn, cifar10, or folder:PATH and "
                   "npz:PATH, which serve as both).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of the data sets.")
@click.option("--version", help="The version to score in every memory (default: each memory's latest).")
@click.option("--images-per-class", type=click.IntRange(2), default=1000, show_default=True,
              help="Generated images of every class that the judge scores.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the judge (trained once, then reused, also by bench replay with the same --out) and "
                   "quality.json.")
@run_options
@friendly_errors
def quality(memories, source, data_dir, version, images_per_class, out, seed, device, record, quiet):
    """Score the replay of every MEMORY with one judge, so that memories learned under different settings (bench
    protocol --gan-setting, learn-task options) can be compared after the fact.

    The judge is a classifier trained on every real training image of SOURCE
    (cached in OUT); it scores IMAGES_PER_CLASS generated images of each class
    (generated with --seed): the share it puts in their class (higher is
    better), and the Fréchet distance to the class's real test images in its
    features (lower is better). Both are means over the classes, and are only
    comparable between memories scored by the same judge.

    \b
    Example:
      genmem bench quality runs/split-cifar/memory runs/split-cifar-projection/memory \\
          --data cifar10 --data-dir ~/data --out runs/judge-cifar10
    """
    from genmem.benchmarks.ablation import judge_for, judge_names
    from genmem.benchmarks.record import invoked_command, machine, provenance, record_section
    from genmem.data import load_source
    from genmem.device import resolve_device
    from genmem.errors import DataError
    from genmem.evaluate import replay_quality
    from genmem.memory import Memory
    from genmem.quality import mean_quality

    target = resolve_device(device)
    opened = [Memory(path) for path in memories]
    generators = [memory.manifest(version)["generator"] for memory in opened]
    shapes = {(g["channels"], g["image_size"]) for g in generators}
    if len(shapes) > 1:
        raise DataError(f"the memories hold images of different shapes {sorted(shapes)} (channels, size); one judge "
                        f"scores one shape: score them in separate calls with separate --out folders")
    train = load_source(source, data_dir, train=True)
    test = load_source(source, data_dir, train=False)
    channels, size = shapes.pop()
    if train.images.shape[1] != channels:
        raise DataError(f"{train.source} has {train.images.shape[1]}-channel images but the memories hold "
                        f"{channels}-channel images: give the data set they learned from")
    judge = judge_for(train, out, target, image_size=size, progress=not quiet)
    rows = []
    for path, memory in zip(memories, opened):
        per_class = replay_quality(memory, test, judge, judge_names(train), version, images_per_class, seed, target)
        mean = mean_quality(per_class)
        rows.append({"memory": str(path), "version": memory.manifest(version)["version"],
                     "judge_accuracy": mean.judge_accuracy, "frechet": mean.frechet,
                     "per_class": {str(label): q.to_dict() for label, q in per_class.items()}})
    (out / "quality.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = "\n".join(["| memory | version | judge accuracy on replay (%) | Fréchet distance |", "|---|---|---:|---:|"]
                      + [f"| {r['memory']} | {r['version']} | {r['judge_accuracy']:.2f} | {r['frechet']:.2f} |"
                         for r in rows])
    click.echo(table)
    if record:
        where = provenance([machine(target)], invoked_command())
        note = f"{images_per_class} generated images per class, seed {seed}; the judge was trained on {train.source}."
        record_section(record, f"Replay quality: {source}", "\n\n".join([where, table, note]))
