"""`genmem keygen` and `genmem sign`: Ed25519 signatures over versions, checked by `genmem serve
--require-signature`."""

from __future__ import annotations

from pathlib import Path

import click

from genmem.cli.common import friendly_errors


@click.command()
@click.argument("key", type=click.Path(dir_okay=False, path_type=Path))
@friendly_errors
def keygen(key):
    """Make an Ed25519 key pair: KEY (private, readable by you only) and KEY.pub (public, for servers).

    \b
    Example:
      genmem keygen ~/.genmem/signing
      genmem sign digits.mem --key ~/.genmem/signing
      genmem serve digits.mem --require-signature ~/.genmem/signing.pub
    """
    from genmem.signing import generate_key

    private, public = generate_key(key)
    click.echo(f"wrote the private key {private} (keep it) and the public key {public} (give it to servers)")


@click.command()
@click.argument("memory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The private key from `genmem keygen`.")
@click.option("--version", "versions", multiple=True,
              help="Version to sign (repeat for several; default: every version not signed yet).")
@friendly_errors
def sign(memory, key, versions):
    """Sign versions of MEMORY, so that `genmem serve --require-signature KEY.pub` serves them.

    The signature covers the version's manifest, which holds the sha256 of
    every other file; it is kept in MEMORY/signatures/, and the version
    itself is not changed. A version that fails its checksums is not signed.
    """
    from genmem.memory import Memory
    from genmem.signing import sign_version, signature_path

    store = Memory(memory).store
    chosen = list(versions) or [v for v in store.versions() if not signature_path(store, v).exists()]
    for version in chosen:
        path = sign_version(store, version, key)
        click.echo(f"signed {store.resolve(version)}: {path}")
    if not chosen:
        click.echo("every version is signed already")
