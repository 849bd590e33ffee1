"""genmem against Avalanche's own strategies, in Avalanche's own terms (`genmem bench avalanche`).

One class-incremental stream (one class per experience by default), one
classifier (Avalanche's SimpleMLP), one optimiser and one classifier budget
(epochs and minibatch per experience) for four strategies:

    naive       Avalanche's Naive: fine-tuning, no replay (the lower bound)
    gr          Avalanche's GenerativeReplay with its default VAE generator
    replay      Avalanche's Replay: a buffer of real images as large, in bytes, as the genmem memory
    genmem      Naive with GenmemReplayPlugin: replay from a DGM memory learned experience by experience,
                class-balanced (as many images per earlier class as the minibatch has of the new one)
    genmem-mb   the same memory, but only a minibatch's worth of replay per step, as gr and replay add

After every experience each strategy is evaluated on the test experiences
seen so far by Avalanche's EvaluationPlugin (accuracy per experience, stream
accuracy, forgetting), and its metrics are kept as Avalanche names them.
The genmem memory is learned first, so that the real-image buffer can be
sized to it; an existing memory in the output folder is reused.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from avalanche.benchmarks import nc_benchmark
from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
from avalanche.models import SimpleMLP
from avalanche.training import GenerativeReplay, Naive, Replay
from avalanche.training.plugins import EvaluationPlugin
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from genmem.artifact import MASKS_FILE, WEIGHTS_FILE
from genmem.data import load_source
from genmem.integrations.avalanche import GenmemReplayPlugin
from genmem.memory import Memory

STRATEGIES = ("genmem", "genmem-mb", "naive", "gr", "replay")
TITLES = {"naive": "Avalanche Naive (no replay)", "gr": "Avalanche GenerativeReplay (its VAE)",
          "replay": "Avalanche Replay (real images, genmem's bytes)",
          "genmem": "Naive + genmem plugin (class-balanced)",
          "genmem-mb": "Naive + genmem plugin (replay = minibatch)"}
STREAM_ACC = "Top1_Acc_Stream/eval_phase/test_stream/Task000"
STREAM_FORGETTING = "StreamForgetting/eval_phase/test_stream"


def experience_accuracy_key(experience: int) -> str:
    return f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{experience:03d}"


@dataclass(frozen=True)
class Budget:
    """What every strategy's classifier gets, and what genmem's generator gets, per experience."""

    epochs: int = 1  # classifier epochs over the experience's real images
    batch_size: int = 128
    lr: float = 1e-3
    gan_epochs: int = 40
    gan_images_per_class: int | None = 1000  # real images the GAN trains on; None: all
    seed: int = 0


def split_benchmark(source: str, data_dir, experiences: int = 10):
    """A class-incremental Avalanche benchmark over genmem's local copy of a data set (nothing is downloaded).

    Classes come in label order; inputs are ToTensor's [0, 1] pixels, which
    every strategy here (the VAE of GenerativeReplay included) takes as is.
    """
    def as_dataset(train: bool) -> TensorDataset:
        data = load_source(source, data_dir, train=train)
        dataset = TensorDataset(data.images.float() / 255, data.labels)
        dataset.targets = data.labels
        return dataset

    train = as_dataset(True)
    classes = sorted(set(train.targets.tolist()))
    return nc_benchmark(train, as_dataset(False), n_experiences=experiences, task_labels=False, shuffle=False,
                        fixed_class_order=classes)


def evaluation_plugin() -> EvaluationPlugin:
    return EvaluationPlugin(accuracy_metrics(experience=True, stream=True),
                            forgetting_metrics(experience=True, stream=True), loggers=[])


def memory_bytes(memory: Memory) -> int:
    """What replay needs of a memory: its generator's weights and masks (the stored solver is not replay)."""
    files = memory.manifest()["files"]
    return files[WEIGHTS_FILE]["bytes"] + files[MASKS_FILE]["bytes"]


def make_strategy(name: str, benchmark, budget: Budget, device, memory_path: Path, buffer_images: int):
    """A fresh SimpleMLP and Adam, and the strategy `name` around them."""
    torch.manual_seed(budget.seed)
    shape = benchmark.train_stream[0].dataset[0][0].shape
    model = SimpleMLP(num_classes=benchmark.n_classes, input_size=math.prod(shape))
    common = dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=budget.lr),
                  criterion=nn.CrossEntropyLoss(), train_mb_size=budget.batch_size, train_epochs=budget.epochs,
                  eval_mb_size=1024, device=device, evaluator=evaluation_plugin())
    if name == "naive":
        return Naive(**common)
    if name == "gr":
        return GenerativeReplay(**common)
    if name == "replay":
        return Replay(mem_size=buffer_images, **common)
    plugin = GenmemReplayPlugin(memory_path, epochs=budget.gan_epochs, images_per_class=budget.gan_images_per_class,
                                replay_size=budget.batch_size if name == "genmem-mb" else None, seed=budget.seed)
    return Naive(**common, plugins=[plugin])


def run_strategy(strategy, benchmark, desc: str, progress: bool) -> list[dict[str, float]]:
    """Train experience by experience; after each, Avalanche's metrics on the test experiences seen so far."""
    after = []
    tests = benchmark.test_stream
    for k, experience in enumerate(tqdm(benchmark.train_stream, desc=desc, disable=not progress, leave=False)):
        strategy.train(experience)
        metrics = strategy.eval(tests[: k + 1])
        after.append({key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))})
    return after


def side_by_side(source: str, data_dir, out: Path, budget: Budget, experiences: int = 10,
                 strategies: tuple[str, ...] = STRATEGIES, device: str | torch.device = "cpu",
                 progress: bool = True) -> dict:
    """Run every strategy on one stream and budget; results as Avalanche reports them, plus sizes and times."""
    out.mkdir(parents=True, exist_ok=True)
    benchmark = split_benchmark(source, data_dir, experiences)
    image_bytes = math.prod(benchmark.train_stream[0].dataset[0][0].shape)  # one uint8 image
    memory_path = out / "memory"
    results = {"data": source, "experiences": experiences, "budget": asdict(budget), "image_bytes": image_bytes,
               "strategies": {}}
    for name in sorted(strategies, key=lambda n: not n.startswith("genmem")):  # first: the buffer is sized to it
        buffer_images = 0
        if name == "replay":
            if not Memory(memory_path).versions():
                raise ValueError("the replay strategy is sized to the genmem memory: run genmem first")
            buffer_images = memory_bytes(Memory(memory_path)) // image_bytes
        started = time.perf_counter()
        strategy = make_strategy(name, benchmark, budget, device, memory_path, buffer_images)
        after = run_strategy(strategy, benchmark, TITLES[name], progress)
        results["strategies"][name] = {"after": after, "seconds": time.perf_counter() - started,
                                       "buffer_images": buffer_images}
    if Memory(memory_path).versions():
        results["memory_bytes"] = memory_bytes(Memory(memory_path))
    return results


def report(results: dict) -> str:
    """Markdown tables: the final metrics per strategy, then stream accuracy after every experience."""
    experiences = results["experiences"]
    lines = ["| strategy | stores | stream accuracy (%) | stream forgetting (%) | "
             + " | ".join(f"exp {k}" for k in range(experiences)) + " | seconds |",
             "|---|---|---|---|" + "---|" * experiences + "---|"]
    genmem_kib = results.get("memory_bytes", 0) / 1024
    for name, run in results["strategies"].items():
        final = run["after"][-1]
        stores = {"replay": f"{run['buffer_images']:,} real images "
                            f"({run['buffer_images'] * results['image_bytes'] / 1024:,.0f} KiB)",
                  "gr": "VAE generator", "naive": "nothing"}.get(name, f"generator, {genmem_kib:,.0f} KiB")
        per_exp = " | ".join(f"{100 * final.get(experience_accuracy_key(k), float('nan')):.1f}"
                             for k in range(experiences))
        lines.append(f"| {TITLES[name]} | {stores} | {100 * final[STREAM_ACC]:.2f} | "
                     f"{100 * final.get(STREAM_FORGETTING, float('nan')):.2f} | {per_exp} | {run['seconds']:.0f} |")
    lines += ["", "Stream accuracy (%) on the test experiences seen so far, after each training experience:", "",
              "| strategy | " + " | ".join(str(k + 1) for k in range(experiences)) + " |",
              "|---|" + "---|" * experiences]
    for name, run in results["strategies"].items():
        lines.append(f"| {TITLES[name]} | " + " | ".join(f"{100 * a[STREAM_ACC]:.1f}" for a in run["after"]) + " |")
    return "\n".join(lines)
