"""The paper's class-incremental protocol (docs/ALGORITHM.md §1), with its bounds, in one run.

One task per class, classes in label order, 32x32 images in [-1, 1]; or
several classes per task in a chosen order (split-MNIST: 5 tasks of 2). After
every task each chosen method's classifier is tested on the real test images
of the classes seen so far, and A_t is the unweighted mean of its per-class
accuracies. The methods (genmem.benchmarks.methods, one class each):

    dgm-solver  the solver stored with the version (genmem.solver; the profile says how it is trained)
    dgm-replay  a fresh classifier on the task's real images plus DGM replay of every earlier class
    dgr         the same classifier with replay from deep generative replay (genmem.benchmarks.baselines)
    mergan      the same with replay from MeRGAN's replay alignment
    ewc         the same with replay from a generator kept by EWC (the paper's EWC-M)
    joint       the same classifier on real images of every class seen (upper bound; not continual)
    finetune    one classifier trained on each task's real images in turn, no replay (lower bound)
    buffer      the replay classifier on a buffer of real images in DGM's bytes (at several scales if asked)
    hybrid      dgm-replay with a few real images kept per class mixed in (the paper's relaxed setup)
    dgm-newest  dgm-replay with a share of the newest classes' images generated too (methods.newest)
    dgm-confident  dgm-replay of only what the stored solver recognises (methods.confident)

No real image of an earlier class is used by the continual methods, for
training or for model selection, beyond what buffer and hybrid keep: every
figure is the final model's.

A run writes results.json and its methods' state (the memory's versions, the
baselines' generators and the fine-tuned classifier, as safetensors) after
every task, so a killed run continues from its last finished task
(`resume_protocol`, or `resume=True`) and ends with the results an
uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch

from genmem.benchmarks.classifiers import CLASSIFIERS
from genmem.benchmarks.methods import (DEFAULT_METHODS, DGM_METHODS, METHODS, PAPER_CRITIC, REGISTRY, instance_names,
                                       method_class)
from genmem.benchmarks.methods.base import IMAGE_SIZE, Run, Task
from genmem.benchmarks.profiles import PROFILES, Profile, profile_for
from genmem.benchmarks.results import describe_data, setting
from genmem.classifier import ClassifierConfig
from genmem.config import TrainingConfig, check_settings, check_solver_mode, critic_settings_changed
from genmem.data import ImageSet, fit_images, load_source
from genmem.errors import DataError, GenmemError, InvalidSetting
from genmem.evaluate import Score, average_accuracy, forgetting, images_of_classes

# The runner's inputs, importable beside it.
__all__ = [
    "DEFAULT_METHODS",
    "DGM_METHODS",
    "IMAGE_SIZE",
    "METHODS",
    "PROFILES",
    "RESULTS_FILE",
    "RUN_TIME_FIELDS",
    "Profile",
    "chosen_methods",
    "load_run_data",
    "profile_for",
    "resume_protocol",
    "run_classes",
    "run_protocol",
    "saved_arguments",
    "saved_run",
]

RESULTS_FILE = "results.json"
RUN_TIME_FIELDS = ("seconds",)  # facts of the machine and the session, not of the run's outcome
# What a resumed run must have been started with (the data's description may be worded otherwise).
RUN_ARGUMENTS = ("recipe", "variant", "profile", "seed", "methods", "classes", "classes_per_task", "classifier",
                 "base_width", "solver", "method_options", "arch", "class_norm")
# What DGM's memory depends on besides the training data: a run may start from another's memory only where
# these are the same.
MEMORY_ARGUMENTS = ("recipe", "variant", "profile", "seed", "classes", "classes_per_task", "base_width", "solver",
                    "arch", "class_norm")
# Profile fields that shape the classifiers and the stored solver but not the generator: genmem.learn trains a task's
# solver after its GAN, and each task's GAN draws from a generator seeded afresh. A memory copied from a run on
# another such budget replays the same images; only its stored solvers belong to the other budget. (Not so
# classifier_images_per_class, which cuts the GAN's images too, nor solver_replay, the critic's replay per class.)
CLASSIFIER_BUDGET = ("name", "about", "classifier_epochs", "classifier_width", "classifier_augment", "solver_steps",
                     "solver_epochs", "solver_start", "solver_augment", "solver_width")


def chosen_methods(methods) -> tuple[str, ...]:
    """The methods named, validated, in the order of tables and plots."""
    unknown = sorted(set(methods) - set(REGISTRY))
    if unknown or not methods:
        raise GenmemError(f"unknown method {', '.join(unknown) or '(none given)'}: choose from {', '.join(REGISTRY)}")
    return tuple(m for m in REGISTRY if m in methods)


def run_protocol(train: ImageSet, test: ImageSet, recipe: str, variant: str, profile: Profile, out_dir: Path, *,
                 device: str | torch.device = "cpu", seed: int = 0, num_tasks: int | None = None,
                 progress: bool = True, methods=DEFAULT_METHODS, data: dict | None = None,
                 resume: bool = False, base_width: int | None = None, solver: str = "real",
                 checkpoint_every: float | None = None, classes_per_task: int = 1,
                 class_order: Sequence[int | str] | None = None, classifier: str = "conv",
                 method_options: dict | None = None, arch: str = "dcgan", class_norm: bool = False,
                 started_by: dict | None = None, memory_from: Path | None = None) -> dict:
    """Learn the classes task by task, test every chosen method after every task; write results after each.

    A new run needs a new out_dir. resume=True continues the run in out_dir,
    which must have been started with the same arguments, from its last
    finished task. data: `describe_data` of the sources (default: the
    training set's source name, compared with nothing). base_width: DGM's
    initial generator base width (None: `Profile.base_width`). solver: what DGM's
    versions store as their solver (genmem.solver: real, replay or none; with
    none the dgm-solver method cannot be run). checkpoint_every: DGM's
    checkpoints inside a task (Memory.learn_task), which a resume continues;
    the results are the same with or without them. classes_per_task,
    class_order, num_tasks: see `run_classes`. classifier: the network of the
    replay, joint and fine-tuned classifiers (genmem.benchmarks.classifiers;
    the stored solver is DGM's own). method_options: the methods' own
    settings (the buffer's budget and scales, hybrid's real images:
    genmem.benchmarks.methods.buffer and .hybrid), held on resume. arch and
    class_norm: DGM's generator (Memory.learn_task); the baselines keep
    their fixed DCGAN generator. started_by: {"command", "commit"} that
    started the run, kept in results.json so that a resumed run's figures
    name the command that reproduces them, not `--resume`. memory_from: a
    run whose memory a new run starts from (`_copy_memory`), to compare other
    methods on a memory already learned, with the figures a run that learns
    it gives; the source may have trained its classifiers on another budget
    (CLASSIFIER_BUDGET), and then its stored solvers (dgm-solver) are refused.
    """
    out_dir, methods, options = Path(out_dir), chosen_methods(methods), dict(method_options or {})
    names = instance_names(methods, options)  # (registered, instance): the buffer may run at several budgets
    classes = run_classes(train, classes_per_task, class_order, num_tasks)
    _check_run(methods, profile.training_config(recipe, variant, solver, arch),
               profile.training_config(recipe, variant, solver), classifier, arch)
    started = {"recipe": recipe, "variant": variant, "profile": asdict(profile), "seed": seed, "methods": list(methods),
               "base_width": base_width, "data": data or describe_data(train.source),
               "classes": [{"label": c, "name": train.class_names[c]} for c in classes],
               "classes_per_task": classes_per_task, "classifier": classifier, "method_options": options,
               "arch": arch, "class_norm": class_norm, "started_by": started_by,
               "memory_from": None if memory_from is None else str(memory_from)}
    saved = _check_resume(out_dir, started | {"solver": solver}, profile) if resume else _check_new(out_dir)
    copied_gan = _copy_memory(Path(memory_from), out_dir, started | {"solver": solver}, profile) if (
        memory_from is not None and not resume) else {}
    run = _start(train, test, classes, profile, started, solver, out_dir, device, progress, checkpoint_every)
    run.options = options
    tasks = len(classes) // classes_per_task
    if saved is not None and len(saved["per_class"][names[0][1]]) == tasks:
        return saved  # finished already
    history = History(tuple(name for _, name in names), saved)
    run.timings = saved["seconds"] if saved is not None else copied_gan
    chosen = [method_class(registered)(name, run) for registered, name in names]
    if history.done:
        for method in chosen:
            method.load(_state_dir(out_dir, history.done - 1))
    for index in range(history.done, tasks):
        task = _task(run, index)
        for method in chosen:
            method.learn(task)
        with run.timed("classifiers"):
            scores = {method.name: method.score(task) for method in chosen}
        history.add(scores)
        state = _state_dir(out_dir, index)
        state.mkdir(parents=True, exist_ok=True)
        for method in chosen:
            method.save(state)
        results = (started | {"gan_config": run.gan.to_dict() | {"seed": seed},
                              "classifier_config": run.classifier.to_dict() | {"seed": seed}}
                   | history.results() | {"seconds": {k: round(v, 1) for k, v in run.timings.items()}}
                   | _merged([method.facts() for method in chosen]))
        _write_json(out_dir / RESULTS_FILE, results)
        if progress:
            print(f"task {index} (class{'es' * (classes_per_task > 1)} "
                  f"{', '.join(train.class_names[c] for c in task.classes)}): "
                  + ", ".join(f"{m} A={score.average:.2f}" for m, score in scores.items()), flush=True)
    return results


def _check_run(methods: tuple[str, ...], gan: TrainingConfig, baseline_gan: TrainingConfig, classifier: str,
               arch: str) -> None:
    """Refuse a run that could not finish or would not measure what it names, before anything is learned. `gan`:
    DGM's settings, `baseline_gan`: the baselines' (Run.baseline_gan)."""
    if classifier not in CLASSIFIERS:
        raise InvalidSetting(f"unknown classifier {classifier!r}: choose from {', '.join(CLASSIFIERS)}")
    if check_solver_mode(gan.solver) == "none" and "dgm-solver" in methods:
        raise GenmemError("with --solver none the memory stores no solver to test; drop dgm-solver from --methods")
    check_settings(gan, arch=arch)  # here, not at DGM's first task
    changed, baselines = critic_settings_changed(baseline_gan), [m for m in methods if m in PAPER_CRITIC]
    if changed and baselines:
        raise InvalidSetting(f"{', '.join(baselines)} train against the paper's critic, which {', '.join(changed)} "
                             f"would reach only in part: run them without it")


def run_classes(train: ImageSet, classes_per_task: int = 1, class_order: Sequence[int | str] | None = None,
                num_tasks: int | None = None) -> list[int]:
    """A run's classes in the order its tasks learn them, `classes_per_task` at a time: `class_order` (labels or
    names) or every class in label order, as far as `num_tasks` tasks go (None: all)."""
    if classes_per_task < 1:
        raise InvalidSetting(f"{classes_per_task} classes per task: give 1 or more")
    order = train.resolve(list(class_order)) if class_order is not None else sorted(train.class_names)
    if len(order) % classes_per_task:
        raise InvalidSetting(f"{len(order)} classes do not split into tasks of {classes_per_task}; name a multiple "
                             f"of {classes_per_task} classes in the class order")
    return order[: None if num_tasks is None else num_tasks * classes_per_task]


class History:
    """Every method's per-class accuracy after each task so far, and its last confusion matrix."""

    def __init__(self, methods: tuple[str, ...], saved: dict | None = None):
        self.per_class: dict[str, list[dict[int, float]]] = {m: [] for m in methods}
        self.confusion: dict[str, list[list[int]]] = {}
        if saved is not None:
            self.per_class = {m: [{int(k): v for k, v in step.items()} for step in saved["per_class"][m]]
                              for m in methods}
            self.confusion = saved["confusion"]

    @property
    def done(self) -> int:
        """Tasks finished."""
        return len(next(iter(self.per_class.values())))

    def add(self, scores: dict[str, Score]) -> None:
        for method, score in scores.items():
            self.per_class[method].append(score.per_class)
            self.confusion[method] = score.confusion

    def results(self) -> dict:
        """results.json's accuracy, per_class, forgetting and confusion."""
        return {"accuracy": {m: [average_accuracy(step) for step in steps]
                             for m, steps in self.per_class.items()},
                "per_class": {m: [{str(k): v for k, v in step.items()} for step in steps]
                              for m, steps in self.per_class.items()},
                "forgetting": {m: {str(k): v for k, v in forgetting(steps).items()} if len(steps) > 1 else {}
                               for m, steps in self.per_class.items()},
                "confusion": self.confusion}


def _start(train: ImageSet, test: ImageSet, classes: list[int], profile: Profile, started: dict, solver: str,
           out_dir: Path, device, progress: bool, checkpoint_every: float | None) -> Run:
    """What the methods share: the classifiers' and the GANs' images, fitted to IMAGE_SIZE, and the settings."""
    gan = profile.training_config(started["recipe"], started["variant"], solver, started["arch"])
    classifier = ClassifierConfig(epochs=profile.classifier_epochs, width=profile.classifier_width,
                                  augment=profile.classifier_augment)
    data = train.select(classes).first_per_class(profile.classifier_images_per_class)
    data = ImageSet(fit_images(data.images, data.images.shape[1], IMAGE_SIZE, data.source), data.labels,
                    data.class_names, data.source)
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    return Run(out_dir, data, data.first_per_class(profile.images_per_class), test, classes,
               started["classes_per_task"], started["recipe"], started["variant"], profile, gan, classifier,
               started["classifier"], started["seed"], device, progress, started["base_width"], checkpoint_every,
               arch=started["arch"], class_norm=started["class_norm"])


def _task(run: Run, index: int) -> Task:
    """Task `index` of the run: its classes, the classes seen, their test images and the classifiers' budget,
    which is `epochs` passes over as many images per class seen as the task has real ones per class."""
    seen = run.classes[: (index + 1) * run.classes_per_task]
    new = seen[index * run.classes_per_task:]
    config = replace(run.classifier, seed=run.seed + index)
    real = len(run.images_of(new)[0])
    steps = math.ceil(config.epochs * real * len(seen) / (config.batch_size * len(new)))
    names = {c: run.data.class_names[c] for c in seen}
    test_images, test_labels = images_of_classes(seen, names, run.test, run.channels, IMAGE_SIZE)
    return Task(index, new, seen, config, steps, test_images, test_labels)


def _merged(parts: list[dict]) -> dict:
    """The methods' facts as one dict, merging what several give under one key (the baselines' settings)."""
    merged: dict = {}
    for part in parts:
        for key, value in part.items():
            both = isinstance(value, dict) and isinstance(merged.get(key), dict)
            merged[key] = _merged([merged[key], value]) if both else value
    return merged


def _state_dir(out_dir: Path, task: int) -> Path:
    return out_dir / "state" / f"task{task:02d}"


# Continuing a run: the one place that reads a run's arguments back, and holds a resumed run to them.

def load_run_data(source: str, test_source: str | None, data_dir: Path | None) -> tuple[ImageSet, ImageSet]:
    """The training and test sets of a run: the test split of `source` unless a test source is given."""
    if test_source is None and source.partition(":")[0] in ("folder", "npz"):
        raise DataError(f"{source} has no test split; give a test source (--test-data)")
    train = load_source(source, data_dir, train=True)
    return train, load_source(test_source or source, data_dir, train=test_source is not None)


def saved_run(out_dir: Path) -> dict:
    """The results.json of a run folder; a folder without one is a one-line error."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise GenmemError(f"{out_dir} holds no protocol run to resume (no {RESULTS_FILE}); start one with --out")
    return json.loads(path.read_text())


def recorded_profile(saved: dict, about: str | None = None) -> Profile:
    """The profile a run's results.json recorded, named for the storage type its memory was learned with: a run
    from before bfloat16 became the default recorded float32 storage (gan_config) under the plain name."""
    stored = saved.get("gan_config", {}).get("storage_dtype", "float32")
    return Profile.from_record(saved["profile"], about=about).with_storage(stored)


def saved_arguments(out_dir: Path) -> dict:
    """The arguments the run in out_dir was started with: its sources, and run_protocol's keywords."""
    saved = saved_run(out_dir)
    return {"source": saved["data"]["source"], "test_source": saved["data"]["test_source"],
            "recipe": saved["recipe"], "variant": saved["variant"], "profile": recorded_profile(saved),
            "seed": saved["seed"], "methods": tuple(saved["methods"]),
            "class_order": [c["name"] for c in saved["classes"]],  # names: a folder's label 0 may be named "1"
            "classes_per_task": _saved(saved, "classes_per_task"), "classifier": _saved(saved, "classifier"),
            "base_width": saved.get("base_width"), "solver": _saved(saved, "solver"), "data": saved["data"],
            "method_options": _saved(saved, "method_options"), "arch": _saved(saved, "arch"),
            "class_norm": _saved(saved, "class_norm"), "started_by": saved.get("started_by"),
            "memory_from": saved.get("memory_from")}


def resume_protocol(out_dir: Path, data_dir: Path | None = None, *, device: str | torch.device = "cpu",
                    progress: bool = True, checkpoint_every: float | None = None) -> dict:
    """Continue the run in out_dir from its last finished task, with the arguments and data it was started with;
    only the machine (device, data_dir) and how often DGM saves inside a task may differ."""
    arguments = saved_arguments(out_dir)
    train, test = load_run_data(arguments.pop("source"), arguments.pop("test_source"), data_dir)
    return run_protocol(train, test, out_dir=out_dir, device=device, progress=progress, resume=True,
                        checkpoint_every=checkpoint_every, **arguments)


def _check_resume(out_dir: Path, now: dict, profile: Profile) -> dict:
    """The saved results of the run to continue, after checking that it was started with these arguments."""
    saved = saved_run(out_dir)
    differs = _differences(saved, now, profile, RUN_ARGUMENTS)
    if differs:
        raise GenmemError(f"{out_dir} was started with other {', '.join(differs)}; resume it with the arguments "
                          f"it was started with")
    return saved


def _copy_memory(source: Path, out_dir: Path, now: dict, profile: Profile) -> dict[str, float]:
    """Copy the memory of the run in `source` into out_dir, after checking that it was learned as this run would
    learn it; returns the GAN seconds it cost there, which the DGM figures stand on here too."""
    if not (source / RESULTS_FILE).is_file() or not (source / "memory").is_dir():
        raise GenmemError(f"{source} holds no protocol run with a memory to start from (no {RESULTS_FILE} or "
                          f"memory/); name the --out folder of a run of `genmem bench protocol`")
    saved = saved_run(source)
    stored = recorded_profile(saved).storage_dtype
    if stored != profile.storage_dtype:
        raise GenmemError(f"the memory of {source} stores its generator in {stored}; add --storage-dtype {stored} "
                          f"to start from it")
    differs = _differences(saved, now, profile, MEMORY_ARGUMENTS)
    if "profile" in differs and _same_generator_budget(saved, now, profile):
        if "dgm-solver" in now["methods"]:
            raise GenmemError(f"the memory of {source} stores solvers trained on that run's classifier budget, not "
                              f"this run's; drop dgm-solver, or start from a run of this budget")
        differs.remove("profile")
    if saved["data"]["source"] != now["data"]["source"]:
        differs.insert(0, "data")
    if differs:
        raise GenmemError(f"the memory of {source} was learned with other {', '.join(differs)} than this run's; "
                          f"start from a run of the same data, classes, variant, profile, seed and generator")
    shutil.copytree(source / "memory", out_dir / "memory")
    return {"gan": saved["seconds"]["gan"]} if "gan" in saved.get("seconds", {}) else {}


def _same_generator_budget(saved: dict, now: dict, profile: Profile) -> bool:
    """Whether a run's recorded profile differs from this run's in CLASSIFIER_BUDGET fields only."""
    recorded = asdict(recorded_profile(saved, about=profile.about))
    return all(_as_json(value) == _as_json(now["profile"][key]) for key, value in recorded.items()
               if key not in CLASSIFIER_BUDGET)


def _differences(saved: dict, now: dict, profile: Profile, keys: tuple[str, ...]) -> list[str]:
    """The run arguments among `keys` that a run's results.json recorded otherwise than `now` gives them."""
    # A Profile field added since the run started was at its default then; the description may be reworded.
    recorded = {key: _saved(saved, key) for key in keys}
    if "profile" in saved:
        recorded["profile"] = asdict(recorded_profile(saved, about=profile.about))
    return [key for key in keys if _as_json(recorded[key]) != _as_json(now[key])]


def _check_new(out_dir: Path) -> None:
    if (out_dir / "memory").exists() or (out_dir / RESULTS_FILE).exists():
        raise GenmemError(f"{out_dir} already holds a protocol run; choose a new --out folder, or continue it "
                          f"with --resume {out_dir}")


def _saved(saved: dict, key: str):
    """A run argument as results.json recorded it; runs from before an option existed record none: its default."""
    if key == "solver":
        return saved.get("gan_config", {}).get("solver", "real")
    return setting(saved, key)


def _as_json(value):
    """A value as results.json holds it (tuples as lists), to compare the recorded with the given."""
    return json.loads(json.dumps(value))


def _write_json(path: Path, content: dict) -> None:
    """Write whole or not at all: a run killed while writing keeps the previous results."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(partial, path)
