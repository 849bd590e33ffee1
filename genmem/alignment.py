"""Your own images and labels as a memory sees them, for a classifier that trains on them beside replay.

Learning reads a task's uint8 images brought to the memory's size by
`genmem.data.fit_images` (the shorter side resized to it, the centre cropped
square), as floats in [-1, 1]; replay is drawn at that size (uint8, or floats
in [-1, 1]). A classifier that trains on its new real images and on replay
together must see the real ones exactly so, and under the memory's labels:

    x = to_memory_pixels(images, memory)                 # float32 [N, C, S, S] in [-1, 1]
    data = to_memory_labels(load_source("folder:pets"), memory)

`memory` is anything that knows the memory's image format and classes: a
`Memory`, the path of one, a `Sampler`, a `ReplayClient` (a served memory
needs no local copy) or a `ReplayStream`. These are functions rather than
`Sampler` methods for that reason: fitting an image needs no generator, and
the same call serves a memory on disk and one behind a server.
"""

from __future__ import annotations

import os

import torch

from genmem.data import ImageSet, fit_images
from genmem.errors import DataError, GenmemError
from genmem.pixels import to_unit_range


def memory_format(memory) -> tuple[int, int, dict[int, str]]:
    """The memory's channels, image size and {label: name} of its classes (its latest version's, for a Memory:
    versions only add classes, and never change the image format)."""
    from genmem.memory import Memory

    if isinstance(memory, (str, os.PathLike)):
        memory = Memory(memory)
    if isinstance(memory, Memory):
        manifest = memory.manifest()
        generator = manifest["generator"]
        return generator["channels"], generator["image_size"], {c["label"]: c["name"] for c in manifest["classes"]}
    source = getattr(memory, "replay", memory)  # a ReplayStream draws from its pinned sampler or client
    if not (hasattr(source, "image_shape") and hasattr(source, "classes")):
        raise GenmemError(f"cannot tell the image format of a {type(memory).__name__}: pass a Memory, the path of "
                          f"one, a Sampler, a ReplayClient or a ReplayStream")
    channels, size, _ = source.image_shape
    return channels, size, {c.label: c.name for c in source.classes}


def to_memory_pixels(images: torch.Tensor, memory) -> torch.Tensor:
    """Images [N, C, H, W] of any size, as the memory's learning and replay see them: float32 in [-1, 1] at its
    image size (`genmem.data.fit_images`: shorter side resized, centre cropped), on the images' device.

    uint8 images are pixels in 0..255; float images are read as torchvision's ToTensor gives them, in [0, 1], and
    taken to the uint8 pixels they stand for first, as learning only ever reads uint8 pixels. They must have the
    memory's channel count (grey or colour).
    """
    channels, size, _ = memory_format(memory)
    if images.ndim != 4:
        raise DataError(f"images must be a batch [N, C, H, W]; got shape {list(images.shape)}")
    if images.is_floating_point():
        if images.numel() and not (bool(torch.isfinite(images).all()) and 0 <= images.min() and images.max() <= 1):
            raise DataError(f"float images must be in [0, 1], as torchvision's ToTensor gives them; these run from "
                            f"{float(images.min()):.3g} to {float(images.max()):.3g} (pass uint8 pixels instead)")
        images = (images * 255).round().to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise DataError(f"images must be uint8 pixels or floats in [0, 1]; got {images.dtype}")
    return to_unit_range(fit_images(images, channels, size, "these images"))


def to_memory_labels(data: ImageSet, memory) -> ImageSet:
    """`data` under the memory's labels, as learning it into the memory labels it (`ImageSet.labelled_as`): a
    folder's classes that the memory knows take the memory's labels, new ones the labels after its largest."""
    return data.labelled_as(memory_format(memory)[2])
