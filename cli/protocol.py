"""`genmem bench protocol`: the paper's class-incremental benchmark with its bounds, in one command."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from genmem.cli.common import DEVICE_HELP, friendly_errors
from genmem.errors import DataError


@click.command()
@click.option("--data", "source", default="mnist", show_default=True, metavar="SOURCE",
              help="Training data: mnist, fashion-mnist, svhn, cifar10, builtin, folder:PATH or npz:PATH.")
@click.option("--test-data", metavar="SOURCE", help="Test data (default: the test split of --data; required for "
                                                     "folder: and npz: sources, which have none).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of the data sets.")
@click.option("--variant", type=click.Choice(["dgmw", "dgma"]), default="dgmw", show_default=True)
@click.option("--profile", type=click.Choice(["quick", "paper", "smoke"]), default="quick", show_default=True,
              help="quick: for 2 CPU cores, 1000 images per class and 40 GAN epochs per task (MNIST on 2 cores: "
                   "DGMw 16 minutes, DGMa 33); "
                   "paper: the paper's budgets on all data, for a GPU; smoke: seconds, checks the pipeline only.")
@click.option("--images-per-class", type=click.IntRange(1), help="Override the profile's real training images per "
                                                                     "class (to fit a budget, e.g. CIFAR-10 on a CPU).")
@click.option("--gan-epochs", type=click.IntRange(1), help="Override the profile's GAN epochs per task.")
@click.option("--tasks", type=click.IntRange(1), help="Stop after this many tasks (default: one per class, 10).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="New folder for the run: memory/, samples/, results.json, accuracy.png, growth.png, "
                   "confusion.png.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table as a section of this file (BENCHMARKS.md), with device, command, date "
                   "and commit.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@friendly_errors
def protocol(source, test_data, data_dir, variant, profile, images_per_class, gan_epochs, tasks, out, seed, device,
             record, quiet):
    """Run the paper's protocol: one class per task, A_t after every task, against joint training and fine-tuning.

    After every task four classifiers are tested on the real test images of
    the classes seen so far: the DGM solver stored with the version, a fresh
    classifier trained on the task's real images plus DGM replay of earlier
    classes, joint training on every real image seen (upper bound) and
    sequential fine-tuning without replay (lower bound). No real image of an
    earlier class is used by the DGM methods, for training or for model
    selection: every figure is the final model's.

    \b
    Example:
      genmem bench protocol --data mnist --data-dir ~/data --profile quick --out runs/mnist-dgmw-quick \\
          --record BENCHMARKS.md
    """
    from genmem.benchmarks.protocol import PROFILES, growth_table, markdown_table, run_protocol
    from genmem.benchmarks.record import CpuWatch, machine, provenance, record_section
    from genmem.data import load_source
    from genmem.device import resolve_device
    from genmem.plots import accuracy_plot, confusion_plot, growth_plot
    from genmem.presets import recipe_for

    target = resolve_device(device)
    command = "genmem " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    where = provenance([machine(target)], command)  # now: the code that runs, not the tree at the end
    if test_data is None and source.partition(":")[0] in ("folder", "npz"):
        raise DataError(f"{source} has no test split; pass --test-data")
    train = load_source(source, data_dir, train=True)
    test = load_source(test_data or source, data_dir, train=test_data is not None)
    recipe = recipe_for(source, train.images.shape[1])
    watch = CpuWatch()
    budget = PROFILES[profile].with_budget(images_per_class, gan_epochs)
    results = run_protocol(train, test, recipe, variant, budget, out, device=target, seed=seed,
                           num_tasks=tasks, progress=not quiet)
    (out / "accuracy.png").write_bytes(accuracy_plot(results))
    (out / "growth.png").write_bytes(growth_plot(results))
    names = [c["name"] for c in results["classes"]]
    (out / "confusion.png").write_bytes(confusion_plot(results["confusion"]["dgm-replay"], names,
                                                       "classifier + DGM replay, after the last task"))
    table = markdown_table(results)
    click.echo(table)
    busy = watch.others_share()
    others = "CPU use of others unknown" if busy is None else f"other processes took {busy:.0%} of the CPU meanwhile"
    timing = f"GAN {results['seconds']['gan']:.0f} s, classifiers {results['seconds']['classifiers']:.0f} s; {others}"
    click.echo(f"\n{timing}; plots and results.json in {out}")
    if record:
        size = results["growth"][-1]["parameters"]["total"]
        body = "\n\n".join([where, table, growth_table(results),
                            f"Final generator: {size:,} parameters. Time: {timing}. Plots: `{out}/accuracy.png`, "
                            f"`{out}/growth.png`, `{out}/confusion.png`."])
        record_section(record, f"Paper protocol: {recipe} {variant.upper()}, {budget.name} profile", body)
