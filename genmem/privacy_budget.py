"""What a memory of differentially private tasks guarantees one person: per task, and over several tasks.

Each DP task is (epsilon, delta)-DP with respect to its own training images
(genmem.private), and every task reads only its own images plus the earlier
versions' published output. So an image that appears in one task is
protected by that task's guarantee alone, whatever the other tasks did: the
memory's figure for it is the largest epsilon of any task.

A person whose images appear in several tasks (one image in each, say: two
classes of their own photos) is protected by the composition of those
tasks' guarantees. Two readings are given:

    composed  Opacus's RDP accountant over the union of the tasks' accountant histories (noise
              multiplier, sample rate, steps): the Renyi divergences add up order by order, and the sum
              is turned into (epsilon, delta) once, at the smallest delta of the tasks. The tight figure.
    basic     the sum of the tasks' epsilons and of their deltas (basic composition of (epsilon, delta)-DP):
              a looser bound that needs no accountant.

Both assume one image of the person per task; k images in one task weaken
that task's guarantee by group privacy (PRIVACY.md).
"""

from __future__ import annotations

from genmem.private import ORDERS


def task_history(record: dict) -> list[tuple[float, float, int]]:
    """A task's accountant history [(noise multiplier, sample rate, steps)]: as recorded, or, for versions that
    recorded only the one setting, that setting for all its steps."""
    if "history" in record:
        return [(float(sigma), float(rate), int(steps)) for sigma, rate, steps in record["history"]]
    return [(float(record["noise_multiplier"]), float(record["sample_rate"]), int(record["steps"]))]


def composed_epsilon(records: list[dict], delta: float) -> float:
    """The epsilon at `delta` of the tasks' mechanisms composed: Opacus's RDP accountant over their histories."""
    from opacus.accountants import RDPAccountant  # an optional dependency: genmem[dp]

    accountant = RDPAccountant()
    accountant.history = [entry for record in records for entry in task_history(record)]
    return accountant.get_epsilon(delta, alphas=list(ORDERS))


def memory_budget(records: list[dict | None]) -> dict | None:
    """The memory's guarantees from its tasks' privacy records (None for a task without DP); None if no task
    has DP. `composed` is None where Opacus is not installed (the basic reading still holds)."""
    private = [(task, record) for task, record in enumerate(records) if record]
    if not private:
        return None
    largest_task, largest = max(private, key=lambda item: item[1]["epsilon"])
    delta = min(record["delta"] for _, record in private)
    try:
        composed = {"epsilon": composed_epsilon([record for _, record in private], delta), "delta": delta}
    except ImportError:
        composed = None
    return {
        "dp_tasks": [task for task, _ in private],
        "tasks_without_dp": [task for task, record in enumerate(records) if not record],
        "per_task": {"epsilon": largest["epsilon"], "delta": largest["delta"], "task": largest_task},
        "composed": composed,
        "basic": {"epsilon": sum(record["epsilon"] for _, record in private),
                  "delta": sum(record["delta"] for _, record in private)},
    }
