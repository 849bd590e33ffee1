"""The methods a protocol run compares, by name: where each one's class lives, in the order of tables and plots.

A method is one class (a `genmem.benchmarks.methods.base.Method`) in a module
of this package; adding one takes that module and a line here. Entries are
"module:Class" so that this registry stays free of torch, for the command
line's help.
"""

from __future__ import annotations

import importlib

REGISTRY = {
    "dgm-solver": "genmem.benchmarks.methods.dgm:StoredSolver",
    "dgm-replay": "genmem.benchmarks.methods.dgm:DgmReplay",
    "dgm-newest": "genmem.benchmarks.methods.newest:NewestGenerated",
    "dgm-confident": "genmem.benchmarks.methods.confident:ConfidentReplayMethod",
    "hybrid": "genmem.benchmarks.methods.hybrid:Hybrid",
    "dgr": "genmem.benchmarks.methods.generative_replay:Dgr",
    "mergan": "genmem.benchmarks.methods.generative_replay:Mergan",
    "ewc": "genmem.benchmarks.methods.generative_replay:EwcM",
    "buffer": "genmem.benchmarks.methods.buffer:Buffer",
    "joint": "genmem.benchmarks.methods.joint:Joint",
    "finetune": "genmem.benchmarks.methods.finetune:Finetune",
}
METHODS = tuple(REGISTRY)
DGM_METHODS = ("dgm-solver", "dgm-replay")
# Baselines that train their own generator against the paper's critic, which none of the critic settings of
# docs/ALGORITHM.md §18 reach.
PAPER_CRITIC = ("dgr", "mergan", "ewc")
DEFAULT_METHODS = (*DGM_METHODS, "joint", "finetune")  # a dgr or mergan step holds twice DGM's batch
SELECTIONS = ("herding", "random")  # how the buffer and hybrid choose the real images they keep (methods.exemplars)


def method_class(name: str) -> type:
    """The class of a registered method."""
    module, _, attribute = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def instance_names(methods: tuple[str, ...], options: dict) -> list[tuple[str, str]]:
    """(registered name, instance name) of every method a run of `methods` runs, in table order: one per
    registered method, or several where its options ask for several settings (Method.instances)."""
    return [(name, instance) for name in methods for instance in method_class(name).instances(name, methods, options)]


def registered_name(method: str) -> str | None:
    """The registered method a results.json name stands for: itself; the method it is an instance of
    (buffer-x0.25: buffer); DGM's in combined runs, named by variant (dgma-replay: dgm-replay); else None."""
    if method in REGISTRY:
        return method
    prefix, _, kind = method.partition("-")
    if prefix in ("dgmw", "dgma") and f"dgm-{kind}" in REGISTRY:
        return f"dgm-{kind}"
    return next((name for name in REGISTRY if method.startswith(f"{name}-")), None)
