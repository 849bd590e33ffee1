"""Your own data: a folder of photos of any size, classes added later, colour's recipe, 64 px, and your images
brought to a memory exactly as learning sees them (docs/your-data.md)."""

import io
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import genmem
import genmem.memory
from genmem.cli.main import main
from genmem.data import ImageSet, fit_images, load_source
from genmem.errors import DataError, GenmemError
from genmem.memory import Memory
from genmem.pixels import to_unit_range
from genmem.replay import ReplayStream

from tiny import class_images, tiny_config, tiny_set

TINY = ["--image-size", "16", "--width", "2", "--critic-width", "4", "--epochs", "1", "--batch-size", "8", "--quiet",
        "--device", "cpu", "--solver-epochs", "1"]
SIZES = [(20, 30), (24, 18), (16, 16), (40, 22)]  # width, height: no two alike, most not square


def write_photos(folder, label: int, count: int = 6) -> None:
    """`count` colour JPEGs of one class (a bar whose place tells the class), each of another size."""
    folder.mkdir(parents=True)
    for i, pixels in enumerate(class_images(label, count, 24, channels=3)):
        width, height = SIZES[i % len(SIZES)]
        Image.fromarray(pixels).resize((width, height)).save(folder / f"{i}.jpg", quality=90)


def learn(memory, source, classes, *extra):
    result = CliRunner().invoke(main, ["learn-task", str(memory), "--data", source, "--classes", classes, *TINY,
                                       *extra])
    assert result.exit_code == 0, result.output
    return result


def test_a_folder_of_mixed_size_photos_learns_two_tasks_with_a_class_folder_added_between(tmp_path):
    pets = tmp_path / "pets"
    write_photos(pets / "cat", 0)
    write_photos(pets / "dog", 1)
    learn(tmp_path / "m", f"folder:{pets}", "cat,dog")
    write_photos(pets / "ant", 2)  # sorts first: by folder order it would take label 0, cat's
    learn(tmp_path / "m", f"folder:{pets}", "ant")

    manifest = Memory(tmp_path / "m").manifest()
    assert [(c["label"], c["name"], c["task"]) for c in manifest["classes"]] == [(0, "cat", 0), (1, "dog", 0),
                                                                                (2, "ant", 1)]
    assert manifest["generator"]["image_size"] == 16 and manifest["generator"]["channels"] == 3
    assert all(task["training"]["solver_augment"] == "translation,cutout" for task in manifest["tasks"])
    images, labels = Memory(tmp_path / "m").sampler().sample({"ant": 2, "cat": 2})
    assert images.shape == (4, 3, 16, 16) and labels.tolist() == [2, 2, 0, 0]

    test = tmp_path / "test"  # a test folder of its own, numbered: its labels need not be the memory's
    write_photos(test / "5_ant", 2, count=3)
    write_photos(test / "7_cat", 0, count=3)
    write_photos(test / "9_dog", 1, count=3)
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "m"), "--data", f"folder:{test}", "--json",
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)["solver"]["v0002"]["per_class"]) == {"0", "1", "2"}


def test_a_folder_whose_fixed_labels_disagree_with_the_memory_is_refused_in_one_line(tmp_path):
    pets = tmp_path / "pets"
    write_photos(pets / "0_cat", 0, count=2)
    learn(tmp_path / "m", f"folder:{pets}", "cat")
    (pets / "0_cat").rename(pets / "3_cat")
    write_photos(pets / "4_dog", 1, count=2)
    result = CliRunner().invoke(main, ["learn-task", str(tmp_path / "m"), "--data", f"folder:{pets}",
                                       "--classes", "dog", *TINY])
    assert result.exit_code != 0
    assert "gives class 'cat' label 3, but the memory learned it as label 0" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_colour_custom_data_takes_the_colour_recipe_and_grey_keeps_mnists():
    assert genmem.presets.recipe_for("folder:x", 3) == "colour" and genmem.presets.recipe_for("npz:x", 1) == "mnist"
    colour, svhn = genmem.paper_config("colour", "dgmw"), genmem.paper_config("svhn", "dgmw")
    assert "cutout" in colour.solver_augment and "cutout" not in svhn.solver_augment
    assert colour.lr == svhn.lr and colour.epochs == svhn.epochs
    assert "cutout" not in genmem.paper_config("mnist", "dgmw").solver_augment


def test_a_64_px_memory_trains_samples_and_keeps_old_classes_bit_identical(tmp_path):
    data = tiny_set(labels=(0, 1, 2), per_class=12, size=64, channels=3)
    memory = Memory(tmp_path / "m")
    config = tiny_config(epochs=1, solver_steps=5)
    memory.learn_task(data, ["0", "1"], config=config, image_size=64, base_width=1, progress=False)
    before, _ = memory.sampler().sample({"0": 3, "1": 3}, seed=4)
    memory.learn_task(data, ["2"], config=config, progress=False)
    spec = memory.load()[0].spec
    assert spec.image_size == 64 and len(spec.widths) == 4  # 1 -> 4 -> 8 -> 16 -> 32 -> 64
    after, labels = memory.sampler().sample({"0": 3, "1": 3, "2": 3}, seed=4)
    assert after.shape == (9, 3, 64, 64) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert torch.equal(after[:6], before)


@pytest.fixture(scope="module")
def grey_memory(tmp_path_factory):
    memory = Memory(tmp_path_factory.mktemp("grey") / "m")
    memory.learn_task(tiny_set(labels=(0, 1)), ["0", "1"], config=tiny_config(epochs=1, solver_steps=5),
                      image_size=16, base_width=2, progress=False)
    return memory


def test_to_memory_pixels_gives_what_learning_trains_on(tmp_path, monkeypatch):
    wide = torch.from_numpy(np.concatenate([class_images(label, 12, 40) for label in (0, 1)])[:, :24])  # 24x40
    data = ImageSet(wide.permute(0, 3, 1, 2).contiguous(), torch.tensor([0] * 12 + [1] * 12), {0: "0", 1: "1"}, "w")
    seen = []
    original = genmem.memory.learn_task

    def recording(generator, images, *args, **kwargs):
        seen.append(to_unit_range(images))
        return original(generator, images, *args, **kwargs)

    monkeypatch.setattr(genmem.memory, "learn_task", recording)
    memory = Memory(tmp_path / "m")
    memory.learn_task(data, ["0", "1"], config=tiny_config(epochs=1, solver_steps=5), image_size=16, base_width=2,
                      progress=False)
    assert torch.equal(genmem.to_memory_pixels(data.images, memory), seen[0])
    assert seen[0].shape == (24, 1, 16, 16)


def test_to_memory_pixels_reads_uint8_and_float_alike_from_any_handle_on_the_memory(grey_memory):
    images = torch.from_numpy(class_images(0, 4, 20)[:, :, :12]).permute(0, 3, 1, 2).contiguous()  # 20x12
    expected = to_unit_range(fit_images(images, 1, 16, "t"))
    sampler = grey_memory.sampler()
    for handle in (grey_memory, str(grey_memory.path), sampler, ReplayStream(sampler, batch_size=4)):
        assert torch.equal(genmem.to_memory_pixels(images, handle), expected)
    assert torch.equal(genmem.to_memory_pixels(images.float() / 255, grey_memory), expected)  # as ToTensor gives
    replay, _ = sampler.sample({"0": 3})
    assert torch.equal(genmem.to_memory_pixels(replay, sampler), replay.float() / 127.5 - 1)

    with pytest.raises(DataError, match="float images must be in \\[0, 1\\].*from -1 to 0.8"):
        genmem.to_memory_pixels(images.float() / 127.5 - 1, grey_memory)
    with pytest.raises(DataError, match="3-channel images but the memory holds 1-channel"):
        genmem.to_memory_pixels(images.expand(4, 3, 20, 12), grey_memory)
    with pytest.raises(DataError, match="must be a batch"):
        genmem.to_memory_pixels(images[0], grey_memory)
    with pytest.raises(GenmemError, match="cannot tell the image format of a dict"):
        genmem.to_memory_pixels(images, {})


def test_to_memory_labels_gives_a_folder_the_memorys_labels(tmp_path, grey_memory):
    for name in ("2", "1", "0"):  # plain names, and an unknown class "2" that sorts last anyway
        (tmp_path / "f" / f"a{name}").mkdir(parents=True)
    for label, name in enumerate(("a0", "a1", "a2")):
        buffer = io.BytesIO()
        Image.fromarray(class_images(label, 1, 16)[0, :, :, 0]).save(buffer, format="PNG")
        (tmp_path / "f" / name / "0.png").write_bytes(buffer.getvalue())
    data = load_source(f"folder:{tmp_path / 'f'}")
    assert genmem.to_memory_labels(data, grey_memory).class_names == {2: "a0", 3: "a1", 4: "a2"}  # after 0 and 1
    fixed = tiny_set(labels=(0, 1))
    assert genmem.to_memory_labels(fixed, grey_memory) is fixed


def test_a_bad_image_size_fails_before_the_data_is_read(tmp_path):
    result = CliRunner().invoke(main, ["learn-task", str(tmp_path / "m"), "--data", f"folder:{tmp_path / 'none'}",
                                       "--classes", "a", "--image-size", "48"])
    assert result.exit_code != 0 and "image size 48 is not supported" in result.output
