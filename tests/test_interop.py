"""genmem beside torch's own tools: image folders that ImageFolder reads, replay in multi-worker pinned loaders."""

import contextlib
import pickle
import shutil
import warnings

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms.functional import pil_to_tensor

from genmem.cli.main import main
from genmem.errors import GenmemError
from genmem.image_folder import folder_names, label_of_folder, write_image_folder
from genmem.memory import Memory
from genmem.replay import ReplayStream


def test_folder_names_sort_in_label_order_and_name_their_label():
    names = folder_names({2: "2", 10: "10", 3: "cat", 0: "T-shirt/top"})
    assert names == {2: "02", 10: "10", 3: "03_cat", 0: "00_T-shirt-top"}
    assert [label_of_folder(folder) for folder in sorted(names.values())] == [0, 2, 3, 10]


def test_image_folder_round_trips_through_torchvision(two_versions, tmp_path):
    out = tmp_path / "replay"
    result = CliRunner().invoke(main, ["sample", str(two_versions), "--classes", "2,0", "--count", "5", "--seed",
                                       "3", "--image-folder", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    expected, labels = Memory(two_versions).sampler().sample({2: 5, 0: 5}, seed=3)

    dataset = ImageFolder(str(out), loader=Image.open)  # as written: grey stays grey
    assert dataset.classes == ["0", "2"] and len(dataset) == 10
    by_label = {label: [] for label in (0, 2)}
    for image, target in dataset:
        by_label[label_of_folder(dataset.classes[target])].append(pil_to_tensor(image))
    for label in (0, 2):
        assert torch.equal(torch.stack(by_label[label]), expected[labels == label]), "pixels survive exactly"

    rgb = ImageFolder(str(out))  # the default loader converts grey to RGB, every channel the grey image
    assert torch.equal(pil_to_tensor(rgb[0][0])[0:1], expected[labels == 0][0])


def test_image_folder_refuses_a_used_folder_and_float_images(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("keep")
    images, labels = torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.tensor([0])
    with pytest.raises(GenmemError, match="not an empty folder"):
        write_image_folder(tmp_path / "used", images, labels, {0: "0"})
    with pytest.raises(GenmemError, match="uint8"):
        write_image_folder(tmp_path / "new", images.float(), labels, {0: "0"})
    result = CliRunner().invoke(main, ["sample", str(tmp_path), "-o", "a.png", "--image-folder", "b"])
    assert result.exit_code != 0 and "either -o FILE or --image-folder DIR" in result.output


def test_replay_stream_in_a_multi_worker_pinned_loader(two_versions):
    alone = list(ReplayStream(two_versions, batch_size=6, batches=4, seed=2))
    stream = ReplayStream(two_versions, batch_size=6, batches=4, seed=2)
    next(iter(stream))  # opened here first: copies must not carry the open sampler
    assert pickle.loads(pickle.dumps(stream))._replay is None
    with pytest.warns(UserWarning, match="pin_memory") if not torch.cuda.is_available() \
            else contextlib.nullcontext():
        loader = DataLoader(stream, batch_size=None, num_workers=2, pin_memory=True)
        together = list(loader)
    assert len(together) == 4
    for (x, y), (images, labels) in zip(alone, together):
        assert torch.equal(x, images) and torch.equal(y, labels)
        assert images.is_pinned() == torch.cuda.is_available()



def test_replay_stream_workers_keep_the_version_it_connected_to(two_versions, tmp_path):
    """A version written after the stream connected is not picked up by its DataLoader workers."""
    memory = tmp_path / "m"
    (memory / "versions").mkdir(parents=True)
    shutil.copytree(two_versions / "versions" / "v0001", memory / "versions" / "v0001")
    stream = ReplayStream(memory, batch_size=6, batches=4, seed=2)
    shutil.copytree(two_versions / "versions" / "v0002", memory / "versions" / "v0002")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pin_memory without CUDA
        batches = list(DataLoader(stream, batch_size=None, num_workers=2))
    assert stream.version == "v0001"
    assert {int(label) for _, labels in batches for label in labels} == {0, 1}  # v0002 adds class 2
