"""`genmem audit`: membership-inference attacks on everything a version ships, kept beside the version.

The record (numbers) is kept in the memory; the picture of the closest pairs, whose bottom row is real training
images, goes only where --pairs-png says, never into the memory, so that a memory never holds a real image.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from genmem.cli.common import DEVICE_HELP, SEED, friendly_errors


@click.command()
@click.argument("memory", type=click.Path(path_type=Path))
@click.option("--members", required=True, metavar="SOURCE",
              help="The images the memory learned from, as learn-task read them (same SOURCE and --data-dir). "
                   "Images a task held out (--holdout) are removed from them after checking they match.")
@click.option("--non-members", required=True, metavar="SOURCE",
              help="Real images of the same classes that no task learned from (e.g. the test split: add "
                   "--non-members-test), or 'holdout' for the images the tasks held out of training.")
@click.option("--non-members-test", is_flag=True, help="Read --non-members from its test split.")
@click.option("--reference", metavar="SOURCE",
              help="A third, independent set of real images of the same classes (read from its test split with "
                   "--reference-test), to calibrate the distance attacks per image and to measure the copy rate.")
@click.option("--reference-test", is_flag=True, help="Read --reference from its test split.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding the torchvision-style data sets (default: $GENMEM_DATA or ~/.cache/genmem/data).")
@click.option("--version", "version", help="Version to audit (default: the latest).")
@click.option("--samples", "samples_per_class", type=click.IntRange(1), default=2000, show_default=True,
              help="Generated images per class the distance attacks search.")
@click.option("--max-per-class", type=click.IntRange(2), default=500, show_default=True,
              help="At most this many members, non-members and reference images per class (a random subset).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of sampling, subsets and the bootstrap.")
@click.option("--pairs-png", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write a PNG of the generated images closest to a training image (top row) above those "
                   "training images (bottom row: real images, so keep FILE private). Never written into MEMORY.")
@click.option("--json", "as_json", is_flag=True, help="Print the audit record as JSON.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@friendly_errors
def audit(memory, members, non_members, non_members_test, reference, reference_test, data_dir, version,
          samples_per_class, max_per_class, seed, pairs_png, as_json, device):
    """Attack MEMORY as an auditor would: can its parts tell training images from others?

    Every part the version ships is attacked: the generator by the distance
    from an image to its nearest generated image (GAN-Leaks), in pixels and in
    a fixed feature space; the stored solver by its loss and confidence; an
    older version's critic head by its real-or-fake score. Each attack gives
    ROC AUC (0.5: no better than chance) with a 95 % bootstrap interval and
    the share of members caught at 1 % and 0.1 % false positives. The copy
    rate says how many generated images are nearer a training image than
    fresh real images are. The audit and its Markdown card, numbers only,
    are kept under MEMORY/audits/VERSION/ (the version itself never
    changes); `genmem info` shows them. The picture of the closest
    generated/training pairs holds real training images: it is written only
    to --pairs-png, never into MEMORY.

    \b
    Examples:
      genmem audit digits.mem --members mnist --non-members mnist --non-members-test
      genmem learn-task held.mem --data mnist --classes 0 --holdout 0.1
      genmem audit held.mem --members mnist --non-members holdout --pairs-png ~/private/pairs.png
    """
    from genmem.audit import HOLDOUT, audit as run_audit, audit_card
    from genmem.data import load_source
    from genmem.device import resolve_device
    from genmem.memory import Memory
    from genmem.store import add_audit
    from genmem.summary import summarise
    from genmem.cli.render import privacy_lines

    mem = Memory(memory)
    if pairs_png is not None and pairs_png.resolve().is_relative_to(mem.path.resolve()):
        raise click.BadParameter("it lies inside MEMORY, and a memory never holds a real image: choose a file "
                                 "outside it", param_hint="--pairs-png")
    size = mem.manifest(version)["generator"]["image_size"]  # a missing memory or version fails before any data
    member_set = load_source(members, data_dir, train=True, image_size=size)
    non_member_set = HOLDOUT if non_members == HOLDOUT else load_source(non_members, data_dir,
                                                                         train=not non_members_test, image_size=size)
    reference_set = load_source(reference, data_dir, train=not reference_test, image_size=size) if reference else None
    record, pairs = run_audit(mem, member_set, non_member_set, reference_set, version, samples_per_class,
                              max_per_class, seed, resolve_device(device))
    where = add_audit(mem.store, record["version"], {"AUDIT.md": audit_card(record).encode()}, record)
    if pairs_png is not None:
        pairs_png.write_bytes(pairs)
    if as_json:
        click.echo(json.dumps({**record, "path": str(where), "pairs_png": pairs_png and str(pairs_png)}, indent=2))
        return
    click.echo("\n".join(privacy_lines(summarise(mem, record["version"]))[1:]))
    click.echo(f"kept in {where} (audit.json, AUDIT.md: numbers, no image)")
    if pairs_png is not None:
        click.echo(f"closest pairs in {pairs_png}: its bottom row is real training images, so keep it private")
