"""Tiny networks and tiny synthetic data, so that every test trains in about a second."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from genmem.config import TrainingConfig
from genmem.data import ImageSet
from genmem.memory import Memory
from genmem.nets import Classifier, GeneratorSpec

TINY_SIZE = 16
TINY_NOISE = 16


class RecordingClassifier(Classifier):
    """A tiny two-class classifier that keeps every batch it is trained on."""

    def __init__(self):
        super().__init__(1, TINY_SIZE, 2, width=4)
        self.seen: list[torch.Tensor] = []

    def forward(self, images):
        self.seen.append(images.detach().clone())
        return super().forward(images)


# The generator families the core tests run on: (architecture, class-conditional BatchNorms).
ARCHITECTURES = [pytest.param(("dcgan", False), id="dcgan"), pytest.param(("resnet", False), id="resnet"),
                 pytest.param(("resnet", True), id="resnet-classnorm"),
                 pytest.param(("dcgan", True), id="dcgan-classnorm")]


def tiny_spec(variant: str, arch: str = "dcgan", class_norm: bool = False) -> GeneratorSpec:
    """16 px: the DCGAN's two layers 8 and 4 wide; the ResNet's 4x4 group and two stages, 6, 4 and 4 wide."""
    return GeneratorSpec(variant, channels=1, image_size=TINY_SIZE, noise_dim=TINY_NOISE,
                         widths=(8, 4) if arch == "dcgan" else (6, 4, 4), arch=arch, class_norm=class_norm)


def tiny_config(variant: str = "dgmw", arch: str = "dcgan", **overrides) -> TrainingConfig:
    """A few steps per task. The ResNet takes the paper's CIFAR-10 sparsity weight, 0.001: in so few steps its
    critic's gradient is still small (it has no normalisation), and with MNIST's the penalty alone decides, leaving
    layers where the tests need reserved entries with none."""
    sparsity = 0.001 if arch == "resnet" else 0.08 if variant == "dgmw" else 0.01
    settings = dict(epochs=2, batch_size=12, critic_width=4, recalibration_batches=2, solver_steps=20, lr=2e-3,
                    sparsity_weight=sparsity, s_max=1e4 if variant == "dgmw" else 1e5)
    settings.update(overrides)
    return TrainingConfig(**settings)


def class_images(label: int, count: int, size: int = TINY_SIZE, channels: int = 1, seed: int = 0) -> np.ndarray:
    """uint8 [count, size, size, channels]: a bright bar whose position encodes the class, plus noise."""
    rng = np.random.default_rng(seed + 1000 * label)
    images = rng.integers(0, 40, size=(count, size, size, channels), dtype=np.uint8)
    row = (2 + 3 * label) % (size - 2)
    images[:, row: row + 2, :, :] = 230
    return images


def tiny_set(labels=(0, 1, 2, 3), per_class: int = 24, size: int = TINY_SIZE, channels: int = 1) -> ImageSet:
    x = np.concatenate([class_images(label, per_class, size, channels) for label in labels])
    y = np.repeat(np.array(labels, dtype=np.int64), per_class)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.from_numpy(y), {label: str(label) for label in labels}, "tiny")


def tiny_memory(path) -> Memory:
    """A memory of two versions: classes 0 and 1 as the first task, 2 as the second (about a second each)."""
    memory = Memory(path)
    for seed, classes in enumerate((["0", "1"], ["2"])):
        memory.learn_task(tiny_set(), classes, config=tiny_config(seed=seed), image_size=TINY_SIZE, base_width=2,
                          progress=False)
    return memory


def publish(version_dir, memory_path, name: str, damaged: bool = False) -> None:
    """Copy a finished version into a memory as `name`, appearing at once as a learner's does.

    damaged: flip a byte of its weights first, so that it fails its checksum.
    """
    hidden = memory_path / "versions" / f".incomplete-{name}"
    shutil.copytree(version_dir, hidden)
    if damaged:
        weights = hidden / "generator.safetensors"
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF
        weights.write_bytes(bytes(data))
    hidden.rename(memory_path / "versions" / name)
