"""`genmem evaluate`: how well a memory's classes can be recognised, on real test images."""

from __future__ import annotations

import json
from pathlib import Path

import click

from genmem.cli.common import DEVICE_HELP, FiniteFloatRange, friendly_errors
from genmem.config import MAX_CLASSIFIER_EPOCHS


@click.command()
@click.argument("memory", type=click.Path(path_type=Path))
@click.option("--data", "source", required=True, metavar="SOURCE",
              help="Test images: mnist, fashion-mnist, svhn, cifar10 and builtin use their test split; folder:PATH "
                   "and npz:PATH are used as they are. Classes are matched to the memory's by name.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of the data sets.")
@click.option("--version", "version", help="Evaluate only this version (default: every version, giving A_t).")
@click.option("--replay-classifier", is_flag=True,
              help="Also train a fresh classifier on replay alone (no real image) from the latest evaluated version "
                   "and test it: how much the memory is worth to a downstream classifier.")
@click.option("--epochs", type=FiniteFloatRange(0, MAX_CLASSIFIER_EPOCHS, min_open=True), default=3.0,
              show_default=True,
              help="Epochs of the replay classifier, counted in 1000 generated images per class (at most 1000: "
                   "far past its plateau).")
@click.option("--min-confidence", type=FiniteFloatRange(0, 1, max_open=True), metavar="P",
              help="Train the replay classifier only on generated images that the version's own solver puts in "
                   "their class with probability at least P (twice as many are drawn; genmem.filtering).")
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write confusion-matrix PNGs into.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@friendly_errors
def evaluate(memory, source, data_dir, version, replay_classifier, epochs, min_confidence, plots, as_json, device):
    """Test MEMORY's stored task solvers on real test images: A_t, per-class accuracy, forgetting.

    Every version stores the solver trained with it (by default a fresh
    classifier trained after the GAN on the task's real images and replay of
    earlier classes; the critic's class head if the task was learned with
    learn-task --solver-start critic), so
    evaluating needs no retraining: version t gives A_t, the unweighted mean of
    per-class accuracies over the classes it knows, and the per-class history
    gives forgetting (best earlier accuracy minus the last; negative when a
    class improved).

    \b
    Example:
      genmem evaluate digits.mem --data mnist --data-dir ~/data --plots runs/eval
    """
    from genmem.artifact import has_solver
    from genmem.classifier import ClassifierConfig
    from genmem.data import load_source
    from genmem.device import resolve_device
    from genmem.evaluate import forgetting, replay_classifier_score, solver_score
    from genmem.memory import Memory
    from genmem.plots import confusion_plot

    if min_confidence is not None and not replay_classifier:
        raise click.UsageError("--min-confidence filters the replay classifier's images; add --replay-classifier")
    target = resolve_device(device)
    mem = Memory(memory)
    versions = [mem.store.resolve(version)] if version else mem.versions()
    if not versions:
        mem.store.resolve(None)  # raises the right error for a missing or empty memory
    test = load_source(source, data_dir, train=False,
                       image_size=mem.manifest(versions[-1])["generator"]["image_size"])
    scores = {v: solver_score(mem, test, v, target) for v in versions if has_solver(mem.manifest(v))}
    if not scores and not replay_classifier:
        raise click.ClickException("no version asked for stores a solver (learned with --solver none); pass "
                                   "--replay-classifier to test a classifier trained on its replay")
    names = {c["label"]: c["name"] for c in mem.manifest(versions[-1])["classes"]}
    report = {
        "memory": str(memory),
        "test_data": test.source,
        "solver": {v: s.to_dict() for v, s in scores.items()},
        "A_t": [s.average for s in scores.values()],
        "forgetting": {str(k): f for k, f in forgetting([s.per_class for s in scores.values()]).items()}
        if len(scores) > 1 else {},
    }
    if replay_classifier:
        config = ClassifierConfig(epochs=epochs)
        report["replay_classifier"] = replay_classifier_score(mem, test, versions[-1], config, device=target,
                                                              progress=not as_json,
                                                              min_confidence=min_confidence).to_dict()
        report["replay_classifier"]["min_confidence"] = min_confidence
    if plots:
        plots.mkdir(parents=True, exist_ok=True)
        labels = sorted(names)
        if versions[-1] in scores:
            (plots / "confusion-solver.png").write_bytes(confusion_plot(
                scores[versions[-1]].confusion, [names[l] for l in labels], f"solver of {versions[-1]}"))
        if replay_classifier:
            (plots / "confusion-replay-classifier.png").write_bytes(confusion_plot(
                report["replay_classifier"]["confusion"], [names[l] for l in labels], "classifier trained on replay"))
    click.echo(json.dumps(report, indent=2) if as_json else _render(report, names))


def _render(report: dict, names: dict[int, str]) -> str:
    lines = [f"memory {report['memory']} on {report['test_data']}", "",
             "version  classes   A_t (solver, %)"]
    for version, score in report["solver"].items():
        lines.append(f"{version:<8} {len(score['per_class']):>7}   {score['average']:6.2f}")
    final = list(report["solver"].values())[-1]["per_class"] if report["solver"] else {}
    lines += ["", "class        accuracy  forgetting"] if final else ["(no stored solver)"]
    for label, accuracy in final.items():
        lost = report["forgetting"].get(label)
        lines.append(f"{names[int(label)][:12]:<12} {accuracy:8.2f}  {'' if lost is None else f'{lost:10.2f}'}")
    if "replay_classifier" in report:
        threshold = report["replay_classifier"]["min_confidence"]
        only = "" if threshold is None else f" (images its solver recognised with p >= {threshold:g})"
        lines += ["", f"classifier trained on replay alone{only}: A = {report['replay_classifier']['average']:.2f}"]
    return "\n".join(lines)
