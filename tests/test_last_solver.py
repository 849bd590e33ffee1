"""scripts/last_solver.py: it reproduces the run's stored solver score and retrains without touching the memory."""

import importlib.util
from pathlib import Path

import torch

from genmem.benchmarks.protocol import PROFILES, run_protocol
from genmem.memory import Memory

from tiny import tiny_set

SCRIPT = Path(__file__).parents[1] / "scripts" / "last_solver.py"


def load_script():
    spec = importlib.util.spec_from_file_location("last_solver", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_retraining_scores_the_stored_solver_as_the_run_did_and_leaves_the_memory_alone(tmp_path):
    train, test = tiny_set(labels=(0, 1, 2)), tiny_set(labels=(0, 1, 2), per_class=8)
    results = run_protocol(train, test, "mnist", "dgmw", PROFILES["smoke"], tmp_path / "run",
                           methods=("dgm-solver",), progress=False)
    memory = Memory(tmp_path / "run" / "memory")
    before = {v: memory.store.manifest(v) for v in memory.versions()}

    scores = load_script().retrain_last_solver(tmp_path / "run", train, test, epochs=1.0, augment="translation")

    assert scores["stored"] == results["accuracy"]["dgm-solver"][-1], "the stored solver is scored as the run did"
    assert 0.0 <= scores["retrained"] <= 100.0 and scores["seconds"] > 0
    assert {v: memory.store.manifest(v) for v in memory.versions()} == before, "the memory gained or lost nothing"



def test_a_replay_solver_is_retrained_without_the_newest_class_real_images(tmp_path, monkeypatch):
    train, test = tiny_set(labels=(0, 1, 2)), tiny_set(labels=(0, 1, 2), per_class=8)
    run_protocol(train, test, "mnist", "dgmw", PROFILES["smoke"], tmp_path / "run", methods=("dgm-solver",),
                 progress=False)
    blanked = train.images.clone()
    blanked[train.labels == 2] = 0  # the last task's real images, blanked: a real solver would learn another class
    blank = type(train)(blanked, train.labels, train.class_names, train.source)
    script, trained = load_script(), []
    original = script.task_solver
    monkeypatch.setattr(script, "task_solver", lambda *args: trained.append(original(*args)) or trained[-1])
    weights = {}
    for mode in ("real", "replay"):
        for name, images in (("real", train), ("blank", blank)):
            script.retrain_last_solver(tmp_path / "run", images, test, epochs=1.0, augment="", mode=mode)
            weights[mode, name] = trained[-1].classes.weight
    assert torch.equal(weights["replay", "real"], weights["replay", "blank"]), "the replay solver reads no real image"
    assert not torch.equal(weights["real", "real"], weights["real", "blank"]), "the real solver does"
