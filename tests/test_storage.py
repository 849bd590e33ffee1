"""Half-precision storage (TrainingConfig.storage_dtype, docs/ALGORITHM.md §19, FORMAT.md format 4): smaller
generator files, old classes still bit-identical, what is stored exactly what was computed with, damage reported."""

import copy
import json
import zlib
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genmem.memory
from genmem import canonical, compressed
from genmem.artifact import (COMPRESSED_FORMAT_VERSION, MASKS_FILE, WEIGHTS_FILE, decode_generator,
                             encode_generator, task_storage_dtype)
from genmem.benchmarks.profiles import PROFILES
from genmem.benchmarks.protocol import recorded_profile
from genmem.benchmarks.record import read_rows
from genmem.cli.main import main
from genmem.config import TrainingConfig
from genmem.errors import CorruptMemory, InvalidSetting
from genmem.memory import Memory
from genmem.plasticity import frozen_per_layer

from tiny import tiny_config, tiny_set

HALF = [torch.bfloat16, torch.float16]
# The generator families the bit-identity tests run on: (variant, architecture, class-conditional BatchNorms).
FAMILIES = [pytest.param(("dgmw", "dcgan", False), id="dgmw"), pytest.param(("dgma", "dcgan", False), id="dgma"),
            pytest.param(("dgmw", "resnet", True), id="resnet-classnorm")]


def learn(path, storage, family=("dgmw", "dcgan", False), tasks=(["0", "1"], ["2"])) -> Memory:
    """A memory of one version per task; `storage`: each task's storage dtype (one name for all)."""
    variant, arch, class_norm = family
    storages = [storage] * len(tasks) if isinstance(storage, str) else storage
    memory = Memory(path)
    for seed, (classes, dtype) in enumerate(zip(tasks, storages, strict=True)):
        memory.learn_task(tiny_set(), classes, variant=variant, arch=arch, class_norm=class_norm,
                          config=tiny_config(variant, arch, seed=seed, storage_dtype=dtype), image_size=16,
                          base_width=2, progress=False)
    return memory


def exact_in(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per entry, whether `dtype` holds it exactly."""
    return tensor.to(dtype).float() == tensor


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_old_classes_are_bit_identical_after_a_later_task_and_a_reload(tmp_path, dtype, family):
    memory = learn(tmp_path / "m", dtype, family)
    assert memory.manifest()["format_version"] == COMPRESSED_FORMAT_VERSION
    assert [t["training"]["storage_dtype"] for t in memory.manifest()["tasks"]] == [dtype, dtype]
    old = memory.sampler("v0001", precision="float32").sample({0: 6, 1: 6}, seed=5, as_uint8=False)[0]
    new = Memory(tmp_path / "m").sampler("v0002", precision="float32").sample({0: 6, 1: 6}, seed=5,
                                                                              as_uint8=False)[0]
    assert torch.equal(old, new)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_the_reloaded_generator_is_the_one_the_task_computed_with(tmp_path, monkeypatch, dtype, family):
    """The generator as the task left it (caught as it is encoded, after its quality and sample strip were computed
    with it) against a fresh load: every tensor equal, float32, so nothing is rounded on the way to the disk."""
    trained = []
    encode = genmem.memory.encode_generator
    monkeypatch.setattr(genmem.memory, "encode_generator",
                        lambda g, *storage: trained.append(copy.deepcopy(g)) or encode(g, *storage))
    memory = learn(tmp_path / "m", dtype, family)
    for version, generator in zip(("v0001", "v0002"), trained, strict=True):
        state, stored = generator.state_dict(), Memory(tmp_path / "m").load(version)[0].state_dict()
        assert state.keys() == stored.keys()
        for name, tensor in state.items():
            assert stored[name].dtype == tensor.dtype and torch.equal(stored[name], tensor), name
    assert memory.versions() == ["v0001", "v0002"]


@pytest.mark.parametrize("dtype", HALF)
def test_every_stored_weight_is_half_precision_save_what_earlier_float32_tasks_reserved(tmp_path, dtype):
    name = str(dtype).removeprefix("torch.")
    half = learn(tmp_path / "half", name)
    stored = compressed.load(half.store.read()[1][WEIGHTS_FILE])
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {dtype}

    mixed = learn(tmp_path / "mixed", ["float32", name])
    generator = mixed.load()[0]
    stored = compressed.load(mixed.store.read()[1][WEIGHTS_FILE])
    keep = frozen_per_layer("dgmw", generator.reserved(before=1), generator.wires)
    for index, (layer, frozen) in enumerate(zip(generator.layers, keep, strict=True)):
        exact = exact_in(layer.weight, dtype)
        assert exact[~frozen.expand_as(exact)].all(), f"layer {index}: a weight task 1 could change is not {dtype}"
        assert not exact[frozen.expand_as(exact)].all(), "task 0's float32 entries are kept as they were"
        assert stored[f"layers.{index}.weight"].dtype == torch.float32, "a tensor half cannot hold stays float32"
    for name_, tensor in generator.tasks[1].state_dict().items():
        if tensor.is_floating_point():
            assert stored[f"tasks.1.{name_}"].dtype == dtype, name_
    assert any(stored[f"tasks.0.{n}"].dtype == torch.float32 for n in generator.tasks[0].state_dict())


def test_a_half_precision_generator_file_is_much_smaller(tmp_path):
    """Measured on these tiny memories: bfloat16 0.44 and float16 0.50 of float32's generator.safetensors (the
    masks file, bit-packed already, grows by its codec metadata, about 150 bytes)."""
    sizes = {name: learn(tmp_path / name, name).manifest()["files"][WEIGHTS_FILE]["bytes"]
             for name in ("float32", "bfloat16", "float16")}
    assert sizes["bfloat16"] / sizes["float32"] < 0.5
    assert sizes["float16"] / sizes["float32"] < 0.56


@pytest.fixture(scope="module")
def half_version(tmp_path_factory):
    """The manifest and files of a bfloat16 memory's second version, and its generator."""
    memory = learn(tmp_path_factory.mktemp("half") / "m", "bfloat16")
    manifest, files = memory.store.read()
    return manifest, files, decode_generator(manifest, files).state_dict()


@pytest.mark.parametrize("victim", [WEIGHTS_FILE, MASKS_FILE])
def test_damaged_compressed_data_is_a_one_line_corrupt_memory_naming_the_file(half_version, victim):
    """Past the store's checksum (a damaged file that was checksummed again): every truncation and every flipped
    byte is reported or changes nothing the generator holds; it never crashes or decodes other weights."""
    manifest, files, state = half_version
    data = files[victim]
    damaged = [data[:cut] for cut in (0, 7, 8, 100, len(data) // 2, len(data) - 1)]
    step = max(1, len(data) // 400)
    damaged += [data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:] for at in range(0, len(data), step)]
    reported = 0
    for bad in damaged:
        try:
            decoded = decode_generator(manifest, {**files, victim: bad}).state_dict()
        except CorruptMemory as exc:
            assert victim in str(exc) and "\n" not in str(exc), str(exc)
            reported += 1
        else:
            assert all(torch.equal(decoded[k], state[k]) for k in state)
    assert reported > len(damaged) * 0.9


def test_a_damaged_half_precision_file_on_disk_is_named(tmp_path):
    memory = learn(tmp_path / "m", "bfloat16", tasks=(["0"],))
    path = tmp_path / "m" / "versions" / "v0001" / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptMemory, match=WEIGHTS_FILE.replace(".", r"\.")):
        memory.load()


def layout_file(stream: bytes, layout: list, codec: str = compressed.CODEC) -> bytes:
    blob = torch.frombuffer(bytearray(stream), dtype=torch.uint8)
    return canonical.save({"w": blob}, {"codec": codec, "tensors": json.dumps({"w": layout})})


def test_compressed_data_must_inflate_to_exactly_its_declared_dtype_and_shape():
    weights = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert torch.equal(compressed.load(compressed.save({"w": weights}, {}))["w"], weights)
    raw = compressed._planes(weights)  # each byte of every value, then the next byte of every value
    assert torch.equal(compressed.load(layout_file(zlib.compress(raw), ["F32", [12]]))["w"], weights.reshape(-1))
    for stream, layout in [(zlib.compress(raw), ["F32", [11]]),  # longer than declared (a bomb is cut off)
                           (zlib.compress(raw), ["F32", [13]]),  # shorter
                           (zlib.compress(raw) + b"x", ["F32", [12]]),  # data after the stream
                           (zlib.compress(raw)[:-4], ["F32", [12]]),  # no checksum at its end
                           (zlib.compress(raw), ["F64", [12]]),  # a dtype a memory does not store
                           (zlib.compress(raw), ["F32", [-12]]),
                           (zlib.compress(raw), ["F32", [2**62, 4]]),  # past what any stream inflates to
                           (zlib.compress(raw), "F32")]:
        with pytest.raises(ValueError):
            compressed.load(layout_file(stream, layout))
    with pytest.raises(ValueError, match="upgrade genmem"):
        compressed.load(layout_file(zlib.compress(raw), ["F32", [12]], codec="zstd"))
    # The manifest's format says whether a file is compressed: one that lost its codec key, or gained one, is damaged.
    with pytest.raises(ValueError, match="names no codec"):
        compressed.load(canonical.save({"w": weights}, {}))
    with pytest.raises(ValueError, match="does not do"):
        compressed.load(compressed.save({"w": weights}, {}), compressed=False)
    assert torch.equal(compressed.load(canonical.save({"w": weights}, {}), compressed=False)["w"], weights)


def test_float32_writes_formats_2_and_3_as_before(tmp_path):
    """The byte-for-byte comparison with what genmem wrote before is tests/test_store.py's fixture test."""
    assert TrainingConfig().storage_dtype == "bfloat16", "the default since its A10 moved by under 0.2 points"
    memory = learn(tmp_path / "m", "float32", tasks=(["0"],))
    manifest, files = memory.store.read()
    assert manifest["format_version"] == 2
    generator = memory.load()[0]
    assert encode_generator(generator) == encode_generator(generator, "float32") == {
        name: files[name] for name in (WEIGHTS_FILE, MASKS_FILE)}
    assert "codec" not in canonical.metadata(files[WEIGHTS_FILE])


def test_an_unknown_storage_dtype_is_refused_before_training_and_leaves_no_version(tmp_path, monkeypatch):
    def training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(genmem.memory, "learn_task", training)
    with pytest.raises(InvalidSetting, match="unknown storage dtype 'float8'") as refused:
        Memory(tmp_path / "m").learn_task(tiny_set(), ["0"], config=tiny_config(storage_dtype="float8"),
                                          image_size=16, base_width=2, progress=False)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "m").exists()


def test_learn_task_takes_a_storage_dtype(tmp_path, tiny_npz):
    tiny = ["--image-size", "16", "--base-width", "2", "--critic-width", "4", "--gan-epochs", "1", "--batch-size", "8",
            "--quiet", "--device", "cpu"]
    learn_task = ["learn-task", str(tmp_path / "m"), "--data", f"npz:{tiny_npz}", "--classes", "0"]
    result = CliRunner().invoke(main, learn_task + ["--storage-dtype", "float8"] + tiny)
    assert result.exit_code == 2 and "Invalid value for '--storage-dtype'" in result.output
    assert not (tmp_path / "m").exists()
    result = CliRunner().invoke(main, learn_task + ["--storage-dtype", "bfloat16"] + tiny)
    assert result.exit_code == 0, result.output
    manifest = Memory(tmp_path / "m").manifest()
    assert manifest["format_version"] == COMPRESSED_FORMAT_VERSION
    assert manifest["tasks"][0]["training"]["storage_dtype"] == "bfloat16"
    sampled = CliRunner().invoke(main, ["sample", str(tmp_path / "m"), "--count", "2", "-o",
                                        str(tmp_path / "s.safetensors")])
    assert sampled.exit_code == 0, sampled.output


def test_learn_task_continues_a_memory_in_its_last_tasks_storage_type_unless_told(tmp_path, tiny_npz):
    """A memory begun in float32 stays in formats an older genmem reads until a task asks for another type."""
    tiny = ["--image-size", "16", "--base-width", "2", "--critic-width", "4", "--gan-epochs", "1", "--batch-size", "8",
            "--quiet", "--device", "cpu", "--data", f"npz:{tiny_npz}"]
    memory = Memory(tmp_path / "m")

    def learn(classes, *options):
        result = CliRunner().invoke(main, ["learn-task", str(memory.path), "--classes", classes, *options, *tiny])
        assert result.exit_code == 0, result.output
        return memory.manifest()

    assert learn("0", "--storage-dtype", "float32")["format_version"] == 2
    kept = learn("1")
    assert kept["format_version"] == 2 and kept["tasks"][1]["training"]["storage_dtype"] == "float32"
    switched = learn("2", "--storage-dtype", "bfloat16")
    assert switched["format_version"] == COMPRESSED_FORMAT_VERSION
    assert learn("3")["tasks"][3]["training"]["storage_dtype"] == "bfloat16"
    assert task_storage_dtype({"training": {"epochs": 1}}) == "float32", "a task written before the option"


def test_the_protocol_names_a_profile_by_a_storage_type_other_than_the_default(tmp_path):
    data = tiny_set(labels=(0, 1))
    np.savez(tmp_path / "d.npz", x=data.images[:, 0].numpy(), y=data.labels.numpy())
    source = ["--data", f"npz:{tmp_path / 'd.npz'}", "--test-data", f"npz:{tmp_path / 'd.npz'}"]
    run = ["bench", "protocol", *source, "--profile", "smoke", "--images-per-class", "5", "--methods", "dgm-replay",
           "--device", "cpu", "--quiet"]
    out, table = tmp_path / "run", tmp_path / "BENCHMARKS.csv"
    result = CliRunner().invoke(main, run + ["--storage-dtype", "float32", "--out", str(out), "--csv", str(table)])
    assert result.exit_code == 0, result.output
    assert Memory(out / "memory").manifest()["format_version"] == 2
    profile = "smoke, GAN on 5 images per class, float32 storage"
    assert [(r["method"], r["profile"]) for r in read_rows(table)] == [("dgmw-replay", profile), ("dgmw", profile)]
    resumed = CliRunner().invoke(main, ["bench", "protocol", "--resume", str(out), "--storage-dtype", "float16"])
    assert resumed.exit_code != 0 and "drop --storage-dtype" in resumed.output
    again = CliRunner().invoke(main, run + ["--memory-from", str(out), "--out", str(tmp_path / "again")])
    assert again.exit_code != 0 and "add --storage-dtype float32" in again.output


def test_a_run_recorded_before_bfloat16_became_the_default_keeps_its_storage_type():
    """Runs recorded float32 storage under a plain profile name, and bfloat16 under 'quick, bfloat16 storage':
    resuming or starting from them must learn and name what they stored."""
    quick = PROFILES["quick"]
    older = {"profile": asdict(quick), "gan_config": {"storage_dtype": "float32"}}
    assert recorded_profile(older) == quick.with_storage("float32")
    assert recorded_profile(older).name == "quick, float32 storage"
    assert recorded_profile({"profile": asdict(quick)}) == quick.with_storage("float32"), "before the option"
    named = replace(quick, name="quick, bfloat16 storage", gan_overrides={"storage_dtype": "bfloat16"})
    assert recorded_profile({"profile": asdict(named), "gan_config": {"storage_dtype": "bfloat16"}}) == quick
    assert quick.with_storage("float16").with_storage("bfloat16") == quick
