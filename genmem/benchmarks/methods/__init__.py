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
    "dgr": "genmem.benchmarks.methods.generative_replay:Dgr",
    "mergan": "genmem.benchmarks.methods.generative_replay:Mergan",
    "ewc": "genmem.benchmarks.methods.generative_replay:EwcM",
    "joint": "genmem.benchmarks.methods.joint:Joint",
    "finetune": "genmem.benchmarks.methods.finetune:Finetune",
}
METHODS = tuple(REGISTRY)
DGM_METHODS = ("dgm-solver", "dgm-replay")
DEFAULT_METHODS = (*DGM_METHODS, "joint", "finetune")  # a dgr or mergan step holds twice DGM's batch


def method_class(name: str) -> type:
    """The class of a registered method."""
    module, _, attribute = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
