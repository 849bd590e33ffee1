"""A protocol run killed after a task, or inside one after a checkpoint, and resumed ends with the results.json of
an uninterrupted run."""

import json
from dataclasses import replace

import numpy as np
import pytest

from genmem.benchmarks.methods import METHODS, base
from genmem.benchmarks.profiles import PROFILES
from genmem.benchmarks.protocol import RUN_TIME_FIELDS, load_run_data, resume_protocol, run_protocol, saved_arguments
from genmem.benchmarks.results import describe_data, run_title
from genmem.benchmarks.rows import profile_key, protocol_rows
from genmem.checkpoint import Checkpointing
from genmem.errors import GenmemError
from genmem.memory import Memory

from tiny import tiny_set

LABELS = (0, 1)


class Killed(Exception):
    """Stands for the process being killed."""


def run(out, profile=PROFILES["smoke"], **kwargs):
    return run_protocol(tiny_set(labels=LABELS), tiny_set(labels=LABELS, per_class=8), "mnist", "dgmw",
                        profile, out, progress=False, methods=METHODS, seed=5, **kwargs)


def outcome(out) -> dict:
    results = json.loads((out / "results.json").read_text())
    return {k: v for k, v in results.items() if k not in RUN_TIME_FIELDS}


def test_a_run_killed_in_its_second_task_resumes_to_the_results_of_an_uninterrupted_run(tmp_path, monkeypatch):
    run(tmp_path / "whole")

    real_classifier = base.replay_classifier

    def dies_in_the_second_task(source, task, *args, **kwargs):
        if task.index == 1:  # after task 1's generators were learned, before its results
            raise Killed
        return real_classifier(source, task, *args, **kwargs)

    monkeypatch.setattr(base, "replay_classifier", dies_in_the_second_task)
    with pytest.raises(Killed):
        run(tmp_path / "killed")
    written = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert all(len(curve) == 1 for curve in written["accuracy"].values()), "results are written after every task"
    assert len(Memory(tmp_path / "killed" / "memory").versions()) == 2

    monkeypatch.setattr(base, "replay_classifier", real_classifier)
    with pytest.raises(GenmemError, match="already holds a protocol run"):
        run(tmp_path / "killed")
    run(tmp_path / "killed", resume=True)
    assert outcome(tmp_path / "killed") == outcome(tmp_path / "whole")
    for whole in [*(tmp_path / "whole" / "state").rglob("*.safetensors"),
                  *(tmp_path / "whole" / "memory" / "versions").rglob("*.safetensors")]:
        resumed = tmp_path / "killed" / whole.relative_to(tmp_path / "whole")
        assert resumed.read_bytes() == whole.read_bytes(), f"{resumed.name} is what an uninterrupted run holds"
    assert len(Memory(tmp_path / "killed" / "memory").versions()) == 2, "the killed run's version is kept"
    assert run(tmp_path / "killed", resume=True)["accuracy"] == outcome(tmp_path / "whole")["accuracy"]


def test_a_run_killed_inside_a_task_resumes_from_dgms_checkpoint_to_the_uninterrupted_results(tmp_path, monkeypatch):
    profile = replace(PROFILES["smoke"], gan_epochs=3)
    run(tmp_path / "whole", profile)

    handle, stops = Checkpointing.after_epoch, []

    def killed_after_second_tasks_first_epoch(self, state, progress, last):
        handle(self, state, progress, last)
        if len(state.generator.tasks) == 2 and progress.epoch == 1:
            stops.append(progress.epoch)
            raise Killed

    monkeypatch.setattr(Checkpointing, "after_epoch", killed_after_second_tasks_first_epoch)
    with pytest.raises(Killed):
        run(tmp_path / "killed", profile, checkpoint_every=0)
    monkeypatch.setattr(Checkpointing, "after_epoch", handle)
    memory = Memory(tmp_path / "killed" / "memory")
    assert stops == [1] and len(memory.versions()) == 1

    run(tmp_path / "killed", profile, resume=True)
    assert memory.manifest("v0002")["tasks"][-1]["resumed_after_epoch"] == 1
    assert outcome(tmp_path / "killed") == outcome(tmp_path / "whole")


def test_resume_refuses_a_folder_without_a_run_or_a_run_started_otherwise(tmp_path):
    with pytest.raises(GenmemError, match="no protocol run to resume"):
        run(tmp_path / "nothing", resume=True)
    run(tmp_path / "short", num_tasks=1)
    with pytest.raises(GenmemError, match="started with other classes"):
        run(tmp_path / "short", resume=True)


def test_a_chosen_base_width_shapes_dgms_generator_and_a_resume_keeps_it(tmp_path):
    results = run(tmp_path / "narrow", num_tasks=1, base_width=3)
    assert results["base_width"] == 3
    assert results["growth"][0]["widths"] == [12, 6, 3], "4, 2 and 1 times the base width"
    with pytest.raises(GenmemError, match="started with other base_width"):
        run(tmp_path / "narrow", num_tasks=1, resume=True)
    assert run(tmp_path / "narrow", num_tasks=1, base_width=3, resume=True)["growth"] == results["growth"]
    budget = replace(PROFILES["smoke"], base_widths={"dgmw": 2, "dgma": 5})
    profiled = run_protocol(tiny_set(labels=LABELS), tiny_set(labels=LABELS, per_class=8), "mnist", "dgmw", budget,
                            tmp_path / "profiled", progress=False, methods=("dgm-replay",), num_tasks=1)
    assert profiled["growth"][0]["widths"] == [8, 4, 2], "the profile's width for the variant, none being chosen"


def test_a_profiles_gan_epochs_for_the_variant_are_the_ones_dgm_trains_for(tmp_path):
    budget = replace(PROFILES["smoke"], gan_epochs=1, variant_gan_epochs={"dgmw": 2})
    for variant, epochs in [("dgmw", 2), ("dgma", 1)]:
        out = tmp_path / variant
        run_protocol(tiny_set(labels=LABELS), tiny_set(labels=LABELS, per_class=8), "mnist", variant, budget, out,
                     progress=False, methods=("dgm-replay",), num_tasks=1)
        trained = Memory(out / "memory").manifest()["tasks"][0]["training"]["epochs"]
        assert trained == epochs, f"{variant} trained {trained} epochs, its profile says {epochs}"


def test_a_run_with_a_replay_solver_stores_it_and_a_resume_keeps_it(tmp_path):
    out = tmp_path / "replay"
    run_protocol(tiny_set(labels=LABELS), tiny_set(labels=LABELS, per_class=8), "mnist", "dgmw", PROFILES["smoke"],
                 out, progress=False, methods=("dgm-solver", "dgm-replay"), seed=5, num_tasks=1, solver="replay")
    assert Memory(out / "memory").manifest()["solver"]["mode"] == "replay"
    with pytest.raises(GenmemError, match="started with other solver"):
        run_protocol(tiny_set(labels=LABELS), tiny_set(labels=LABELS, per_class=8), "mnist", "dgmw",
                     PROFILES["smoke"], out, progress=False, methods=("dgm-solver", "dgm-replay"), seed=5, num_tasks=1,
                     resume=True)
    with pytest.raises(GenmemError, match="drop dgm-solver"):
        run(tmp_path / "none", solver="none")


def test_a_run_from_before_a_profile_field_existed_or_its_wording_changed_resumes(tmp_path):
    out = tmp_path / "older"
    results = run(out, num_tasks=1)
    saved = json.loads((out / "results.json").read_text())
    del saved["profile"]["critic_width"]  # as a run written before the field was added
    del saved["profile"]["base_widths"]  # one whose default is made by a factory
    saved["profile"]["about"] = "the same budget, described in other words"
    (out / "results.json").write_text(json.dumps(saved))
    assert run(out, num_tasks=1, resume=True)["accuracy"] == results["accuracy"]
    saved["profile"]["solver_steps"] = 7  # a field it did record, recorded otherwise
    (out / "results.json").write_text(json.dumps(saved))
    with pytest.raises(GenmemError, match="started with other profile"):
        run(out, num_tasks=1, resume=True)


def test_a_run_of_two_classes_per_task_in_a_chosen_order_resumes_to_the_uninterrupted_results(tmp_path, monkeypatch):
    sources = {}
    for split, per_class in (("train", 24), ("test", 8)):
        data = tiny_set(labels=(0, 1, 2, 3), per_class=per_class)
        np.savez(tmp_path / f"{split}.npz", x=data.images[:, 0].numpy(), y=data.labels.numpy())
        sources[split] = f"npz:{tmp_path / f'{split}.npz'}"
    train, test = load_run_data(sources["train"], sources["test"], None)

    def start(out):
        return run_protocol(train, test, "mnist", "dgmw", PROFILES["smoke"], out, progress=False, methods=METHODS,
                            seed=5, classes_per_task=2, class_order=["3", "1", "0", "2"], classifier="mlp",
                            data=describe_data(sources["train"], sources["test"]))

    start(tmp_path / "whole")
    real_classifier = base.replay_classifier

    def dies_in_the_second_task(source, task, *args, **kwargs):
        if task.index == 1:
            raise Killed
        return real_classifier(source, task, *args, **kwargs)

    monkeypatch.setattr(base, "replay_classifier", dies_in_the_second_task)
    with pytest.raises(Killed):
        start(tmp_path / "killed")
    monkeypatch.setattr(base, "replay_classifier", real_classifier)
    assert saved_arguments(tmp_path / "killed")["class_order"] == ["3", "1", "0", "2"]
    resumed = resume_protocol(tmp_path / "killed", progress=False)  # the arguments from its results.json alone
    assert resumed["classes_per_task"] == 2 and resumed["classifier"] == "mlp"
    assert outcome(tmp_path / "killed") == outcome(tmp_path / "whole")
    for whole in (tmp_path / "whole" / "state").rglob("*.safetensors"):
        resumed_file = tmp_path / "killed" / whole.relative_to(tmp_path / "whole")
        assert resumed_file.read_bytes() == whole.read_bytes(), f"{resumed_file.name} is the uninterrupted run's"
    with pytest.raises(GenmemError, match="started with other classes_per_task"):
        run_protocol(train, test, "mnist", "dgmw", PROFILES["smoke"], tmp_path / "killed", progress=False,
                     methods=METHODS, seed=5, class_order=["3", "1", "0", "2"], classifier="mlp", resume=True)


def test_a_residual_memory_with_class_norms_is_learned_named_in_the_rows_and_held_on_resume(tmp_path):
    def residual(**kwargs):
        return run_protocol(tiny_set(labels=LABELS), tiny_set(labels=LABELS, per_class=8), "mnist", "dgmw",
                            replace(PROFILES["smoke"], solver_start="fresh"), tmp_path / "resnet", progress=False,
                            methods=("dgm-replay",),
                            num_tasks=1, base_width=4, **kwargs)

    results = residual(arch="resnet", class_norm=True)
    manifest = Memory(tmp_path / "resnet" / "memory").manifest()
    assert (manifest["generator"]["arch"], manifest["generator"]["class_norm"]) == ("resnet", True)
    assert (results["arch"], results["class_norm"]) == ("resnet", True)
    assert "resnet" in run_title(results)
    rows = protocol_rows(results, hardware="a CPU", commit="abc", command="genmem bench protocol ...")
    assert {"dgmw-resnet-replay", "dgmw-resnet"} <= {row["method"] for row in rows}
    assert {row["profile"] for row in rows} == {"smoke, resnet architecture, class-conditional BatchNorm"}, \
        "apart from the default's"
    assert profile_key({**results, "class_norm": False}) == "smoke, resnet architecture", \
        "joint training's row of a residual run stands apart from the DCGAN run's"
    assert profile_key({**results, "arch": "dcgan"}) == "smoke, class-conditional BatchNorm"
    assert profile_key({**results, "arch": "dcgan", "class_norm": False}) == "smoke"
    with pytest.raises(GenmemError, match="started with other arch, class_norm"):
        residual(resume=True)
    assert residual(arch="resnet", class_norm=True, resume=True)["accuracy"] == results["accuracy"]
