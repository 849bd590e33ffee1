"""safetensors bytes that depend only on what they hold, so that equal memories have equal checksums.

safetensors writes a file's metadata in the iteration order of a Rust HashMap, which changes from one save to
the next (https://github.com/huggingface/safetensors/issues/584): two saves of the same tensors then differ in
their header, and so in their sha256. `save` writes the same header with the metadata keys sorted; the tensor
data is left as the library wrote it. `frame_header` is the one place genmem writes a safetensors header
(sample replies use it too, genmem.encoding).
"""

from __future__ import annotations

import json

import torch
from safetensors.torch import save as save_in_any_order

HEADER_ALIGNMENT = 8  # the JSON header is padded with spaces to a multiple of 8 bytes


def frame_header(header: dict) -> bytes:
    """A safetensors header as a file starts: its length (8 bytes, little-endian), then the JSON padded to 8 bytes,
    with the metadata's keys sorted."""
    if "__metadata__" in header:
        header = {**header, "__metadata__": dict(sorted(header["__metadata__"].items()))}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % HEADER_ALIGNMENT)
    return len(text).to_bytes(8, "little") + text


def save(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors.torch.save, with the header's metadata in sorted key order."""
    data = save_in_any_order(tensors, metadata=metadata)
    header = _header(data)
    return frame_header(header) + data[8 + _header_size(data):]


def metadata(data: bytes) -> dict[str, str]:
    """The metadata of safetensors bytes ({} without any); ValueError where the header is not one (the library
    reads metadata only from files)."""
    found = _header(data).get("__metadata__") or {}
    if not isinstance(found, dict):
        raise ValueError("the safetensors header's metadata is not a mapping")
    return found


def _header_size(data: bytes) -> int:
    return int.from_bytes(data[:8], "little")


def _header(data: bytes) -> dict:
    size = _header_size(data)
    if len(data) < 8 or 8 + size > len(data):
        raise ValueError(f"{len(data)} bytes hold no safetensors header")
    header = json.loads(data[8: 8 + size])  # a JSONDecodeError is a ValueError
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    return header
