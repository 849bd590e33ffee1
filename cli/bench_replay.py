"""`genmem bench replay`: replay quality and GAN speed under several training settings, same seed and budget."""

from __future__ import annotations

from pathlib import Path

import click

from genmem.cli.common import friendly_errors, run_options, split_classes
from genmem.errors import InvalidSetting


def parse_setting(text: str) -> tuple[str, dict]:
    """'NAME: field=value; field=value' -> (NAME, {field: value}) (genmem.config.parse_overrides)."""
    from genmem.config import parse_overrides

    name, _, body = text.partition(":")
    try:
        overrides = parse_overrides(body)
    except InvalidSetting as refused:
        raise InvalidSetting(f"setting {text!r}: {refused}") from None
    if not name.strip():
        raise InvalidSetting(f"setting {text!r} has no name: write NAME: field=value; ...")
    return name.strip(), overrides


@click.command()
@click.option("--data", "source", default="mnist", show_default=True, metavar="SOURCE",
              help="A labelled source with a test split: mnist, fashion-mnist, svhn, cifar10.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of the data sets.")
@click.option("--variant", type=click.Choice(["dgmw", "dgma"]), default="dgmw", show_default=True)
@click.option("--classes", default="0,1,2", show_default=True, help="Labels learned one per task, in order.")
@click.option("--images-per-class", type=click.IntRange(1), default=1000, show_default=True,
              help="Real images per class the GAN trains on.")
@click.option("--gan-epochs", type=click.IntRange(1), default=40, show_default=True)
@click.option("--base-width", type=click.IntRange(1), help="Initial base width (default: the variant's).")
@click.option("--setting", "settings", multiple=True, required=True, metavar="'NAME: FIELD=VALUE; ...'",
              help="A training setting to compare, repeatable: its name, then TrainingConfig fields that differ "
                   "from the recipe, e.g. 'ema: average_decay=0.99' or 'plain: average_decay=null'.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the memories, the cached judge and ablation.json.")
@run_options
@friendly_errors
def replay(source, data_dir, variant, classes, images_per_class, gan_epochs, base_width, settings, out, seed,
           device, record, quiet):
    """Learn the same classes under each setting and score every memory's replay with one fixed judge.

    The judge is a classifier trained on every real training image (cached in
    OUT); it scores 1000 generated images per class: the share it puts in
    their class, and the Fréchet distance to the class's real test images in
    its features. A fresh classifier trained on replay alone (IMAGES_PER_CLASS
    generated images of every class per pass, as the quick profile's
    classifiers learn) and the stored solver are tested on the real test
    images, and the GAN's iterations per second come from the versions'
    manifests.

    \b
    Example:
      genmem bench replay --data mnist --classes 2,3 --gan-epochs 20 --out runs/ablation \\
          --setting 'plain: average_decay=null' --setting 'ema: average_decay=0.99' \\
          --setting 'lazy: gp_every=4' --setting 'augment: critic_augment=translation,cutout'
    """
    from dataclasses import replace

    from genmem.benchmarks.ablation import judge_for, markdown_table, run_setting, save
    from genmem.benchmarks.protocol import profile_for
    from genmem.benchmarks.record import CpuWatch, invoked_command, machine, provenance, record_section
    from genmem.classifier import ClassifierConfig
    from genmem.data import load_source
    from genmem.device import resolve_device
    from genmem.presets import paper_config, recipe_for

    target = resolve_device(device)
    where = provenance([machine(target)], invoked_command())
    chosen = [parse_setting(text) for text in settings]
    train = load_source(source, data_dir, train=True)
    test = load_source(source, data_dir, train=False)
    labels = [int(c) for c in split_classes(classes)]
    recipe = recipe_for(source, train.images.shape[1])
    profile = profile_for("quick", recipe)
    classifier = ClassifierConfig(width=profile.classifier_width, epochs=profile.classifier_epochs,
                                  augment=profile.classifier_augment, seed=seed)
    watch = CpuWatch()
    judge = judge_for(train, out, target)
    rows = []
    for name, overrides in chosen:
        config = replace(paper_config(recipe, variant, epochs=gan_epochs), seed=seed, **overrides)
        rows.append(run_setting(name, config, train, test, labels, variant, images_per_class, out, judge, target,
                                base_width, progress=not quiet, classifier=classifier))
        save(rows, out)
    table = markdown_table(rows)
    click.echo(table)
    busy = watch.others_share()
    others = "CPU use of others unknown" if busy is None else f"other processes took {busy:.0%} of the CPU meanwhile"
    click.echo(f"\n{others}; ablation.json in {out}")
    if record:
        body = "\n\n".join([where, table, f"Classes {classes}, {images_per_class} images per class, {gan_epochs} "
                                          f"GAN epochs per task, seed {seed}; {others}."])
        record_section(record, f"Replay ablation: {source} {variant.upper()}", body)
