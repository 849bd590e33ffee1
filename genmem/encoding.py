"""Sampled images as bytes: safetensors or .npz for programs, .npy for images alone, PNG grids for people.

A reply can be large (65,536 images are 64 MiB of uint8), so the safetensors and .npy forms are built
as parts, a header and views of the tensors' memory, which a server sends one after the other without
first copying them into one buffer; `encode_samples` joins them for a file.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from genmem.canonical import frame_header
from genmem.errors import GenmemError
from genmem.grids import grid_png

FORMATS = {"safetensors": "application/octet-stream", "npz": "application/octet-stream",
           "npy": "application/octet-stream", "png": "image/png"}
SAFETENSORS_DTYPES = {torch.uint8: "U8", torch.float32: "F32", torch.int64: "I64"}

Parts = list[bytes | memoryview]


def format_for_path(path: str | os.PathLike) -> str:
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise GenmemError(f"cannot write {path}: the file name must end in {', '.join('.' + f for f in FORMATS)}")
    return fmt


def safetensors_parts(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Parts:
    """The safetensors file of CPU `tensors` as its header and views of their memory, in that order.

    Put 8-byte types first to keep every tensor aligned.
    """
    header: dict = {"__metadata__": metadata}
    parts, offset = [], 0
    for name, tensor in tensors.items():
        data = memoryview(tensor.contiguous().numpy().reshape(-1).view(np.uint8))
        header[name] = {"dtype": SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + data.nbytes]}
        parts.append(data)
        offset += data.nbytes
    return [frame_header(header), *parts]


def npy_parts(array: np.ndarray) -> Parts:
    """An .npy file of an array as numpy's header and a view of the array's memory."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return [header.getvalue(), memoryview(array.reshape(-1).view(np.uint8))]


def sample_parts(images: torch.Tensor, labels: torch.Tensor, fmt: str, names: dict[int, str],
                 metadata: dict[str, str] | None = None) -> Parts:
    """images [N, C, H, W] (uint8 or float) and labels [N] in format `fmt`, as parts.

    safetensors and npz hold `images` and `labels`; npy holds the images alone
    (labels follow the request's class order); png is a grid, one row per class.
    """
    images, labels = images.cpu(), labels.cpu()
    if fmt == "safetensors":
        return safetensors_parts({"labels": labels, "images": images}, metadata or {})
    if fmt == "npy":
        return npy_parts(images.numpy())
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, images=images.numpy(), labels=labels.numpy())
        return [buffer.getvalue()]
    if fmt == "png":
        if images.dtype != torch.uint8:
            raise GenmemError("a PNG grid needs uint8 images; ask for uint8 output")
        if len(images) == 0:
            raise GenmemError("no images to draw: ask for at least one image")
        rows = [(names.get(label, str(label)), images[labels == label]) for label in dict.fromkeys(labels.tolist())]
        return [grid_png(rows)]
    raise GenmemError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")


def encode_samples(images: torch.Tensor, labels: torch.Tensor, fmt: str, names: dict[int, str],
                   metadata: dict[str, str] | None = None) -> bytes:
    """`sample_parts` joined into the bytes of one file."""
    return b"".join(sample_parts(images, labels, fmt, names, metadata))
