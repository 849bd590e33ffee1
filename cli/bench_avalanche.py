"""`genmem bench avalanche`: genmem beside Avalanche's Naive, GenerativeReplay, Replay and iCaRL, on one stream."""

from __future__ import annotations

import json
from pathlib import Path

import click

from genmem.cli.common import friendly_errors, run_options, split_classes

STRATEGIES = ("genmem", "genmem-mb", "naive", "gr", "replay", "icarl")  # genmem.benchmarks.avalanche's, and icarl


def positive_integers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in split_classes(text))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: give whole numbers of 1 or more, comma-separated",
                                 param_hint="--memory-per-class")
    return values


@click.command()
@click.option("--data", "source", type=click.Choice(["mnist", "fashion-mnist", "cifar10", "builtin"]),
              default="mnist", show_default=True, help="The data set, read from --data-dir (nothing is downloaded).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of the data sets.")
@click.option("--experiences", type=click.IntRange(1), default=10, show_default=True,
              help="Experiences (tasks) the classes are split into, in label order (10: one class each; 5: two).")
@click.option("--strategies", default="genmem,naive,gr,replay", show_default=True, metavar="LIST",
              help=f"Comma-separated, from {', '.join(STRATEGIES)}. replay needs genmem's finished memory (learned "
                   "by genmem or genmem-mb in the run, or given by --memory); gr takes 1x28x28 images only; icarl "
                   "trains genmem's classifier instead of SimpleMLP (--memory-per-class).")
@click.option("--profile", type=click.Choice(["quick", "paper", "smoke"]), default="quick", show_default=True,
              help="The protocol profile (genmem bench protocol --profile) whose GAN budget genmem learns at "
                   "(quick on MNIST: 1000 images per class, 40 epochs, base width 10, critic 16 wide), and "
                   "whose classifier width, passes and augmentation iCaRL trains with.")
@click.option("--images-per-class", type=click.IntRange(1),
              help="Override the profile's real images per class genmem's GAN trains on.")
@click.option("--gan-epochs", type=click.IntRange(1), help="Override the profile's GAN epochs per experience.")
@click.option("--memory", "memory_path", type=click.Path(file_okay=False, path_type=Path),
              help="A finished genmem memory to replay, learned from this data at this GAN budget (say a protocol "
                   "run's OUT/memory), read only. Default: OUT/memory, learned by the first seed's genmem run and "
                   "reused by the others and by reruns.")
@click.option("--classifier-epochs", type=click.IntRange(1),
              help="Classifier epochs per experience, the same for every strategy. Default: 1 for SimpleMLP, the "
                   "profile's passes for iCaRL (quick: 2).")
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True,
              help="Minibatch of real images, the same for every strategy.")
@click.option("--memory-per-class", default="20", show_default=True, metavar="K[,K...]",
              help="iCaRL's real images per class (exemplars chosen by herding, kept for good); one run per K.")
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True,
              help="Runs per strategy, with seeds SEED, SEED+1, ...: the classifiers' initialisation and order and "
                   "the replay drawn (genmem's memory is learned once).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for results.json (SimpleMLP strategies), icarl.json and the genmem memory (OUT/memory).")
@click.option("--csv", "table_csv", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write the figures as rows of this CSV (BENCHMARKS.csv): each strategy's stream accuracy, "
                   "and iCaRL's A_t after the last task per K, one row per seed.")
@run_options
@friendly_errors
def avalanche(source, data_dir, experiences, strategies, profile, images_per_class, gan_epochs, memory_path,
              classifier_epochs, batch_size, memory_per_class, seeds, out, seed, device, record, quiet, table_csv):
    """Avalanche's Naive, GenerativeReplay, Replay and iCaRL beside the genmem plugin, on one stream.

    Naive, GenerativeReplay, Replay and the genmem plugin train the same
    SimpleMLP with the same optimiser, epochs and minibatch and are
    evaluated by Avalanche's EvaluationPlugin after each experience (stream
    accuracy, forgetting). Replay keeps as many real images as genmem's
    replay payload (generator and masks as stored) has bytes at one byte per
    pixel at the memory's image size. iCaRL (Avalanche's) keeps K real images
    per class and trains genmem's classifier at the profile's budget; its
    A_t is the unweighted mean of per-class accuracies over the classes
    seen. Needs `pip install 'genmem[avalanche]'`.

    \b
    Examples:
      genmem bench avalanche --data mnist --data-dir ~/data --seeds 2 --out runs/avalanche-mnist
      genmem bench avalanche --data mnist --data-dir ~/data --memory runs/mnist-dgmw-quick/memory --out runs/av
      genmem bench avalanche --data cifar10 --data-dir ~/data --strategies icarl --memory-per-class 20,50,100 \\
          --out runs/icarl-cifar10-10x1 --csv BENCHMARKS.csv
    """
    from genmem.benchmarks.record import (CpuWatch, commit, invoked_command, machine, others_note, provenance,
                                          record_rows, record_section)
    from genmem.data import load_source
    from genmem.device import resolve_device
    from genmem.presets import recipe_for

    try:
        from genmem.benchmarks import avalanche as side, icarl
    except ImportError as exc:
        raise click.ClickException(f"Avalanche is not installed ({exc}); pip install 'genmem[avalanche]'") from None
    chosen = tuple(split_classes(strategies))
    unknown = sorted(set(chosen) - set(STRATEGIES))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(STRATEGIES)}",
                                 param_hint="--strategies")
    sizes = positive_integers(memory_per_class)
    target = resolve_device(device)
    command = invoked_command()
    where = provenance([machine(target)], command)
    stamp = {"data": source, "hardware": machine(target), "commit": commit(), "command": command}
    train, test = (load_source(source, data_dir, train=split) for split in (True, False))
    recipe = recipe_for(source, train.images.shape[1])
    seed_list = tuple(range(seed, seed + seeds))
    watch = CpuWatch()
    sections, rows = [], []
    if set(chosen) - {"icarl"}:
        budget = side.Budget.from_profile(profile, recipe, images_per_class, gan_epochs, batch_size=batch_size,
                                          classifier_epochs=classifier_epochs or 1)
        results = side.side_by_side(train, test, out, budget, experiences, tuple(s for s in chosen if s != "icarl"),
                                    seed_list, memory_path, target, progress=not quiet) | {"provenance": stamp}
        (out / "results.json").write_text(json.dumps(results, indent=2))
        sections.append((f"Avalanche side by side: {source}, {results['tasks']}", side.report(results)))
        rows += side.csv_rows(results)
    if "icarl" in chosen:
        name, config = icarl.classifier_budget(profile, recipe, classifier_epochs, batch_size)
        results = icarl.icarl_study(train, test, experiences, sizes, config, name, seed_list, target,
                                    progress=not quiet) | {"provenance": stamp}
        out.mkdir(parents=True, exist_ok=True)
        (out / "icarl.json").write_text(json.dumps(results, indent=2))
        sections.append((f"iCaRL with real images per class: {source}, {results['tasks']}", icarl.report(results)))
        rows += icarl.csv_rows(results)
    note = others_note(watch.others_share())
    for title, table in sections:
        click.echo(f"{table}\n\n{note}\n")
        if record is not None:
            record_section(record, title, f"{where}\n\n{table}\n\n{note}")
    if record is not None:
        click.echo(f"recorded in {record}")
    if table_csv is not None:
        record_rows(table_csv, rows)
        click.echo(f"rows of every strategy in {table_csv}")
