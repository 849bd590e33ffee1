"""Every data source, read from small files in the real formats, and every way a source can be wrong."""

import gzip
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from genmem.data import CIFAR10, fit_images, load_source
from genmem.errors import DataError

from tiny import class_images


def write_idx(path, array, gz=True):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("kind,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_sources_read_torchvision_layout(tmp_path, kind, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    x = np.random.default_rng(0).integers(0, 255, (6, 28, 28), dtype=np.uint8)
    y = np.array([0, 1, 2, 9, 9, 1], dtype=np.uint8)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", x)
    write_idx(raw / "t10k-labels-idx1-ubyte", y, gz=False)  # extracted files work too
    data = load_source(kind, tmp_path, train=False)
    assert data.images.shape == (6, 1, 28, 28) and torch.equal(data.images[:, 0], torch.from_numpy(x))
    assert data.labels.tolist() == y.tolist()
    assert (data.class_names[9] == "9") if kind == "mnist" else (data.class_names[9] == "Ankle boot")


def test_a_truncated_idx_file_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    good = gzip.decompress((raw / "train-images-idx3-ubyte.gz").read_bytes())
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(good[:-100]))
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="truncated"):
        load_source("mnist", tmp_path)


def test_a_missing_data_set_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match=r"no train-images-idx3-ubyte\[\.gz\] in .*MNIST/raw.*--data-dir"):
        load_source("mnist", tmp_path)
    with pytest.raises(DataError, match="SVHN not found"):
        load_source("svhn", tmp_path)
    with pytest.raises(DataError, match="CIFAR-10 not found"):
        load_source("cifar10", tmp_path)


def test_svhn_reads_the_mat_format_and_maps_label_10_to_digit_0(tmp_path):
    from scipy.io import savemat

    x = np.random.default_rng(1).integers(0, 255, (32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    data = load_source("svhn", tmp_path, train=False)
    assert data.images.shape == (5, 3, 32, 32)
    assert torch.equal(data.images[2], torch.from_numpy(x[:, :, :, 2]).permute(2, 0, 1))
    assert data.labels.tolist() == [0, 1, 2, 0, 9]


def test_cifar10_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(2)
    records = rng.integers(0, 255, (3, 3073), dtype=np.uint8)
    records[:, 0] = [3, 0, 9]
    records.tofile(folder / "test_batch.bin")
    data = load_source("cifar10", tmp_path, train=False)
    assert data.labels.tolist() == [3, 0, 9] and data.class_names[3] == "cat"
    assert torch.equal(data.images[1].flatten(), torch.from_numpy(records[1, 1:]))


def _jpeg(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_cifar10_jpeg_copy_as_folder_and_as_tarball(tmp_path):
    tiles = {name: np.full((32, 32, 3), 20 * label, dtype=np.uint8) for label, name in CIFAR10.items() if label < 3}
    folder = tmp_path / "a" / "CIFAR10-jpeg" / "test"
    for name, tile in tiles.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "0001.jpg").write_bytes(_jpeg(tile))
    from_folder = load_source("cifar10", tmp_path / "a", train=False)

    archive_dir = tmp_path / "b" / "CIFAR10-jpeg"
    archive_dir.mkdir(parents=True)
    with tarfile.open(archive_dir / "cifar10-jpeg-q75.tar.gz", "w:gz") as tar:
        for name in tiles:
            tar.add(folder / name / "0001.jpg", arcname=f"test/{name}/0001.jpg")
    from_tar = load_source("cifar10", tmp_path / "b", train=False)

    for data in (from_folder, from_tar):
        assert sorted(data.labels.tolist()) == [0, 1, 2] and data.images.shape[1:] == (3, 32, 32)
        order = data.labels.argsort()
        assert (data.images[order].float().mean(dim=(1, 2, 3)) - torch.tensor([0.0, 20.0, 40.0])).abs().max() < 3


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_source_labels_follow_sorted_subfolders(tmp_path):
    for name, label in (("dog", 1), ("cat", 0)):
        for i in range(3):
            _write_png(tmp_path / name / f"{i}.png", class_images(label, 1, 20)[0, :, :, 0])
    data = load_source(f"folder:{tmp_path}")
    assert data.class_names == {0: "cat", 1: "dog"}
    assert data.images.shape == (6, 1, 20, 20) and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.resolve(["dog", "0"]) == [1, 0]


def test_folder_source_turns_mixed_grey_and_colour_into_colour(tmp_path):
    _write_png(tmp_path / "a" / "grey.png", np.zeros((8, 8), np.uint8))
    _write_png(tmp_path / "b" / "colour.png", np.zeros((8, 8, 3), np.uint8))
    assert load_source(f"folder:{tmp_path}").images.shape == (2, 3, 8, 8)


def test_folder_images_of_several_sizes_are_each_fitted_as_they_are_read(tmp_path):
    rng = np.random.default_rng(0)
    shapes = {"a/1.png": (20, 30, 3), "a/2.png": (16, 16, 3), "b/3.png": (40, 12, 3)}
    for name, shape in shapes.items():
        _write_png(tmp_path / name, rng.integers(0, 255, shape, dtype=np.uint8))
    data = load_source(f"folder:{tmp_path}", image_size=8)
    assert data.images.shape == (3, 3, 8, 8)
    for image, name in zip(data.images, shapes):  # exactly what fit_images makes of each alone
        alone = torch.from_numpy(np.array(Image.open(tmp_path / name))).permute(2, 0, 1)[None]
        assert torch.equal(image, fit_images(alone, 3, 8, "t")[0])
    assert load_source(f"folder:{tmp_path}").images.shape == (3, 3, 12, 12)  # no size given: the smallest side


def test_folder_images_stand_upright_as_their_exif_orientation_says(tmp_path):
    pixels = np.zeros((6, 10), np.uint8)
    pixels[0, :] = 255  # a bright top row, which a quarter turn puts at one side
    (tmp_path / "a").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    Image.fromarray(pixels).save(tmp_path / "a" / "1.jpg", exif=exif, quality=100)
    image = load_source(f"folder:{tmp_path}").images[0, 0]
    assert image.shape == (10, 6) and image[:, -1].float().mean() > 200 and image[:, 0].float().mean() < 50


def test_folder_source_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_source(f"folder:{tmp_path / 'none'}")
    with pytest.raises(DataError, match="no sub-folders"):
        load_source(f"folder:{tmp_path}")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="holds no images"):
        load_source(f"folder:{tmp_path}")
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png is not a readable image"):
        load_source(f"folder:{tmp_path}")


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
def test_npz_layouts(tmp_path, layout):
    x = class_images(0, 4, 10, 3 if layout != "NHW" else 1)  # N, H, W, C
    stored = {"NHW": x[..., 0], "NHWC": x, "NCHW": x.transpose(0, 3, 1, 2)}[layout]
    np.savez(tmp_path / "d.npz", x=stored, y=np.array([5, 5, 7, 7]), class_names=np.array([str(i) for i in range(8)]))
    data = load_source(f"npz:{tmp_path / 'd.npz'}")
    assert data.images.shape == (4, x.shape[-1], 10, 10)
    assert torch.equal(data.images.permute(0, 2, 3, 1), torch.from_numpy(x))
    assert data.labels.tolist() == [5, 5, 7, 7]


@pytest.mark.parametrize("arrays,message", [
    ({"images": np.zeros((2, 4, 4), np.uint8)}, "must hold arrays named x"),
    ({"x": np.zeros((2, 4, 4), np.float32), "y": np.zeros(2, int)}, "x must be uint8"),
    ({"x": np.zeros((2, 4), np.uint8), "y": np.zeros(2, int)}, "has shape"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(2, float)}, "integer labels"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(3, int)}, "2 images but 3 labels"),
])
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_source(f"npz:{tmp_path / 'd.npz'}")


def test_npz_with_pickled_objects_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, int))
    with pytest.raises(DataError, match="without pickled objects"):
        load_source(f"npz:{tmp_path / 'd.npz'}")


def test_builtin_digits_split_into_train_and_test():
    train, test = load_source("builtin"), load_source("builtin", train=False)
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.labels.bincount().tolist() == [400] * 10 and test.labels.bincount().tolist() == [100] * 10
    assert train.images.float().mean() > 10, "real digits, not blank images"


def test_unknown_sources_and_classes_are_named():
    with pytest.raises(DataError, match="unknown data source 'imagenet'"):
        load_source("imagenet")
    with pytest.raises(DataError, match="npz needs a path"):
        load_source("npz")


def test_resolve_and_select_complain_clearly(tiny_npz):
    data = load_source(f"npz:{tiny_npz}")
    with pytest.raises(DataError, match="has no class 'cat'; its classes are: 0, 1, 2, 3"):
        data.resolve(["cat"])
    with pytest.raises(DataError, match="named twice"):
        data.resolve(["1", "1"])
    empty = data.select([0])
    empty.class_names[5] = "5"
    with pytest.raises(DataError, match="class '5' has no images"):
        empty.select([5])


def test_fit_images_resizes_the_shorter_side_then_crops_the_centre():
    images = torch.randint(0, 255, (2, 1, 28, 28), dtype=torch.uint8)
    assert fit_images(images, 1, 32, "t").shape == (2, 1, 32, 32)
    assert fit_images(images, 1, 28, "t") is images
    with pytest.raises(DataError, match="3-channel images but the memory holds 1-channel"):
        fit_images(images.expand(2, 3, 28, 28), 1, 32, "t")
    wide = torch.zeros(1, 1, 10, 40, dtype=torch.uint8)
    wide[..., 10:30] = 200  # a bright centre band: the crop keeps it whole and drops the dark sides
    fitted = fit_images(wide, 1, 5, "t")
    assert fitted.shape == (1, 1, 5, 5) and bool((fitted == 200).all())
    tall = torch.arange(60, dtype=torch.uint8).view(1, 1, 60, 1).expand(1, 1, 60, 30)
    fitted = fit_images(tall, 1, 30, "t")  # 30 px wide already: only the crop, rows 15..44
    assert torch.equal(fitted[0, 0, :, 0], torch.arange(15, 45, dtype=torch.uint8))
    odd = torch.arange(33, dtype=torch.uint8).view(1, 1, 1, 33).expand(1, 1, 32, 33)
    assert fit_images(odd, 1, 32, "t")[0, 0, 0, 0] == 0  # one pixel left over: the crop keeps the left one


def _class_folders(root, names):
    """One 8 px image per class folder, all of the value 10 * (its place in `names` + 1)."""
    for place, name in enumerate(names):
        _write_png(root / name / "0.png", np.full((8, 8), 10 * (place + 1), np.uint8))


def _value_of(data, label):
    return int(data.images[data.labels == label][0, 0, 0, 0])


def test_numbered_class_folders_and_labels_json_fix_the_labels(tmp_path):
    _class_folders(tmp_path / "numbered", ["07_dog", "03_cat", "5"])
    data = load_source(f"folder:{tmp_path / 'numbered'}")
    assert data.fixed_labels and data.class_names == {3: "cat", 5: "5", 7: "dog"}
    assert data.resolve(["dog", "cat", "5"]) == [7, 3, 5] and (_value_of(data, 7), _value_of(data, 3)) == (10, 20)

    _class_folders(tmp_path / "listed", ["dog", "cat"])
    (tmp_path / "listed" / "labels.json").write_text('{"cat": 4, "dog": 2, "bird": 9}')
    data = load_source(f"folder:{tmp_path / 'listed'}")
    assert data.fixed_labels and data.class_names == {4: "cat", 2: "dog", 9: "bird"}
    assert (_value_of(data, 2), _value_of(data, 4)) == (10, 20)

    _class_folders(tmp_path / "plain", ["dog", "cat", ".ipynb_checkpoints"])  # hidden folders are no class
    data = load_source(f"folder:{tmp_path / 'plain'}")
    assert not data.fixed_labels and data.class_names == {0: "cat", 1: "dog"}


@pytest.mark.parametrize("folders,labels_json,message", [
    (["00_cat", "dog"], None, "numbers some class folders but not 'dog'"),
    (["00_cat", "0_dog"], None, "'00_cat' and '0_dog' give the same label"),
    (["01_cat", "02_cat"], None, "give the same label or class name"),
    (["cat", "dog"], '{"cat": 0}', "gives no label to the sub-folder 'dog'"),
    (["cat", "dog"], '{"cat": 0, "dog": 0}', "gives two sub-folders one label"),
    (["cat"], '{"cat": -1}', "a whole number of 0 or more"),
    (["cat"], '{"cat": true}', "a whole number of 0 or more"),
    (["cat"], '["cat"]', "must map each sub-folder's name to a label"),
    (["cat"], '{"cat": 0', "is not readable JSON"),
])
def test_bad_fixed_labels_are_named(tmp_path, folders, labels_json, message):
    _class_folders(tmp_path, folders)
    if labels_json is not None:
        (tmp_path / "labels.json").write_text(labels_json)
    with pytest.raises(DataError, match=message):
        load_source(f"folder:{tmp_path}")


def test_a_memorys_labels_replace_a_folders_sorted_order_and_must_match_fixed_ones(tmp_path):
    _class_folders(tmp_path / "plain", ["cat", "dog", "bird"])
    plain = load_source(f"folder:{tmp_path / 'plain'}")  # sorted: bird 0, cat 1, dog 2
    known = {0: "cat", 1: "dog", 4: "fish"}
    mine = plain.labelled_as(known)
    assert mine.class_names == {5: "bird", 0: "cat", 1: "dog"} and mine.fixed_labels
    assert [_value_of(mine, label) for label in (0, 1, 5)] == [10, 20, 30]  # every image keeps its class
    assert plain.labelled_as({}).class_names == plain.class_names

    _class_folders(tmp_path / "numbered", ["01_cat", "02_bird"])
    numbered = load_source(f"folder:{tmp_path / 'numbered'}")
    assert numbered.labelled_as({1: "cat", 7: "fish"}) is numbered
    with pytest.raises(DataError, match="gives class 'cat' label 1, but the memory learned it as label 0"):
        numbered.labelled_as(known)
