"""The genmem command end to end on tiny data, and one clear line for every bad input."""

import json
import re

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

import genmem.data
import genmem.memory
from genmem.artifact import COMPRESSED_FORMAT_VERSION
from genmem.benchmarks.profiles import profile_for
from genmem.cli.common import FiniteFloatRange
from genmem.cli.main import main
from genmem.config import MAX_BATCH_SIZE, MAX_EPOCHS
from genmem.data import load_source
from genmem.errors import InvalidSetting
from genmem.memory import Memory

from tiny import class_images, tiny_config

TINY = ["--image-size", "16", "--base-width", "2", "--critic-width", "4", "--gan-epochs", "1", "--batch-size", "8",
        "--quiet", "--device", "cpu"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


@pytest.fixture
def learned(tmp_path, tiny_npz):
    memory = tmp_path / "m"
    for classes in ("0,1", "2"):
        result = run("learn-task", memory, "--data", f"npz:{tiny_npz}", "--classes", classes, *TINY)
        assert result.exit_code == 0, result.output
    return memory


def test_learn_info_and_sample_end_to_end(tmp_path, learned):
    assert Memory(learned).versions() == ["v0001", "v0002"]

    info = run("info", learned)
    assert info.exit_code == 0
    for expected in ("version   v0002 of 2", "DGMW, 1x16x16 images", "classes   0, 1, 2", "reused",
                     "KiB in bfloat16, bit-packed masks"):
        assert expected in info.output
    summary = json.loads(run("info", learned, "--json").output)
    assert [t["widths"] for t in summary["tasks"]][0] == [4, 2]
    assert Memory(learned).manifest()["format_version"] == COMPRESSED_FORMAT_VERSION, "bfloat16 by default"
    assert summary["storage_bytes"]["masks"] > 0

    grid = tmp_path / "grid.png"
    assert run("sample", learned, "--count", "5", "-o", grid).exit_code == 0
    with Image.open(grid) as image:
        assert image.size[1] > 3 * 32  # three rows of 2x-scaled 16 px images

    out = tmp_path / "s.safetensors"
    assert run("sample", learned, "--classes", "2,0", "--count", "3", "--seed", "4", "-o", out).exit_code == 0
    tensors = load_file(out)
    assert tensors["images"].shape == (6, 1, 16, 16) and tensors["labels"].tolist() == [2, 2, 2, 0, 0, 0]

    run("sample", learned, "--classes", "2,0", "--count", "3", "--seed", "4", "-o", tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as arrays:
        assert np.array_equal(arrays["images"], tensors["images"].numpy())
    run("sample", learned, "--classes", "1", "--count", "2", "--float", "-o", tmp_path / "f.npy")
    floats = np.load(tmp_path / "f.npy", allow_pickle=False)
    assert floats.dtype == np.float32 and floats.shape == (2, 1, 16, 16)


def assert_clear_error(result, message):
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output


def test_missing_memory(tmp_path):
    assert_clear_error(run("info", tmp_path / "nothing"), "is not a genmem memory (it does not exist)")
    assert_clear_error(run("sample", tmp_path / "nothing", "-o", tmp_path / "x.png"), "is not a genmem memory")


def test_class_already_learned(learned, tiny_npz):
    result = run("learn-task", learned, "--data", f"npz:{tiny_npz}", "--classes", "1", *TINY)
    assert_clear_error(result, "class '1' is already in this memory (task 0 learned it)")
    assert Memory(learned).versions() == ["v0001", "v0002"]


def test_unknown_data_set(tmp_path):
    assert_clear_error(run("learn-task", tmp_path / "m", "--data", "imagenet", "--classes", "0"),
                       "unknown data source 'imagenet'")
    assert not (tmp_path / "m").exists()


def test_unknown_and_empty_classes(tmp_path):
    x = np.concatenate([class_images(0, 8), class_images(1, 8)])[..., 0]
    np.savez(tmp_path / "d.npz", x=x, y=np.repeat([0, 1], 8), class_names=np.array(["zero", "one", "two"]))
    source = f"npz:{tmp_path / 'd.npz'}"
    assert_clear_error(run("learn-task", tmp_path / "m", "--data", source, "--classes", "two", *TINY),
                       "class 'two' has no images")
    assert_clear_error(run("learn-task", tmp_path / "m", "--data", source, "--classes", "three", *TINY),
                       "has no class 'three'")
    assert_clear_error(run("learn-task", tmp_path / "m", "--data", source, "--classes", ",", *TINY),
                       "name at least one class")


def test_wrong_image_shapes(tmp_path, learned):
    np.savez(tmp_path / "rgb.npz", x=np.zeros((4, 16, 16, 3), np.uint8), y=np.array([5, 5, 5, 5]))
    assert_clear_error(run("learn-task", learned, "--data", f"npz:{tmp_path / 'rgb.npz'}", "--classes", "5", *TINY),
                       "3-channel images but the memory holds 1-channel images")


def test_bad_settings(tmp_path, tiny_npz, monkeypatch):
    source = ["--data", f"npz:{tiny_npz}", "--classes", "0"]
    assert_clear_error(run("learn-task", tmp_path / "m", *source, *TINY[:-2], "--device", "tpu"),
                       "unknown device 'tpu'")
    assert_clear_error(run("learn-task", tmp_path / "m", *source, "--image-size", "12", "--quiet"),
                       "image size 12 is not supported")
    assert not (tmp_path / "m").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, on any machine
    assert_clear_error(run("learn-task", tmp_path / "m", *source, "--device", "cuda"), "no CUDA GPU")


def test_networks_too_large_for_memory_are_one_line_and_lose_no_version(learned, tiny_npz):
    source = ["--data", f"npz:{tiny_npz}", "--classes", "3"]
    exabyte_critic = TINY[:TINY.index("--critic-width")] + ["--critic-width", str(10**9)] \
        + TINY[TINY.index("--critic-width") + 2:]
    failed = run("learn-task", learned, *source, *exabyte_critic)
    assert_clear_error(failed, "out of memory")
    assert "--critic-width" in failed.output and "--count" not in failed.output, "it names only what the command has"
    assert Memory(learned).versions() == ["v0001", "v0002"]
    assert run("learn-task", learned, *source, *TINY).exit_code == 0, "the memory still learns afterwards"


class TrainingStarted(Exception):
    """Raised where the training loop would start: the settings passed every check."""


@pytest.fixture
def no_training(monkeypatch):
    """Memory.learn_task's training loop raises TrainingStarted; counts the data sets the command loads."""
    loads = []
    load = genmem.data.load_source

    def counted_load(*args, **kwargs):
        loads.append(args)
        return load(*args, **kwargs)

    def training(*args, **kwargs):
        raise TrainingStarted

    monkeypatch.setattr(genmem.data, "load_source", counted_load)
    monkeypatch.setattr(genmem.memory, "learn_task", training)
    return loads


@pytest.mark.parametrize("option, setting, accepted, refused", [("--gan-epochs", "epochs", MAX_EPOCHS, MAX_EPOCHS + 1),
                                                                ("--gan-epochs", "epochs", 1, 0),
                                                                ("--batch-size", "batch_size", MAX_BATCH_SIZE,
                                                                 MAX_BATCH_SIZE + 1),
                                                                ("--batch-size", "batch_size", 2, 1)])
def test_epochs_and_batch_sizes_are_refused_exactly_past_their_bounds_before_the_data_loads(tmp_path, tiny_npz,
                                                                                           no_training, option,
                                                                                           setting, accepted, refused):
    learn = ["learn-task", tmp_path / "m", "--data", f"npz:{tiny_npz}", "--classes", "0", "--quiet", option]
    assert isinstance(run(*learn, accepted).exception, TrainingStarted)
    assert len(no_training) == 1
    assert_clear_error(run(*learn, refused), f"Invalid value for '{option}'")
    assert len(no_training) == 1, "refused before the data loaded"
    data = load_source(f"npz:{tiny_npz}")
    with pytest.raises(TrainingStarted):
        Memory(tmp_path / "m").learn_task(data, [0], config=tiny_config(**{setting: accepted}), image_size=16)
    with pytest.raises(InvalidSetting, match="out of range"):  # and not TrainingStarted: refused before training
        Memory(tmp_path / "m").learn_task(data, [0], config=tiny_config(**{setting: refused}), image_size=16)


def test_settings_that_could_never_finish_fit_or_learn_are_refused_before_training(tmp_path, tiny_npz, no_training):
    """A batch this large would fail only after the whole GAN had trained, such epochs would never end, and a NaN
    rate or weight (which click's ranges let through) trained a version of NaN weights."""
    floats = [(option, value) for option in ("--lr", "--sparsity", "--solver-epochs", "--holdout", "--dp-epsilon",
                                             "--dp-delta") for value in ("nan", "inf", "-nan")]
    for option, value in [("--batch-size", 10**12), ("--gan-epochs", 10**20), ("--seed", 2**70), ("--seed", -1),
                          *floats]:
        result = run("learn-task", tmp_path / "m", "--data", f"npz:{tiny_npz}", "--classes", "0", option, value)
        assert_clear_error(result, f"Invalid value for '{option}'")
    assert not no_training, "every one was refused before the data loaded"
    assert_clear_error(run("evaluate", tmp_path / "m", "--data", f"npz:{tiny_npz}", "--replay-classifier",
                           "--classifier-epochs", "1e9"),
                       "Invalid value for '--classifier-epochs'")  # a replay classifier for years
    data = load_source(f"npz:{tiny_npz}")  # the Python API refuses them as well
    nan, inf = float("nan"), float("inf")
    for setting in ({"batch_size": 10**12}, {"epochs": 10**20}, {"batch_size": 1}, {"lr": nan},
                    {"sparsity_weight": nan}, {"gp_weight": inf}, {"solver_lr": -1.0}, {"s_max": 0.0}, {"seed": 2**70}):
        with pytest.raises(InvalidSetting, match="out of range"):
            Memory(tmp_path / "m").learn_task(data, [0], config=tiny_config(**setting), image_size=16, base_width=2)
    assert not (tmp_path / "m").exists()


def test_the_solver_phase_is_set_from_the_command_line(tmp_path, tiny_npz):
    source = ["--data", f"npz:{tiny_npz}", "--classes", "0,1"]
    phase = ["--solver-start", "fresh", "--solver-epochs", "1.5", "--solver-augment", "translation,cutout",
             "--solver-width", "6"]
    assert run("learn-task", tmp_path / "m", *source, *phase, *TINY).exit_code == 0
    training = Memory(tmp_path / "m").manifest()["tasks"][-1]["training"]
    assert (training["solver_start"], training["solver_epochs"], training["solver_augment"],
            training["solver_width"]) == ("fresh", 1.5, "translation,cutout", 6)
    assert run("learn-task", tmp_path / "d", *source, *TINY).exit_code == 0  # options left out keep the profile's
    training = Memory(tmp_path / "d").manifest()["tasks"][-1]["training"]
    quick = profile_for("quick", "mnist").training_config("mnist", "dgmw")  # the CPU's default profile
    assert (training["solver_epochs"], training["solver_width"], training["average_decay"]) == (
        quick.solver_epochs, quick.solver_width, quick.average_decay) == (2.0, None, 0.99)
    assert (training["critic_head"], training["gan_loss"], training["spectral_norm"]) == ("acgan", "wgan-gp", False)
    missing = ["--data", f"npz:{tmp_path / 'missing.npz'}", "--classes", "0"]  # the typo is found before the data
    assert_clear_error(run("learn-task", tmp_path / "n", *missing, "--solver-augment", "blur", *TINY),
                       "unknown augmentation 'blur'")
    assert_clear_error(run("learn-task", tmp_path / "n", *source, "--solver-epochs", "1e300", *TINY),
                       "solver epochs")  # NaN and infinity: the settings test


def test_variant_of_an_existing_memory_cannot_change(learned, tiny_npz):
    result = run("learn-task", learned, "--data", f"npz:{tiny_npz}", "--classes", "3", "--variant", "dgma", *TINY)
    assert_clear_error(result, "is dgmw; drop the variant dgma")


def test_info_names_the_storage_type_of_each_task_where_they_differ(tmp_path, tiny_npz):
    memory = tmp_path / "m"
    for classes, dtype in (("0", "float32"), ("1", "bfloat16"), ("2", "float32")):
        result = run("learn-task", memory, "--data", f"npz:{tiny_npz}", "--classes", classes, "--storage-dtype",
                     dtype, *TINY)
        assert result.exit_code == 0, result.output
    assert "KiB in float32 (tasks 0, 2), bfloat16 (task 1), bit-packed" in run("info", memory).output


def test_a_residual_memory_with_class_norms_is_made_shown_and_kept(tmp_path, tiny_npz):
    memory = tmp_path / "r"
    result = run("learn-task", memory, "--data", f"npz:{tiny_npz}", "--classes", "0,1", "--arch", "resnet",
                 "--class-norm", "--storage-dtype", "float32", *(a for a in TINY if a != "--quiet"))
    assert result.exit_code == 0, result.output
    assert "critic 4 wide (projection head, hinge loss, spectrally normalised)" in result.output, \
        "the recipe line names the critic the residual family trains with"
    manifest = Memory(memory).manifest()
    generator = manifest["generator"]
    assert (generator["arch"], generator["class_norm"], generator["initial_widths"]) == ("resnet", True, [2, 2, 2])
    assert manifest["format_version"] == 3, "a reader of format 2 would rebuild it as a DCGAN"
    training = manifest["tasks"][-1]["training"]
    assert (training["critic_head"], training["gan_loss"], training["spectral_norm"]) == (
        "projection", "hinge", True), "the residual family's critic (genmem.presets.ARCH_SETTINGS)"
    assert "generator resnet DGMW" in run("info", memory).output and "class-conditional norms" in run(
        "info", memory).output
    assert_clear_error(run("learn-task", memory, "--data", f"npz:{tiny_npz}", "--classes", "2", "--arch", "dcgan",
                           *TINY), "has a resnet generator with class-conditional BatchNorms")
    assert_clear_error(run("learn-task", memory, "--data", f"npz:{tiny_npz}", "--classes", "2", "--solver-start",
                           "critic", *TINY), "needs the DCGAN critic")
    assert run("learn-task", memory, "--data", f"npz:{tiny_npz}", "--classes", "2", *TINY).exit_code == 0
    assert Memory(memory).load()[0].spec.arch == "resnet"


def test_corrupt_memory_is_named(learned, tmp_path):
    weights = learned / "versions" / "v0002" / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert_clear_error(run("sample", learned, "-o", tmp_path / "x.png"), "generator.safetensors fails its sha256")
    assert_clear_error(run("info", learned), "generator.safetensors fails its sha256")
    assert run("info", learned, "--version", "v0001").exit_code == 0, "older versions stay usable"


def test_sampling_errors(learned, tmp_path):
    assert_clear_error(run("sample", learned, "--classes", "9", "-o", tmp_path / "x.png"), "no class '9'")
    assert_clear_error(run("sample", learned, "-o", tmp_path / "x.jpg"), "must end in")
    assert_clear_error(run("sample", learned, "--version", "v0009", "-o", tmp_path / "x.png"), "no version 'v0009'")
    assert_clear_error(run("sample", learned, "--float", "-o", tmp_path / "x.png"), "PNG grid needs uint8")


def test_every_float_option_of_every_command_refuses_nan_and_infinity():
    def commands(command, path=("genmem",)):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, (*path, name))

    floats = [(" ".join(path), param) for path, command in commands(main) for param in command.params
              if isinstance(param.type, click.types.FloatParamType)]
    assert len(floats) >= 12, "the walk reached the float options of the bench subcommands too"
    for where, param in floats:
        assert isinstance(param.type, FiniteFloatRange), f"{where} {param.opts[0]}"
        for bad in ("nan", "inf", "-inf"):
            with pytest.raises(click.BadParameter, match="not a finite number|not in the range"):
                param.type.convert(bad, param, None)


@pytest.mark.parametrize("profile", ["quick", "paper-exact"])
def test_learn_task_trains_the_recipe_bench_protocol_runs_and_says_which(tmp_path, tiny_npz, profile):
    """The benchmarked recipe is reachable from learn-task: its manifest records the config the protocol's profile
    gives for the same data, and the command says what it chose and how long that takes."""
    result = CliRunner().invoke(main, ["learn-task", str(tmp_path / "m"), "--data", f"npz:{tiny_npz}", "--classes", "0",
                                       "--profile", profile, "--image-size", "16", "--gan-epochs", "1", "--seed", "3",
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    training = Memory(tmp_path / "m").manifest()["tasks"][-1]["training"]
    expected = profile_for(profile, "mnist").training_config("mnist", "dgmw").to_dict() | {"epochs": 1, "seed": 3}
    assert {k: v for k, v in training.items() if k in expected} == json.loads(json.dumps(expected))
    assert f"recipe: the {profile} profile for mnist data" in result.output
    assert re.search(r"critic \d+ wide, learning rate", result.output), "a DCGAN's recipe names no critic option"
    assert "image passes, about" in result.output and "minutes on 2 CPU cores" in result.output
