"""`genmem export`: a copy of a memory to share, holding its finished versions and nothing that read a real image."""

from __future__ import annotations

from pathlib import Path

import click

from genmem.cli.common import friendly_errors


@click.command()
@click.argument("memory", type=click.Path(path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--version", "version", help="The last version to export (default: the latest); later ones stay out.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A private key from `genmem keygen`: sign every exported version in the copy, so that `genmem "
                   "serve --require-signature KEY.pub` serves it.")
@friendly_errors
def export(memory, dest, version, key):
    """Copy MEMORY's finished versions to DEST, a new folder, to share.

    A memory's folder can hold what must not be shared: while a task is
    unfinished, its checkpoint holds the GAN's critic, the part that read the
    task's images; audits made by earlier genmem releases hold a picture of
    real training images. The copy holds only each version's manifest and the
    files it lists (verified, byte for byte: the copy samples identically),
    the audits of those versions that hold numbers only, and their
    signatures. It appears whole or not at all.

    \b
    Examples:
      genmem export digits.mem share/digits.mem
      genmem export digits.mem share/digits.mem --version v0003 --key ~/.genmem/signing
    """
    from genmem.export import export_memory

    done = export_memory(memory, dest, version, key)
    span = done.versions[0] if len(done.versions) == 1 else f"{done.versions[0]}..{done.versions[-1]}"
    click.echo(f"exported {span} of {memory} to {dest}: {len(done.versions)} version(s), {done.files} files, "
               f"{done.bytes / 2**20:.2f} MiB; {done.audits} audit(s), numbers only; {done.signatures} signature(s)"
               + (f", signed with {done.signed_with}" if done.signed_with else ""))
    for item in done.left_out:
        click.echo(f"left out: {item}")
