"""A generative memory on disk: learn a task into a new version, load a version, sample from it.

    memory = Memory("digits.mem")
    memory.learn_task(load_source("builtin"), classes=["0"])     # writes v0001
    memory.learn_task(load_source("builtin"), classes=["1"])     # writes v0002 on top of it
    images, labels = memory.sampler().sample({"0": 8, "1": 8}, seed=0)
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import torch
from tqdm.auto import tqdm

from genmem.artifact import (CARD_FILE, FORMAT, SAMPLES_FILE, SOLVER_FILE, ClassInfo, ClassTable, decode_generator,
                             encode_generator, encode_solver, format_version, model_card)
from genmem.checkpoint import Checkpointing, task_key
from genmem.config import SOLVER_MODES, TrainingConfig, check_settings, stored_solver_width
from genmem.data import ImageSet, fit_images
from genmem.distributed import ONE_PROCESS, DataParallel
from genmem.errors import DataError
from genmem.holdout import hold_out
from genmem.learn import PastReplay, TaskReport, learn_task
from genmem.learned_quality import learned_quality, sample_strip
from genmem.nets import Classifier, Generator, GeneratorSpec
from genmem.presets import paper_config, recipe_for_channels
from genmem.rank_writer import version_writer
from genmem.sampler import Sampler
from genmem.solver import records_real_image_figures
from genmem.store import MemoryStore, VersionWriter

try:
    GENMEM_VERSION = package_version("genmem")
except PackageNotFoundError:  # running from a source tree that was not installed
    GENMEM_VERSION = "unknown"


def parameter_counts(generator: Generator) -> dict[str, int]:
    """Weights shared by all tasks, weights private to tasks, and their sum."""
    shared = sum(layer.weight.numel() for layer in generator.layers)
    private = sum(p.numel() for task in generator.tasks for p in task.parameters())
    return {"shared": shared, "private": private, "total": shared + private}


class Memory:
    """One memory directory: an append-only series of immutable versions, one per learned task."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.store = MemoryStore(self.path)

    def versions(self) -> list[str]:
        return self.store.versions()

    def manifest(self, version: str | None = None) -> dict:
        return self.store.manifest(version)

    def load(self, version: str | None = None) -> tuple[Generator, dict]:
        """The generator of a version (latest by default) and its manifest, checksums verified."""
        manifest, files = self.store.read(version)
        return decode_generator(manifest, files), manifest

    def sampler(self, version: str | None = None, device: str | torch.device = "cpu", precision: str = "auto"
                ) -> Sampler:
        """A fast sampler over a version (latest by default); precision 'auto' is float16 on CUDA, else float32."""
        generator, manifest = self.load(version)
        return Sampler(generator, ClassTable.from_manifest(manifest), manifest["version"], device, precision)

    def learn_task(self, data: ImageSet, classes: list[str | int], *, variant: str | None = None,
                   config: TrainingConfig | None = None, device: str | torch.device = "cpu",
                   image_size: int = 32, base_width: int | None = None, progress: bool = True,
                   writer: VersionWriter | None = None, solver: str | None = None, holdout: float = 0.0,
                   parallel: DataParallel | None = None, checkpoint_every: float | None = None,
                   arch: str | None = None, class_norm: bool | None = None) -> str:
        """Learn `classes` of `data` as the next task and write it as a new version; returns its name.

        The first task creates the memory with `variant` (default dgmw), the
        data's channel count, `image_size` and `base_width`; later tasks must
        fit it; their labels become the memory's (`ImageSet.labelled_as`).
        `config` defaults to the recipe for custom data (MNIST's for grey
        images, the colour recipe for colour: genmem.presets). Fails before
        training if a class is already in the memory or the images do not
        fit (any size fits: genmem.data.fit_images). `writer`: the
        memory's lock if the caller already holds it (`store.writer()`, taken
        before loading the data so that a second writer fails at once).
        `solver`: real, replay or none (genmem.solver; default: config.solver).
        `holdout`: the share of the task's images kept out of training for
        `genmem audit`; the manifest records which, never the images.
        `parallel`: this process's rank in data-parallel training
        (genmem.distributed): every rank trains, only rank 0 writes.
        `checkpoint_every`: save the task's training state inside the memory
        at the first epoch end after this many seconds (0: every epoch), so
        that a rerun after a kill continues it (genmem.checkpoint), DP
        tasks too. A checkpoint of this very task is continued from whether
        or not this is set. `arch` (dcgan, the default, or resnet) and
        `class_norm` (class-conditional BatchNorms, default off) are set by the
        first task, as `variant` is (docs/ALGORITHM.md §15, §16).
        """
        lock = contextlib.nullcontext(writer) if writer is not None else version_writer(self.store, parallel)
        with lock as writer:
            parent = self.store.latest()
            labels, task_data = self._task_data(data, classes, parent)
            if parent is None:
                spec = GeneratorSpec.for_images(variant or "dgmw", task_data.images.shape[1], image_size, base_width,
                                                arch=arch or "dcgan", class_norm=bool(class_norm))
                history: dict = {"classes": [], "tasks": []}
            else:
                generator, history = self.load(parent)
                spec = generator.spec
                self._check_same_generator(spec, variant, arch, class_norm)
            config = config or paper_config(recipe_for_channels(spec.channels), spec.variant, spec.arch)
            if solver is not None:
                config = replace(config, solver=solver)
            # Before its seed draws the holdout or a first generator: a refused task changes nothing.
            check_settings(config, (parallel or ONE_PROCESS).world_size, spec.arch)
            task_data, held_out = hold_out(task_data, holdout, config.seed) if holdout else (task_data, None)
            if parent is None:
                generator = Generator(spec, torch.Generator().manual_seed(config.seed))
            new_classes = self._new_classes(ClassTable.from_manifest(history), labels, task_data,
                                            task=len(history["tasks"]))
            images = fit_images(task_data.images, spec.channels, spec.image_size, task_data.source)
            class_index = torch.tensor([labels.index(int(label)) for label in task_data.labels])
            past = self._past_replay(generator, history, parent, len(images) // len(labels), config.seed, device)

            checkpoint = self._checkpointing(writer, history, labels, config, spec, device, images, class_index,
                                             checkpoint_every, parallel, progress)
            report = learn_task(generator, images, class_index, len(labels), config, device, progress, past,
                                parallel, checkpoint)

            manifest = self._next_manifest(writer.next_version(), parent, spec, history, new_classes, report,
                                           task_data, config, device, generator, held_out)
            # Without the real solver (and so under DP) nothing computed from the real images may be stored.
            real = images if records_real_image_figures(config.solver) else images[:0]
            manifest["tasks"][-1]["quality"] = learned_quality(generator, len(history["tasks"]), report.solver,
                                                               real, class_index[:len(real)], labels,
                                                               len(history["classes"]), config.seed)
            return writer.commit(self._version_files(generator, report.solver, manifest, device), manifest)

    def _task_data(self, data: ImageSet, classes: list[str | int], parent: str | None) -> tuple[list[int], ImageSet]:
        """The labels of `classes` and their images, under the memory's labels for the classes it knows (those of
        version `parent`), so that a folder's order cannot shift them."""
        if parent is not None:
            data = data.labelled_as({c["label"]: c["name"] for c in self.manifest(parent)["classes"]})
        labels = data.resolve(classes)
        if not labels:
            raise DataError("name at least one class to learn")
        return labels, data.select(labels)

    def _check_same_generator(self, spec: GeneratorSpec, variant: str | None, arch: str | None,
                              class_norm: bool | None) -> None:
        """Refuse generator settings for a later task that differ from the memory's: the first task set them."""
        if variant is not None and variant != spec.variant:
            raise DataError(f"memory {self.path} is {spec.variant}; drop the variant {variant} or start a new memory")
        if (arch or spec.arch, spec.class_norm if class_norm is None else class_norm) != (spec.arch, spec.class_norm):
            norms = "class-conditional" if spec.class_norm else "plain"
            raise DataError(f"memory {self.path} has a {spec.arch} generator with {norms} BatchNorms; drop the "
                            f"architecture settings or start a new memory")

    def _checkpointing(self, writer: VersionWriter, history: dict, labels: list[int], config: TrainingConfig,
                       spec: GeneratorSpec, device, images: torch.Tensor, class_index: torch.Tensor,
                       every: float | None, parallel: DataParallel | None, progress: bool) -> Checkpointing | None:
        """The task's checkpoints, keyed to everything that decides its training, so that only a rerun of this
        very task continues one; None when none is asked for and the memory holds none."""
        if every is None and not self.store.has_checkpoint():
            return None
        settings = {"config": config.to_dict(), "spec": asdict(spec)}
        key = task_key(history.get("manifest_sha256"), labels, settings, torch.device(device), images, class_index)
        return Checkpointing(writer, key, every, labels, config.epochs, parallel or ONE_PROCESS,
                             notice=tqdm.write if progress else lambda line: None)

    @staticmethod
    def _version_files(generator: Generator, solver: Classifier | None, manifest: dict, device) -> dict[str, bytes]:
        """The files of a version beside its manifest, which must be complete: the model card is written from it, and
        its training's storage type decides how the generator is written."""
        files = encode_generator(generator, manifest["tasks"][-1]["training"]["storage_dtype"])
        if solver is not None:
            files[SOLVER_FILE] = encode_solver(solver)
        files[SAMPLES_FILE] = sample_strip(generator, manifest, device)
        files[CARD_FILE] = model_card(manifest).encode()
        return files

    @staticmethod
    def _past_replay(generator: Generator, history: dict, parent: str | None, per_class: int, seed: int,
                     device) -> PastReplay | None:
        """As many generated images of every earlier class as the task has real ones per class, for the solver."""
        if parent is None:
            return None
        table = ClassTable.from_manifest(history)
        sampler = Sampler(generator, table, parent, device, precision="float32")
        images, _ = sampler.sample({c.label: per_class for c in table}, seed=seed)
        return PastReplay(images.view(len(table), per_class, *images.shape[1:]))

    @staticmethod
    def _new_classes(table: ClassTable, labels: list[int], data: ImageSet, task: int) -> list[ClassInfo]:
        """The task's classes, refusing any whose label or name the memory already holds."""
        new = []
        for index, label in enumerate(labels):
            name = data.class_names[label]
            for clash in (table.find(label), table.find(name)):
                if clash is not None and (clash.label, clash.name) == (label, name):
                    raise DataError(f"class {name!r} is already in this memory (task {clash.task} learned it); "
                                    f"a memory learns each class once")
                if clash is not None:
                    raise DataError(f"class {name!r} (label {label}) clashes with class {clash.name!r} (label "
                                    f"{clash.label}) that task {clash.task} learned; labels and names must stay "
                                    f"unique within a memory")
            new.append(ClassInfo(label, name, task, index))
        return new

    @staticmethod
    def _next_manifest(version: str, parent: str | None, spec: GeneratorSpec, history: dict,
                       new_classes: list[ClassInfo], report: TaskReport, data: ImageSet, config: TrainingConfig,
                       device, generator: Generator, held_out: dict | None) -> dict:
        per_class = {str(c.label): int((data.labels == c.label).sum()) for c in new_classes}
        labels = [c["label"] for c in history["classes"]] + [c.label for c in new_classes]
        task_record = {
            "task": report.task,
            "classes": [c.label for c in new_classes],
            "widths": list(report.widths),
            "capacity": [layer.to_dict() for layer in report.capacity],
            "parameters": parameter_counts(generator),
            "data": {"source": data.source, "images": len(data.labels), "per_class": per_class,
                     "holdout": held_out},
            "training": {**config.to_dict(), "device": str(device), "processes": report.processes},
            "iterations": report.iterations,
            "seconds": round(report.seconds, 3),
            "final_losses": report.final_losses,
            "privacy": report.privacy,
            **({"resumed_after_epoch": report.resumed_after_epoch} if report.resumed_after_epoch else {}),
        }
        return {
            "format": FORMAT,
            "format_version": format_version(spec, config.storage_dtype),
            "version": version,
            "parent": parent,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "genmem_version": GENMEM_VERSION,
            "generator": {"variant": spec.variant, "channels": spec.channels, "image_size": spec.image_size,
                          "noise_dim": spec.noise_dim, "initial_widths": list(spec.widths), "arch": spec.arch,
                          "class_norm": spec.class_norm},
            "classes": history["classes"] + [asdict(c) for c in new_classes],
            "tasks": history["tasks"] + [task_record],
            "solver": {"mode": config.solver, "about": SOLVER_MODES[config.solver],
                       **({"classes": labels, "width": stored_solver_width(config)}
                          if report.solver is not None else {})},
        }
