"""Run as one rank of a gloo process group by test_distributed.py (which sets RANK, WORLD_SIZE and the rest).

    python distributed_rank.py learn OUT MEM   one optimisation step of a first task, each rank saving its generator
                                               (a DCGAN, and a ResNet with class-conditional norms), and a few
                                               steps of a solver phase, each saving its solver; then learn
                                               class 2 into MEM, each rank saving the files it encoded
    python distributed_rank.py die OUT MEM     as learn, but rank 1 exits in its second generator step
    python distributed_rank.py plain OUT MEM   learn class 2 into MEM, and nothing else
    python distributed_rank.py stop OUT MEM    as plain with a checkpoint after every epoch, every rank raising
                                               Stopped after the first epoch's
"""

import os
import sys

import torch
from safetensors.torch import save_file

import genmem.memory
from genmem import plasticity
from genmem.checkpoint import Checkpointing
from genmem.distributed import ONE_PROCESS, from_environment
from genmem.learn import learn_task
from genmem.memory import Memory
from genmem.nets import Classifier, Generator, dcgan_init_
from genmem.rank_writer import finish
from genmem.solver import train_solver

from tiny import TINY_SIZE, tiny_config, tiny_set, tiny_spec

STEP_IMAGES = 45  # one step of a first task over 45 images: the rows split 23 / 22 between two ranks


def step_config(arch="dcgan"):
    return tiny_config(arch=arch, epochs=1, batch_size=STEP_IMAGES, solver_steps=0)


def one_step(parallel=None, arch="dcgan", class_norm=False) -> dict[str, torch.Tensor]:
    """The generator's tensors and masks after one step of learning classes 0 and 1."""
    data = tiny_set(labels=(0, 1))
    generator = Generator(tiny_spec("dgmw", arch, class_norm), torch.Generator().manual_seed(0))
    learn_task(generator, data.images[:STEP_IMAGES], data.labels[:STEP_IMAGES], 2, step_config(arch),
               progress=False, parallel=parallel)
    state = {name: t.contiguous() for name, t in generator.state_dict().items()}
    state.update({f"mask{i}": m.to(torch.uint8) for i, m in enumerate(generator.tasks[0].masks)})
    return state


def solver_phase(parallel=None, steps: int = 3) -> dict[str, torch.Tensor]:
    """A tiny solver's tensors after a few shifted, class-balanced steps on three classes (batches of 46 rows)."""
    data = tiny_set(labels=(0, 1, 2))
    solver = Classifier(1, TINY_SIZE, 3, width=4)
    dcgan_init_(solver, torch.Generator().manual_seed(0))
    config = tiny_config(batch_size=23, solver_steps=steps, solver_epochs=None, solver_augment="translation")
    train_solver(solver, data.images.float() / 127.5 - 1, data.labels, config, torch.Generator().manual_seed(0),
                 parallel or ONE_PROCESS)
    return {name: t.contiguous() for name, t in solver.state_dict().items()}


def keep_encoded_files(out: str, rank: int) -> None:
    """Make Memory.learn_task save what this rank would store, for the test to compare across ranks."""
    encode = genmem.memory.encode_generator

    def encode_and_keep(generator, *storage):
        files = encode(generator, *storage)
        for name, data in files.items():
            with open(os.path.join(out, f"rank{rank}-{name}"), "wb") as f:
                f.write(data)
        return files

    genmem.memory.encode_generator = encode_and_keep


def die_in_second_generator_step() -> None:
    compensate, calls = plasticity.compensate_embedding_gradient_, []

    def dying_compensation(embedding, s, top):
        calls.append(1)
        if len(calls) > len(tiny_spec("dgmw").widths):  # one call per masked layer and step
            os._exit(3)
        compensate(embedding, s, top)

    plasticity.compensate_embedding_gradient_ = dying_compensation


class Stopped(Exception):
    """Stands for the job being killed after a checkpoint."""


def stop_after_first_epoch() -> None:
    handle = Checkpointing.after_epoch

    def after_epoch_then_stop(self, state, progress, last):
        handle(self, state, progress, last)
        raise Stopped

    Checkpointing.after_epoch = after_epoch_then_stop


if __name__ == "__main__":
    scenario, out, memory = sys.argv[1:4]
    parallel = from_environment(torch.device("cpu"))
    if scenario == "learn":
        save_file(one_step(parallel), os.path.join(out, f"step-rank{parallel.rank}.safetensors"))
        save_file(one_step(parallel, "resnet", class_norm=True),
                  os.path.join(out, f"step-resnet-rank{parallel.rank}.safetensors"))
        save_file(solver_phase(parallel), os.path.join(out, f"solver-rank{parallel.rank}.safetensors"))
    keep_encoded_files(out, parallel.rank)
    if scenario == "die" and parallel.rank == 1:
        die_in_second_generator_step()
    if scenario == "stop":
        stop_after_first_epoch()
    version = Memory(memory).learn_task(tiny_set(), ["2"], config=tiny_config(seed=1), progress=False,
                                        parallel=parallel, checkpoint_every=0 if scenario == "stop" else None)
    print(f"rank {parallel.rank} learned {version}")
    finish(parallel)
