"""A protocol run's results.json read back for people: its title, tables, the paper's figures beside it, and
several runs combined into one table. Plots are in genmem.benchmarks.charts."""

from __future__ import annotations

from pathlib import Path

from genmem.benchmarks.methods import REGISTRY, method_class, registered_name
from genmem.config import TrainingConfig
from genmem.errors import GenmemError

# The paper's Table 1 (A5, A10, %) per data set it measured; the authors selected models on real old-class
# validation images. DGM's rows are per variant; DGR, MeRGAN and EWC-M are the paper's citations of them.
PAPER = {"mnist": {"dgmw": (98.75, 96.46), "dgma": (99.17, 97.92), "dgr": (90.39, 85.40), "mergan": (98.19, 97.00),
                   "ewc": (70.62, 77.03), "joint": (97.66, 98.10)},
         "svhn": {"dgmw": (83.93, 74.38), "dgma": (81.07, 66.89), "dgr": (61.29, 47.28), "mergan": (80.90, 66.78),
                  "ewc": (39.84, 33.02), "joint": (85.30, 84.82)},
         "cifar10": {"dgmw": (64.94, 51.70), "dgma": (62.50, 50.80), "joint": (82.20, 64.20)}}
CITED = ("dgr", "mergan", "ewc")  # the rows of Table 1 the paper took from MeRGAN's paper (Wu et al. 2018)
CITED_NOTE = ("The paper's DGR, MeRGAN and EWC-M figures are its citations of MeRGAN's paper (Wu et al. 2018), "
              "measured there with that paper's own classifier and metric; here each is a fresh classifier trained "
              "on the generator's replay and tested on real images: not the same measurement.")
# Published on split-MNIST (5 tasks of 2 classes in label order, class-incremental), with the classifier an MLP of
# 2 hidden layers of 400 units: accuracy on all ten classes after the fifth task (%).
SPLIT_MNIST = {"DGR": 90.79, "DGR with distillation": 91.79, "replay-through-feedback": 92.56,
               "iCaRL with 2,000 stored real images": 94.57}
SPLIT_MNIST_SOURCE = "van de Ven & Tolias 2019, Table 4"
# What a results.json from before an option existed means: the protocol as it ran then.
RUN_DEFAULTS = {"classes_per_task": 1, "classifier": "conv", "method_options": {}, "arch": "dcgan",
                "class_norm": False}
DATA_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "svhn": "SVHN", "cifar10": "CIFAR-10",
              "builtin": "builtin MNIST sample"}


def describe_data(source: str, test_source: str | None = None) -> dict:
    """The data set a run used, as results.json records it: its source specs, display name, and the paper's key.

    `paper` is the data set's key in PAPER when the paper measured that data
    set (MNIST, SVHN, CIFAR-10), else None: figures are compared only there.
    """
    kind, _, path = source.partition(":")
    name = DATA_NAMES.get(kind) or (Path(path).name if path else source)
    return {"source": source, "test_source": test_source, "name": name, "paper": kind if kind in PAPER else None}


def setting(results: dict, key: str):
    """A run's setting as its results.json records it, or for a run from before the option, its default."""
    return results.get(key, RUN_DEFAULTS.get(key))


def tasks_of(results: dict) -> tuple[int, int]:
    """(tasks, classes per task) of a run, e.g. (10, 1) for the paper's protocol, (5, 2) for split-MNIST."""
    per_task = setting(results, "classes_per_task")
    return len(results["classes"]) // per_task, per_task


def in_label_order(results: dict) -> bool:
    labels = [c["label"] for c in results["classes"]]
    return labels == sorted(labels)


def method_title(method: str) -> str | None:
    """How a run's title names a method beside DGM ("DGR"); None for DGM's own, the bounds and unknown names."""
    return method_class(method).title if method in REGISTRY else None


def run_title(results: dict, display: bool = False) -> str:
    """What a run compared, on which data: 'Paper protocol: mnist DGMW vs DGR, MeRGAN' for a record's section
    (the source's name, so that a rerun replaces its section, and the seed where it is not 0, so that another
    seed's does not; 'Split protocol: mnist 5x2 ...' for several classes per task, which the paper never ran);
    display=True: 'MNIST: DGMW vs DGR, MeRGAN'."""
    data = results.get("data") or describe_data(results["recipe"])
    kind = data["source"].partition(":")[0]
    subject = data["name"] if display or kind in ("folder", "npz") else kind
    methods = results.get("methods") or list(results["accuracy"])  # runs from before baselines have no list
    protocol = "Paper protocol"
    if "classes" in results and tasks_of(results)[1] > 1:  # the literature's split protocol, not the paper's
        subject += " {}x{}".format(*tasks_of(results))
        protocol = "Split protocol"
    if setting(results, "classifier") != "conv":
        subject += f" ({results['classifier']} classifier)"
    width = f" (base width {results['base_width']})" if results.get("base_width") else ""
    arch = "" if setting(results, "arch") == "dcgan" else f" {setting(results, 'arch')}"
    dtype = results.get("gan_config", {}).get("storage_dtype", "float32")  # float32 before the option existed
    arch += "" if dtype == TrainingConfig.storage_dtype else f" {dtype}"
    compared = [results["variant"].upper() + arch + width] if any(dgm_variant(m, results) for m in methods) else []
    others = [title for title in map(method_title, methods) if title]
    what = " vs ".join(filter(None, [" ".join(compared), ", ".join(others)])) or "bounds"
    if options := setting(results, "method_options"):  # so that a run with other options keeps its own section
        what += " ({})".format("; ".join(f"--{key.replace('_', '-')} {shown_option(value)}"
                                         for key, value in sorted(options.items())))
    seed = f", seed {results['seed']}" if results.get("seed") else ""
    return f"{subject}: {what}" if display else f"{protocol}: {subject} {what}{seed}"


def shown_option(value) -> str:
    """A method option as the command line gives it: 20,50 for a list."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def dgm_variant(method: str, results: dict) -> str | None:
    """The DGM variant a method reports on (dgm-solver: the run's; dgma-replay in combined runs: dgma), else None."""
    prefix, _, kind = method.partition("-")
    if kind not in ("solver", "replay"):
        return None
    return results["variant"] if prefix == "dgm" else prefix


def paper_figures(results: dict) -> dict[str, tuple[float, float]]:
    """The paper's A5/A10 per method of a run, only where the paper measured the run's data set and protocol
    (one class per task, in label order)."""
    if setting(results, "classes_per_task") != 1 or ("classes" in results and not in_label_order(results)):
        return {}
    paper = PAPER.get(results.get("data", {}).get("paper"), {})
    keys = {method: dgm_variant(method, results) or method for method in results["accuracy"]}
    return {method: paper[key] for method, key in keys.items() if key in paper}


def combine_runs(runs: list[dict]) -> dict:
    """One table's results from runs on the same data, classes, profile and seed (say DGMw with the baselines,
    and DGMa): DGM's methods are named by their variant (dgmw-solver, dgma-replay); a method that several runs
    hold (the bounds, a baseline) is taken from the first."""
    first = runs[0]
    for run in runs[1:]:
        differs = [key for key in ("classes", "classes_per_task", "classifier", "profile", "seed")
                   if setting(run, key) != setting(first, key)]
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
    order = {m: i for i, m in enumerate(REGISTRY)}
    ranked = sorted(accuracy, key=lambda m: order.get(registered_name(m), len(order)))  # stable
    return {"recipe": first["recipe"], "variant": "+".join(dict.fromkeys(run["variant"] for run in runs)),
            "methods": ranked, "data": first.get("data") or describe_data(first["recipe"]),
            "profile": first["profile"], "seed": first["seed"], "classes": first["classes"],
            "classes_per_task": setting(first, "classes_per_task"), "classifier": setting(first, "classifier"),
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
    if any(method in CITED for method in paper):
        lines += ["", CITED_NOTE]
    if split_mnist(results):
        lines += ["", "Published on split-MNIST with the same classifier, after the fifth task: "
                  + ", ".join(f"{name} {figure:.2f}" for name, figure in SPLIT_MNIST.items())
                  + f" ({SPLIT_MNIST_SOURCE}); their MLP saw 28-pixel images for 2,000 iterations per task, this "
                    "one 32-pixel images for the profile's passes."]
    return "\n".join(lines)


def newest_table(results: dict) -> str:
    """How much each method favours the classes it learned last: their accuracy against the earlier classes'.

    A classifier that sees real images of the newest classes and generated images of the earlier ones can learn
    "real means newest"; joint training, which sees real images of every class, shows the gap without it."""
    per_task = setting(results, "classes_per_task")
    order = [str(c["label"]) for c in results["classes"]]
    lines = ["| method | newest classes at the end (%) | earlier classes at the end (%) | "
             "newest minus earlier, mean over tasks 2 on (points) |", "|---|---:|---:|---:|"]
    for method, tasks in results["per_class"].items():
        pairs = []  # (newest classes, earlier classes) after each task
        for t, scores in enumerate(tasks):
            newest, earlier = order[t * per_task:(t + 1) * per_task], order[:t * per_task]
            pairs.append((_mean(scores, newest), _mean(scores, earlier) if earlier else None))
        last_new, last_old = pairs[-1]
        gaps = [new - old for new, old in pairs if old is not None]
        lines.append(f"| {method} | {last_new:.1f} | {_shown(last_old)} | "
                     f"{_shown(sum(gaps) / len(gaps) if gaps else None, '+.1f')} |")
    return "\n".join(lines)


def _mean(scores: dict, labels: list[str]) -> float:
    return sum(scores[label] for label in labels) / len(labels)


def _shown(value: float | None, form: str = ".1f") -> str:
    return "–" if value is None else format(value, form)


def split_mnist(results: dict) -> bool:
    """Whether a run is split-MNIST as the literature runs it: all ten MNIST classes in label order, 5 tasks of
    2, class-incremental, tested by an MLP of 2x400 units, and finished."""
    return (results.get("data", {}).get("paper") == "mnist" and setting(results, "classifier") == "mlp"
            and "classes" in results and tasks_of(results) == (5, 2) and in_label_order(results)
            and all(len(curve) == 5 for curve in results["accuracy"].values()))


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
