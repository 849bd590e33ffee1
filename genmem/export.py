"""A copy of a memory to share: its finished versions, and nothing that has read a real image.

A memory folder holds more than its versions. While a task is unfinished,
`task-checkpoint.safetensors` holds the GAN's critic, the one part that reads
the task's real images, and its optimiser's moments; audits made before
`genmem audit --pairs-png` kept a picture of real training images
(`closest-pairs.png`) beside their record; `.lock` names the last writer's
process. So a memory is shared by exporting it, not by copying its folder.

`export_memory` copies, for every finished version up to the one asked for,
the version's manifest and the files the manifest lists (each verified by its
checksum, byte for byte: the copy samples bit-identically), the audits of
those versions that hold numbers only, and their signatures; it signs the
copy's versions with a key if given, reads the whole copy back, and only then
renames it into place, so that DEST is either absent or whole.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from genmem.errors import GenmemError
from genmem.signing import SIGNATURES, sign_version, signature_path
from genmem.store import (AUDIT_RECORD, AUDITS, CHECKPOINT, INCOMPLETE_PREFIX, MemoryStore, audit_files, read_audits,
                          write_files)

NUMBERS_ONLY = {AUDIT_RECORD, "AUDIT.md"}  # the files of an audit that holds no image


@dataclass
class Export:
    """What an export wrote, and what of the memory it left out (for people)."""

    destination: Path
    versions: list[str]
    files: int = 0
    bytes: int = 0
    audits: int = 0
    signatures: int = 0  # copied from the memory, or made with the key
    signed_with: str | None = None
    left_out: list[str] = field(default_factory=list)


def export_memory(source: str | os.PathLike, destination: str | os.PathLike, version: str | None = None,
                  key: str | os.PathLike | None = None) -> Export:
    """Copy the finished versions of the memory at `source` up to `version` (default: the latest) to the new folder
    `destination`, with their number-only audits and their signatures, signed with the private `key` if given."""
    store, destination = MemoryStore(source), Path(destination)
    last = store.resolve(version)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise GenmemError(f"{destination} exists already; name a new folder to export to")
    if destination.resolve().is_relative_to(store.path.resolve()):
        raise GenmemError(f"{destination} lies inside the memory {store.path}; export it to a folder outside it")
    versions = [v for v in store.versions() if int(v[1:]) <= int(last[1:])]
    report = Export(destination, versions, left_out=_left_out(store, versions))
    staging = destination.parent / f"{INCOMPLETE_PREFIX}{destination.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for name in versions:
            _copy_version(store, name, staging, report)
        copy = MemoryStore(staging)
        if key is not None:
            report.signatures = len([sign_version(copy, name, key) for name in versions])
            report.signed_with = str(key)
        for name in versions:  # the copy reads back whole before it appears
            copy.read(name)
            read_audits(copy, name)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _copy_version(store: MemoryStore, name: str, staging: Path, report: Export) -> None:
    """One version's files, its number-only audits and its signature, into the copy."""
    _, files = store.version_files(name)
    write_files(staging / "versions" / name, files)
    report.files += len(files)
    report.bytes += sum(len(data) for data in files.values())
    unlisted = sorted(p.name for p in (store.versions_dir / name).iterdir() if p.name not in files)
    if unlisted:
        report.left_out.append(f"files of {name}'s folder that its manifest does not list ({', '.join(unlisted)})")
    for path, _, audit in audit_files(store, name):
        if set(audit) == NUMBERS_ONLY:
            write_files(staging / AUDITS / name / path.name, audit)
            report.audits += 1
        else:
            report.left_out.append(f"the audit {name}/{path.name}, which holds a picture of real training images")
    signature = signature_path(store, name)
    if signature.is_file() and not signature.is_symlink():
        copied = signature_path(MemoryStore(staging), name)
        copied.parent.mkdir(exist_ok=True)
        copied.write_bytes(signature.read_bytes())
        report.signatures += 1


def _left_out(store: MemoryStore, versions: list[str]) -> list[str]:
    """What the memory holds besides its versions' own files, audits and signatures, in words."""
    left = []
    if store.has_checkpoint():
        left.append(f"the task checkpoint {CHECKPOINT} (an unfinished task's critic, which read its images)")
    later = [v for v in store.versions() if v not in versions]
    if later:
        left.append(f"the later version{'s' * (len(later) > 1)} {', '.join(later)}")
    known = {"versions", AUDITS, SIGNATURES, CHECKPOINT, ".lock"}
    other = sorted(p.name for p in store.path.iterdir() if p.name not in known)
    if other:
        left.append(f"other entries of the memory's folder ({', '.join(other)})")
    return left
