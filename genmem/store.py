"""How a memory keeps its versions on disk: immutable directories, atomic commits, one writer, checksums.

    MEMORY/
      .lock                     held (flock) by the one process writing a new version
      versions/
        v0001/                  one directory per learned task, never changed after it appears
          manifest.json         what the version is, with the sha256 and size of every other file
          ...                   the files the artifact layer writes (see artifact.py and FORMAT.md)
        .incomplete-v0002-PID/  a version being written; ignored by readers, removed by the next writer
      task-checkpoint.safetensors  the state of the task being learned on top of the latest version, if it asked
                                for checkpoints (genmem.checkpoint); replaced atomically, removed by the next commit

A version appears by renaming its finished, fsynced directory into place, so
every `vNNNN` directory is complete, and the latest version is simply the
highest-numbered one: a crash or kill at any moment leaves the previous
versions untouched and loadable. The store deals in bytes; it knows nothing of
generators.

Nothing inside a memory may be a symbolic link: the lock is opened without
following one (a link there would let the writer truncate any file the user
can write), and a versions folder, version folder or file that is a link is
refused as damaged rather than read from wherever it points. A version folder
must also bear the name its manifest records, so a copy of v0003 placed as
v0005 is damaged too, not a second v0003.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from genmem.errors import CorruptMemory, MemoryBusy, MemoryNotFound
from genmem.names import shown, version_name

MANIFEST = "manifest.json"
CHECKPOINT = "task-checkpoint.safetensors"
VERSION_NAME = re.compile(r"v[0-9]{4,9}", re.ASCII)
INCOMPLETE_PREFIX = ".incomplete-"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seal_manifest(manifest: dict) -> bytes:
    """The manifest as written: pretty JSON that carries the sha256 of its own canonical form."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return (json.dumps({**body, "manifest_sha256": sha256(_canonical(body))}, indent=2) + "\n").encode()


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _read_regular_file(path: Path, version: str, limit: int = -1) -> bytes:
    """The bytes of a plain file (its first `limit` only, if given), never through a link, a pipe or a device
    (which could block or lie).

    version: what the file belongs to, named in the error ("version v0003", say).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CorruptMemory(f"{path} is missing; {version} is damaged") from None
    except OSError as exc:
        raise CorruptMemory(f"{path} cannot be opened ({exc.strerror}; a symbolic link?); "
                            f"{version} is damaged") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise CorruptMemory(f"{path} is not a plain file; {version} is damaged")
        return file.read(limit)


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write `files` into `folder`, a new folder (its parents are made), each file fsynced, then the folder."""
    folder.mkdir(parents=True)
    for name, data in files.items():
        _write_synced(folder / name, data)
    _fsync_dir(folder)


def _refuse_link(path: Path, what: str) -> None:
    if path.is_symlink():
        raise CorruptMemory(f"{path} is a symbolic link; genmem does not follow links inside a memory ({what} "
                            f"must be a real one, not a pointer elsewhere): replace it or start a new memory")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MemoryStore:
    """The versions of one memory directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.versions_dir = self.path / "versions"

    def exists(self) -> bool:
        return self.versions_dir.is_dir()

    def versions(self) -> list[str]:
        """Names of the finished versions, oldest first (a version folder that is a link is listed, and damaged)."""
        if not self.exists():
            return []
        _refuse_link(self.versions_dir, "the versions folder")
        names = [p.name for p in self.versions_dir.iterdir()
                 if VERSION_NAME.fullmatch(p.name) and (p.is_dir() or p.is_symlink())]
        return sorted(names, key=lambda name: int(name[1:]))

    def latest(self) -> str | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def resolve(self, version: str | None) -> str:
        """A version name ('v0003', 'v3' or '3'), 'latest' or None (the latest), checked to exist."""
        if not self.exists():
            hint = "it does not exist" if not self.path.exists() else "it has no versions/ folder"
            raise MemoryNotFound(f"{self.path} is not a genmem memory ({hint}); create one with `genmem learn-task`")
        versions = self.versions()
        if version in (None, "latest"):
            if not versions:
                stopped = (" (its first task stopped after a checkpoint: rerun that learn-task to continue it)"
                           if self.has_checkpoint() else "")
                raise MemoryNotFound(f"memory {self.path} has no finished version yet{stopped}; learn a task first")
            return versions[-1]
        name = version_name(version)
        if name not in versions:
            raise MemoryNotFound(f"memory {self.path} has no version {shown(name or version)}; "
                                 f"it has {', '.join(versions) or 'none'}")
        return name

    def read(self, version: str | None = None) -> tuple[dict, dict[str, bytes]]:
        """The verified manifest and the bytes of every file it lists.

        Raises CorruptMemory naming the file when a file is missing, has the
        wrong size or fails its checksum, or when the manifest itself is damaged.
        """
        name = self.resolve(version)
        folder = self.versions_dir / name
        manifest = self._read_manifest(folder)
        files = {}
        for file, expected in manifest["files"].items():
            path = folder / file
            if Path(file).name != file or file == MANIFEST:
                raise CorruptMemory(f"{folder / MANIFEST} lists the file {shown(file)}, which is not a file of its "
                                    f"own folder; version {name} is damaged")
            data = _read_regular_file(path, f"version {name}")
            if len(data) != expected["bytes"]:
                raise CorruptMemory(f"{path} is {len(data)} bytes but the manifest records {expected['bytes']} "
                                    f"(truncated or damaged); version {name} cannot be loaded")
            if sha256(data) != expected["sha256"]:
                raise CorruptMemory(f"{path} fails its sha256 checksum (damaged); version {name} cannot be loaded")
            files[file] = data
        return manifest, files

    def version_files(self, version: str | None = None) -> tuple[str, dict[str, bytes]]:
        """A version's name and its files exactly as stored, manifest.json included (the bytes a signature signs),
        all verified: what a copy of the version holds (and nothing else its folder may hold)."""
        manifest, files = self.read(version)
        name = manifest["version"]
        raw = _read_regular_file(self.versions_dir / name / MANIFEST, f"version {name}")
        try:
            same = json.loads(raw) == manifest
        except (ValueError, UnicodeDecodeError):
            same = False
        if not same:
            raise CorruptMemory(f"the manifest of version {name} changed while it was read; try again")
        return name, {**files, MANIFEST: raw}

    def manifest(self, version: str | None = None) -> dict:
        """The verified manifest alone (the other files are not read)."""
        return self._read_manifest(self.versions_dir / self.resolve(version))

    def _read_manifest(self, folder: Path) -> dict:
        """The verified manifest of a version folder, which must be a real folder bearing the manifest's name."""
        _refuse_link(folder, "a version folder")
        path = folder / MANIFEST
        try:
            manifest = json.loads(_read_regular_file(path, f"version {folder.name}"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptMemory(f"{path} is not valid JSON ({exc}); version {folder.name} is damaged") from None
        if not isinstance(manifest, dict) or "manifest_sha256" not in manifest or "files" not in manifest:
            raise CorruptMemory(f"{path} is not a genmem manifest")
        body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
        if sha256(_canonical(body)) != manifest["manifest_sha256"]:
            raise CorruptMemory(f"{path} fails its checksum (damaged); version {folder.name} cannot be loaded")
        if manifest.get("version") != folder.name:
            raise CorruptMemory(f"{path} describes version {shown(manifest.get('version'))} but lies in folder "
                                f"{folder.name} (copied or renamed); version {folder.name} is damaged")
        if not isinstance(manifest["files"], dict):
            raise CorruptMemory(f"{path} is not a genmem manifest")
        return manifest

    def has_checkpoint(self) -> bool:
        path = self.path / CHECKPOINT
        return path.exists() or path.is_symlink()

    def checkpoint(self, limit: int = -1) -> bytes | None:
        """The bytes of the unfinished task's checkpoint (its first `limit` only, if given), None if there is
        none; CorruptMemory if it is a link or not a plain file."""
        if not self.has_checkpoint():
            return None
        return _read_regular_file(self.path / CHECKPOINT, "the task checkpoint", limit)

    def checkpoint_size(self) -> int:
        return os.stat(self.path / CHECKPOINT, follow_symlinks=False).st_size

    @contextlib.contextmanager
    def writer(self) -> Iterator["VersionWriter"]:
        """Hold the memory's write lock; a second writer fails at once with MemoryBusy."""
        if self.path.is_file() or (self.path.exists() and not self.exists() and any(self.path.iterdir())):
            raise MemoryNotFound(f"{self.path} exists and is not a genmem memory; choose a new or empty path")
        created = not self.path.exists()
        _refuse_link(self.versions_dir, "the versions folder")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with self._open_lock() as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                raise MemoryBusy(f"memory {self.path} is being written by {holder}; wait for it to finish "
                                 f"(a memory takes one new version at a time)") from None
            lock.truncate(0)
            lock.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
            lock.flush()
            try:
                self._remove_incomplete()
                yield VersionWriter(self)
            except BaseException:
                # A failed first task leaves no empty memory behind, unless it checkpointed work to continue.
                if created and not self.versions() and not self.has_checkpoint():
                    shutil.rmtree(self.path, ignore_errors=True)
                raise
            finally:
                lock.truncate(0)
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _open_lock(self):
        """The lock file, opened for writing without following a link (a link would aim the writer elsewhere)."""
        path = self.path / ".lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError:
            _refuse_link(path, "the lock")
            raise
        lock = os.fdopen(fd, "r+")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            lock.close()
            raise CorruptMemory(f"{path} is not a plain file; remove it (genmem recreates it)")
        return lock

    def _remove_incomplete(self) -> None:
        """Leftovers of writers that crashed; safe to delete because we hold the lock."""
        for leftover in self.versions_dir.glob(INCOMPLETE_PREFIX + "*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in self.path.glob(f"{INCOMPLETE_PREFIX}{CHECKPOINT}-*"):
            leftover.unlink(missing_ok=True)


class VersionWriter:
    """Commits new versions; exists only while the store's lock is held."""

    def __init__(self, store: MemoryStore):
        self.store = store

    def next_version(self) -> str:
        latest = self.store.latest()
        return f"v{(int(latest[1:]) if latest else 0) + 1:04d}"

    def commit(self, files: dict[str, bytes], manifest: dict) -> str:
        """Write `files` and the manifest (which gains their checksums) as the next version, atomically.

        The manifest's "version" must be `next_version()`, so that files written
        beside it (a model card, say) can name the version they belong to.
        """
        name = self.next_version()
        if manifest.get("version") != name:
            raise ValueError(f"manifest names version {manifest.get('version')!r}, the next version is {name!r}")
        staging = self.store.versions_dir / f"{INCOMPLETE_PREFIX}{name}-{os.getpid()}"
        staging.mkdir()
        manifest = {**manifest,
                    "files": {f: {"sha256": sha256(data), "bytes": len(data)} for f, data in sorted(files.items())}}
        for file, data in files.items():
            _write_synced(staging / file, data)
        _write_synced(staging / MANIFEST, seal_manifest(manifest))
        _fsync_dir(staging)
        os.rename(staging, self.store.versions_dir / name)
        _fsync_dir(self.store.versions_dir)
        self.clear_checkpoint()  # it belonged to the task now committed
        return name

    def save_checkpoint(self, data: bytes) -> None:
        """Replace the unfinished task's checkpoint atomically: a kill leaves the old one or the new one whole."""
        path = self.store.path / CHECKPOINT
        _refuse_link(path, "the task checkpoint")
        staging = self.store.path / f"{INCOMPLETE_PREFIX}{CHECKPOINT}-{os.getpid()}"
        staging.unlink(missing_ok=True)
        _write_synced(staging, data)
        os.replace(staging, path)
        _fsync_dir(self.store.path)

    def clear_checkpoint(self) -> None:
        (self.store.path / CHECKPOINT).unlink(missing_ok=True)


AUDITS = "audits"
AUDIT_RECORD = "audit.json"
AUDIT_NAME = re.compile(r"a[0-9]{4,9}", re.ASCII)


def add_audit(store: MemoryStore, version: str, files: dict[str, bytes], record: dict) -> Path:
    """Keep an audit of a finished version beside it, as MEMORY/audits/vNNNN/aNNNN/, atomically and checksummed.

    A version never changes once it appears, so an audit made later is a
    record of its own: `audit.json` (sealed like a manifest, with the sha256
    of every other file) names the audited version's manifest_sha256, and it
    appears by renaming its finished, fsynced folder into place. Audits need
    no write lock: two at once take different numbers.
    """
    name = store.resolve(version)
    folder = store.path / AUDITS / name
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f"{INCOMPLETE_PREFIX}{os.getpid()}-{time.time_ns()}"
    staging.mkdir()
    record = {**record, "files": {f: {"sha256": sha256(data), "bytes": len(data)} for f, data in sorted(files.items())}}
    for file, data in files.items():
        _write_synced(staging / file, data)
    _write_synced(staging / AUDIT_RECORD, seal_manifest(record))
    _fsync_dir(staging)
    number = 1 + max((int(p.name[1:]) for p in folder.iterdir() if AUDIT_NAME.fullmatch(p.name)), default=0)
    while True:
        try:
            os.rename(staging, folder / f"a{number:04d}")  # fails if another audit took the number
            break
        except OSError:
            number += 1
    _fsync_dir(folder)
    return folder / f"a{number:04d}"


def read_audits(store: MemoryStore, version: str | None = None) -> list[dict]:
    """The verified audit records of a version, oldest first; a damaged one raises CorruptMemory naming it."""
    return [{**record, "path": str(path)} for path, record, _ in audit_files(store, version)]


def audit_files(store: MemoryStore, version: str | None = None) -> list[tuple[Path, dict, dict[str, bytes]]]:
    """Each verified audit of a version, oldest first: its folder, its record (without its own checksum) and its
    files exactly as stored, audit.json included; a damaged one raises CorruptMemory naming it."""
    name = store.resolve(version)
    folder = store.path / AUDITS / name
    if not folder.is_dir():
        return []
    audits = []
    for audit in sorted((p for p in folder.iterdir() if AUDIT_NAME.fullmatch(p.name)), key=lambda p: int(p.name[1:])):
        try:
            files = {AUDIT_RECORD: _read_regular_file(audit / AUDIT_RECORD, f"version {name}'s audit")}
            record = json.loads(files[AUDIT_RECORD])
            body = {k: v for k, v in record.items() if k != "manifest_sha256"}
            if any(Path(file).name != file or file == AUDIT_RECORD for file in record["files"]):
                raise ValueError("a listed file is not a file of the audit's own folder")
            files |= {file: _read_regular_file(audit / file, f"version {name}'s audit") for file in record["files"]}
            intact = sha256(_canonical(body)) == record["manifest_sha256"] and all(
                sha256(files[file]) == expected["sha256"] for file, expected in record["files"].items())
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError, CorruptMemory):
            intact = False
        if not intact:
            raise CorruptMemory(f"the audit {audit} is damaged (it fails its checksum); delete that folder")
        audits.append((audit, body, files))
    return audits
