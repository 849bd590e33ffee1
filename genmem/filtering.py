"""Replay filtered by the memory's own solver: drop generated images that the stored solver doubts.

A class's generator sometimes draws an image that looks like another class
or like no digit at all, and a classifier trained on it learns a wrong
boundary. The version's solver scores every candidate; an image whose
probability for its own class is under `min_confidence` is set aside, and
the batch is filled from more draws of the same noise stream. Candidates
that pass keep their draw order, so the batch still follows the generator's
distribution restricted to what the solver recognises, not just its easiest
images. When too few pass, the doubted ones fill the rest, in draw order.

Deterministic like the sampler: the same seed gives the same batch. It
costs `oversample` times the generation plus one solver pass per candidate.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from genmem.errors import GenmemError
from genmem.nets import Classifier
from genmem.pixels import to_unit_range
from genmem.replay import ReplaySource

OVERSAMPLE = 2  # candidates drawn per image asked for


class ConfidentReplay:
    """A replay source (`genmem.replay.ReplaySource`) whose images the solver recognises as their class.

    source: a `Sampler` or `ReplayClient` (anything with `image_shape` too). solver_classes: the labels of
    the solver's outputs, in order (the manifest's solver classes).
    """

    def __init__(self, source: ReplaySource, solver: Classifier, solver_classes: list[int], min_confidence: float,
                 oversample: int = OVERSAMPLE):
        if not 0.0 <= min_confidence < 1.0:
            raise GenmemError(f"the minimum confidence is a probability in [0, 1), got {min_confidence}")
        if oversample < 1:
            raise GenmemError(f"oversample must be at least 1, got {oversample}")
        self.source, self.solver, self.min_confidence, self.oversample = source, solver.eval(), min_confidence, \
            oversample
        self.output = {label: i for i, label in enumerate(solver_classes)}
        self.classes, self.version, self.image_shape = source.classes, source.version, source.image_shape
        self.kept: dict[int, tuple[int, int]] = {}  # per label: candidates that passed, candidates scored

    @classmethod
    def from_memory(cls, memory, version: str | None, min_confidence: float, device: str | torch.device = "cpu",
                    oversample: int = OVERSAMPLE) -> ConfidentReplay:
        """Filter a version's sampler with the solver stored in that same version."""
        from genmem.artifact import decode_solver, has_solver

        manifest, files = memory.store.read(version)
        if not has_solver(manifest):
            raise GenmemError(f"version {manifest['version']} stores no solver (learned with --solver none), so "
                              f"its replay cannot be filtered by confidence")
        solver = decode_solver(manifest, files).to(device)
        return cls(memory.sampler(manifest["version"], device), solver, manifest["solver"]["classes"],
                   min_confidence, oversample)

    @torch.no_grad()
    def sample(self, counts: Mapping[int | str, int], seed: int = 0, as_uint8: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for key, count in counts.items():
            label = self.classes.resolve(key).label
            if label not in self.output:
                raise GenmemError(f"class {label} is not among the solver's classes; filter a version's replay "
                                  f"with that version's own solver")
            candidates, _ = self.source.sample({label: count * self.oversample}, seed=seed, as_uint8=True)
            device = next(self.solver.parameters()).device
            probabilities = self.solver(to_unit_range(candidates.to(device))).softmax(1)[:, self.output[label]]
            doubted = (probabilities < self.min_confidence).cpu()
            order = torch.argsort(doubted.to(torch.uint8), stable=True)[:count]  # passing first, in draw order
            passed, scored = self.kept.get(label, (0, 0))
            self.kept[label] = (passed + int((~doubted).sum()), scored + len(doubted))
            images.append(candidates[order.to(candidates.device)])
            labels.append(torch.full((count,), label))
        batch = torch.cat(images)
        return (batch if as_uint8 else to_unit_range(batch)), torch.cat(labels)
