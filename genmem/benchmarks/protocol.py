"""The paper's class-incremental protocol (docs/ALGORITHM.md §1), with its bounds, in one run.

One task per class, classes in label order, 32x32 images in [-1, 1]. After
every task each chosen method's classifier is tested on the real test images
of the classes seen so far, and A_t is the unweighted mean of its per-class
accuracies:

    dgm-solver  the solver stored with the version (genmem.solver; the profile says how it is trained)
    dgm-replay  a fresh classifier on the task's real images plus DGM replay of every earlier class
    dgr         the same classifier with replay from deep generative replay (genmem.benchmarks.baselines)
    mergan      the same with replay from MeRGAN's replay alignment
    ewc         the same with replay from a generator kept by EWC (the paper's EWC-M)
    joint       the same classifier on real images of every class seen (upper bound; not continual)
    finetune    one classifier trained on each task's real images in turn, no replay (lower bound)

No real image of an earlier class is used by the continual methods, for
training or for model selection: every figure is the final model's.

A run writes results.json and its state (the memory's versions, the
baselines' generators and the fine-tuned classifier, as safetensors) after
every task, so a killed run continues from its last finished task
(`resume=True`) and ends with the results an uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genmem.augment import parse_policy
from genmem.benchmarks.baselines import BASE_WIDTH, BASELINES, BaselineReplay, PlainGenerator, learn_baseline_task
from genmem.benchmarks.methods import DEFAULT_METHODS, DGM_METHODS, METHODS
from genmem.classifier import (ClassifierConfig, mixed_batches, output_targets, relabelled, shuffled_batches,
                               train_classifier)
from genmem.config import check_solver_mode
from genmem.data import ImageSet, fit_images
from genmem.encoding import encode_samples
from genmem.errors import GenmemError
from genmem.evaluate import average_accuracy, evaluate_model, forgetting, images_of_classes, solver_score
from genmem.memory import Memory
from genmem.nets import Classifier
from genmem.presets import base_width_for, paper_config
from genmem.replay import ReplayStream

IMAGE_SIZE = 32
RESULTS_FILE = "results.json"
RUN_TIME_FIELDS = ("seconds",)  # facts of the machine and the session, not of the run's outcome
# The paper's Table 1 (A5, A10, %) per data set it measured; the authors selected models on real old-class
# validation images. DGM's rows are per variant; DGR and MeRGAN are the paper's citations of them.
PAPER = {"mnist": {"dgmw": (98.75, 96.46), "dgma": (99.17, 97.92), "dgr": (90.39, 85.40), "mergan": (98.19, 97.00),
                   "joint": (97.66, 98.10)},
         "svhn": {"dgmw": (83.93, 74.38), "dgma": (81.07, 66.89), "dgr": (61.29, 47.28), "mergan": (80.90, 66.78),
                  "joint": (85.30, 84.82)},
         "cifar10": {"dgmw": (64.94, 51.70), "dgma": (62.50, 50.80), "joint": (82.20, 64.20)}}
BASELINE_NAMES = {"dgr": "DGR", "mergan": "MeRGAN", "ewc": "EWC-M"}
DATA_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "svhn": "SVHN", "cifar10": "CIFAR-10",
              "builtin": "builtin MNIST sample"}


@dataclass(frozen=True)
class Profile:
    """A compute budget for the protocol: the GAN's, and separately the classifiers'.

    Every method may use every real image of the current class, so only the
    GAN's budget is cut to fit a machine: it trains on `images_per_class` of
    them for `gan_epochs` (`variant_gan_epochs` where a variant's differ).
    The classifiers (the solver's classification phase, the replay
    classifier, joint training, fine-tuning) train on
    `classifier_images_per_class` real images of the current class (None: all)
    for `classifier_epochs` passes over the images of the classes they learn.
    """

    name: str
    images_per_class: int | None  # real images per class the GAN trains on; None: all
    gan_epochs: int | None  # None: the paper's (101 MNIST, 151 SVHN, 251 CIFAR-10)
    solver_replay: int | None  # generated images per earlier class in each solver step; None: the batch size
    classifier_epochs: float
    about: str
    solver_steps: int | None = None  # None: TrainingConfig's default
    solver_epochs: float | None = None  # the solver phase's passes over its images at least (None: solver_steps)
    solver_start: str = "critic"  # the real solver starts from the critic or from a fresh network (genmem.solver)
    solver_augment: str = ""  # the solver phase's augmentation (genmem.augment policy)
    critic_width: int | None = None  # the GAN critic's first width (None: the recipe's, 32 for MNIST)
    gan_lr: float | None = None  # the GAN's learning rate (None: the recipe's, tuned for the paper's epochs)
    classifier_width: int = ClassifierConfig.width  # first width of the replay, joint and fine-tuned classifiers
    solver_width: int | None = None  # the stored solver's first width (None: the critic's)
    classifier_augment: str = ""  # their augmentation (genmem.augment policy), the same for every method
    classifier_images_per_class: int | None = None  # real images per class for every classifier; None: all
    # DGM's initial generator base width per variant on this budget ({}: the recipe's). DGMa's growth per task
    # scales with it and its time with the growth's square, so a CPU budget wants it small.
    base_widths: dict[str, int] = field(default_factory=dict)
    # GAN epochs per task for a variant where they differ from `gan_epochs` ({}: none differs).
    variant_gan_epochs: dict[str, int] = field(default_factory=dict)

    def base_width(self, variant: str, recipe: str, chosen: int | None = None) -> int | None:
        """DGM's initial base width: the one chosen, else this budget's for the variant, else the recipe's
        (None: the variant's own default)."""
        return chosen or self.base_widths.get(variant) or base_width_for(recipe)

    def gan_epochs_for(self, variant: str) -> int | None:
        """The GAN's epochs per task for DGM's variant (None: the paper's)."""
        return self.variant_gan_epochs.get(variant, self.gan_epochs)

    def with_budget(self, images_per_class: int | None = None, gan_epochs: int | None = None,
                    augment: str | None = None, classifier_epochs: float | None = None,
                    classifier_width: int | None = None) -> Profile:
        """This profile with another GAN budget, another augmentation, or other passes or another width for the
        classifiers and the solver phase.

        The name says it was changed. Colour images want more than shifts: on
        CIFAR-10 a classifier shown real images of the newest class only learns
        "real means newest" unless cutout hides the generator's traces too
        (BENCHMARKS.md).
        """
        if (images_per_class is None and gan_epochs is None and augment is None and classifier_epochs is None
                and classifier_width is None):
            return self
        changed = replace(self, images_per_class=images_per_class or self.images_per_class)
        if gan_epochs is not None:
            changed = replace(changed, gan_epochs=gan_epochs, variant_gan_epochs={})
        if augment is not None:
            parse_policy(augment)
            changed = replace(changed, classifier_augment=augment, solver_augment=augment)
        if classifier_epochs is not None:
            changed = replace(changed, classifier_epochs=classifier_epochs, solver_epochs=classifier_epochs)
        if classifier_width is not None:  # a solver started from the critic keeps the critic's width
            changed = replace(changed, classifier_width=classifier_width,
                              solver_width=classifier_width if changed.solver_start == "fresh" else None)
        images = changed.images_per_class or "all"
        epochs = changed.gan_epochs or "the paper's"
        if changed.variant_gan_epochs:
            epochs = f"{epochs} ({', '.join(f'{v} {e}' for v, e in changed.variant_gan_epochs.items())})"
        augmented = f"; classifiers and solver augmented by {augment or 'nothing'}" if augment is not None else ""
        passes = (f"; classifiers and solver for {classifier_epochs:g} passes" if classifier_epochs is not None
                  else "")
        wide = f"; classifiers and solver {classifier_width} wide" if classifier_width is not None else ""
        return replace(changed, name=f"{self.name}, custom budget",
                       about=f"{self.name} with the GAN on {images} images per class for {epochs} epochs per task"
                             + augmented + passes + wide)


PROFILES = {
    "quick": Profile("quick", 1000, 40, 8, 2.0, "2 CPU cores: the GAN on 1000 images per class for 40 epochs per "
                     "task (DGMa 38), DGMw at base width 10 and DGMa at 8; classifiers, the solver a fresh one, on "
                     "every real image for 2 epochs, shifted by up to 4 pixels; critic and classifiers half as wide "
                     "as the paper's",
                     solver_epochs=2.0, solver_start="fresh", solver_augment="translation", critic_width=16,
                     classifier_width=16, classifier_augment="translation", base_widths={"dgmw": 10, "dgma": 8},
                     variant_gan_epochs={"dgma": 38}),
    "paper": Profile("paper", None, None, None, 5.0, "the paper's budgets on all the data, for a GPU; the solver a "
                     "fresh one, 5 passes over its images shifted by up to 4 pixels",
                     solver_epochs=5.0, solver_start="fresh", solver_augment="translation"),
    "smoke": Profile("smoke", 24, 1, 2, 0.5, "seconds on tiny data: checks the pipeline, not the accuracy",
                     solver_steps=20, classifier_images_per_class=24),
}


def profile_for(name: str, recipe: str) -> Profile:
    """The named profile as it applies to a recipe's data.

    On CIFAR-10 a classifier shown real images of the newest class and
    generated ones of the others learns "real means newest" unless its images
    are shifted and cut out, so every profile's classifiers and solver are
    (BENCHMARKS.md, "CIFAR-10 on 2 CPU cores"). The quick profile's MNIST
    budget also left them collapsed there (A10 10 to 23); the GAN on all 5000
    images per class for 30 epochs reached A10 43 in 88 minutes on 2 cores.
    The recipe's learning rate (2e-4) is the paper's for 251 epochs; the
    quick profile's 30 take 1e-3, which brought the replay far closer to the
    real images on a short budget and A10 from 43 to 49 on this one
    (BENCHMARKS.md, "The GAN's learning rate on CIFAR-10"). At base width 10
    instead of the recipe's 20, DGMw's A10 rose from 48.8 to 50.5 in a third
    of the GAN time, and DGMa's ten tasks took 2,427 s where at 20 its first
    seven took 5,012 s (BENCHMARKS.md, "DGMa on CIFAR-10 at base width 10").
    """
    profile = PROFILES[name]
    if recipe != "cifar10" or name == "smoke":
        return profile
    colour = "translation,cutout"
    if name == "quick":
        return replace(profile, images_per_class=5000, gan_epochs=30, gan_lr=1e-3, classifier_augment=colour,
                       solver_augment=colour, base_widths={"dgmw": 10, "dgma": 10}, variant_gan_epochs={},
                       about="2 CPU cores, CIFAR-10: the GAN on all 5000 images per class for 30 epochs per task "
                             "at learning rate 1e-3, DGM at base width 10; "
                             "classifiers, the solver a fresh one, on every real image for 2 epochs, shifted by up "
                             "to 4 pixels and cut out; critic and classifiers 16 wide")
    return replace(profile, classifier_augment=colour, solver_augment=colour,
                   about="the paper's budgets on all the data, for a GPU; the solver a fresh one, 5 passes over its "
                         "images, and the classifiers, shifted by up to 4 pixels and cut out (CIFAR-10)")


def describe_data(source: str, test_source: str | None = None) -> dict:
    """The data set a run used, as results.json records it: its source specs, display name, and the paper's key.

    `paper` is the data set's key in PAPER when the paper measured that data
    set (MNIST, SVHN, CIFAR-10), else None: figures are compared only there.
    """
    kind, _, path = source.partition(":")
    name = DATA_NAMES.get(kind) or (Path(path).name if path else source)
    return {"source": source, "test_source": test_source, "name": name, "paper": kind if kind in PAPER else None}


def chosen_methods(methods) -> tuple[str, ...]:
    """The methods named, validated, in the order of tables and plots."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise GenmemError(f"unknown method {', '.join(unknown) or '(none given)'}: choose from {', '.join(METHODS)}")
    return tuple(m for m in METHODS if m in methods)


def saved_run(out_dir: Path) -> dict:
    """The results.json of a run folder, to continue it; a folder without one is a one-line error."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise GenmemError(f"{out_dir} holds no protocol run to resume (no {RESULTS_FILE}); start one with --out")
    return json.loads(path.read_text())


def run_protocol(train: ImageSet, test: ImageSet, recipe: str, variant: str, profile: Profile, out_dir: Path, *,
                 device: str | torch.device = "cpu", seed: int = 0, num_tasks: int | None = None,
                 progress: bool = True, methods=DEFAULT_METHODS, data: dict | None = None,
                 resume: bool = False, base_width: int | None = None, solver: str = "real",
                 checkpoint_every: float | None = None) -> dict:
    """Learn one class per task, test every chosen method after every task; write results after each.

    A new run needs a new out_dir. resume=True continues the run in out_dir,
    which must have been started with the same arguments, from its last
    finished task. data: `describe_data` of the sources (default: the
    training set's source name, compared with nothing). base_width: DGM's
    initial generator base width (None: `Profile.base_width`). solver: what DGM's
    versions store as their solver (genmem.solver: real, replay or none; with
    none the dgm-solver method cannot be run). checkpoint_every: DGM's
    checkpoints inside a task (Memory.learn_task), which a resume continues;
    the results are the same with or without them.
    """
    out_dir = Path(out_dir)
    methods = chosen_methods(methods)
    classes = sorted(train.class_names)[:num_tasks]
    data_info = data or describe_data(train.source)
    if check_solver_mode(solver) == "none" and "dgm-solver" in methods:
        raise GenmemError("with --solver none the memory stores no solver to test; drop dgm-solver from --methods")
    saved = _check_resume(out_dir, recipe, variant, profile, seed, methods, train, classes, base_width, solver) \
        if resume else None
    if not resume and ((out_dir / "memory").exists() or (out_dir / RESULTS_FILE).exists()):
        raise GenmemError(f"{out_dir} already holds a protocol run; choose a new --out folder, or continue it "
                          f"with --resume {out_dir}")
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    data = train.select(classes).first_per_class(profile.classifier_images_per_class)
    channels = data.images.shape[1]
    data = ImageSet(fit_images(data.images, channels, IMAGE_SIZE, data.source), data.labels, data.class_names,
                    data.source)
    gan_data = data.first_per_class(profile.images_per_class)  # what the baselines' GANs see, as DGM's does
    dgm = any(m in DGM_METHODS for m in methods)
    baselines = [m for m in methods if m in BASELINES]
    memory = Memory(out_dir / "memory") if dgm else None
    gan = paper_config(recipe, variant, epochs=profile.gan_epochs_for(variant), solver_replay=profile.solver_replay,
                       solver_steps=profile.solver_steps, solver_epochs=profile.solver_epochs,
                       solver_start=profile.solver_start, solver_augment=profile.solver_augment,
                       critic_width=profile.critic_width, solver_width=profile.solver_width, lr=profile.gan_lr,
                       gan_images_per_class=profile.images_per_class, solver=solver)
    cls_config = ClassifierConfig(epochs=profile.classifier_epochs, width=profile.classifier_width,
                                  augment=profile.classifier_augment)
    if saved is not None and len(saved["per_class"][methods[0]]) == len(classes):
        return saved  # finished already
    history: dict[str, list[dict[int, float]]] = {m: [] for m in methods}
    confusions: dict[str, list[list[int]]] = {}
    timings: dict[str, float] = {"gan": 0.0, "classifiers": 0.0} | {f"{m} gan": 0.0 for m in baselines}
    if saved is not None:
        history = {m: [{int(k): v for k, v in step.items()} for step in saved["per_class"][m]] for m in methods}
        confusions, timings = saved["confusion"], saved["seconds"]
    done = len(history[methods[0]])
    generators = {m: PlainGenerator(channels, IMAGE_SIZE, len(classes), rng=torch.Generator().manual_seed(seed))
                  for m in baselines}
    finetuned = Classifier(channels, IMAGE_SIZE, len(classes), cls_config.width) if done else None
    fishers = {m: None for m in baselines}  # EWC's Fisher information, summed over the tasks learned
    for name, model in [*generators.items(), ("finetune", finetuned)]:
        if done and name in methods:
            _load_state(model, _state_dir(out_dir, done - 1) / f"{name}.safetensors")
        if done and name in BASELINES and BASELINES[name].ewc_weight:
            fishers[name] = load_file(str(_state_dir(out_dir, done - 1) / f"{name}-fisher.safetensors"))
    version = None
    for task in range(done, len(classes)):
        label = classes[task]
        seen = classes[: task + 1]
        outputs = {c: i for i, c in enumerate(seen)}
        if dgm:
            started = time.perf_counter()
            learned = memory.versions()
            version = learned[task] if len(learned) > task else memory.learn_task(  # kept from a killed run
                data, [label], variant=variant, config=replace(gan, seed=seed + task), device=device,
                image_size=IMAGE_SIZE, base_width=profile.base_width(variant, recipe, base_width), progress=progress,
                checkpoint_every=checkpoint_every)
            timings["gan"] += time.perf_counter() - started
        for name in baselines:
            started = time.perf_counter()
            fishers[name] = learn_baseline_task(generators[name], gan_data.images[gan_data.labels == label], task,
                                                replace(gan, seed=seed + task), BASELINES[name], fishers[name],
                                                device, progress, desc=name)["fisher"]
            timings[f"{name} gan"] += time.perf_counter() - started
        started = time.perf_counter()
        names = {c: data.class_names[c] for c in seen}
        test_images, test_labels = images_of_classes(seen, names, test, channels, IMAGE_SIZE)
        mine = data.labels == label
        config = replace(cls_config, seed=seed + task)
        per_step = config.batch_size
        steps = math.ceil(config.epochs * int(mine.sum()) * len(seen) / per_step)
        replay_sources = {m: BaselineReplay(generators[m], classes, data.class_names, f"{m} task {task}")
                          for m in baselines}
        if dgm:
            replay_sources["dgm-replay"] = memory.sampler(version, device)

        scores = {}
        if "dgm-solver" in methods:
            scores["dgm-solver"] = solver_score(memory, test, version, device)
        for method in methods:
            if method in replay_sources:
                with _timed(timings, f"{method} classifier"):
                    model = replay_classifier(replay_sources[method], data.images[mine], seen, steps, config, device,
                                              progress, desc=f"{method} classifier")
                    scores[method] = evaluate_model(model, seen, test_images, test_labels, device)

        if "joint" in methods:
            with _timed(timings, "joint classifier"):
                seen_mask = torch.isin(data.labels, torch.tensor(seen))
                joint = shuffled_batches(data.images[seen_mask], output_targets(data.labels[seen_mask], outputs),
                                         per_step, config.seed)
                model = train_classifier(joint, steps, len(seen), channels, IMAGE_SIZE, config, device,
                                         progress=progress, desc="joint classifier")
                scores["joint"] = evaluate_model(model, seen, test_images, test_labels, device)

        if "finetune" in methods:
            own = shuffled_batches(data.images[mine], torch.full((int(mine.sum()),), task), per_step, config.seed)
            finetuned = train_classifier(own, math.ceil(config.epochs * int(mine.sum()) / per_step), len(classes),
                                         channels, IMAGE_SIZE, config, device, model=finetuned, progress=progress,
                                         desc="finetune classifier")
            allowed = torch.arange(len(classes)) <= task  # single head over the classes seen so far
            scores["finetune"] = evaluate_model(finetuned, classes, test_images, test_labels, device, allowed)
        timings["classifiers"] += time.perf_counter() - started

        for method, result in scores.items():
            history[method].append(result.per_class)
            confusions[method] = result.confusion
        for method, source in replay_sources.items():
            images, labels = source.sample({c: 8 for c in seen}, seed=0)
            prefix = "" if method == "dgm-replay" else f"{method}-"
            (out_dir / "samples" / f"{prefix}task{task:02d}.png").write_bytes(
                encode_samples(images, labels, "png", names))
        state = _state_dir(out_dir, task)
        state.mkdir(parents=True, exist_ok=True)
        for name, model in [*generators.items(), ("finetune", finetuned)]:
            if model is not None:
                _save_state(model, state / f"{name}.safetensors")
        for name, fisher in fishers.items():
            if fisher is not None:
                save_file(fisher, str(state / f"{name}-fisher.safetensors"))
        results = {
            "recipe": recipe, "variant": variant, "profile": asdict(profile), "seed": seed, "methods": list(methods),
            "base_width": base_width, "data": data_info,
            "classes": [{"label": c, "name": data.class_names[c]} for c in classes],
            "gan_config": gan.to_dict() | {"seed": seed}, "classifier_config": cls_config.to_dict() | {"seed": seed},
            "accuracy": {m: [average_accuracy(step) for step in history[m]] for m in methods},
            "per_class": {m: [{str(k): v for k, v in step.items()} for step in history[m]] for m in methods},
            "forgetting": {m: {str(k): v for k, v in forgetting(history[m]).items()} if len(history[m]) > 1 else {}
                           for m in methods},
            "confusion": confusions,
            "seconds": {k: round(v, 1) for k, v in timings.items()},
        }
        if dgm:
            manifest = memory.manifest(version)
            results["growth"] = [{k: t[k] for k in ("task", "widths", "capacity", "parameters")}
                                 for t in manifest["tasks"]]
            results["storage_bytes"] = {name: entry["bytes"] for name, entry in manifest["files"].items()
                                        if name.endswith(".safetensors")}  # the card's size varies with timings
        if baselines:
            size = sum(p.numel() for p in next(iter(generators.values())).parameters())
            results["baselines"] = {"base_width": BASE_WIDTH, "parameters": size,
                                    "settings": {m: asdict(BASELINES[m]) for m in baselines}}
        _write_json(out_dir / RESULTS_FILE, results)
        if progress:
            print(f"task {task} (class {data.class_names[label]}): "
                  + ", ".join(f"{m} A={scores[m].average:.2f}" for m in methods), flush=True)
    return results


def replay_classifier(source, real_images: torch.Tensor, seen: list[int], steps: int, config: ClassifierConfig,
                      device: str | torch.device, progress: bool, desc: str) -> Classifier:
    """A fresh classifier on the newest class's real images plus `source`'s replay of every earlier class.

    Each batch holds about a len(seen)-th of real images, the rest replay
    spread evenly over the earlier classes; outputs are the classes of `seen`
    in order.
    """
    per_step = config.batch_size
    real_share = max(1, round(per_step / len(seen)))
    batches = shuffled_batches(real_images, torch.full((len(real_images),), len(seen) - 1), real_share, config.seed)
    if len(seen) > 1:
        replay = ReplayStream(source, classes=seen[:-1], batch_size=per_step - real_share, seed=config.seed)
        batches = mixed_batches(batches, relabelled(replay, {c: i for i, c in enumerate(seen)}))
    return train_classifier(batches, steps, len(seen), real_images.shape[1], IMAGE_SIZE, config, device,
                            progress=progress, desc=desc)


def _check_resume(out_dir: Path, recipe: str, variant: str, profile: Profile, seed: int, methods: tuple[str, ...],
                  train: ImageSet, classes: list[int], base_width: int | None, solver: str) -> dict:
    """The saved results of the run to continue, after checking that it was started with these arguments."""
    saved = saved_run(out_dir)
    # A Profile field added since the run started was at its default then; the description may be reworded.
    defaults = {f.name: f.default if f.default_factory is MISSING else f.default_factory() for f in fields(Profile)}
    saved["profile"] = defaults | saved.get("profile", {}) | {"about": profile.about}
    now = {"recipe": recipe, "variant": variant, "profile": asdict(profile), "seed": seed, "methods": list(methods),
           "classes": [{"label": c, "name": train.class_names[c]} for c in classes], "base_width": base_width,
           "solver": solver}
    saved_solver = saved.get("gan_config", {}).get("solver", "real")  # runs from before the option stored none
    differs = [key for key, value in now.items() if (saved_solver if key == "solver" else saved.get(key)) != value]
    if differs:
        raise GenmemError(f"{out_dir} was started with other {', '.join(differs)}; resume it with the arguments "
                          f"it was started with")
    return saved


@contextmanager
def _timed(timings: dict[str, float], key: str):
    """Add the seconds the block takes to timings[key]: what each method's classifier costs, apart."""
    started = time.perf_counter()
    yield
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - started


def _state_dir(out_dir: Path, task: int) -> Path:
    return out_dir / "state" / f"task{task:02d}"


def _save_state(model: nn.Module, path: Path) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path))


def _load_state(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise GenmemError(f"{path} is missing: the run's state after its last finished task is incomplete")
    model.load_state_dict(load_file(str(path)), strict=True)


def _write_json(path: Path, content: dict) -> None:
    """Write whole or not at all: a run killed while writing keeps the previous results."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(partial, path)


def run_title(results: dict, display: bool = False) -> str:
    """What a run compared, on which data: 'Paper protocol: mnist DGMW vs DGR, MeRGAN' for a record's section
    (the source's name, so that a rerun replaces its section); display=True: 'MNIST: DGMW vs DGR, MeRGAN'."""
    data = results.get("data") or describe_data(results["recipe"])
    kind = data["source"].partition(":")[0]
    subject = data["name"] if display or kind in ("folder", "npz") else kind
    methods = results.get("methods") or list(results["accuracy"])  # runs from before baselines have no list
    width = f" (base width {results['base_width']})" if results.get("base_width") else ""
    compared = [results["variant"].upper() + width] if any(dgm_variant(m, results) for m in methods) else []
    baselines = [BASELINE_NAMES[m] for m in methods if m in BASELINES]
    what = " vs ".join(filter(None, [" ".join(compared), ", ".join(baselines)])) or "bounds"
    return f"{subject}: {what}" if display else f"Paper protocol: {subject} {what}"


def dgm_variant(method: str, results: dict) -> str | None:
    """The DGM variant a method reports on (dgm-solver: the run's; dgma-replay in combined runs: dgma), else None."""
    prefix, _, kind = method.partition("-")
    if kind not in ("solver", "replay"):
        return None
    return results["variant"] if prefix == "dgm" else prefix


def paper_figures(results: dict) -> dict[str, tuple[float, float]]:
    """The paper's A5/A10 per method of a run, only where the paper measured the run's data set."""
    paper = PAPER.get(results.get("data", {}).get("paper"), {})
    keys = {method: dgm_variant(method, results) or method for method in results["accuracy"]}
    return {method: paper[key] for method, key in keys.items() if key in paper}


def combine_runs(runs: list[dict]) -> dict:
    """One table's results from runs on the same data, classes, profile and seed (say DGMw with the baselines,
    and DGMa): DGM's methods are named by their variant (dgmw-solver, dgma-replay); a method that several runs
    hold (the bounds, a baseline) is taken from the first."""
    first = runs[0]
    for run in runs[1:]:
        differs = [key for key in ("classes", "profile", "seed") if run.get(key) != first.get(key)]
        if run.get("data", {}).get("source") != first.get("data", {}).get("source"):
            differs.append("data")
        if differs:
            raise GenmemError(f"runs with other {', '.join(differs)} cannot share a table; combine runs of one "
                              f"data set, profile and seed")
    accuracy: dict[str, list[float]] = {}
    for run in runs:
        for method, curve in run["accuracy"].items():
            variant = dgm_variant(method, run)
            accuracy.setdefault(f"{variant}-{method.partition('-')[2]}" if variant else method, curve)
    order = {m: i for i, m in enumerate(METHODS)}
    ranked = sorted(accuracy, key=lambda m: order.get(m, order.get(f"dgm-{m.partition('-')[2]}")))  # stable
    return {"recipe": first["recipe"], "variant": "+".join(dict.fromkeys(run["variant"] for run in runs)),
            "methods": ranked, "data": first.get("data") or describe_data(first["recipe"]),
            "profile": first["profile"], "seed": first["seed"], "classes": first["classes"],
            "accuracy": {m: accuracy[m] for m in ranked}}


def markdown_table(results: dict) -> str:
    """A_t after 5 and 10 tasks (or whatever the run reached) per method, beside the paper's Table 1 where it
    measured the data set."""
    curves = results["accuracy"]
    steps = len(next(iter(curves.values())))
    points = [t for t in (5, 10) if t <= steps] or [steps]
    if steps not in points:
        points.append(steps)
    paper = paper_figures(results)
    head = "| method | " + " | ".join(f"A{t}" for t in points) + " |" + (" paper A5 | paper A10 |" if paper else "")
    lines = [head, "|" + "---|" * (len(points) + 1 + 2 * bool(paper))]
    for method, curve in curves.items():
        row = f"| {method} | " + " | ".join(f"{curve[t - 1]:.2f}" for t in points) + " |"
        if paper:
            ref = paper.get(method)
            row += f" {ref[0]:.2f} | {ref[1]:.2f} |" if ref else " – | – |"
        lines.append(row)
    return "\n".join(lines)


def growth_table(results: dict) -> str:
    """Per task: widths, generator parameters (against a fixed 0.5 M replay GAN), and capacity summed over layers."""
    unit = "units" if results["variant"] == "dgma" else "weights"
    lines = [f"| task | widths | generator parameters | x fixed 0.5 M GAN | new {unit} | reused {unit} | "
             f"free {unit} |", "|---|---|---|---|---|---|---|"]
    for g in results["growth"]:
        total = g["parameters"]["total"]
        new, reused, free = (sum(layer[k] for layer in g["capacity"]) for k in ("new", "reused", "free"))
        lines.append(f"| {g['task']} | {'/'.join(map(str, g['widths']))} | {total:,} | {total / 500_000:.2f} | "
                     f"{new:,} | {reused:,} | {free:,} |")
    sizes = results["storage_bytes"]
    lines.append("")
    lines.append(f"Last version on disk: weights {sizes['generator.safetensors'] / 1024:,.1f} KiB, bit-packed masks "
                 f"{sizes['masks.safetensors'] / 1024:,.1f} KiB, solver {sizes['solver.safetensors'] / 1024:,.1f} KiB.")
    return "\n".join(lines)
