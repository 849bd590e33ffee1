"""A memory you can share: audits keep no picture in the memory, and `genmem export` copies the finished versions
and nothing that read a real image; no file of either holds a training image, or the critic outside a checkpoint."""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, UnidentifiedImageError
from safetensors.torch import load_file

from genmem.checkpoint import Checkpointing
from genmem.cli.main import main
from genmem.data import fit_images, load_source
from genmem.errors import GenmemError
from genmem.export import export_memory
from genmem.memory import Memory
from genmem.pixels import to_unit_range
from genmem.store import CHECKPOINT, add_audit, read_audits

from tiny import tiny_config, tiny_memory, tiny_set

LEARN = ["--image-size", "16", "--width", "2", "--critic-width", "4", "--epochs", "1", "--batch-size", "12",
         "--quiet", "--device", "cpu", "--solver-epochs", "1"]


class Stopped(Exception):
    """Stands for a kill after a task checkpoint was saved."""


def files_under(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def picture(data: bytes) -> np.ndarray | None:
    """A file's pixels in grey if it is an image PIL reads, else None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError):
        return None


def shows(canvas: np.ndarray, image: np.ndarray) -> bool:
    """Whether a grey image appears in the canvas, pixel for pixel, at 1 to 4 times its size (as grids show it)."""
    for scale in (1, 2, 3, 4):
        tile = image.repeat(scale, 0).repeat(scale, 1)
        first = tile[0].tobytes()
        for top in range(canvas.shape[0] - tile.shape[0] + 1):
            row = canvas[top].tobytes()
            left = row.find(first)
            while left != -1:
                if np.array_equal(canvas[top: top + tile.shape[0], left: left + tile.shape[1]], tile):
                    return True
                left = row.find(first, left + 1)
    return False


def training_image_forms(images: torch.Tensor) -> list[tuple[bytes, ...]]:
    """Per image, the bytes it is stored as anywhere: uint8 as read and as fitted to 16 px, and both as floats."""
    fitted = fit_images(images, 1, 16, "t")
    return [tuple(t.contiguous().numpy().tobytes() for t in (raw, fit, to_unit_range(raw), to_unit_range(fit)))
            for raw, fit in zip(images, fitted)]


def critic_tensors(checkpoint: bytes, path) -> list[bytes]:
    """The critic's tensors in a task checkpoint that could not turn up elsewhere by chance (16 distinct values)."""
    path.write_bytes(checkpoint)
    return [t.numpy().tobytes() for name, t in load_file(path).items()
            if name.startswith("critic.") and t.unique().numel() >= 16]


@pytest.fixture
def data(tmp_path):
    """20 px grey images of four classes (fitted to the memory's 16 px on the way), as an npz source."""
    images = tiny_set(size=20)
    path = tmp_path / "data.npz"
    np.savez(path, x=images.images[:, 0].numpy(), y=images.labels.numpy())
    return path


def test_no_file_of_a_memory_or_its_export_holds_a_training_image_or_the_critic_outside_the_checkpoint(
        tmp_path, data, monkeypatch):
    memory = tmp_path / "m"
    learned = CliRunner().invoke(main, ["learn-task", str(memory), "--data", f"npz:{data}", "--classes", "0,1",
                                        "--holdout", "0.25", *LEARN])
    assert learned.exit_code == 0, learned.output
    pairs = tmp_path / "private" / "pairs.png"
    pairs.parent.mkdir()
    audited = CliRunner().invoke(main, ["audit", str(memory), "--members", f"npz:{data}", "--non-members",
                                        "holdout", "--samples", "30", "--device", "cpu", "--pairs-png", str(pairs)])
    assert audited.exit_code == 0, audited.output
    handle = Checkpointing.after_epoch

    def save_then_stop(self, state, progress, last):
        handle(self, state, progress, last)
        raise Stopped

    monkeypatch.setattr(Checkpointing, "after_epoch", save_then_stop)
    with pytest.raises(Stopped):
        Memory(memory).learn_task(load_source(f"npz:{data}"), ["2"], config=tiny_config(epochs=3),
                                  checkpoint_every=0, progress=False)
    exported = CliRunner().invoke(main, ["export", str(memory), str(tmp_path / "copy")])
    assert exported.exit_code == 0, exported.output

    source = load_source(f"npz:{data}")
    forms = training_image_forms(source.images)
    critic = critic_tensors((memory / CHECKPOINT).read_bytes(), tmp_path / "checkpoint.safetensors")
    canvas = picture(pairs.read_bytes())  # the controls: the searches find what is there
    assert any(shows(canvas, fitted[0].numpy()) for fitted in fit_images(source.images, 1, 16, "t"))
    assert critic and all(t in (memory / CHECKPOINT).read_bytes() for t in critic)

    walked = {f"m/{name}": data for name, data in files_under(memory).items()}
    walked |= {f"copy/{name}": data for name, data in files_under(tmp_path / "copy").items()}
    assert f"m/{CHECKPOINT}" in walked and any(name.startswith("m/audits/") for name in walked)
    assert not any(name.endswith(CHECKPOINT) for name in walked if name.startswith("copy/"))
    for name, content in walked.items():
        assert not any(form in content for image in forms for form in image), f"{name} holds a training image"
        canvas = picture(content)
        assert canvas is None or not any(shows(canvas, image[0].numpy()) for image in (
            list(source.images) + list(fit_images(source.images, 1, 16, "t")))), f"{name} shows a training image"
        if name != f"m/{CHECKPOINT}":
            assert not any(tensor in content for tensor in critic), f"{name} holds a critic tensor"


def test_an_audit_writes_into_the_memory_only_its_record(tmp_path, data):
    memory = tmp_path / "m"
    assert CliRunner().invoke(main, ["learn-task", str(memory), "--data", f"npz:{data}", "--classes", "0",
                                     *LEARN]).exit_code == 0
    before = files_under(memory)
    audit = ["audit", str(memory), "--members", f"npz:{data}", "--non-members", f"npz:{data}", "--samples", "20",
             "--device", "cpu"]
    inside = CliRunner().invoke(main, audit + ["--pairs-png", str(memory / "pairs.png")])
    assert inside.exit_code != 0 and "a memory never holds a real image" in inside.output
    result = CliRunner().invoke(main, audit + ["--pairs-png", str(tmp_path / "pairs.png")])
    assert result.exit_code == 0, result.output
    assert "keep it private" in result.output and (tmp_path / "pairs.png").stat().st_size > 100
    after = files_under(memory)
    assert {name: content for name, content in after.items() if name in before} == before
    assert sorted(set(after) - set(before)) == ["audits/v0001/a0001/AUDIT.md", "audits/v0001/a0001/audit.json"]
    [record] = read_audits(Memory(memory).store)
    assert list(record["files"]) == ["AUDIT.md"]


@pytest.fixture
def shared(tmp_path):
    """A three-version memory with a stopped task's checkpoint, a signature, an audit of numbers and an old
    audit that kept its picture of training images."""
    memory = tiny_memory(tmp_path / "m")
    memory.learn_task(tiny_set(), ["3"], config=tiny_config(seed=2), progress=False)
    (memory.path / CHECKPOINT).write_bytes(b"the critic of an unfinished task")
    record = {"version": "v0001", "worst_auc": 0.5}
    add_audit(memory.store, "v0001", {"AUDIT.md": b"numbers"}, record)
    add_audit(memory.store, "v0002", {"AUDIT.md": b"numbers", "closest-pairs.png": b"real images"}, record)
    return memory


def test_an_export_holds_exactly_the_finished_versions_and_samples_bit_identically(tmp_path, shared):
    done = export_memory(shared.path, tmp_path / "copy", version="v2")
    copy = Memory(tmp_path / "copy")
    assert copy.versions() == done.versions == ["v0001", "v0002"]
    assert sorted(p.name for p in copy.path.iterdir()) == ["audits", "versions"]  # no checkpoint, no lock
    for version in copy.versions():
        source_files = files_under(shared.path / "versions" / version)
        assert files_under(copy.path / "versions" / version) == source_files
        for as_uint8 in (True, False):
            counts = {c.label: 5 for c in shared.sampler(version).classes}
            mine = copy.sampler(version).sample(counts, seed=3, as_uint8=as_uint8)
            theirs = shared.sampler(version).sample(counts, seed=3, as_uint8=as_uint8)
            assert torch.equal(mine[0], theirs[0]) and torch.equal(mine[1], theirs[1])
    assert [r["path"].split("/")[-1] for r in read_audits(copy.store, "v0001")] == ["a0001"]
    assert read_audits(copy.store, "v0002") == []  # its only audit holds a picture
    assert done.audits == 1 and done.files == sum(len(files_under(copy.path / "versions" / v)) for v in done.versions)
    said = " | ".join(done.left_out)
    assert "task checkpoint" in said and "v0003" in said and "v0002/a0001" in said

    printed = CliRunner().invoke(main, ["export", str(shared.path), str(tmp_path / "all")])
    assert printed.exit_code == 0, printed.output
    assert "exported v0001..v0003" in printed.output and "3 version(s)" in printed.output
    assert "left out: the task checkpoint" in printed.output and "later version" not in printed.output


def test_an_export_refuses_a_used_or_inner_destination_and_leaves_nothing_half_written(tmp_path, shared,
                                                                                       monkeypatch):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(GenmemError, match="exists already"):
        export_memory(shared.path, tmp_path / "used")
    with pytest.raises(GenmemError, match="inside the memory"):
        export_memory(shared.path, shared.path / "copy")

    def failing(*args):
        raise OSError("disk full")

    monkeypatch.setattr("genmem.export.read_audits", failing)  # after every file is written, before it appears
    with pytest.raises(OSError, match="disk full"):
        export_memory(shared.path, tmp_path / "copy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "used"]


def test_an_export_signed_with_a_key_is_served_under_that_key(tmp_path, two_versions):
    pytest.importorskip("cryptography", reason="signing needs the cryptography package (genmem[signing])")
    from genmem.signing import SignatureCheck, generate_key, sign_version

    memory = Memory(shutil.copytree(two_versions, tmp_path / "m"))
    old_private, old_public = generate_key(tmp_path / "old")
    sign_version(memory.store, "v0001", old_private)
    unsigned = export_memory(memory.path, tmp_path / "kept")
    assert unsigned.signatures == 1  # the signature the memory has travels with its version
    SignatureCheck(old_public).verify(Memory(tmp_path / "kept").store, "v0001")

    private, public = generate_key(tmp_path / "key")
    result = CliRunner().invoke(main, ["export", str(memory.path), str(tmp_path / "copy"), "--key", str(private)])
    assert result.exit_code == 0 and f"signed with {private}" in result.output
    copy = Memory(tmp_path / "copy")
    assert [SignatureCheck(public).verify(copy.store, v)["version"] for v in copy.versions()] == ["v0001", "v0002"]
    assert not (memory.path / "signatures" / "v0002.ed25519").exists(), "the memory itself is not signed"
    assert json.loads((copy.path / "versions" / "v0002" / "manifest.json").read_bytes())["version"] == "v0002"
