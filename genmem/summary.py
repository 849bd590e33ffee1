"""A memory at a glance, from manifests alone: versions, classes, growth, capacity, storage.

`genmem info` prints it, `genmem info --json` and the server's info route return it as JSON.
"""

from __future__ import annotations

import math

from genmem.artifact import (MASKS_FILE, SAMPLES_FILE, WEIGHTS_FILE, replay_quality, solver_mode, task_storage_dtype,
                             spec_from_manifest)
from genmem.checkpoint import pending
from genmem.expansion import plan_widths
from genmem.memory import Memory
from genmem.store import read_audits
from genmem.nets import mask_shapes
from genmem.privacy_budget import memory_budget


def summarise(memory: Memory, version: str | None = None) -> dict:
    """The summary of a version (latest by default); every file's checksum is verified on the way."""
    manifest, _ = memory.store.read(version)
    g = manifest["generator"]
    last = manifest["tasks"][-1]
    spec = spec_from_manifest(manifest)
    initial_free = [math.prod(shape) for shape in mask_shapes(spec, spec.widths)]
    next_widths = plan_widths(g["variant"], tuple(last["widths"]), g["noise_dim"],
                              [layer["new"] for layer in last["capacity"]], spec.wires)
    return {
        "memory": str(memory.path),
        "version": manifest["version"],
        "versions": memory.versions(),
        "parent": manifest["parent"],
        "created": manifest["created"],
        "generator": g,
        "capacity_unit": "units" if g["variant"] == "dgma" else "weights",
        "classes": manifest["classes"],
        "tasks": [{k: task[k] for k in ("task", "classes", "widths", "capacity", "parameters", "data", "seconds")}
                  | {"storage_dtype": task_storage_dtype(task)}  # the type it rounded its weights to (§19)
                  for task in manifest["tasks"]],
        "next_widths": list(next_widths),
        "free_per_layer_initially": initial_free,
        "quality": replay_quality(manifest),
        "privacy": {"solver": solver_mode(manifest), "about": (manifest.get("solver") or {}).get("about"),
                    "tasks": [{"task": task["task"], "dp": task.get("privacy"),
                               "held_out": ((task.get("data") or {}).get("holdout") or {}).get("count", 0)}
                              for task in manifest["tasks"]],
                    "budget": memory_budget([task.get("privacy") for task in manifest["tasks"]])},
        "audits": [{k: audit[k] for k in ("path", "members", "non_members", "non_members_source", "attacks",
                                          "worst_auc", "copy_rate")} for audit in read_audits(memory.store, version)],
        "samples": str(memory.store.versions_dir / manifest["version"] / SAMPLES_FILE)
                   if SAMPLES_FILE in manifest["files"] else None,
        # A task stopped after a checkpoint, to be learned on top of the latest version (none for older ones).
        "unfinished_task": pending(memory.store) if manifest["version"] == memory.versions()[-1] else None,
        "storage_bytes": {"weights": manifest["files"][WEIGHTS_FILE]["bytes"],
                          "masks": manifest["files"][MASKS_FILE]["bytes"],
                          "total": sum(f["bytes"] for f in manifest["files"].values())},
    }

