"""Signed versions: an Ed25519 signature over a version's manifest, made with a key only its owner holds.

The manifest's checksums catch accidents, not tampering: whoever can write
the files can rewrite the checksums too. A signature made with a private key
cannot be forged without it. The manifest lists the sha256 of every other file
of the version, so signing the manifest's bytes signs the whole version.

    MEMORY/signatures/v0003.ed25519    the signature (64 bytes, base64) of versions/v0003/manifest.json

Signatures live beside the versions, not in them, so that signing never
changes a finished version. `genmem serve --require-signature KEY.pub` serves
only versions whose signature verifies with the public key (cryptography's
Ed25519, a well-kept implementation).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from genmem.errors import CorruptMemory, GenmemError
from genmem.store import MANIFEST, MemoryStore

SIGNATURES = "signatures"


def _ed25519():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise GenmemError("signing needs the cryptography package: pip install 'genmem[signing]'") from None
    return serialization, ed25519


def generate_key(path: str | os.PathLike) -> tuple[Path, Path]:
    """A new key pair: PATH (private, PEM, readable by its owner only) and PATH.pub (public, to give to servers)."""
    serialization, ed25519 = _ed25519()
    private_path, public_path = Path(path), Path(f"{path}.pub")
    if private_path.exists() or public_path.exists():
        raise GenmemError(f"{private_path} or {public_path} exists already; choose another path")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(private)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def _load_key(path: str | os.PathLike, private: bool):
    serialization, ed25519 = _ed25519()
    try:
        data = Path(path).read_bytes()
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (OSError, ValueError, TypeError) as exc:
        raise GenmemError(f"{path} is not a readable {'private' if private else 'public'} key ({exc}); make one "
                          f"with `genmem keygen`") from None
    wanted = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, wanted):
        raise GenmemError(f"{path} is not an Ed25519 key; make one with `genmem keygen`")
    return key


def signature_path(store: MemoryStore, version: str) -> Path:
    return store.path / SIGNATURES / f"{version}.ed25519"


def sign_version(store: MemoryStore, version: str | None, key_path: str | os.PathLike) -> Path:
    """Sign a version's manifest (verified first) with the private key; returns the signature's path."""
    name = store.resolve(version)
    store.manifest(name)  # a damaged version is not signed
    signature = _load_key(key_path, private=True).sign((store.versions_dir / name / MANIFEST).read_bytes())
    path = signature_path(store, name)
    path.parent.mkdir(exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_bytes(base64.b64encode(signature) + b"\n")
    os.replace(staging, path)
    return path


class SignatureCheck:
    """Verifies versions against one public key; CorruptMemory for an unsigned or badly signed version."""

    def __init__(self, public_key_path: str | os.PathLike):
        self.key = _load_key(public_key_path, private=False)

    def verify(self, store: MemoryStore, version: str) -> dict:
        """The version's manifest as signed, parsed from the very bytes that verified (so that a loader can
        check it loads that manifest and not one swapped in after the check)."""
        from cryptography.exceptions import InvalidSignature

        path = signature_path(store, version)
        try:
            signature = base64.b64decode(path.read_bytes().strip(), validate=True)
        except FileNotFoundError:
            raise CorruptMemory(f"version {version} is not signed ({path} is missing); sign it with "
                                f"`genmem sign`") from None
        except (OSError, binascii.Error) as exc:
            raise CorruptMemory(f"the signature of version {version} cannot be read ({exc})") from None
        try:
            manifest = (store.versions_dir / version / MANIFEST).read_bytes()
            self.key.verify(signature, manifest)
        except (InvalidSignature, OSError):
            raise CorruptMemory(f"version {version} fails its signature check (its manifest was changed, or it "
                                f"was signed with another key)") from None
        return json.loads(manifest)
