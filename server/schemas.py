"""What the routes accept and return, with the descriptions and examples that /docs shows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from genmem.encoding import FORMATS
from genmem.service import DTYPES, SEED_RANGE


class SampleRequest(BaseModel):
    """Which images to draw: `counts` per class, or a `total` spread evenly over `classes`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"counts": {"3": 100, "5": 100}, "seed": 7},
        {"classes": ["0", "1", "2"], "total": 4096, "seed": 0, "format": "npz"},
        {"total": 16, "format": "png"},
    ]})

    counts: dict[str, NonNegativeInt] | None = Field(
        None, description="Images per class; a class is named by its label or its name. Not with `total`.",
        examples=[{"3": 100, "cat": 5}])
    classes: list[str | int] | None = Field(
        None, description="Classes (labels or names) that share `total` evenly; default all.", examples=[["0", "1"]])
    total: NonNegativeInt | None = Field(
        None, description="Images in all, spread evenly over `classes` (earlier classes take the remainder).",
        examples=[4096])
    seed: int = Field(0, ge=SEED_RANGE[0], le=SEED_RANGE[1],
                      description="Same seed, same images: a class's images depend only on the seed and the "
                                  "class, not on what else the request asks for.")
    version: str | None = Field(None, description="Memory version to draw from (e.g. v0002); default the latest "
                                                  "served.", examples=["v0002"])
    format: Literal[tuple(FORMATS)] = Field(
        "safetensors", description="safetensors or npz (tensors `images` and `labels`), npy (images only; labels "
                                   "in the X-Genmem-Labels header), png (a grid for people, one row per class).")
    dtype: Literal[DTYPES] = Field("uint8", description="uint8 pixels [N, C, H, W], or float32 in [-1, 1].")


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """Open Inference Protocol model metadata."""

    name: str
    versions: list[str] = Field(description="Versions that can be served (damaged ones are left out).")
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    served: str | None = Field(None, description="The version served by default (genmem's addition).")
    damaged: dict[str, str] = Field({}, description="Versions on disk that cannot be served, and why (genmem's "
                                                    "addition).")


class ReloadReply(BaseModel):
    version: str | None = Field(description="The version served now.", examples=["v0003"])
    error: str | None = Field(description="Why the newest version on disk is not served, if it is not.",
                              examples=[None])
