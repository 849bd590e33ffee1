"""`genmem bench avalanche`: genmem beside Avalanche's Naive, GenerativeReplay and Replay, in Avalanche's metrics."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from genmem.cli.common import friendly_errors, run_options


@click.command()
@click.option("--data", "source", type=click.Choice(["mnist", "fashion-mnist", "cifar10", "builtin"]),
              default="mnist", show_default=True, help="The data set, read from --data-dir (nothing is downloaded).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of the data sets.")
@click.option("--experiences", type=click.IntRange(1), default=10, show_default=True,
              help="Experiences the classes are split into, in label order (10: one class each).")
@click.option("--epochs", type=click.IntRange(1), default=1, show_default=True,
              help="Classifier epochs per experience, the same for every strategy.")
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True,
              help="Minibatch of real images, the same for every strategy.")
@click.option("--gan-epochs", type=click.IntRange(1), default=40, show_default=True,
              help="genmem's GAN epochs per experience.")
@click.option("--gan-images-per-class", type=click.IntRange(1), default=1000, show_default=True,
              help="Real images per class genmem's GAN trains on.")
@click.option("--strategies", default="genmem,genmem-mb,naive,gr,replay", show_default=True, metavar="LIST",
              help="Comma-separated; replay needs genmem's memory (learned by genmem or genmem-mb, or already in "
                   "OUT/memory).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the genmem memory (OUT/memory, reused when present) and results.json.")
@run_options
@friendly_errors
def avalanche(source, data_dir, experiences, epochs, batch_size, gan_epochs, gan_images_per_class, strategies, out,
              seed, device, record, quiet):
    """Avalanche's Naive, GenerativeReplay and Replay beside the genmem plugin, on one stream and one budget.

    Every strategy trains the same SimpleMLP with the same optimiser,
    epochs and minibatch on the same class-incremental stream, and is
    evaluated by Avalanche's EvaluationPlugin on the test experiences seen so
    far after each experience: accuracy per experience, stream accuracy and
    stream forgetting. Replay keeps a buffer of real images as large in bytes
    as genmem's generator (weights and masks, one byte per pixel). Needs
    `pip install 'genmem[avalanche]'`.

    \b
    Example:
      genmem bench avalanche --data mnist --data-dir ~/data --out runs/avalanche-mnist --record BENCHMARKS.md
    """
    from genmem.benchmarks.record import CpuWatch, machine, provenance, record_section
    from genmem.device import resolve_device

    try:
        from genmem.benchmarks.avalanche import STRATEGIES, Budget, report, side_by_side
    except ImportError as exc:
        raise click.ClickException(f"Avalanche is not installed ({exc}); pip install 'genmem[avalanche]'") from None
    chosen = tuple(part.strip() for part in strategies.split(",") if part.strip())
    unknown = sorted(set(chosen) - set(STRATEGIES))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(STRATEGIES)}",
                                 param_hint="--strategies")
    target = resolve_device(device)
    budget = Budget(epochs=epochs, batch_size=batch_size, gan_epochs=gan_epochs,
                    gan_images_per_class=gan_images_per_class, seed=seed)
    where = provenance([machine(target)], shlex.join(["genmem", *sys.argv[1:]]))
    watch = CpuWatch()
    results = side_by_side(source, data_dir, out, budget, experiences, chosen, target, progress=not quiet)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    share = watch.others_share()
    table = report(results) + (f"\n\nOther processes took {100 * share:.0f}% of the CPU meanwhile." if share is not None
                               else "")
    click.echo(table)
    if record is not None:
        record_section(record, f"Avalanche side by side: {source}, {experiences} experiences", where + "\n\n" + table)
        click.echo(f"recorded in {record}")
