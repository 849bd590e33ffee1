"""genmem: a generative memory for class-incremental continual learning (Dynamic Generative Memory, DGMw/DGMa).

The public names below are imported lazily, so that `genmem --help` does not wait for torch.
"""

import importlib

_EXPORTS = {
    "GenmemError": "genmem.errors",
    "GeneratorSpec": "genmem.nets",
    "ImageSet": "genmem.data",
    "Memory": "genmem.memory",
    "Sampler": "genmem.sampler",
    "TrainingConfig": "genmem.config",
    "load_source": "genmem.data",
    "paper_config": "genmem.presets",
    "to_memory_labels": "genmem.alignment",
    "to_memory_pixels": "genmem.alignment",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'genmem' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
