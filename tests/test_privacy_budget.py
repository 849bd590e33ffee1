"""A memory's DP total (genmem.privacy_budget): the largest task for one image, the composition for a person."""

import pytest
from opacus.accountants import RDPAccountant

from genmem.cli.render import budget_lines
from genmem.private import ORDERS
from genmem.privacy_budget import memory_budget, task_history



def record(epsilon, sigma, rate, steps, history=True, delta=1e-5):
    found = {"epsilon": epsilon, "delta": delta, "noise_multiplier": sigma, "sample_rate": rate, "steps": steps}
    return {**found, "history": [[sigma, rate, steps]]} if history else found


def test_a_person_in_every_dp_task_gets_the_rdp_composition_of_their_histories():
    tasks = [record(9.9, 0.7, 0.05, 100), None, record(4.0, 1.0, 0.05, 100, history=False, delta=1e-6)]
    budget = memory_budget(tasks)
    assert budget["per_task"] == {"epsilon": 9.9, "delta": 1e-5, "task": 0}
    assert budget["dp_tasks"] == [0, 2] and budget["tasks_without_dp"] == [1]
    accountant = RDPAccountant()
    accountant.history = [(0.7, 0.05, 100), (1.0, 0.05, 100)]  # an older record without history: its one setting
    assert budget["composed"] == {"epsilon": pytest.approx(accountant.get_epsilon(1e-6, alphas=list(ORDERS))),
                                  "delta": 1e-6}, "at the smallest delta of the tasks"
    assert budget["basic"] == {"epsilon": pytest.approx(13.9), "delta": pytest.approx(1.1e-5)}
    lines = budget_lines(budget)
    assert "an image in one task: (9.90, 1e-05)-DP at most (task 0)" in lines[0]
    assert f"each of the 2 DP tasks: ({budget['composed']['epsilon']:.2f}, 1e-06)-DP by RDP" in lines[1]
    assert "task(s) 1, learned without DP" in lines[2]


def test_composing_a_task_with_itself_costs_less_than_adding_its_epsilons():
    one = record(10.0, 0.67, 0.047, 105)
    budget = memory_budget([one] * 10)
    assert one["epsilon"] < budget["composed"]["epsilon"] < budget["basic"]["epsilon"] == pytest.approx(100.0)
    assert task_history(one) == [(0.67, 0.047, 105)]


def test_a_memory_without_dp_has_no_budget_and_info_says_nothing_of_one():
    assert memory_budget([None, None]) is None and budget_lines(None) == []
