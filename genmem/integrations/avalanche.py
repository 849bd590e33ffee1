"""genmem as an Avalanche plugin: generative replay for any supervised strategy (`pip install genmem[avalanche]`).

    from avalanche.training import Naive
    from genmem.integrations.avalanche import GenmemReplayPlugin

    plugin = GenmemReplayPlugin("runs/split-mnist.mem", epochs=40)      # or replay_from="http://host:8000"
    strategy = Naive(model=model, optimizer=optimizer, criterion=criterion, plugins=[plugin])
    for experience in benchmark.train_stream:
        strategy.train(experience)

After each training experience the plugin learns the experience's new classes
(one or several) into the memory as a new version; while later experiences
train, it appends class-balanced replay of every class of the earlier
experiences to each minibatch. Labels are the stream's targets, so the
memory's classes are the classifier's outputs.

The stream's images are tensors after its transforms (for Avalanche's
benchmarks ToTensor and Normalize). The plugin maps them to 8-bit pixels and
back with one affine map per channel: from `normalize=(mean, std)` when given,
otherwise read from the first experience's pixel range (the darkest and
brightest value of each channel stand for 0 and 255), which recovers
ToTensor + Normalize exactly on natural 8-bit images.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

import httpx
import torch
import torch.nn.functional as F
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from torch.utils.data import DataLoader

from genmem.config import TrainingConfig
from genmem.data import ImageSet
from genmem.errors import GenmemError
from genmem.memory import Memory
from genmem.presets import base_width_for, paper_config
from genmem.replay import ReplaySource, ReplayStream, open_replay


class PixelMap:
    """Per channel, a stream's inputs as an affine map of 8-bit pixels p: x = low + (high - low) * p / 255."""

    def __init__(self, low: Sequence[float], high: Sequence[float]):
        self.low = torch.tensor(low, dtype=torch.float32).view(1, -1, 1, 1)
        self.high = torch.tensor(high, dtype=torch.float32).view(1, -1, 1, 1)

    @classmethod
    def from_normalize(cls, mean: Sequence[float], std: Sequence[float]) -> PixelMap:
        """ToTensor (p / 255) followed by Normalize(mean, std)."""
        return cls([-m / s for m, s in zip(mean, std)], [(1 - m) / s for m, s in zip(mean, std)])

    @classmethod
    def from_range(cls, inputs: torch.Tensor) -> PixelMap:
        """The darkest and brightest value of each channel of `inputs` [N, C, H, W] as pixels 0 and 255."""
        per_channel = inputs.transpose(0, 1).flatten(1)
        low, high = per_channel.min(1).values, per_channel.max(1).values
        if bool((high <= low).any()):
            raise GenmemError("a channel of the experience's images is constant, so its pixel range cannot be read; "
                              "pass normalize=(mean, std) of the stream's Normalize transform")
        return cls(low.tolist(), high.tolist())

    def to_pixels(self, inputs: torch.Tensor) -> torch.Tensor:
        scaled = (inputs.float().cpu() - self.low) / (self.high - self.low) * 255
        return scaled.round().clamp(0, 255).to(torch.uint8)

    def to_inputs(self, pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """uint8 pixels [N, C, h, w] as the stream's inputs [N, C, *size]."""
        images = pixels.float()
        if tuple(images.shape[-2:]) != tuple(size):
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
        return self.low.to(images.device) + (self.high - self.low).to(images.device) * images / 255


def experience_images(dataset: AvalancheDataset, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """All inputs and targets of an experience's dataset, under its eval transforms (no augmentation)."""
    inputs, targets = [], []
    for batch in DataLoader(dataset.eval(), batch_size=batch_size, shuffle=False):
        inputs.append(batch[0])
        targets.append(torch.as_tensor(batch[1]))
    return torch.cat(inputs), torch.cat(targets).long()


def next_power_of_two(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


def critic_head_solver(config: TrainingConfig) -> TrainingConfig:
    """`config` with the critic's class head as the version's solver and no classification phase after the GAN
    (the paper's solver): Avalanche trains the classifier, so a solver phase of its own would only cost time."""
    return replace(config, solver="real", solver_start="critic", solver_steps=0, solver_epochs=None,
                   solver_width=None)


class GenmemReplayPlugin(SupervisedPlugin):
    """Learn each experience's new classes into a genmem memory; replay the earlier ones in every minibatch.

    memory: the memory directory the plugin learns into (created by the first
        experience; classes it already holds are not learned again, so a
        finished memory can be reused by a second run).
    replay_from: where replay comes from: the memory (default), a `genmem
        serve` URL serving it, or a ReplaySource, as for `ReplayStream`.
    replay_size: replay images added to each minibatch; None: class-balanced,
        as many per earlier class as the minibatch has per new class.
    epochs, images_per_class, variant, config: the GAN's budget per
        experience. config overrides the paper's recipe (MNIST's for grey
        images, SVHN's for colour) whose epochs default to `epochs`, with
        the critic's class head as the stored solver (`critic_head_solver`);
        images_per_class caps the real images the GAN trains on, drawn at
        random (config.gan_images_per_class takes the first ones instead).
    normalize: (mean, std) of the stream's Normalize transform; None reads
        the pixel range from the first experience.
    image_size, base_width: the memory's image side (a power of two; None:
        the stream's side rounded up to one, MNIST's 28 becomes 32) and its
        generator's base width (None: the recipe's), set by the first task.
    class_names: names for the stream's labels (default: the label as text).
    token: the server's bearer token, when replay_from is a guarded URL.
    seed, progress: the seed of learning and of replay; a progress bar while the GAN learns.
    """

    def __init__(self, memory: str | os.PathLike, *, replay_from: str | os.PathLike | ReplaySource | None = None,
                 replay_size: int | None = None, epochs: int = 40, images_per_class: int | None = None,
                 variant: str = "dgmw", config: TrainingConfig | None = None,
                 normalize: tuple[Sequence[float], Sequence[float]] | None = None, image_size: int | None = None,
                 base_width: int | None = None, class_names: Mapping[int, str] | None = None,
                 token: str | None = None, seed: int = 0,
                 progress: bool = False):
        super().__init__()
        if replay_size is not None and replay_size < 1:
            raise GenmemError(f"replay_size must be at least 1 (or None for class-balanced), got {replay_size}")
        self.memory = Memory(memory)
        self.replay_from = replay_from if replay_from is not None else self.memory.path
        self.replay_size, self.epochs, self.images_per_class = replay_size, epochs, images_per_class
        self.variant, self.config, self.image_size, self.base_width = variant, config, image_size, base_width
        self.pixels = PixelMap.from_normalize(*normalize) if normalize is not None else None
        self.class_names, self.token, self.seed, self.progress = class_names, token, seed, progress
        self.learned: list[int] = []  # classes of the experiences trained so far, in order: what is replayed
        self._replay: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None

    # Avalanche's hooks

    def before_training_exp(self, strategy: SupervisedTemplate, *args, **kwargs) -> None:
        """Open a replay stream over the earlier experiences' classes, from the newest version."""
        self._replay = None
        if not self.learned:
            return
        new = len(set(strategy.experience.classes_in_this_experience) - set(self.learned)) or 1
        size = self.replay_size or max(1, strategy.train_mb_size * len(self.learned) // new)
        stream = ReplayStream(self._open_source(), classes=self.learned, batch_size=size,
                              seed=self.seed + strategy.experience.current_experience)
        self._replay = iter(stream)

    def before_training_iteration(self, strategy: SupervisedTemplate, *args, **kwargs) -> None:
        """Append a replay batch to the minibatch [inputs, targets, task labels]."""
        if self._replay is None:
            return
        pixels, labels = next(self._replay)
        x, y, t = strategy.mbatch[0], strategy.mbatch[1], strategy.mbatch[-1]
        replay = self.pixels.to_inputs(pixels.to(x.device), tuple(x.shape[-2:])).to(x.dtype)
        strategy.mbatch[0] = torch.cat([x, replay])
        strategy.mbatch[1] = torch.cat([y, labels.to(y.device, y.dtype)])
        strategy.mbatch[-1] = torch.cat([t, t[:1].expand(len(labels))])

    def after_training_exp(self, strategy: SupervisedTemplate, *args, **kwargs) -> None:
        """Learn the experience's classes that the memory does not hold yet, as one new version."""
        self._replay = None
        inputs, targets = experience_images(strategy.experience.dataset)
        if self.pixels is None:
            self.pixels = PixelMap.from_range(inputs)
        held = {c["label"] for c in self.memory.manifest()["classes"]} if self.memory.versions() else set()
        new = [int(c) for c in strategy.experience.classes_in_this_experience if int(c) not in held]
        if new:
            self._learn(self.pixels.to_pixels(inputs), targets, new, strategy.device)
        self.learned += [int(c) for c in strategy.experience.classes_in_this_experience if int(c) not in self.learned]

    # the work behind them

    def _learn(self, pixels: torch.Tensor, targets: torch.Tensor, classes: list[int], device: torch.device) -> str:
        keep = torch.isin(targets, torch.tensor(classes))
        pixels, targets = pixels[keep], targets[keep]
        if self.images_per_class is not None:
            rng = torch.Generator().manual_seed(self.seed)
            picks = [torch.nonzero(targets == c).flatten() for c in classes]
            index = torch.cat([p[torch.randperm(len(p), generator=rng)[: self.images_per_class]] for p in picks])
            pixels, targets = pixels[index], targets[index]
        names = {c: (self.class_names or {}).get(c, str(c)) for c in classes}
        data = ImageSet(pixels, targets, names, "avalanche experience")
        recipe = "mnist" if pixels.shape[1] == 1 else "svhn"
        config = self.config or critic_head_solver(paper_config(recipe, self.variant, epochs=self.epochs,
                                                                seed=self.seed))
        size = self.image_size or next_power_of_two(max(pixels.shape[-2:]))
        return self.memory.learn_task(data, classes, variant=self.variant, config=config, device=device,
                                      image_size=size, base_width=self.base_width or base_width_for(recipe),
                                      progress=self.progress)

    def _open_source(self) -> ReplaySource:
        """The replay source, after asking a server to load the version just learned; it must know every class."""
        if isinstance(self.replay_from, str) and self.replay_from.startswith(("http://", "https://")):
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            try:
                httpx.post(self.replay_from.rstrip("/") + "/genmem/reload", headers=headers, timeout=60
                           ).raise_for_status()
            except httpx.HTTPError as exc:
                raise GenmemError(f"could not make {self.replay_from} load the version just learned ({exc}); is "
                                  f"`genmem serve {self.memory.path}` running there?") from exc
        source = open_replay(self.replay_from, token=self.token)
        missing = [c for c in self.learned if c not in source.classes]
        if missing:
            raise GenmemError(f"the replay source {self.replay_from} (version {source.version}) lacks classes "
                              f"{missing} that the plugin learned into {self.memory.path}; serve that memory")
        return source
