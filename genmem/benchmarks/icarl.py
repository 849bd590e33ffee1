"""iCaRL with K real images per class, through Avalanche's ICaRL: the stored-image reference beside genmem.

The paper's relaxed setup (its Table 2) sets DGM holding K real images per
class beside iCaRL (Rebuffi et al., 2017) holding as many. This is iCaRL as
Avalanche implements it (`avalanche.training.ICaRL`: herding selects the
exemplars, the nearest mean of exemplars classifies, its distillation loss
trains) around the protocol's classifier, so that only the method differs:

    feature extractor  genmem.nets.Classifier's convolutional trunk, the profile's classifier width
    classifier         its linear head (trained by iCaRL's loss); the nearest mean of exemplars predicts, each
                       class's mean over its exemplars and their mirror images (Avalanche's, for natural images)
    images             32x32 in [-1, 1], classes in label order, as the protocol's
    augmentation       the profile's classifier policy (quick on CIFAR-10: translation and cutout) through
                       genmem.augment, on every training minibatch, exemplars included
    optimiser          Adam at genmem's classifier learning rate, moments reset and the rate decayed to 0 by
                       a cosine over each task, as genmem trains every classifier (genmem.classifier)

Each task trains `epochs` passes over its training set, which is its real
images plus the exemplars held (K per earlier class); the network carries
over from task to task. Then herding adds K exemplars of each new class, and
keeps them for good (Avalanche's fixed_memory=False: K per class, never
reduced). After every task A_t is genmem's metric: the unweighted mean over
the classes seen of each class's accuracy on its real test images
(genmem.evaluate), predictions restricted to the classes seen, as the
protocol's classifiers are.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training import ICaRL
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.supervised.icarl import _ICaRLPlugin  # where ICaRL keeps its exemplars
from tqdm.auto import tqdm

from genmem.augment import diff_augment, parse_policy
from genmem.benchmarks.avalanche import class_incremental, tasks_label
from genmem.benchmarks.protocol import IMAGE_SIZE, profile_for
from genmem.classifier import ClassifierConfig
from genmem.data import ImageSet, fit_images
from genmem.errors import InvalidSetting
from genmem.evaluate import evaluate_model
from genmem.nets import Classifier, dcgan_init_
from genmem.pixels import to_unit_range

MEMORY_PER_CLASS = (20, 50, 100)  # K of the paper's relaxed setup, as measured here


class BatchAugment(SupervisedPlugin):
    """A genmem.augment policy applied afresh to every training minibatch, as genmem's classifiers see theirs."""

    def __init__(self, policy: str, seed: int):
        super().__init__()
        self.policy, self.seed = parse_policy(policy), seed
        self.rng: torch.Generator | None = None

    def before_training_iteration(self, strategy, **kwargs) -> None:
        inputs = strategy.mbatch[0]
        if self.rng is None:
            self.rng = torch.Generator(inputs.device).manual_seed(self.seed)
        strategy.mbatch[0] = diff_augment(inputs, self.policy, self.rng)


class CosinePerTask(SupervisedPlugin):
    """Fresh Adam moments and a learning rate decayed from `lr` to 0 by a cosine over each task's steps."""

    def __init__(self, lr: float):
        super().__init__()
        self.lr = lr
        self.schedule: torch.optim.lr_scheduler.LRScheduler | None = None

    def before_training_exp(self, strategy, **kwargs) -> None:
        steps = strategy.train_epochs * math.ceil(len(strategy.adapted_dataset) / strategy.train_mb_size)
        strategy.optimizer.state.clear()
        for group in strategy.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = self.lr
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(strategy.optimizer, max(steps, 1))

    def after_training_iteration(self, strategy, **kwargs) -> None:
        self.schedule.step()


def classifier_budget(profile_name: str, recipe: str, epochs: int | None = None, batch_size: int | None = None
                      ) -> tuple[str, ClassifierConfig]:
    """The protocol profile's classifier on a recipe's data (width, passes, augmentation), and the profile's name
    as BENCHMARKS.csv gives it (naming the passes or the batch size where they differ from the profile's)."""
    profile = profile_for(profile_name, recipe)
    config = ClassifierConfig(epochs=epochs or profile.classifier_epochs, width=profile.classifier_width,
                              augment=profile.classifier_augment, batch_size=batch_size or ClassifierConfig.batch_size)
    named = [f"{config.epochs:g} classifier passes"] if config.epochs != profile.classifier_epochs else []
    named += [f"batches of {config.batch_size}"] if config.batch_size != ClassifierConfig.batch_size else []
    return ", ".join([profile.name, *named]), config


def classifier_passes(config: ClassifierConfig) -> int:
    """Avalanche trains whole epochs: the config's passes, which must be a whole number."""
    if config.epochs != int(config.epochs):
        raise InvalidSetting(f"iCaRL trains whole passes over each task's images, and {config.epochs:g} is not a "
                             f"whole number: give --classifier-epochs")
    return int(config.epochs)


def icarl_strategy(channels: int, num_classes: int, memory_per_class: int, config: ClassifierConfig,
                   device: str | torch.device) -> ICaRL:
    """Avalanche's ICaRL around a fresh genmem Classifier (initialised as genmem's are, from config.seed)."""
    torch.manual_seed(config.seed)  # the minibatch order
    network = Classifier(channels, IMAGE_SIZE, num_classes, config.width)
    dcgan_init_(network, torch.Generator().manual_seed(config.seed))
    return ICaRL(feature_extractor=network.features, classifier=network.classes,
                 optimizer=torch.optim.Adam(network.parameters(), lr=config.lr), memory_size=memory_per_class,
                 buffer_transform=None, fixed_memory=False, train_mb_size=config.batch_size,
                 train_epochs=classifier_passes(config), eval_mb_size=512, device=device,
                 plugins=[BatchAugment(config.augment, config.seed), CosinePerTask(config.lr)],
                 evaluator=EvaluationPlugin(loggers=[]))


def exemplars(strategy: ICaRL) -> dict[int, int]:
    """Real images held per class."""
    plugin = next(p for p in strategy.plugins if isinstance(p, _ICaRLPlugin))
    counts: dict[int, int] = {}
    for labels in plugin.y_memory:
        for label in labels:
            counts[int(label)] = counts.get(int(label), 0) + 1
    return counts


def run_icarl(train: ImageSet, test: ImageSet, experiences: int, memory_per_class: int, config: ClassifierConfig,
              device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """One iCaRL run over the stream: after every task the classes seen, their accuracies, A_t, the exemplars
    held per class and the task's seconds."""
    channels = train.images.shape[1]
    fitted = [ImageSet(fit_images(d.images, channels, IMAGE_SIZE, d.source), d.labels, d.class_names, d.source)
              for d in (train, test)]
    benchmark = class_incremental(*fitted, experiences, to_unit_range)
    strategy = icarl_strategy(channels, benchmark.n_classes, memory_per_class, config, device)
    outputs = list(range(benchmark.n_classes))  # Avalanche keeps the labels; the classes' means are its outputs
    seen: list[int] = []
    after = []
    for experience in tqdm(benchmark.train_stream, desc=f"iCaRL K={memory_per_class}, seed {config.seed}",
                           disable=not progress, leave=False):
        started = time.perf_counter()
        strategy.train(experience)
        seen += [int(c) for c in experience.classes_in_this_experience]
        strategy.model.eval()
        mine = torch.isin(fitted[1].labels, torch.tensor(seen))
        score = evaluate_model(strategy.model, outputs, fitted[1].images[mine], fitted[1].labels[mine], device,
                               allowed=torch.isin(torch.tensor(outputs), torch.tensor(seen)))
        after.append({"classes": list(seen), "per_class": {str(c): a for c, a in score.per_class.items()},
                      "average": score.average, "exemplars": {str(c): n for c, n in exemplars(strategy).items()},
                      "seconds": time.perf_counter() - started})
    return {"memory_per_class": memory_per_class, "seed": config.seed, "after": after,
            "seconds": sum(step["seconds"] for step in after)}


def icarl_study(train: ImageSet, test: ImageSet, experiences: int, memory_per_class: tuple[int, ...],
                config: ClassifierConfig, profile: str, seeds: tuple[int, ...] = (0,),
                device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """iCaRL at every K and seed on one stream; `profile` names the classifier budget for BENCHMARKS.csv."""
    classifier_passes(config)
    runs = [run_icarl(train, test, experiences, k, ClassifierConfig(**asdict(config) | {"seed": seed}), device,
                      progress) for seed in seeds for k in memory_per_class]
    classes = len(set(train.labels.tolist()))
    return {"experiences": experiences, "tasks": tasks_label(classes, experiences), "profile": profile,
            "classifier": asdict(config), "image_size": IMAGE_SIZE, "runs": runs}


def final_metric(results: dict) -> str:
    """A10 after ten tasks of one class (the protocol's name), else 'final'."""
    return f"A{results['experiences']}" if results["tasks"].endswith("x1") else "final"


def csv_rows(results: dict) -> list[dict]:
    """BENCHMARKS.csv rows: A_t after the last task, one per K and seed (method icarl-kK); `provenance` (data,
    hardware, commit, command) is what the command adds to the results."""
    where = results.get("provenance", {})
    return [{"data": where.get("data"), "tasks": results["tasks"], "method": f"icarl-k{run['memory_per_class']}",
             "profile": results["profile"], "metric": final_metric(results),
             "value": round(run["after"][-1]["average"], 2), "joint": None, "seconds": round(run["seconds"]),
             "hardware": where.get("hardware"), "commit": where.get("commit"), "seeds": run["seed"],
             "command": where.get("command")} for run in results["runs"]]


def report(results: dict) -> str:
    """Markdown: the setup in words, then A_t after every task per K and seed."""
    config, tasks = results["classifier"], results["experiences"]
    lines = [f"iCaRL (Avalanche's ICaRL: herding, nearest mean of exemplars) on {results['tasks']} tasks, "
             f"32x32 images; genmem's Classifier trunk {config['width']} wide, {config['epochs']:g} passes per task "
             f"over its real images and the exemplars held, minibatches of {config['batch_size']}, Adam at "
             f"{config['lr']:g} decayed by a cosine over each task, augmented by "
             f"{config['augment'] or 'nothing'}. A_t: the unweighted mean of per-class test accuracies over the "
             f"classes seen.", "",
             "| method | seed | real images held | " + " | ".join(f"A{t + 1}" for t in range(tasks)) + " | seconds |",
             "|---|---|---|" + "---|" * tasks + "---|"]
    for run in results["runs"]:
        held = sum(run["after"][-1]["exemplars"].values())
        lines.append(f"| icarl-k{run['memory_per_class']} | {run['seed']} | {held:,} | "
                     + " | ".join(f"{step['average']:.2f}" for step in run["after"]) + f" | {run['seconds']:.0f} |")
    return "\n".join(lines)
