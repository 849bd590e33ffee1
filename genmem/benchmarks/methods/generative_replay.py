"""The paper's baselines, DGR, MeRGAN and EWC-M: each relearns its own plain generator every task
(genmem.benchmarks.baselines) and is tested by a fresh classifier on that generator's replay, as dgm-replay is."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from genmem.benchmarks.baselines import (ALIGNMENT_WEIGHT, BASE_WIDTH, EWC_WEIGHT, Baseline, BaselineReplay,
                                         PlainGenerator, learn_baseline_task)
from genmem.benchmarks.methods.base import (IMAGE_SIZE, Method, Run, Task, load_module, load_tensors, replay_score,
                                            save_module)
from genmem.classifier import output_targets
from genmem.evaluate import Score


class GenerativeReplay(Method):
    """A plain conditional generator for every class of the run, relearned on every task; condition i is the
    run's i-th class."""

    baseline: Baseline  # how it keeps its old classes

    def __init__(self, name: str, run: Run):
        super().__init__(name, run)
        self.generator = PlainGenerator(run.channels, IMAGE_SIZE, len(run.classes),
                                        rng=torch.Generator().manual_seed(run.seed))
        self.fisher: dict[str, torch.Tensor] | None = None  # EWC's, summed over the tasks learned

    def learn(self, task: Task) -> None:
        run = self.run
        images, labels = run.images_of(task.classes, run.gan_data)
        conditions = output_targets(labels, {c: i for i, c in enumerate(run.classes)})
        with run.timed(f"{self.name} gan"):
            self.fisher = learn_baseline_task(self.generator, images, conditions,
                                              replace(run.baseline_gan, seed=run.seed + task.index), self.baseline,
                                              self.fisher, run.device, run.progress,
                                              desc=f"{self.name} task {task.index}")["fisher"]
        run.write_samples(f"{self.name}-", self.replay(task), task)

    def replay(self, task: Task) -> BaselineReplay:
        run = self.run
        return BaselineReplay(self.generator, run.classes, run.data.class_names, f"{self.name} task {task.index}")

    def score(self, task: Task) -> Score:
        return replay_score(self.replay(task), task, self.run, self.name)

    def save(self, state: Path) -> None:
        save_module(self.generator, state / f"{self.name}.safetensors")
        if self.fisher is not None:
            save_file(self.fisher, str(state / f"{self.name}-fisher.safetensors"))

    def load(self, state: Path) -> None:
        load_module(self.generator, state / f"{self.name}.safetensors")
        if self.baseline.ewc_weight:
            self.fisher = load_tensors(state / f"{self.name}-fisher.safetensors")

    def facts(self) -> dict:
        """The generator's size (every baseline's is the same) and this baseline's settings."""
        size = sum(p.numel() for p in self.generator.parameters())
        return {"baselines": {"base_width": BASE_WIDTH, "parameters": size,
                              "settings": {self.name: asdict(self.baseline)}}}


class Dgr(GenerativeReplay):
    """dgr: deep generative replay (Shin et al. 2017)."""

    label, title = "classifier + DGR replay", "DGR"
    baseline = Baseline()


class Mergan(GenerativeReplay):
    """mergan: DGR with MeRGAN's replay alignment (Wu et al. 2018)."""

    label, title = "classifier + MeRGAN replay", "MeRGAN"
    baseline = Baseline(alignment_weight=ALIGNMENT_WEIGHT)


class EwcM(GenerativeReplay):
    """ewc: EWC on the generator, no replay in the GAN (the DGM paper's EWC-M)."""

    label, title = "classifier + EWC-M replay", "EWC-M"
    baseline = Baseline(replay=False, ewc_weight=EWC_WEIGHT)
