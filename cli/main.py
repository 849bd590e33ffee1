"""The `genmem` command: a thin shell over the genmem library."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import click

from genmem.cli.audit import audit
from genmem.cli.bench import bench
from genmem.cli.common import DEVICE_HELP, SEED, AugmentPolicy, FiniteFloatRange, friendly_errors, split_classes
from genmem.cli.evaluate import evaluate
from genmem.cli.export import export
from genmem.cli.render import describe_recipe, render_summary
from genmem.cli.report import report
from genmem.cli.serve import serve
from genmem.cli.sign import keygen, sign
from genmem.benchmarks.profiles import PROFILES
from genmem.config import (DP_ACTIVATIONS, DP_LOSSES, MAX_BATCH_SIZE, MAX_DP_AUGMENTATIONS, MAX_EPOCHS, SOLVER_STARTS,
                           STORAGE_DTYPES, TrainingConfig)
from genmem.private import BATCH_SIZES, SMALL_BATCHES_FROM, WASSERSTEIN_UP_TO

PROFILE_CHOICES = [name for name in PROFILES if name != "smoke"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="genmem")
def main():
    """genmem: a generative memory for class-incremental continual learning.

    A memory is a directory. Each `learn-task` teaches its conditional GAN
    generator new classes and writes a new immutable version, without
    storing any training image and without changing what earlier versions
    generate for old classes. Any classifier can then replay old classes
    from it.

    \b
    Quick start (offline, on the built-in MNIST digits):
      genmem learn-task digits.mem --data builtin --classes 0
      genmem learn-task digits.mem --data builtin --classes 1
      genmem info digits.mem
      genmem sample digits.mem --count 8 -o samples.png
    """


@main.command("learn-task")
@click.argument("memory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", "source", required=True, metavar="SOURCE",
              help="Where the task's images come from: builtin (5000 MNIST digits, offline), mnist, fashion-mnist, "
                   "svhn, cifar10, folder:PATH (a sub-folder per class, named 00_cat, 01_dog, ... to fix the "
                   "labels) or npz:PATH (arrays x and y).")
@click.option("--classes", required=True, metavar="A,B,...",
              help="The new classes this task learns, by label or name, comma-separated (e.g. 3 or cat,dog).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding the torchvision-style data sets (default: $GENMEM_DATA or ~/.cache/genmem/data).")
@click.option("--download", is_flag=True, help="Download the data set into --data-dir if it is not there.")
@click.option("--variant", type=click.Choice(["dgmw", "dgma"]),
              help="Masks on weights (dgmw) or on units (dgma). Set by the first task; default dgmw.")
@click.option("--arch", type=click.Choice(["dcgan", "resnet"]),
              help="Generator architecture: the DCGAN (default) or residual stages, the paper's CIFAR-10 family, "
                   "with a residual critic trained as SNGAN's (projection head, hinge loss, spectral norm: under "
                   "the DCGAN's WGAN-GP it collapsed each class to one image; docs/ALGORITHM.md §15). Set by the "
                   "first task.")
@click.option("--class-norm", is_flag=True, default=None,
              help="Class-conditional BatchNorms in the generator: each task's scale and shift per class "
                   "(docs/ALGORITHM.md §16). Set by the first task.")
@click.option("--profile", "profile_name", type=click.Choice(PROFILE_CHOICES),
              help="The recipe's budget, as `genmem bench protocol` runs it: quick (made for 2 CPU cores: the GAN on "
                   "1,000 images per class for 40 epochs, 5,000 for 30 on colour data; critic 16 wide), paper (the "
                   "paper's GPU budgets on every image), paper-exact (the paper's method with genmem's additions "
                   "off). Default: quick on a CPU, paper on a GPU. learn-task prints what it chose.")
@click.option("--images-per-class", type=click.IntRange(1),
              help="Real images per class the GAN trains on (default: the profile's); the solver uses them all.")
@click.option("--gan-epochs", type=click.IntRange(1, MAX_EPOCHS),
              help="Epochs of the GAN over the task's images (default: the profile's: quick 40 for grey, 30 for "
                   "colour images; paper 101 MNIST, 151 SVHN, 251 CIFAR-10).")
@click.option("--batch-size", type=click.IntRange(2, MAX_BATCH_SIZE),
              help=f"Images per step (default 64; with --dp-epsilon {BATCH_SIZES[0]}, or {BATCH_SIZES[1]} from "
                   f"epsilon {SMALL_BATCHES_FROM:g}); under torchrun, the global batch that the ranks share.")
@click.option("--lr", type=FiniteFloatRange(0, min_open=True), help="Adam learning rate (default: the paper's).")
@click.option("--sparsity", type=FiniteFloatRange(0), help="Weight lambda of the sparsity regulariser; larger "
                                                           "reserves less of the network (default: the paper's).")
@click.option("--critic-width", type=click.IntRange(1), help="Channels of the critic's first layer, doubling "
                                                              "per layer (default: the profile's: quick 16).")
@click.option("--image-size", type=int, default=32, show_default=True,
              help="Image side of a new memory (a power of two: 32, 64, ...; 64 px costs 3 to 4 times as much per "
                   "image), set by the first task. Images of any size are brought to it: the shorter side resized "
                   "to it, then the centre cropped square (docs/your-data.md).")
@click.option("--base-width", type=click.IntRange(1),
              help="Base width of a new memory's generator: its last masked layer's channels, doubling towards the "
                   "first (default: the profile's: quick 10 for dgmw, 8 for dgma, 10 for colour images).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the task's training; same seed, "
                                                                     "same result on the CPU.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--solver", "solver_mode", type=click.Choice(["real", "replay", "none"]),
              help="The classifier the version ships: real (trained on the task's real images and replay; a "
                   "membership attack on it can succeed), replay (trained only on generated images: nothing "
                   "stored has seen a real image except through the generator) or none. Default: real, or "
                   "replay with --dp-epsilon.")
@click.option("--solver-start", type=click.Choice(list(SOLVER_STARTS)),
              help="Whether the solver's classification phase starts from a fresh network (default) or from the "
                   "critic's trunk and class head (the paper's solver; on the paper's MNIST budget it fell to 80 "
                   "at A10 where a fresh one reached 98: docs/experiments/2026-11-26-solver-phase.md).")
@click.option("--solver-width", type=click.IntRange(1),
              help="Channels of a fresh solver's first layer, doubling per layer (default: the critic's). A wider "
                   "solver costs only classification time after the GAN.")
@click.option("--solver-epochs", type=FiniteFloatRange(0, min_open=True),
              help="Passes over the task's images and replay that the solver's phase makes, at least 300 steps "
                   "(default 5).")
@click.option("--solver-augment", type=AugmentPolicy(), metavar="POLICY",
              help="Augmentation of the solver's training images, comma-separated from translation, cutout, "
                   "colour; '' for none (default translation, and cutout too for CIFAR-10 and custom colour "
                   "data): shifts help it read real images after learning from replay.")
@click.option("--holdout", type=FiniteFloatRange(0, 1, max_open=True), default=0.0,
              help="Share of the task's images kept out of training, so that `genmem audit --non-members "
                   "holdout` can test them; the manifest records which (by position and seed), never the images.")
@click.option("--dp-epsilon", type=FiniteFloatRange(0, min_open=True),
              help="Make the version (epsilon, delta)-differentially private with respect to the task's images: "
                   "the critic trains with DP-SGD (Opacus), the generator only sees it. Costs image quality; "
                   "see PRIVACY.md. Needs the dp extra: pip install 'genmem[dp]'.")
@click.option("--dp-delta", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=1e-5,
              show_default=True, help="The delta of --dp-epsilon; keep it well below 1 / the task's image count.")
@click.option("--dp-augmentations", type=click.IntRange(1, MAX_DP_AUGMENTATIONS),
              help="With --dp-epsilon: augmented views of each real image whose gradients are averaged before "
                   "clipping (augmentation multiplicity; views are shifted by --critic-augment's policy).")
@click.option("--dp-loss", type=click.Choice(list(DP_LOSSES)),
              help="With --dp-epsilon: the critic's loss, wasserstein (weights clipped) or logistic. Default: "
                   f"wasserstein up to epsilon {WASSERSTEIN_UP_TO:g}, logistic above (genmem.private.dp_defaults).")
@click.option("--dp-activation", type=click.Choice(list(DP_ACTIVATIONS)),
              help="With --dp-epsilon: the critic's nonlinearity, leaky_relu or tanh (tempered).")
@click.option("--critic-augment", type=AugmentPolicy(), metavar="POLICY",
              help="Differentiable augmentation of the critic's real and generated images, comma-separated from "
                   "translation, cutout, colour; '' for none (default none, or genmem's DP defaults').")
@click.option("--checkpoint-every", type=FiniteFloatRange(0), metavar="SECONDS",
              help="Save the task's training state inside MEMORY at the first epoch end after this many seconds "
                   "(0: every epoch). Rerun the same command after a kill and the task continues from it, ending "
                   "bit-identical to an uninterrupted run; the next version removes it. Under torchrun rank 0 "
                   "saves and every rank restores; not with --dp-epsilon. Default: no checkpoints (a matching one "
                   "is still continued).")
@click.option("--storage-dtype", type=click.Choice(list(STORAGE_DTYPES)),
              help="The type this task stores the generator weights it trains in. bfloat16 (a new memory's default) or "
                   "float16 round them as the task ends and write a compressed version (format 4) less than half "
                   "the size, old classes' images still bit-identical (docs/ALGORITHM.md §19); float32 rounds "
                   "nothing and writes the uncompressed formats 2 and 3. A later task keeps the type of the "
                   "memory's last task unless this option is given, so that readers of its format can still read "
                   "the new version.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def learn_task(memory, source, classes, data_dir, download, variant, arch, class_norm, profile_name,
               images_per_class, gan_epochs, batch_size, lr,
               sparsity, critic_width, image_size, base_width, seed, device, solver_mode, solver_start, solver_width,
               solver_epochs, solver_augment, holdout, dp_epsilon, dp_delta, dp_augmentations, dp_loss, dp_activation,
               critic_augment, checkpoint_every, storage_dtype, quiet):
    """Learn new classes into MEMORY as the next task and write a new version.

    The first task creates MEMORY. Later tasks must bring classes the memory
    has not learned, with images of the same channel count; images of any
    size are brought to the memory's (shorter side resized, centre cropped).
    A folder's classes keep the labels the memory gave them when a class
    folder is added later (docs/your-data.md). A second learn-task on the
    same memory while one runs fails at once; a run that is killed leaves
    every finished version intact.

    \b
    Examples:
      genmem learn-task digits.mem --data mnist --data-dir ~/data --classes 0
      genmem learn-task pets.mem --data folder:./pets --classes cat,dog --variant dgma
      genmem learn-task cifar.mem --data cifar10 --classes 0 --arch resnet --base-width 16
      genmem learn-task private.mem --data mnist --classes 0 --dp-epsilon 10 --holdout 0.1

    With --dp-epsilon, the settings no option gives are genmem's DP defaults
    (genmem.private.dp_defaults: epochs, critic; the critic's loss and the
    batch size by epsilon; PRIVACY.md says why).

    Data-parallel on N processes (GPUs with NCCL, else CPU with gloo), same
    global --batch-size and --lr as one process; rank 0 writes the version:

    \b
      torchrun --nproc-per-node 2 $(which genmem) learn-task digits.mem --data mnist --classes 3
    """
    from genmem.artifact import task_storage_dtype
    from genmem.data import load_source
    from genmem.device import resolve_device
    from genmem.distributed import from_environment
    from genmem.memory import Memory
    from genmem.presets import recipe_for
    from genmem.rank_writer import finish, shutdown, version_writer

    target = resolve_device(device)
    parallel = from_environment(target)  # set when torchrun launched this process as one rank of several
    click.get_current_context().call_on_close(lambda: shutdown(parallel))
    target = parallel.device if parallel else target
    wanted = split_classes(classes)
    check_options(wanted, dp_epsilon, profile_name, parallel)
    mem = Memory(memory)
    with version_writer(mem.store, parallel) as writer:  # before the data loads: a second writer fails at once
        generator = generator_settings(mem, variant, image_size)
        variant_now = generator["variant"]
        storage_dtype = storage_dtype or (task_storage_dtype(mem.manifest()["tasks"][-1]) if mem.versions() else None)
        data = load_source(source, data_dir, train=True, download=download, image_size=generator["image_size"])
        recipe = recipe_for(source, data.images.shape[1])
        given = dict(epochs=gan_epochs, gan_images_per_class=images_per_class, batch_size=batch_size, lr=lr,
                     sparsity_weight=sparsity, critic_width=critic_width, seed=seed, solver=solver_mode,
                     solver_start=solver_start, solver_width=solver_width, solver_epochs=solver_epochs,
                     solver_augment=solver_augment, critic_augment=critic_augment, dp_delta=dp_delta,
                     dp_augmentations=dp_augmentations, dp_loss=dp_loss, dp_activation=dp_activation,
                     storage_dtype=storage_dtype)
        arch_now = generator.get("arch", arch or "dcgan")
        config, source_of_settings, base_width = task_config(given, dp_epsilon, profile_name, target, recipe,
                                                             variant_now, arch_now, base_width)
        if not quiet and not (parallel and parallel.rank):
            task_images = len(data.select(data.resolve(wanted)).labels) // len(wanted)
            click.echo(describe_recipe(source_of_settings, recipe, variant_now, config, target, task_images,
                                       arch_now, generator["image_size"]), err=True)
        version = mem.learn_task(data, wanted, variant=variant, config=config, device=target,
                                 image_size=image_size, base_width=base_width,
                                 progress=not quiet and not (parallel and parallel.rank), writer=writer,
                                 parallel=parallel, holdout=holdout, checkpoint_every=checkpoint_every, arch=arch,
                                 class_norm=class_norm)
    if not (parallel and parallel.rank):  # rank 0 reports
        report_learned(mem, version, memory, wanted)
    finish(parallel)


def check_options(wanted: list[str], dp_epsilon: float | None, profile_name: str | None, parallel) -> None:
    """Refuse an empty --classes, and --dp-epsilon with --profile or under torchrun, before the memory is locked
    or any data loads."""
    if not wanted:
        raise click.BadParameter("name at least one class", param_hint="--classes")
    if dp_epsilon is not None and profile_name is not None:
        raise click.UsageError("--dp-epsilon trains on genmem's DP defaults (PRIVACY.md), not a profile's budget; "
                               "drop --profile and set what you want changed with its own option")
    if dp_epsilon is not None and parallel:
        raise click.UsageError("--dp-epsilon trains in one process; run it without torchrun")


def generator_settings(mem, variant: str | None, image_size: int) -> dict:
    """The memory's generator settings, or a new memory's from the options: the data loads at its image size, so
    a bad --image-size is refused before it does."""
    from genmem.nets import GeneratorSpec

    generator = mem.manifest()["generator"] if mem.versions() else {"variant": variant or "dgmw",
                                                                     "image_size": image_size}
    GeneratorSpec.for_images(generator["variant"], 1, generator["image_size"])
    return generator


def task_config(given: dict, dp_epsilon: float | None, profile_name: str | None, target, recipe: str, variant: str,
                arch: str, base_width: int | None) -> tuple[TrainingConfig, str, int]:
    """The task's TrainingConfig, where its settings come from (for the summary) and the base width: a profile's
    budget for the generator family `arch` with the given settings over it, or under --dp-epsilon genmem's DP
    defaults instead."""
    from genmem.benchmarks.profiles import profile_for
    from genmem.private import dp_config

    profile = profile_for(profile_name or ("paper" if target.type == "cuda" else "quick"), recipe)
    if dp_epsilon is not None:  # DP's own defaults: a profile's budget was not chosen for noised steps
        config, source_of_settings = dp_config(dp_epsilon, recipe, variant, **given), "genmem's DP defaults"
    else:
        config = replace(profile.training_config(recipe, variant, arch=arch),
                         **{name: value for name, value in given.items() if value is not None})
        source_of_settings = f"the {profile.name} profile"
    return config, source_of_settings, base_width or profile.base_width(variant, recipe)


def report_learned(mem, version: str, memory: Path, wanted: list[str]) -> None:
    """The one line learn-task ends with: the new version, its time and how it used the generator's capacity."""
    task = mem.manifest(version)["tasks"][-1]
    new = sum(layer["new"] for layer in task["capacity"])
    reused = sum(layer["reused"] for layer in task["capacity"])
    resumed = (f" (continued from its checkpoint after epoch {task['resumed_after_epoch']})"
               if "resumed_after_epoch" in task else "")
    click.echo(f"learned task {task['task']} (classes {', '.join(wanted)}) into {memory} as {version} in "
               f"{task['seconds']:.0f} s{resumed}: widths {'/'.join(map(str, task['widths']))}, newly reserved "
               f"{new:,}, reused {reused:,}")


@main.command()
@click.argument("memory", type=click.Path(path_type=Path))
@click.option("--version", "version", help="Version to describe (default: the latest).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@friendly_errors
def info(memory, version, as_json):
    """Describe MEMORY: versions, classes, growth per task, capacity per layer, storage.

    Capacity is counted in weights for dgmw and in units for dgma: per layer,
    what each task newly reserved, what it reused from earlier tasks, and what
    stayed free.
    """
    from genmem.memory import Memory
    from genmem.summary import summarise

    summary = summarise(Memory(memory), version)
    click.echo(json.dumps(summary, indent=2) if as_json else render_summary(summary))


@main.command()
@click.argument("memory", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write: .png (a grid, one row per class), .safetensors or .npz (images and labels), "
                   ".npy (images only).")
@click.option("--image-folder", type=click.Path(file_okay=False, path_type=Path),
              help="Instead of -o: a new folder with one sub-folder of PNGs per class, named by zero-padded label "
                   "(and name), which torchvision's ImageFolder reads as is; its class i is the i-th smallest label.")
@click.option("--classes", metavar="A,B,...", help="Classes to draw, by label or name (default: all).")
@click.option("--count", type=click.IntRange(1), default=8, show_default=True, help="Images per class.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Same seed, same images.")
@click.option("--version", "version", help="Version to sample from (default: the latest).")
@click.option("--float", "as_float", is_flag=True, help="Floats in [-1, 1] instead of uint8 pixels (not for .png).")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@friendly_errors
def sample(memory, output, image_folder, classes, count, seed, version, as_float, device):
    """Draw COUNT images of each class from MEMORY and write them to a file.

    \b
    Examples:
      genmem sample digits.mem -o grid.png
      genmem sample digits.mem --classes 3,5 --count 1000 --seed 7 -o replay.safetensors
      genmem sample digits.mem --count 500 --image-folder replay/     # ImageFolder("replay/")
    """
    from genmem.device import resolve_device
    from genmem.encoding import encode_samples, format_for_path
    from genmem.image_folder import write_image_folder
    from genmem.memory import Memory

    if (output is None) == (image_folder is None):
        raise click.UsageError("give either -o FILE or --image-folder DIR")
    fmt = format_for_path(output) if output is not None else None
    sampler = Memory(memory).sampler(version, resolve_device(device))
    wanted = split_classes(classes) or [c.label for c in sampler.classes]
    images, labels = sampler.sample({key: count for key in wanted}, seed=seed, as_uint8=not as_float)
    names = {c.label: c.name for c in sampler.classes}
    if image_folder is not None:
        folders = write_image_folder(image_folder, images, labels, names)
        click.echo(f"wrote {len(images)} images from {sampler.version} to {image_folder}/, one folder per class: "
                   f"{', '.join(folder.name for folder in folders.values())}")
        return
    meta = {"memory": str(memory), "version": sampler.version, "seed": str(seed)}
    output.write_bytes(encode_samples(images, labels, fmt, names, meta))
    click.echo(f"wrote {len(images)} images of {len(wanted)} classes from {sampler.version} to {output}")


main.add_command(serve)
main.add_command(keygen)
main.add_command(sign)
main.add_command(evaluate)
main.add_command(bench)
main.add_command(audit)
main.add_command(report)
main.add_command(export)

if __name__ == "__main__":
    sys.exit(main())
