"""`genmem bench privacy`: the utility of differentially private memories as the field measures it, beside their
membership audit."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from genmem.cli.common import DEVICE_HELP, FiniteFloatRange, friendly_errors
from genmem.config import DP_LOSSES, MAX_BATCH_SIZE, STORAGE_DTYPES, TrainingConfig
from genmem.private import BATCH_SIZES, SMALL_BATCHES_FROM, WASSERSTEIN_UP_TO


@click.command()
@click.option("--data", "source", default="mnist", show_default=True, metavar="SOURCE", help="Data set to learn.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of the data sets.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A new folder for the memories, results.json and privacy-utility.png.")
@click.option("--epsilons", default="1,4,10", show_default=True,
              help="Comma-separated epsilons per task; 'none' learns without DP (and the default `real` solver).")
@click.option("--delta", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=1e-5, show_default=True)
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True,
              help="Memories learned per epsilon, with seeds 0, 1, ... (from --first-seed); the table gives mean "
                   "± standard deviation.")
@click.option("--first-seed", type=click.IntRange(0), default=0, show_default=True,
              help="The first of the seeds (--seeds 1 --first-seed 1 learns seed 1 alone), to learn the seeds of "
                   "one epsilon in separate processes and --combine them.")
@click.option("--tasks", "num_tasks", type=click.IntRange(1), default=10, show_default=True,
              help="One class per task, in label order.")
@click.option("--images-per-class", type=click.IntRange(10), default=None,
              help="Real training images per class (default: every one); --holdout of them are kept out.")
@click.option("--holdout", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Share of each task's images held out of training, the audit's non-members.")
@click.option("--gan-epochs", "epochs", type=click.IntRange(1), default=None,
              help="GAN epochs per task (default: genmem's DP defaults', genmem.private.dp_defaults).")
@click.option("--synthetic-per-class", type=click.IntRange(10), default=6000, show_default=True,
              help="Generated images per class that the downstream classifier trains on.")
@click.option("--storage-dtype", type=click.Choice(list(STORAGE_DTYPES)), default=TrainingConfig.storage_dtype,
              show_default=True, help="The type the memories store the generator's weights in (learn-task's "
                                      "option); another than the default is named in the rows' profile.")
@click.option("--dp-loss", type=click.Choice(DP_LOSSES),
              help=f"The DP critic's loss (learn-task's option; 'wasserstein' clips the critic's weights). Default: "
                   f"genmem's for each epsilon, wasserstein up to {WASSERSTEIN_UP_TO:g} and logistic above; another "
                   f"is named in the settings and the rows' profile.")
@click.option("--batch-size", type=click.IntRange(2, MAX_BATCH_SIZE),
              help=f"Images per DP-SGD batch (learn-task's option). Default: genmem's for each epsilon, "
                   f"{BATCH_SIZES[0]} below {SMALL_BATCHES_FROM:g} and {BATCH_SIZES[1]} from it; another is named in "
                   f"the settings and the rows' profile.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table as the '## Privacy and utility' section of this file (a record in "
                   "docs/experiments/).")
@click.option("--combine", type=click.Path(file_okay=False, path_type=Path), multiple=True, metavar="RUN",
              help="Learn nothing: one table and plot in --out from finished runs of the same budget that learned "
                   "other epsilons or seeds (say one per process or machine); repeat for each run.")
@click.option("--csv", "table_csv", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write each DP setting's accuracy as rows of this CSV (BENCHMARKS.csv), one per seed.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@friendly_errors
def privacy(source, data_dir, out_dir, epsilons, delta, seeds, first_seed, num_tasks, images_per_class, holdout,
            epochs, synthetic_per_class, storage_dtype, dp_loss, batch_size, record, combine, table_csv, device):
    """Learn one memory per epsilon and seed; report the accuracy on real test images of a classifier trained
    only on generated ones, the Fréchet distance of the replay, and the membership audit's AUC.

    \b
    Example (ten MNIST digits, one per task, at epsilon 1, 4 and 10; a GPU):
      genmem bench privacy --data mnist --data-dir ~/data --out runs/privacy --csv BENCHMARKS.csv

    \b
    The same in pieces, one epsilon or seed per process, then one table:
      genmem bench privacy --epsilons 10 --out runs/eps10 ...
      genmem bench privacy --epsilons 10 --first-seed 1 --out runs/eps10-seed1 ...
      genmem bench privacy --combine runs/eps10 --combine runs/eps10-seed1 --combine runs/eps1 --out runs/privacy
    """
    if combine:
        return combined_privacy(combine, out_dir, record, table_csv)
    from genmem.benchmarks.privacy import privacy_table, run_privacy
    from genmem.benchmarks.record import CpuWatch, commit, machine, provenance, record_section
    from genmem.benchmarks.results import describe_data
    from genmem.data import load_source
    from genmem.device import resolve_device

    try:
        chosen = [None if e.strip().lower() == "none" else float(e) for e in epsilons.split(",") if e.strip()]
    except ValueError:
        raise click.BadParameter(f"{epsilons!r} is not a list of numbers and 'none'", param_hint="--epsilons")
    if None in chosen and (dp_loss or batch_size):
        raise click.UsageError("--dp-loss and --batch-size set DP training, and the 'none' setting learns without "
                               "DP at genmem's own defaults; learn it in a run of its own and --combine the two")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise click.ClickException(f"{out_dir} is not empty; choose a new --out folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = resolve_device(device)
    options = {"--epsilons": epsilons, "--delta": f"{delta:g}", "--seeds": seeds,
               "--first-seed": first_seed or None, "--tasks": num_tasks,
               "--images-per-class": images_per_class, "--holdout": holdout, "--gan-epochs": epochs,
               "--synthetic-per-class": synthetic_per_class,
               "--storage-dtype": None if storage_dtype == TrainingConfig.storage_dtype else storage_dtype,
               "--dp-loss": dp_loss, "--batch-size": batch_size}
    command = shlex.join(["genmem", "bench", "privacy", "--data", source, "--out", str(out_dir)]
                         + [str(part) for name, value in options.items() if value is not None
                            for part in (name, value)])
    where = provenance([machine(target)], command)
    watch = CpuWatch()
    results = run_privacy(load_source(source, data_dir, train=True), load_source(source, data_dir, train=False),
                          out_dir, chosen, num_tasks=num_tasks, images_per_class=images_per_class, epochs=epochs,
                          holdout=holdout, delta=delta, seeds=seeds, first_seed=first_seed,
                          synthetic_per_class=synthetic_per_class, storage_dtype=storage_dtype, dp_loss=dp_loss,
                          batch_size=batch_size, data_record=describe_data(source), device=target,
                          provenance={"hardware": machine(target), "commit": commit(), "command": command})
    others = watch.others_share()
    budget = (f"{num_tasks} tasks of one class, {images_per_class or 'every'} training image(s) per class "
              f"({holdout:.0%} held out), genmem's DP defaults{f' for {epochs} GAN epochs' if epochs else ''}"
              f"{f' with the {dp_loss} critic' if dp_loss else ''}"
              f"{f' in batches of {batch_size}' if batch_size else ''}; "
              f"seed(s) {', '.join(str(seed) for seed in range(first_seed, first_seed + seeds))}; "
              f"other processes took {'?' if others is None else f'{others:.0%}'} of the CPU")
    table = privacy_table(results)
    click.echo(table)
    if record is not None:
        record_section(record, "Privacy and utility", f"{where}\n- budget: {budget}\n\n{table}\n\n"
                                                      f"Plot: `{out_dir / 'privacy-utility.png'}`.")
        click.echo(f"recorded in {record}")
    write_rows(results, table_csv)


def write_rows(results: dict, table_csv: Path | None) -> None:
    """With --csv, each DP setting's accuracy per seed as rows of that CSV."""
    if table_csv is not None:
        from genmem.benchmarks.privacy import csv_rows
        from genmem.benchmarks.record import record_rows

        record_rows(table_csv, csv_rows(results))
        click.echo(f"rows of every DP setting in {table_csv}")


def combined_privacy(runs: tuple[Path, ...], out_dir: Path, record: Path | None, table_csv: Path | None) -> None:
    """One table and privacy-utility plot from several finished privacy runs."""
    import json

    from genmem.benchmarks.privacy import combine_privacy, privacy_table, save_privacy
    from genmem.benchmarks.record import invoked_command, provenance, record_section

    found = []
    for run in runs:
        path = run / "results.json"
        if not path.is_file():
            raise click.ClickException(f"{run} holds no privacy run (no results.json); give folders that "
                                       f"`genmem bench privacy --out` wrote")
        try:
            saved = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{path} is not a results file `genmem bench privacy` wrote ({exc})")
        if not isinstance(saved, dict) or not isinstance(saved.get("rows"), list):
            raise click.ClickException(f"{path} holds no privacy rows; give folders that `genmem bench privacy "
                                       f"--out` wrote")
        found.append(saved)
    results = combine_privacy(found)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_privacy(results, out_dir)
    table = privacy_table(results)
    click.echo(table)
    if record is not None:
        where = provenance(["the runs' own (see their logs)"], invoked_command())
        record_section(record, "Privacy and utility", f"{where}\n- runs: {', '.join(f'`{r}`' for r in runs)}\n\n"
                                                      f"{table}\n\nPlot: `{out_dir / 'privacy-utility.png'}`.")
        click.echo(f"recorded in {record}")
    write_rows(results, table_csv)
