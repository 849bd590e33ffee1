"""`genmem bench protocol`: the paper's class-incremental benchmark with its bounds, in one command."""

from __future__ import annotations

import math
from pathlib import Path

import click

from genmem.benchmarks.classifiers import CLASSIFIERS
from genmem.benchmarks.methods import DEFAULT_METHODS, METHODS, SELECTIONS
from genmem.benchmarks.profiles import PROFILES
from genmem.cli.common import AugmentPolicy, FiniteFloatRange, friendly_errors, run_options, split_classes
from genmem.config import MAX_CLASSIFIER_EPOCHS, SOLVER_MODES, STORAGE_DTYPES, TrainingConfig

# The methods' own options (run_protocol's method_options), and the methods that take them.
METHOD_OPTIONS = {"buffer_bytes": ("buffer",), "buffer_scales": ("buffer",), "exemplar_selection": ("buffer", "hybrid"),
                  "hybrid_per_class": ("hybrid",), "hybrid_ratio": ("hybrid",), "newest_generated": ("dgm-newest",),
                  "min_confidence": ("dgm-confident",)}

# TrainingConfig fields that options of their own set, which --gan-setting leaves to them.
OWN_OPTIONS = {"epochs": "--gan-epochs", "gan_images_per_class": "--images-per-class",
               "storage_dtype": "--storage-dtype", "solver": "--solver", "seed": "--seed"}

class PositiveList(click.ParamType):
    """Comma-separated numbers above 0 of one kind (int or float), e.g. 0.25,0.5,1,2,4."""

    name = "list"

    def __init__(self, kind: type):
        self.kind = kind

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            numbers = [self.kind(part) for part in split_classes(value)]
        except ValueError:
            numbers = []
        if not numbers or not all(math.isfinite(n) and n > 0 for n in numbers):
            whole = "whole " if self.kind is int else ""
            self.fail(f"{value!r} is not a comma-separated list of {whole}numbers above 0", param, ctx)
        return numbers


@click.command()
@click.option("--data", "source", default="mnist", show_default=True, metavar="SOURCE",
              help="Training data: mnist, fashion-mnist, svhn, cifar10, builtin, folder:PATH or npz:PATH.")
@click.option("--test-data", metavar="SOURCE", help="Test data (default: the test split of --data; required for "
                                                     "folder: and npz: sources, which have none).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of the data sets.")
@click.option("--variant", type=click.Choice(["dgmw", "dgma"]), default="dgmw", show_default=True)
@click.option("--methods", default=",".join(DEFAULT_METHODS), show_default=True, metavar="LIST",
              help=f"Comma-separated, from {', '.join(METHODS)}. dgr, mergan and ewc (EWC-M) train their "
                   "own generator with DGM's GAN budget; a dgr or mergan step holds twice DGM's batch.")
@click.option("--profile", type=click.Choice(list(PROFILES)), default="quick", show_default=True,
              help="quick: for 2 CPU cores, the GAN on 1000 images per class for 40 epochs per task (DGMa 38), the "
                   "classifiers (the stored solver a fresh one) on every real image for 2 epochs, shifted by up to 4 "
                   "pixels, critic and classifiers 16 wide (costs in BENCHMARKS.md); on CIFAR-10 the GAN on "
                   "5000 images per class for 30 epochs at learning rate 1e-3 and the classifiers also cut out "
                   "(DGMw's stored solver and replay classifier in 31 minutes at base width 10); "
                   "paper: the paper's budgets on all data, for a GPU (the stored solver a fresh one, 5 shifted "
                   "passes; on CIFAR-10 every classifier also shifted and cut out); paper-exact: the paper's method "
                   "as published on its budgets, every genmem addition to the GAN and solver off (the critic's class "
                   "head as the stored solver, no moving average, no class loss on generated images as in the "
                   "official MNIST and SVHN code); smoke: seconds, checks the pipeline only.")
@click.option("--images-per-class", type=click.IntRange(1), help="Override the real images per class the GAN "
                                                                     "trains on (to fit a budget, e.g. CIFAR-10 on a "
                                                                     "CPU); the classifiers still use all.")
@click.option("--gan-epochs", type=click.IntRange(1), help="Override the profile's GAN epochs per task.")
@click.option("--augment", type=AugmentPolicy(), metavar="POLICY",
              help="Override how the classifiers and the stored solver augment their training images: "
                   "comma-separated from translation, cutout, colour; '' for none (quick: translation). "
                   "On CIFAR-10 'translation,cutout' keeps the classifiers from leaning on \"real means newest\".")
@click.option("--classifier-epochs", type=FiniteFloatRange(0, min_open=True, max=MAX_CLASSIFIER_EPOCHS), metavar="E",
              help="Override the passes of every classifier and of the stored solver's phase (quick: 2, paper: 5). "
                   "On CIFAR-10 six passes lifted DGM's A2 to A8 by 1 to 8 points but A10 by 0 to 2.4, and "
                   "joint training's A10 by 7, for 18 % more time; on split-CIFAR-10 ten lifted the replay "
                   "classifier from 47.9 to 54.0 and joint from 49.7 to 61.5, and twenty dropped replay to 44.0 "
                   "as it learned \"real means newest\" (BENCHMARKS.md). With --memory-from a run at the "
                   "profile's passes, no GAN is trained again.")
@click.option("--classifier-width", type=click.IntRange(1), metavar="W",
              help="Override the first width of every classifier and of the stored solver (quick: 16, paper: 32 "
                   "and the critic's). On CIFAR-10, 64 wide with --classifier-epochs 4 took the stored solver from "
                   "A10 50.5 to 52.6 (the paper's 51.7) and its GAN and solver phase from 29 to 43 minutes "
                   "(BENCHMARKS.md).")
@click.option("--base-width", type=click.IntRange(1),
              help="Base width of DGM's initial generator. Default: the quick profile's, 10 for DGMw and 8 for "
                   "DGMa (CIFAR-10: 10 for both), else the recipe's, the paper's 6 for MNIST DGMw and 20 for DGMa "
                   "and CIFAR-10. DGMa's growth per task scales with it, and its time with the growth's square.")
@click.option("--arch", type=click.Choice(["dcgan", "resnet"]), default="dcgan", show_default=True,
              help="DGM's generator: dcgan, the paper's MNIST network, or resnet, a masked residual generator with a "
                   "residual critic trained as SNGAN's (projection head, hinge loss, spectral norm; --gan-setting "
                   "can change them), closer to the paper's CIFAR-10 network (docs/ALGORITHM.md §15). The "
                   "baselines keep their DCGAN and its critic.")
@click.option("--class-norm", is_flag=True, help="Class-conditional BatchNorms in DGM's generator (docs/ALGORITHM.md "
                                                 "§16), for tasks of several classes.")
@click.option("--solver", "solver_mode", type=click.Choice(list(SOLVER_MODES)), default="real", show_default=True,
              help="What DGM's versions store as their solver: real (trained on the task's real images), replay "
                   "(on generated images only: nothing stored saw a real image) or none (then drop dgm-solver).")
@click.option("--storage-dtype", type=click.Choice(list(STORAGE_DTYPES)), default=TrainingConfig.storage_dtype,
              show_default=True,
              help="The type DGM's versions store the generator's weights in (learn-task's option of that name). "
                   "Another than the default is named in the profile (quick, float32 storage), so every figure of "
                   "the run is apart from the default's; the buffer's default budget follows the payload's bytes.")
@click.option("--gan-setting", metavar="'FIELD=VALUE; ...'",
              help="Train DGM's GAN with these TrainingConfig fields changed, to measure a setting on a full run, "
                   "e.g. 'critic_head=projection' or 'gan_loss=hinge; spectral_norm=true' (the critic options of "
                   "docs/ALGORITHM.md §18). The profile's name says them (quick, critic_head=projection), so every "
                   "figure of the run is apart from the profile's own. Fields with an option of their own are "
                   "given by it (--gan-epochs, --images-per-class, --storage-dtype, --solver, --seed).")
@click.option("--tasks", type=click.IntRange(1), help="Stop after this many tasks (default: every class learned).")
@click.option("--classes-per-task", type=click.IntRange(1), default=1, show_default=True, metavar="K",
              help="Classes each task brings: 1 is the paper's protocol; 2 on MNIST or CIFAR-10 is split-MNIST or "
                   "split-CIFAR-10 (5 tasks of 2). The classes must split into tasks of K.")
@click.option("--class-order", metavar="LIST", help="The classes in the order the tasks learn them, comma-separated "
                                                      "labels or names, e.g. 3,1,0,2 (default: every class in label "
                                                      "order); a run learns only the classes named.")
@click.option("--classifier", "network", type=click.Choice(list(CLASSIFIERS)), default="conv", show_default=True,
              help="The network of the replay, joint and fine-tuned classifiers: conv, the critic's trunk "
                   "(--classifier-width wide); mlp, 2 hidden layers of 400 ReLU units trained from scratch, as van "
                   "de Ven & Tolias (2019) use on split-MNIST; resnet18, ResNet-18 with a small-image stem trained "
                   "from scratch, as the split-CIFAR-10 literature reports (about 11 million weights: a GPU's job). "
                   "The stored solver is DGM's own either way.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="New folder for the run: memory/, samples/, state/, results.json, accuracy.png, growth.png, "
                   "confusion.png.")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), metavar="OUT",
              help="Continue the run in OUT from its last finished task (or DGM's last checkpoint inside the next "
                   "one), with the options it was started with (only --data-dir, --device, --checkpoint-every, --csv, "
                   "--record and --quiet may be given).")
@click.option("--memory-from", type=click.Path(file_okay=False, exists=True, path_type=Path), metavar="RUN",
              help="Start DGM's memory from a copy of RUN's (a run of the same data, classes, variant, profile, seed "
                   "and generator): the tasks it learned are not learned again, so that methods added here are "
                   "compared on the same memory, with the figures a run that learns it gives. Its GAN seconds count "
                   "as this run's. The classifiers' budget may differ (--classifier-epochs, --classifier-width, "
                   "--augment): the generator is the same, the stored solver not, so dgm-solver is then refused.")
@click.option("--checkpoint-every", type=FiniteFloatRange(0), metavar="SECONDS",
              help="Also save DGM's training state inside a task this often (0: every epoch; genmem learn-task "
                   "--checkpoint-every), so --resume continues a killed task from its last save rather than its "
                   "start: for machines that are taken back sooner than a task ends. Results are unchanged.")
@click.option("--combine", type=click.Path(file_okay=False, path_type=Path), multiple=True, metavar="RUN",
              help="Instead of running: one table and one A_t plot (into --out) from finished runs of one data "
                   "set, profile and seed, e.g. a DGMw run with the baselines and a DGMa run; repeat per run.")
@click.option("--buffer-bytes", type=click.IntRange(1), metavar="N",
              help="The buffer's budget in bytes (default: after each task, the bytes DGM's last version stores for "
                   "replay, its generator's weights and masks; required when no DGM method runs). An image costs one "
                   "byte per pixel and channel at 32 pixels.")
@click.option("--buffer-scales", type=PositiveList(float), metavar="LIST",
              help="Run the buffer at these multiples of its budget, all beside one DGM memory, e.g. 0.25,0.5,1,2,4: "
                   "methods buffer-x0.25, buffer-x0.5, buffer, buffer-x2, buffer-x4 (default: 1, the method buffer).")
@click.option("--exemplar-selection", type=click.Choice(SELECTIONS),
              help="How buffer and hybrid choose the real images they keep: herding (iCaRL's, in a fixed random "
                   "convolutional feature space; the default) or random.")
@click.option("--hybrid-per-class", type=PositiveList(int), metavar="K",
              help="Real images hybrid keeps of every class (default 20); a list, e.g. 20,50,100, runs hybrid-k20, "
                   "hybrid-k50 and hybrid-k100 beside one DGM memory.")
@click.option("--hybrid-ratio", type=FiniteFloatRange(0, 1), metavar="R",
              help="The share of real images among each earlier class's images in hybrid's batches, the paper's r "
                   "(default 0.5); the rest are DGM's replay. With few real images a smaller share keeps replay's "
                   "variety: on split-CIFAR-10, K = 20 ended 3.4 points higher at 0.25 (one seed).")
@click.option("--newest-generated", type=PositiveList(float), metavar="LIST",
              help="dgm-newest's share of the newest classes' images in a batch that DGM generates instead of real "
                   "ones (default 0.5; 1: replay alone, no real image); a list, e.g. 0.5,1, runs dgm-newest-50 and "
                   "dgm-newest-100 beside one memory. It matters for long classifier training: on split-CIFAR-10 "
                   "at 20 passes 0.5 held A5 at 56.2 where dgm-replay fell to 44.0 (one seed).")
@click.option("--min-confidence", type=PositiveList(float), metavar="LIST",
              help="dgm-confident's threshold: it replays only images that the version's stored solver puts in "
                   "their class with at least this probability (default 0.5; twice as many are drawn); a list, "
                   "e.g. 0.3,0.5, runs dgm-confident-30 and dgm-confident-50 beside one memory. On split-CIFAR-10 "
                   "both ended 0.7 under dgm-replay (one seed), though replay alone gained 3 to 7 points.")
@click.option("--csv", "table_csv", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write the run's figures as rows of this CSV (BENCHMARKS.csv): every method's accuracy after "
                   "the last task, and DGM's replay payload in bytes.")
@run_options
@click.pass_context
@friendly_errors
def protocol(ctx, out, resume, combine, data_dir, device, checkpoint_every, record, quiet, table_csv, **settings):
    """Run the paper's protocol: one class per task, A_t after every task, against baselines and bounds.

    With --classes-per-task 2 it runs split-MNIST or split-CIFAR-10 (5 tasks of
    2 classes, class-incremental); the literature's split-MNIST figures are
    printed beside a run with --classifier mlp.

    After every task each method's classifier is tested on the real test
    images of the classes seen so far: the DGM solver stored with the
    version (dgm-solver), a fresh classifier trained on the task's real
    images plus replay of earlier classes from DGM (dgm-replay), from deep
    generative replay (dgr), MeRGAN's replay alignment (mergan) or EWC on the
    generator (ewc), joint
    training on every real image seen (upper bound) and sequential
    fine-tuning without replay (lower bound). A buffer of real images in as
    many bytes as DGM's memory (buffer) and DGM's replay with K real images
    per class mixed in (hybrid) measure what the generative memory is worth
    against keeping real images. No real image of an earlier class is used
    by the continual methods beyond what buffer and hybrid keep, for training
    or for model selection: every figure is the final model's. The paper's
    figures are printed beside them only for the data sets and protocol it
    measured (MNIST, SVHN, CIFAR-10; one class per task in label order).

    Results and state are written after every task: a killed or pre-empted
    run continues with --resume OUT and ends with the results.json an
    uninterrupted run writes (bar the seconds spent).

    \b
    Examples:
      genmem bench protocol --data mnist --data-dir ~/data --profile quick --out runs/mnist-dgmw-quick \\
          --record docs/experiments/NEW-RECORD.md
      genmem bench protocol --data mnist --methods dgm-solver,dgm-replay,dgr,mergan,joint,finetune \\
          --out runs/mnist-baselines
      genmem bench protocol --resume runs/mnist-baselines
      genmem bench protocol --data mnist --classes-per-task 2 --classifier mlp \\
          --methods dgm-solver,dgm-replay,dgr,joint,finetune --out runs/split-mnist
      genmem bench protocol --combine runs/mnist-baselines --combine runs/mnist-dgma --out runs/mnist-table
      genmem bench protocol --data mnist --methods dgm-replay,buffer,hybrid --buffer-scales 0.25,0.5,1,2,4 \\
          --hybrid-per-class 20,50,100 --out runs/mnist-bytes --csv BENCHMARKS.csv
      genmem bench protocol --data mnist --methods dgm-replay,dgm-newest --newest-generated 0.5,1 \\
          --memory-from runs/mnist-dgmw-quick --out runs/mnist-newest
    """
    from genmem.benchmarks.protocol import resume_protocol
    from genmem.benchmarks.record import CpuWatch, commit, invoked_command, machine, provenance
    from genmem.device import resolve_device

    check_mode(ctx, combine, out, resume)
    if combine:
        return combined_report(combine, out, record)
    target = resolve_device(device)
    command = invoked_command()
    where = provenance([machine(target)], command)  # now: the code that runs, not the tree at the end
    rows = {"hardware": machine(target), "commit": commit(), "command": command}  # for --csv
    watch = CpuWatch()
    if resume is not None:
        out = resume
        results = resume_protocol(resume, data_dir, device=target, progress=not quiet,
                                  checkpoint_every=checkpoint_every)
    else:
        results = start_run(out, data_dir, target, checkpoint_every, quiet, started_by=rows, **settings)
    report(results, out, where, watch.others_share(), record)
    if table_csv:
        from genmem.benchmarks.record import record_rows
        from genmem.benchmarks.rows import protocol_rows

        record_rows(table_csv, protocol_rows(results, **rows))
        click.echo(f"rows of every method in {table_csv}")


def check_mode(ctx: click.Context, combine: tuple[Path, ...], out: Path | None, resume: Path | None) -> None:
    """Refuse a command line that mixes the command's three modes (combine finished runs, start a run, resume
    one): each takes only its own options, so that nothing given is silently ignored."""
    if combine:
        ignored = given_options(ctx, exclude=("combine", "out", "record", "quiet"))
        if ignored:
            raise click.UsageError(f"--combine only reads finished runs (and writes --out and --record); drop "
                                   f"{', '.join(ignored)}")
        return
    if (out is None) == (resume is None):
        raise click.UsageError("give --out NEW_FOLDER for a new run, or --resume OUT to continue one")
    fixed = given_options(ctx, exclude=("resume", "data_dir", "device", "record", "quiet", "checkpoint_every",
                                        "table_csv"))
    if resume is not None and fixed:
        raise click.UsageError(f"--resume continues a run with the options it was started with; drop "
                               f"{', '.join(fixed)}")


def start_run(out: Path, data_dir: Path | None, target, checkpoint_every: float | None, quiet: bool, *, source,
              test_data, variant, methods, profile, images_per_class, gan_epochs, augment, classifier_epochs,
              classifier_width, base_width, solver_mode, storage_dtype, gan_setting, tasks, classes_per_task,
              class_order,
              network, arch, class_norm, seed, started_by, memory_from, **method_settings) -> dict:
    """Start a new run in out and return its results: the part of protocol whose options (by their names on the
    command line) a resumed run reads back from its folder instead."""
    from genmem.benchmarks.protocol import load_run_data, profile_for, run_protocol
    from genmem.benchmarks.results import describe_data
    from genmem.presets import recipe_for

    options = method_options(split_classes(methods), method_settings)
    train, test = load_run_data(source, test_data, data_dir)
    recipe = recipe_for(source, train.images.shape[1])
    budget = profile_for(profile, recipe).with_budget(images_per_class, gan_epochs, augment, classifier_epochs,
                                                      classifier_width)
    budget = budget.with_gan_settings(gan_overrides(gan_setting)).with_storage(storage_dtype)
    return run_protocol(train, test, recipe, variant, budget, out, device=target, seed=seed, num_tasks=tasks,
                        progress=not quiet, methods=split_classes(methods), data=describe_data(source, test_data),
                        base_width=base_width, solver=solver_mode, checkpoint_every=checkpoint_every,
                        method_options=options, classes_per_task=classes_per_task,
                        class_order=split_classes(class_order) or None, classifier=network, arch=arch,
                        class_norm=class_norm, started_by={k: started_by[k] for k in ("command", "commit")},
                        memory_from=memory_from)


def gan_overrides(text: str | None) -> dict:
    """--gan-setting's TrainingConfig fields; one that an option of its own sets is refused, naming the option."""
    from genmem.config import parse_overrides

    overrides = parse_overrides(text or "")
    owned = [OWN_OPTIONS[key] for key in overrides if key in OWN_OPTIONS]
    if owned:
        raise click.UsageError(f"--gan-setting sets a field that {', '.join(owned)} sets; give "
                               f"{'that option' if len(owned) == 1 else 'those options'} instead")
    return overrides


def method_options(methods: list[str], given: dict) -> dict:
    """The methods' own options the command line gave; one that no chosen method takes is refused."""
    options = {key: value for key, value in given.items() if value is not None}
    for key in options:
        if not set(METHOD_OPTIONS[key]) & set(methods):
            raise click.UsageError(f"--{key.replace('_', '-')} is an option of {' and '.join(METHOD_OPTIONS[key])}; "
                                   f"add it to --methods or drop the option")
    return options


def given_options(ctx: click.Context, exclude: tuple[str, ...]) -> list[str]:
    """The options, other than `exclude`, that the command line gave (as their flags)."""
    return [p.opts[0] for p in ctx.command.params if isinstance(p, click.Option) and p.name not in exclude
            and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]


def report(results: dict, out: Path, where: str, busy: float | None, record: Path | None) -> None:
    """Plots into out, the table to the terminal, and with `record` a section of that file."""
    from genmem.benchmarks.charts import accuracy_plot
    from genmem.benchmarks.record import record_section
    from genmem.benchmarks.results import growth_table, markdown_table, newest_table, run_title
    from genmem.plots import confusion_plot, growth_plot

    (out / "accuracy.png").write_bytes(accuracy_plot(results))
    names = [c["name"] for c in results["classes"]]
    shown = "dgm-replay" if "dgm-replay" in results["confusion"] else next(iter(results["confusion"]))
    (out / "confusion.png").write_bytes(confusion_plot(results["confusion"][shown], names,
                                                       f"{shown}, after the last task"))
    plots = [f"`{out}/accuracy.png`", f"`{out}/confusion.png`"]
    if "growth" in results:
        (out / "growth.png").write_bytes(growth_plot(results))
        plots.insert(1, f"`{out}/growth.png`")
    table = markdown_table(results)
    click.echo(table)
    newest = f"The classes of the newest task against the earlier ones:\n\n{newest_table(results)}"
    click.echo(f"\n{newest}")
    against_bytes = bytes_report([results], results, out)
    if against_bytes:
        plots.append(f"`{out}/bytes.png`")
    others = "CPU use of others unknown" if busy is None else f"other processes took {busy:.0%} of the CPU meanwhile"
    timing = ", ".join(f"{'DGM GAN' if k == 'gan' else k} {v:.0f} s" for k, v in results["seconds"].items())
    timing = f"{timing}; {others}"
    click.echo(f"\n{timing}; plots and results.json in {out}")
    if record:
        parts = [where, table, newest]
        if "growth" in results:
            size = results["growth"][-1]["parameters"]["total"]
            parts += [growth_table(results), f"Final DGM generator: {size:,} parameters."]
        if "baselines" in results:
            parts.append(f"Baselines' generator: {results['baselines']['parameters']:,} parameters, fixed.")
        if against_bytes:
            parts.append(against_bytes)
        parts.append(f"Time: {timing}. Plots: {', '.join(plots)}.")
        record_section(record, f"{run_title(results)}, {results['profile']['name']} profile", "\n\n".join(parts))


def combined_report(runs: tuple[Path, ...], out: Path | None, record: Path | None) -> None:
    """One table and one A_t plot from several finished runs."""
    from genmem.benchmarks.charts import accuracy_plot
    from genmem.benchmarks.protocol import saved_run
    from genmem.benchmarks.record import invoked_command, provenance, record_section
    from genmem.benchmarks.results import combine_runs, markdown_table, run_title

    if out is None:
        raise click.UsageError("--combine needs --out FOLDER for the combined plot")
    saved = [saved_run(run) for run in runs]
    results = combine_runs(saved)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.png").write_bytes(accuracy_plot(results))
    table = markdown_table(results)
    click.echo(table)
    against_bytes = bytes_report(saved, results, out)
    click.echo(f"\nplot in {out / 'accuracy.png'}" + (f" and {out / 'bytes.png'}" if against_bytes else ""))
    if record:
        where = provenance(["the runs' own (see their sections)"], invoked_command())
        plots = f"Plot: `{out}/accuracy.png`" + (f", `{out}/bytes.png`." if against_bytes else ".")
        listed = f"Runs: {', '.join(f'`{run}`' for run in runs)}."
        body = "\n\n".join(part for part in (where, listed, table, against_bytes, plots) if part)
        record_section(record, f"{run_title(results)}, {results['profile']['name']} profile", body)


def bytes_report(runs: list[dict], results: dict, out: Path) -> str:
    """Where runs hold a buffer or hybrid: the accuracy against bytes plot into out, its table to the terminal and
    returned (for --record); '' otherwise."""
    from genmem.benchmarks.charts import accuracy_bytes_plot
    from genmem.benchmarks.footprint import bytes_table, points_of_runs
    from genmem.benchmarks.results import run_title

    points = points_of_runs(runs)
    if all(point.kind == "genmem" for point in points):
        return ""
    title = f"{run_title(results, display=True)}, profile {results['profile']['name']}"
    (out / "bytes.png").write_bytes(accuracy_bytes_plot(points, title))
    table = "Accuracy against the bytes kept for replay:\n\n" + bytes_table(points)
    click.echo("\n" + table)
    return table
