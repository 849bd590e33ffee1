"""The artifact: exact round trips, checksums that name the damaged file, atomic versions, one writer at a time."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import genmem.memory
from genmem.artifact import MASKS_FILE, WEIGHTS_FILE, decode_generator, encode_generator, pack_bits, unpack_bits
from genmem.errors import CorruptMemory, InvalidSetting, MemoryBusy, MemoryNotFound
from genmem.memory import Memory

from tiny import tiny_config, tiny_set

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"


def make_memory(path, tasks=(["0"],), variant="dgmw"):
    memory = Memory(path)
    data = tiny_set()
    for seed, classes in enumerate(tasks):
        memory.learn_task(data, classes, variant=variant, config=tiny_config(variant, seed=seed), image_size=16,
                          base_width=2, progress=False)
    return memory


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (13, 5), (3, 2, 4, 4)])
def test_bit_packing_round_trips_exactly(shape):
    mask = torch.rand(shape) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-mask.numel() // 8)
    assert torch.equal(unpack_bits(packed, shape), mask)


def test_a_packed_mask_of_the_wrong_size_is_reported():
    with pytest.raises(CorruptMemory, match="expected 2"):
        unpack_bits(torch.zeros(3, dtype=torch.uint8), (4, 4))


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_the_saved_and_reloaded_generator_is_the_trained_one(tmp_path, monkeypatch, variant):
    """The generator as training left it (caught as it is encoded) against a fresh Memory's load of the version:
    every tensor, mask and output equal, so an encoding that decodes the same lossy way every time fails too."""
    trained = []
    encode = genmem.memory.encode_generator
    monkeypatch.setattr(genmem.memory, "encode_generator",
                        lambda g, *storage: trained.append(copy.deepcopy(g)) or encode(g, *storage))
    memory = Memory(tmp_path / "m")
    data = tiny_set()
    memory.learn_task(data, ["0", "1"], variant=variant, config=tiny_config(variant), image_size=16, base_width=2,
                      progress=False)
    memory.learn_task(data, ["2"], config=tiny_config(variant, seed=1), progress=False)
    reloaded, manifest = Memory(tmp_path / "m").load()
    state, state2 = trained[-1].state_dict(), reloaded.state_dict()
    assert state.keys() == state2.keys() and all(torch.equal(state[k], state2[k]) for k in state)
    for a, b in zip(trained[-1].tasks, reloaded.tasks, strict=True):
        assert a.widths == b.widths and all(torch.equal(x, y) for x, y in zip(a.masks, b.masks, strict=True))
    noise = torch.randn(6, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for task, classes in enumerate((2, 1)):
            labels = torch.arange(6) % classes
            assert torch.equal(trained[-1].eval()(noise, task, labels), reloaded.eval()(noise, task, labels))
    assert [c["name"] for c in manifest["classes"]] == ["0", "1", "2"]
    assert [t["classes"] for t in manifest["tasks"]] == [[0, 1], [2]]
    assert manifest["parent"] == "v0001" and manifest["version"] == "v0002"


def test_old_class_output_is_identical_across_save_load_and_later_tasks(tmp_path):
    memory = make_memory(tmp_path / "m")
    noise = torch.randn(20, 128, generator=torch.Generator().manual_seed(0))
    classes = torch.zeros(20, dtype=torch.long)
    with torch.no_grad():
        first = memory.load("v0001")[0](noise, 0, classes)
    memory.learn_task(tiny_set(), ["1"], config=tiny_config(seed=1), progress=False)
    memory.learn_task(tiny_set(), ["2"], config=tiny_config(seed=2), progress=False)
    with torch.no_grad():
        later = memory.load()[0](noise, 0, classes)
    assert torch.equal(first, later)


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_a_dcgan_memory_written_before_the_residual_generator_loads_and_samples_as_it_did(variant):
    """tests/fixtures holds the last version of three tiny tasks (classes 0 and 1, 2, 3) that genmem wrote before
    generators had an architecture (commit fa81674), and the float32 images that genmem sampled from it."""
    memory = Memory(FIXTURES / f"dcgan-{variant}")
    manifest, files = memory.store.read()
    assert "arch" not in manifest["generator"] and "class_norm" not in manifest["generator"]
    generator = decode_generator(manifest, files)
    assert (generator.spec.arch, generator.spec.class_norm) == ("dcgan", False)
    assert encode_generator(generator) == {name: files[name] for name in (WEIGHTS_FILE, MASKS_FILE)}
    sampled = load_file(FIXTURES / "dcgan-samples.safetensors")
    sampler = memory.sampler(precision="float32")
    for label in range(4):
        images = sampler.sample({label: 6}, seed=9, as_uint8=False)[0]
        # Equal bit for bit on the machine that wrote them; another CPU's kernels may round the last bits otherwise.
        torch.testing.assert_close(images, sampled[f"{variant}.{label}"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("victim", [WEIGHTS_FILE, MASKS_FILE, "MODEL_CARD.md", "manifest.json"])
def test_a_flipped_byte_is_caught_and_the_file_named(tmp_path, victim):
    memory = make_memory(tmp_path / "m")
    path = tmp_path / "m" / "versions" / "v0001" / victim
    data = bytearray(path.read_bytes())
    where = len(data) // 2 if victim != "manifest.json" else data.index(b'"task"') + 1
    data[where] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptMemory, match=victim.replace(".", r"\.")):
        memory.load()


@pytest.mark.parametrize("victim", [WEIGHTS_FILE, MASKS_FILE, "manifest.json"])
def test_a_truncated_file_is_caught_and_named(tmp_path, victim):
    memory = make_memory(tmp_path / "m")
    path = tmp_path / "m" / "versions" / "v0001" / victim
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptMemory, match=victim.replace(".", r"\.")):
        memory.load()


def test_a_missing_file_is_named(tmp_path):
    memory = make_memory(tmp_path / "m")
    (tmp_path / "m" / "versions" / "v0001" / MASKS_FILE).unlink()
    with pytest.raises(CorruptMemory, match="masks.safetensors is missing"):
        memory.load()


def test_manifest_records_sha256_and_size_of_every_file(tmp_path):
    make_memory(tmp_path / "m")
    folder = tmp_path / "m" / "versions" / "v0001"
    manifest = json.loads((folder / "manifest.json").read_text())
    import hashlib

    assert set(manifest["files"]) == {p.name for p in folder.iterdir()} - {"manifest.json"}
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


# file0 to file4: the version's five files; file5: its manifest, written last
@pytest.mark.parametrize("stage", ["file0", "file1", "file2", "file3", "file4", "file5", "before-rename",
                                   "after-rename"])
def test_a_writer_killed_at_any_stage_leaves_every_finished_version_loadable(tmp_path, stage):
    make_memory(tmp_path / "m")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run([sys.executable, str(HERE / "kill_writer.py"), str(tmp_path / "m"), stage], env=env,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr

    memory = Memory(tmp_path / "m")
    expected = ["v0001", "v0002"] if stage == "after-rename" else ["v0001"]
    assert memory.versions() == expected
    for version in expected:
        memory.load(version)  # verifies every checksum
    if stage != "after-rename":
        assert list((tmp_path / "m" / "versions").glob(".incomplete-*")), "the killed writer left its staging dir"
    # The next writer cleans up and carries on from the latest finished version.
    memory.learn_task(tiny_set(), ["3"], config=tiny_config(), progress=False)
    assert memory.versions() == expected + [f"v{len(expected) + 1:04d}"]
    assert not list((tmp_path / "m" / "versions").glob(".incomplete-*"))


def test_a_second_writer_fails_at_once_and_corrupts_nothing(tmp_path):
    memory = make_memory(tmp_path / "m")
    with memory.store.writer():
        with pytest.raises(MemoryBusy, match=rf"being written by pid {os.getpid()}"):
            Memory(tmp_path / "m").learn_task(tiny_set(), ["1"], config=tiny_config(), progress=False)
    assert memory.versions() == ["v0001"]
    memory.load()


def test_a_failed_first_task_leaves_no_memory_behind(tmp_path):
    with pytest.raises(InvalidSetting, match="image size 12 is not supported"):
        Memory(tmp_path / "m").learn_task(tiny_set(), ["0"], config=tiny_config(), image_size=12, progress=False)
    assert not (tmp_path / "m").exists()


def test_paths_that_are_not_memories_are_refused(tmp_path):
    with pytest.raises(MemoryNotFound, match="does not exist"):
        Memory(tmp_path / "nothing").load()
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(MemoryNotFound, match="not a genmem memory"):
        Memory(tmp_path / "stuff").learn_task(tiny_set(), ["0"], config=tiny_config(), progress=False)
    assert (tmp_path / "stuff" / "notes.txt").read_text() == "mine"


def test_unknown_versions_are_named(tmp_path):
    memory = make_memory(tmp_path / "m")
    with pytest.raises(MemoryNotFound, match="no version 'v0007'; it has v0001"):
        memory.load("v0007")
    assert memory.load("1")[1]["version"] == "v0001"


@pytest.mark.parametrize("name", ["²", "①", "v²", "٣", "v٠٠٠١", "9" * 5000, "v0001\n", "../v0001", "v0001/..",
                                  "\x00", "-1", " 1", "v00001a", ""])
def test_version_names_that_are_not_ascii_numbers_are_unknown_versions(two_versions, name):
    with pytest.raises(MemoryNotFound, match="has no version .*; it has v0001, v0002") as caught:
        Memory(two_versions).manifest(name)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300 + len(str(two_versions))


def test_version_names_are_read_in_every_ascii_spelling(two_versions):
    memory = Memory(two_versions)
    assert {memory.manifest(name)["version"] for name in ("v0001", "v1", "1", "0001")} == {"v0001"}


def test_a_lock_that_is_a_link_is_refused_and_its_target_left_alone(tmp_path):
    memory = make_memory(tmp_path / "m")
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (tmp_path / "m" / ".lock").unlink()
    (tmp_path / "m" / ".lock").symlink_to(victim)
    with pytest.raises(CorruptMemory, match=r"\.lock is a symbolic link"):
        memory.learn_task(tiny_set(), ["1"], config=tiny_config(), progress=False)
    assert victim.read_text() == "keep me" and memory.versions() == ["v0001"]


def test_links_inside_a_memory_are_refused_not_followed(tmp_path):
    make_memory(tmp_path / "m")
    elsewhere = shutil.copytree(tmp_path / "m" / "versions" / "v0001", tmp_path / "elsewhere")
    (tmp_path / "m" / "versions" / "v0002").symlink_to(elsewhere, target_is_directory=True)
    memory = Memory(tmp_path / "m")
    assert memory.versions() == ["v0001", "v0002"], "listed, so that no writer reuses its name"
    with pytest.raises(CorruptMemory, match="v0002 is a symbolic link"):
        memory.load("v0002")
    (tmp_path / "m" / "versions" / "v0002").unlink()
    weights = tmp_path / "m" / "versions" / "v0001" / WEIGHTS_FILE
    weights.rename(tmp_path / "weights")
    weights.symlink_to(tmp_path / "weights")
    with pytest.raises(CorruptMemory, match="generator.safetensors cannot be opened"):
        memory.load("v0001")

    make_memory(tmp_path / "real")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "versions").symlink_to(tmp_path / "real" / "versions", target_is_directory=True)
    with pytest.raises(CorruptMemory, match="versions is a symbolic link"):
        Memory(tmp_path / "linked").load()
    with pytest.raises(CorruptMemory, match="versions is a symbolic link"):
        Memory(tmp_path / "linked").learn_task(tiny_set(), ["1"], config=tiny_config(), progress=False)
    assert Memory(tmp_path / "real").versions() == ["v0001"]


def test_a_version_folder_not_named_as_its_manifest_is_damaged(two_versions, tmp_path):
    memory = Memory(shutil.copytree(two_versions, tmp_path / "m"))
    shutil.copytree(tmp_path / "m" / "versions" / "v0002", tmp_path / "m" / "versions" / "v0005")
    with pytest.raises(CorruptMemory, match="describes version 'v0002' but lies in folder v0005"):
        memory.load("v0005")
    assert memory.load("v0002")[1]["version"] == "v0002"


def test_the_command_takes_the_lock_before_it_loads_any_data(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import genmem.data
    from genmem.cli.main import main

    memory = make_memory(tmp_path / "m")

    def load_source(*args, **kwargs):
        raise AssertionError("the data was loaded although another writer holds the memory")

    monkeypatch.setattr(genmem.data, "load_source", load_source)
    with memory.store.writer():
        result = CliRunner().invoke(main, ["learn-task", str(tmp_path / "m"), "--data", "builtin", "--classes", "1"])
    assert result.exit_code == 1 and "is being written by pid" in result.output, result.output
