"""genmem against Avalanche's own strategies, in Avalanche's own terms (`genmem bench avalanche`).

One class-incremental stream (one class per experience by default), one
classifier (Avalanche's SimpleMLP), one optimiser and one classifier budget
(epochs and minibatch per experience) for every strategy:

    naive       Avalanche's Naive: fine-tuning, no replay (the lower bound)
    gr          Avalanche's GenerativeReplay with its default VAE (which takes 1x28x28 images only)
    replay      Avalanche's Replay: a buffer of real images as large, in bytes, as genmem's replay payload
    genmem      Naive with GenmemReplayPlugin: replay from a DGM memory learned experience by experience,
                class-balanced (as many images per earlier class as the minibatch has of the new one)
    genmem-mb   the same memory, but only a minibatch's worth of replay per step, as gr and replay add

genmem's GAN (DGMw) learns at the budget of a protocol profile (`genmem
bench protocol --profile`, quick by default: for MNIST 1000 images per
class for 40 epochs, base width 10, critic 16 wide), with the critic's class
head as the stored solver: Avalanche trains the classifier, so there is no
solver phase. The memory is learned once, by the first seed's genmem run,
and replayed by every later one; a finished memory that the protocol learned
at the same budget can be given instead, so that one GAN serves both.

The byte budget is genmem's replay payload as stored: the last version's
generator and masks (generator.safetensors + masks.safetensors; the stored
solver is not needed for replay). Replay's buffer holds as many real images
as that payload has bytes at one byte per pixel at the memory's image size
(32x32 for MNIST, whose stream images are 28x28).

After every experience each strategy is evaluated on the test experiences
seen so far by Avalanche's EvaluationPlugin (accuracy per experience, stream
accuracy, forgetting), and its metrics are kept as Avalanche names them.
genmem's seconds include learning its memory: in the run when the plugin
learns it, else the learning seconds its versions record (for a protocol's
memory, its stored solver's phase included).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from avalanche.benchmarks import nc_benchmark
from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
from avalanche.models import SimpleMLP
from avalanche.training import GenerativeReplay, Naive, Replay
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from genmem.artifact import MASKS_FILE, WEIGHTS_FILE
from genmem.benchmarks.protocol import profile_for
from genmem.config import TrainingConfig
from genmem.data import ImageSet
from genmem.errors import GenmemError
from genmem.integrations.avalanche import GenmemReplayPlugin, critic_head_solver, next_power_of_two
from genmem.memory import Memory
from genmem.nets import default_widths
from genmem.presets import paper_config

STRATEGIES = ("genmem", "genmem-mb", "naive", "gr", "replay")
DEFAULT_STRATEGIES = ("genmem", "naive", "gr", "replay")
TITLES = {"naive": "Avalanche Naive (no replay)", "gr": "Avalanche GenerativeReplay (its VAE)",
          "replay": "Avalanche Replay (real images, genmem's bytes)",
          "genmem": "Naive + genmem plugin (class-balanced)",
          "genmem-mb": "Naive + genmem plugin (replay = minibatch)"}
STREAM_ACC = "Top1_Acc_Stream/eval_phase/test_stream/Task000"
STREAM_FORGETTING = "StreamForgetting/eval_phase/test_stream"
VARIANT = "dgmw"
VAE_SHAPE = (1, 28, 28)  # the only input shape of GenerativeReplay's default VAE
GAN_BUDGET_FIELDS = ("epochs", "gan_images_per_class", "critic_width", "lr", "batch_size")


def experience_accuracy_key(experience: int) -> str:
    return f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{experience:03d}"


@dataclass(frozen=True)
class Budget:
    """What every strategy's classifier gets per experience, and what genmem's GAN gets."""

    gan: TrainingConfig  # genmem's GAN per experience (its seed is the run's)
    base_width: int | None = None  # the generator's initial base width (None: the variant's default)
    profile: str = "quick"  # the protocol profile the GAN budget comes from, as BENCHMARKS.csv names it
    classifier_epochs: int = 1  # classifier epochs over the experience's real images
    batch_size: int = 128
    lr: float = 1e-3

    @classmethod
    def from_profile(cls, name: str, recipe: str, images_per_class: int | None = None,
                     gan_epochs: int | None = None, **classifier) -> Budget:
        """The GAN budget of the protocol's profile `name` on a recipe's data (with the protocol's overrides of
        images per class and epochs), the critic's class head as its solver; `classifier`: the other fields."""
        profile = profile_for(name, recipe).with_budget(images_per_class, gan_epochs)
        config = paper_config(recipe, VARIANT, epochs=profile.gan_epochs_for(VARIANT), lr=profile.gan_lr,
                              critic_width=profile.critic_width, gan_images_per_class=profile.images_per_class)
        return cls(critic_head_solver(config), profile.base_width(VARIANT, recipe), profile.name, **classifier)


def to_unit_interval(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as ToTensor's [0, 1] floats, which every strategy here (GenerativeReplay's VAE included)
    takes as is."""
    return images.float() / 255


def class_incremental(train: ImageSet, test: ImageSet, experiences: int, transform):
    """An Avalanche class-incremental benchmark over uint8 image sets, classes in label order; `transform` turns
    an image into the strategies' input. Nothing is downloaded."""
    classes = sorted(set(train.labels.tolist()))
    if len(classes) % experiences:
        raise GenmemError(f"{len(classes)} classes do not split into {experiences} experiences of equal size; "
                          f"choose a divisor of {len(classes)}")

    def as_dataset(data: ImageSet) -> TensorDataset:
        dataset = TensorDataset(data.images, data.labels)
        dataset.targets = data.labels
        return dataset

    return nc_benchmark(as_dataset(train), as_dataset(test), n_experiences=experiences, task_labels=False,
                        shuffle=False, fixed_class_order=classes, train_transform=transform,
                        eval_transform=transform)


def tasks_label(classes: int, experiences: int) -> str:
    """BENCHMARKS.csv's name of a split: '10x1' for ten tasks of one class, '5x2' for five of two."""
    return f"{experiences}x{classes // experiences}"


def evaluation_plugin() -> EvaluationPlugin:
    return EvaluationPlugin(accuracy_metrics(experience=True, stream=True),
                            forgetting_metrics(experience=True, stream=True), loggers=[])


def replay_payload(memory: Memory) -> dict:
    """What replay needs of a memory, as stored: its last version's generator weights and masks (not the solver),
    and the bytes of one of its images at one byte per pixel."""
    manifest = memory.manifest()
    files, generator = manifest["files"], manifest["generator"]
    return {"version": manifest["version"], "bytes": files[WEIGHTS_FILE]["bytes"] + files[MASKS_FILE]["bytes"],
            "image_size": generator["image_size"], "channels": generator["channels"],
            "image_bytes": generator["channels"] * generator["image_size"] ** 2}


def learned_seconds(memory: Memory) -> float:
    """The seconds its versions record for learning (GAN and stored solver), over every task."""
    return sum(task["seconds"] for task in memory.manifest()["tasks"]) if memory.versions() else 0.0


def check_memory(memory: Memory, data: ImageSet, budget: Budget, complete: bool) -> None:
    """Refuse a memory learned from other data or at another GAN budget (its figures would be mislabelled), and
    with `complete` one that lacks a class of the stream (a memory given to be replayed is never learned into)."""
    if not memory.versions():
        if complete:
            raise GenmemError(f"{memory.path} holds no memory; give a finished one (a protocol run's OUT/memory) or "
                              f"leave --memory out to learn one")
        return
    manifest = memory.manifest()
    generator = manifest["generator"]
    size = next_power_of_two(max(data.images.shape[-2:]))
    wanted = {"variant": VARIANT, "channels": data.images.shape[1], "image_size": size,
              "initial_widths": list(default_widths(VARIANT, size, budget.base_width))}
    differs = [f"{key} {generator[key]} (here {value})" for key, value in wanted.items() if generator[key] != value]
    for task in manifest["tasks"]:
        differs += [f"task {task['task']}'s {key} {task['training'].get(key)} (here {getattr(budget.gan, key)})"
                    for key in GAN_BUDGET_FIELDS if task["training"].get(key) != getattr(budget.gan, key)]
    names = {c["label"]: c["name"] for c in manifest["classes"]}
    differs += [f"class {label}'s name {names[label]!r} (here {name!r})" for label, name in data.class_names.items()
                if label in names and names[label] != name]
    if differs:
        raise GenmemError(f"{memory.path} was learned with {'; '.join(differs[:3])}: give a memory learned from "
                          f"this data at this GAN budget (--profile, --images-per-class, --gan-epochs)")
    missing = sorted(set(data.labels.tolist()) - set(names))
    if complete and missing:
        raise GenmemError(f"{memory.path} lacks classes {missing} of the stream; give a finished memory, or leave "
                          f"--memory out to learn one")


def make_strategy(name: str, benchmark, budget: Budget, seed: int, device, memory: Memory, buffer_images: int,
                  class_names: dict[int, str]):
    """A fresh SimpleMLP and Adam, and the strategy `name` around them."""
    torch.manual_seed(seed)
    shape = benchmark.train_stream[0].dataset[0][0].shape
    model = SimpleMLP(num_classes=benchmark.n_classes, input_size=math.prod(shape))
    common = dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=budget.lr),
                  criterion=nn.CrossEntropyLoss(), train_mb_size=budget.batch_size,
                  train_epochs=budget.classifier_epochs, eval_mb_size=1024, device=device,
                  evaluator=evaluation_plugin())
    if name == "naive":
        return Naive(**common)
    if name == "gr":
        return GenerativeReplay(**common)
    if name == "replay":
        return Replay(mem_size=buffer_images, **common)
    plugin = GenmemReplayPlugin(memory.path, config=replace(budget.gan, seed=seed), base_width=budget.base_width,
                                class_names=class_names, seed=seed,
                                replay_size=budget.batch_size if name == "genmem-mb" else None)
    return Naive(**common, plugins=[plugin])


def held_images(strategy) -> int | None:
    """The real images Replay's buffer holds now (None for a strategy without one)."""
    buffers = [p.storage_policy.buffer for p in strategy.plugins if isinstance(p, ReplayPlugin)]
    return len(buffers[0]) if buffers else None


def run_strategy(strategy, benchmark, desc: str, progress: bool) -> list[dict[str, float]]:
    """Train experience by experience; after each, Avalanche's metrics on the test experiences seen so far and
    the seconds the experience took (training and that evaluation)."""
    after = []
    tests = benchmark.test_stream
    for k, experience in enumerate(tqdm(benchmark.train_stream, desc=desc, disable=not progress, leave=False)):
        started = time.perf_counter()
        strategy.train(experience)
        metrics = strategy.eval(tests[: k + 1])
        after.append({key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))}
                     | {"seconds": time.perf_counter() - started})
    return after


def side_by_side(train: ImageSet, test: ImageSet, out: Path, budget: Budget, experiences: int = 10,
                 strategies: tuple[str, ...] = DEFAULT_STRATEGIES, seeds: tuple[int, ...] = (0,),
                 memory_path: Path | None = None, device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """Run every strategy on one stream and budget, once per seed; results as Avalanche reports them, plus the
    byte budget, the buffer's fill and the seconds.

    memory_path: a finished memory to replay (say a protocol run's at the
    same GAN budget); None: OUT/memory, learned by the first genmem run
    (reused when a previous run left it).
    """
    benchmark = class_incremental(train, test, experiences, to_unit_interval)
    shape = tuple(benchmark.train_stream[0].dataset[0][0].shape)
    if "gr" in strategies and shape != VAE_SHAPE:
        raise GenmemError(f"Avalanche's GenerativeReplay takes {'x'.join(map(str, VAE_SHAPE))} images, these are "
                          f"{'x'.join(map(str, shape))}; drop gr from the strategies")
    memory = Memory(memory_path or Path(out) / "memory")
    learns = memory_path is None and any(name.startswith("genmem") for name in strategies)
    # a memory given is replayed, never learned into; Replay alone needs one finished to be sized to
    check_memory(memory, train, budget, complete=memory_path is not None or ("replay" in strategies and not learns))
    Path(out).mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in seeds:
        for name in sorted(strategies, key=lambda n: not n.startswith("genmem")):  # first: the buffer is sized to it
            learned_before = learned_seconds(memory) if name.startswith("genmem") else 0.0
            buffer_images = 0
            if name == "replay":
                payload = replay_payload(memory)
                buffer_images = payload["bytes"] // payload["image_bytes"]
            started = time.perf_counter()
            strategy = make_strategy(name, benchmark, budget, seed, device, memory, buffer_images, train.class_names)
            after = run_strategy(strategy, benchmark, f"{TITLES[name]}, seed {seed}", progress)
            runs.append({"strategy": name, "seed": seed, "after": after, "buffer_images": buffer_images,
                         "held_images": held_images(strategy),
                         "seconds": time.perf_counter() - started + learned_before})
    payload = replay_payload(memory) if memory.versions() else None
    return {"experiences": experiences, "tasks": tasks_label(benchmark.n_classes, experiences),
            "budget": asdict(budget), "memory": {"path": str(memory.path), "payload": payload,
                                                 "learned_seconds": learned_seconds(memory)},
            "runs": runs}


def csv_rows(results: dict) -> list[dict]:
    """BENCHMARKS.csv rows: every run's final stream accuracy (%), one per strategy and seed; `provenance` (data,
    hardware, commit, command) is what the command adds to the results."""
    where = results.get("provenance", {})
    return [{"data": where.get("data"), "tasks": results["tasks"], "method": f"avalanche-{run['strategy']}",
             "profile": results["budget"]["profile"], "metric": "stream_accuracy",
             "value": round(100 * run["after"][-1][STREAM_ACC], 2), "joint": None, "seconds": round(run["seconds"]),
             "hardware": where.get("hardware"), "commit": where.get("commit"), "seeds": run["seed"],
             "command": where.get("command")} for run in results["runs"]]


def report(results: dict) -> str:
    """Markdown: the budget in words, the final metrics per run, then stream accuracy and seconds per experience."""
    experiences = results["experiences"]
    payload = results["memory"]["payload"]
    lines = [budget_note(results), "",
             "| strategy | seed | stores | stream accuracy (%) | stream forgetting (%) | "
             + " | ".join(f"exp {k}" for k in range(experiences)) + " | seconds |",
             "|---|---|---|---|---|" + "---|" * experiences + "---|"]
    for run in results["runs"]:
        final = run["after"][-1]
        stores = {"replay": f"{run['held_images'] or 0:,} real images", "gr": "VAE generator",
                  "naive": "nothing"}.get(run["strategy"], f"generator and masks, {payload['bytes'] / 1024:,.0f} KiB")
        per_exp = " | ".join(f"{100 * final.get(experience_accuracy_key(k), float('nan')):.1f}"
                             for k in range(experiences))
        lines.append(f"| {TITLES[run['strategy']]} | {run['seed']} | {stores} | {100 * final[STREAM_ACC]:.2f} | "
                     f"{100 * final.get(STREAM_FORGETTING, float('nan')):.2f} | {per_exp} | {run['seconds']:.0f} |")
    for title, cell in [("Stream accuracy (%) on the test experiences seen so far, after each training experience",
                         lambda a: f"{100 * a[STREAM_ACC]:.1f}"),
                        ("Seconds per experience (training, genmem's learning included, and that evaluation)",
                         lambda a: f"{a['seconds']:.0f}")]:
        lines += ["", title + ":", "", "| strategy | seed | " + " | ".join(str(k + 1) for k in range(experiences))
                  + " |", "|---|---|" + "---|" * experiences]
        lines += [f"| {TITLES[run['strategy']]} | {run['seed']} | " + " | ".join(map(cell, run["after"])) + " |"
                  for run in results["runs"]]
    return "\n".join(lines)


def budget_note(results: dict) -> str:
    """The GAN budget and the byte budget in words."""
    budget, memory = results["budget"], results["memory"]
    gan = budget["gan"]
    text = (f"genmem's GAN (DGMw, profile {budget['profile']}): {gan['gan_images_per_class'] or 'every'} images "
            f"per class for {gan['epochs']} epochs per experience, critic {gan['critic_width']} wide, base width "
            f"{budget['base_width'] or 'the default'}, the critic's class head as the stored solver; learned in "
            f"{memory['learned_seconds']:,.0f} s ({memory['path']}). Every classifier: SimpleMLP, Adam at "
            f"{budget['lr']:g}, {budget['classifier_epochs']} epoch(s) per experience in minibatches of "
            f"{budget['batch_size']}.")
    payload = memory["payload"]
    if payload:
        side = payload["image_size"]
        text += (f" Byte budget: genmem's replay payload as stored, generator.safetensors + masks.safetensors of "
                 f"{payload['version']} ({payload['bytes']:,} bytes; the solver is not needed for replay); Replay's "
                 f"buffer holds at most {payload['bytes'] // payload['image_bytes']:,} real images, at one byte per "
                 f"pixel at the memory's {payload['channels']}x{side}x{side}.")
    return text
