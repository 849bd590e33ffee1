"""Data-parallel learn-task: two gloo ranks on loopback, each a subprocess with torchrun's environment, and the
`genmem learn-task` command under torchrun itself, as the README shows it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file

from genmem.memory import Memory
from genmem.nets import Classifier
from genmem.store import CHECKPOINT
from genmem.benchmarks.subprocess_server import free_port

from distributed_rank import one_step, solver_phase
from tiny import TINY_SIZE, tiny_config, tiny_set

RANK_SCRIPT = Path(__file__).with_name("distributed_rank.py")


def run_ranks(*args, world: int = 2, timeout: float = 180) -> list[subprocess.CompletedProcess]:
    """Start `world` ranks of distributed_rank.py as torchrun would, and wait for all of them."""
    port = free_port()
    ranks = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(RANK_SCRIPT.parent), os.environ.get("PYTHONPATH")]))}
        ranks.append(subprocess.Popen([sys.executable, str(RANK_SCRIPT), *map(str, args)], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for process in ranks:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in ranks:
                other.kill()
            raise
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def solver_outputs(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The logits of a tiny solver with these tensors on its training images, normalised by their own batch."""
    solver = Classifier(1, TINY_SIZE, 3, width=4)
    solver.load_state_dict(state)
    with torch.no_grad():
        return solver.train()(tiny_set(labels=(0, 1, 2)).images.float() / 127.5 - 1)


def check_ok(results):
    for rank, result in enumerate(results):
        assert result.returncode == 0, f"rank {rank} failed:\n{result.stderr[-3000:]}"


@pytest.fixture
def first_task(tmp_path):
    """A memory whose v0001 (classes 0 and 1) one process learned."""
    memory = Memory(tmp_path / "m")
    memory.learn_task(tiny_set(), ["0", "1"], config=tiny_config(), image_size=16, base_width=2, progress=False)
    return memory


def test_two_ranks_step_as_one_process_and_learn_a_task_into_one_version_bit_for_bit(first_task, tmp_path):
    results = run_ranks("learn", tmp_path, first_task.path)
    check_ok(results)

    # One optimisation step on two ranks (rows split 23 / 22) is one step of one process on the same batch, also
    # with class-conditional norms (each rank scales its rows by their classes after the global statistics).
    for kind, alone in (("step", one_step()), ("step-resnet", one_step(arch="resnet", class_norm=True))):
        for rank in range(2):
            ranked = load_file(tmp_path / f"{kind}-rank{rank}.safetensors")
            assert ranked.keys() == alone.keys()
            for name, tensor in alone.items():
                torch.testing.assert_close(ranked[name], tensor, rtol=1e-4, atol=1e-5, msg=f"rank {rank}: {name}")

    # The solver phase is split the same way: the ranks end with one solver, computing what a single process's
    # does. (Compared by its outputs: the bias of a convolution before a BatchNorm has a gradient of rounding
    # noise only, which Adam scales up to full steps, so that parameter differs while the function does not.)
    alone, ranked = solver_phase(), [load_file(tmp_path / f"solver-rank{rank}.safetensors") for rank in range(2)]
    assert ranked[0].keys() == ranked[1].keys() == alone.keys()
    assert all(torch.equal(ranked[0][name], ranked[1][name]) for name in alone)
    torch.testing.assert_close(solver_outputs(ranked[0]), solver_outputs(alone), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(solver_outputs(solver_phase(steps=0)), solver_outputs(alone)), "the steps trained it"

    # A whole task: rank 0 wrote one version, and every rank holds exactly its weights and masks.
    assert first_task.versions() == ["v0001", "v0002"]
    assert all("learned v0002" in result.stdout for result in results)
    assert [first_task.store.manifest(v)["tasks"][-1]["training"]["processes"] for v in ("v0001", "v0002")] == [1, 2]
    stored = first_task.store.read("v0002")[1]
    card = stored["MODEL_CARD.md"].decode()
    assert card.count(" on 2 processes |") == 1, "the card names the ranks of the task that had them"
    for name in ("generator.safetensors", "masks.safetensors"):
        written = load_safetensors(stored[name])
        for rank in range(2):
            ranked = load_file(tmp_path / f"rank{rank}-{name}")
            assert ranked.keys() == written.keys()
            assert all(torch.equal(ranked[key], written[key]) for key in written), (rank, name)

    # No forgetting: the old classes come out of v0002 exactly as out of v0001.
    old, new = first_task.sampler("v0001"), first_task.sampler("v0002")
    before, _ = old.sample({"0": 16, "1": 16}, seed=3, as_uint8=False)
    after, _ = new.sample({"0": 16, "1": 16}, seed=3, as_uint8=False)
    assert torch.equal(before, after)


def test_a_rank_that_dies_fails_the_run_and_writes_nothing(first_task, tmp_path):
    results = run_ranks("die", tmp_path, first_task.path, timeout=120)
    assert results[1].returncode == 3
    assert results[0].returncode != 0, results[0].stdout
    assert first_task.versions() == ["v0001"]
    assert not list((first_task.path / "versions").glob(".incomplete*"))


def test_the_learn_task_command_under_torchrun_writes_one_version_and_exits_cleanly(first_task, tiny_npz, tmp_path):
    """The README's command: torchrun's own launcher, two CPU ranks, the CLI's summary from rank 0 only."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "genmem.cli.main", "learn-task", str(first_task.path), "--data", f"npz:{tiny_npz}",
               "--classes", "2", "--image-size", "16", "--base-width", "2", "--critic-width", "4", "--gan-epochs", "1",
               "--batch-size", "8", "--device", "cpu", "--quiet"]
    # Started outside the checkout: `-m` puts the working directory first on the import path, where the repository's
    # genmem/ (whose cli/ is mapped in at install) would shadow the installed package.
    result = subprocess.run(command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True,
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert first_task.versions() == ["v0001", "v0002"]
    assert result.stdout.count("learned task 1 (classes 2)") == 1, result.stdout
    assert first_task.store.manifest("v0002")["tasks"][-1]["training"]["processes"] == 2


@pytest.mark.timeout(900)  # three two-rank runs of up to 180 s each
def test_two_ranks_stopped_after_a_checkpoint_continue_to_the_version_of_an_uninterrupted_run(first_task, tmp_path):
    stopped = Memory(tmp_path / "stopped")
    shutil.copytree(first_task.path, stopped.path)
    check_ok(run_ranks("plain", tmp_path, first_task.path))

    results = run_ranks("stop", tmp_path, stopped.path)
    assert all(result.returncode != 0 and "Stopped" in result.stderr for result in results)
    assert stopped.versions() == ["v0001"] and (stopped.path / CHECKPOINT).is_file(), "rank 0 saved epoch 1"

    check_ok(run_ranks("plain", tmp_path, stopped.path))  # every rank restores the checkpoint
    assert stopped.manifest("v0002")["tasks"][-1]["resumed_after_epoch"] == 1
    assert not (stopped.path / CHECKPOINT).exists()
    written = [memory.store.read("v0002")[1] for memory in (first_task, stopped)]
    for name in ("generator.safetensors", "masks.safetensors", "solver.safetensors"):
        assert written[0][name] == written[1][name], name
