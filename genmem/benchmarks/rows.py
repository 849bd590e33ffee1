"""A finished protocol run's headline figures as rows of BENCHMARKS.csv (genmem.benchmarks.record.COLUMNS).

One row per method: its accuracy after the last task (metric A10 for the
paper's protocol of ten tasks of one class, `final` otherwise), joint
training's in the same run beside it, and the method's own seconds: those
it alone spent plus the shared work it stands on (DGM's GAN for every figure
of the memory; the order of the real images kept for the buffer and hybrid).
DGM's methods are named by the run's memory (dgm-replay of a DGMw run is
dgmw-replay; of a residual DGMw memory, dgmw-resnet-replay). A memory stored
in another type than the default is named by the profile (`quick, float32
storage`), and so are another architecture and class-conditional BatchNorms,
so that joint training's and the baselines' rows of such a run stand apart
from the default run's. One more row
gives the bytes DGM's last version stores for replay (metric payload_bytes,
method the memory's name), the budget that the buffer's scales multiply.
"""

from __future__ import annotations

from genmem.benchmarks.footprint import DEFAULT_MEMORY, payload_bytes
from genmem.benchmarks.methods import method_class, registered_name
from genmem.benchmarks.methods.buffer import Buffer
from genmem.benchmarks.methods.dgm import DgmMethod
from genmem.benchmarks.results import setting


def data_key(results: dict) -> str:
    """The data set as BENCHMARKS.csv names it: the source's kind (mnist, cifar10), or a folder's or file's name."""
    kind = results["data"]["source"].partition(":")[0]
    return results["data"]["name"] if kind in ("folder", "npz") else kind


def class_of(method: str) -> type | None:
    """The class of a method named in results.json (an instance's, such as buffer-x0.25's); None if unknown."""
    registered = registered_name(method)
    return method_class(registered) if registered else None


def dgm_key(results: dict) -> str:
    """DGM's memory as BENCHMARKS.csv names it: the variant, and the architecture where it is not the DCGAN."""
    arch = setting(results, "arch")
    return results["variant"] + ("" if arch == "dcgan" else f"-{arch}")


def profile_key(results: dict) -> str:
    """The run's profile as BENCHMARKS.csv names it: its budget's name, then the architecture where it is not
    the DCGAN and class-conditional BatchNorms (docs/ALGORITHM.md §16) where the memory has them, so that every
    figure of such a run, joint training's too, stands apart from the default's as a storage type's or a
    --gan-setting's does."""
    arch = setting(results, "arch")
    names = [results["profile"]["name"], *([f"{arch} architecture"] if arch != "dcgan" else []),
             *(["class-conditional BatchNorm"] if setting(results, "class_norm") else [])]
    return ", ".join(names)


def csv_name(method: str, results: dict) -> str:
    """A method's name in BENCHMARKS.csv: DGM's by the run's memory (dgmw-solver, dgma-hybrid-k20); a buffer sized
    by a memory other than DGMw's DCGAN by that memory too (dgma-buffer), so that it does not replace the buffer
    of the default memory's run of the same profile and seed."""
    kind, memory = class_of(method), dgm_key(results)
    if kind is not None and issubclass(kind, DgmMethod):
        return f"{memory}-{method.removeprefix('dgm-')}"
    sized_by_memory = (setting(results, "method_options") or {}).get("buffer_bytes") is None
    if kind is not None and issubclass(kind, Buffer) and sized_by_memory and memory != DEFAULT_MEMORY:
        return f"{memory}-{method}"
    return method


def method_seconds(results: dict, method: str) -> float | None:
    """The seconds `method` spent alone (Run.timings keys that start with its name) and on the shared work it
    stands on; None where the run timed none of it."""
    timings, kind = results.get("seconds", {}), class_of(method)
    shared = kind.shared_seconds if kind is not None else ()
    parts = [value for key, value in timings.items() if key.startswith(f"{method} ") or key in shared]
    return round(sum(parts), 1) if parts else None


def protocol_rows(results: dict, hardware: str, commit: str, command: str) -> list[dict]:
    """The rows of BENCHMARKS.csv for every method of a finished run (record.record_rows writes them).

    hardware, commit, command: this invocation's. A resumed run's rows name the command that started it (the one
    that reproduces the figures) and both commits where they differ."""
    started = results.get("started_by") or {}
    command = started.get("command", command)
    if started.get("commit", commit) != commit:
        commit = f"{started['commit']}, resumed at {commit}"
    curves = results["accuracy"]
    tasks, per_task = len(next(iter(curves.values()))), results.get("classes_per_task", 1)
    metric = "A10" if (tasks, per_task) == (10, 1) else "final"
    joint = curves["joint"][-1] if "joint" in curves else None
    common = {"data": data_key(results), "tasks": f"{tasks}x{per_task}", "profile": profile_key(results),
              "hardware": hardware, "commit": commit, "seeds": results["seed"], "command": command}
    rows = [common | {"method": csv_name(method, results), "metric": metric, "value": curve[-1], "joint": joint,
                      "seconds": method_seconds(results, method)} for method, curve in curves.items()]
    payload = payload_bytes(results)
    if payload is not None:
        rows.append(common | {"method": dgm_key(results), "metric": "payload_bytes", "value": payload,
                              "seconds": results["seconds"].get("gan")})
    return rows
