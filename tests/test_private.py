"""Differentially private tasks: the recorded epsilon is Opacus's for the recorded settings; nothing is forgotten."""

from __future__ import annotations

import pytest
import torch
from opacus.accountants import RDPAccountant
from scipy import stats

from genmem.errors import InvalidSetting
from genmem.memory import Memory
from genmem.nets import Discriminator
from genmem.private import PrivateCritic
from tiny import TINY_SIZE, tiny_config, tiny_set


@pytest.fixture(scope="module")
def private_memory(tmp_path_factory):
    """Two DP tasks (classes 0 and 1, then 2), and class 0's images drawn after the first."""
    memory = Memory(tmp_path_factory.mktemp("dp") / "m")
    for seed, classes in enumerate((["0", "1"], ["2"])):
        memory.learn_task(tiny_set(), classes, config=tiny_config(seed=seed, dp_epsilon=4.0, solver="replay"),
                          image_size=TINY_SIZE, base_width=2, progress=False)
        if seed == 0:
            first, _ = memory.sampler().sample({"0": 16, "1": 16}, seed=3)
    return memory, first


def test_the_recorded_epsilon_is_the_accountants_for_the_recorded_settings(private_memory):
    memory, _ = private_memory
    for task in memory.manifest()["tasks"]:
        record = task["privacy"]
        accountant = RDPAccountant()
        accountant.history = [(record["noise_multiplier"], record["sample_rate"], record["steps"])]
        spent = accountant.get_epsilon(record["delta"], alphas=record["orders"])
        assert record["epsilon"] == pytest.approx(spent, rel=1e-12)
        assert record["epsilon"] <= record["target_epsilon"] == 4.0
        assert record["sample_rate"] == 12 / (24 * len(task["classes"]))
        assert record["steps"] == 2 * int(1 / record["sample_rate"]) and record["max_grad_norm"] == 1.0
        assert "critic" not in task["final_losses"] and "wasserstein" not in task["final_losses"]
    card = (memory.path / "versions" / "v0002" / "MODEL_CARD.md").read_text()
    assert f"({record['epsilon']:.2f}, 1e-05)-differentially private with respect to its 24 training images" in card


def test_the_critics_gradients_are_clipped_per_example_and_noised_as_recorded():
    """DP-SGD itself, not only its bookkeeping: what the critic's Adam receives from one step is the sum of every
    row's gradient clipped to the recorded norm, plus Gaussian noise of the recorded multiplier times that norm,
    over the expected batch size."""
    bound = 12.0  # these rows' gradients have norms of about 8 to 18: some are clipped, some pass whole
    config = tiny_config(dp_epsilon=4.0, solver="replay", dp_max_grad_norm=bound)
    rng = torch.Generator().manual_seed(0)
    replay = torch.rand(1, 8, 1, TINY_SIZE, TINY_SIZE, generator=rng) * 2 - 1  # one earlier class
    critic = PrivateCritic(Discriminator(1, TINY_SIZE, 3, width=4), config, replay, 4, 48, rng)
    seen = {}

    def before_adam(optimiser, args, kwargs):
        seen["rows"] = [g.clone() for g in critic.optimiser.grad_samples]  # Opacus's per-example gradients
        seen["given"] = [p.grad.clone() for p in critic.optimiser.params]

    critic.optimiser.original_optimizer.register_step_pre_hook(before_adam)
    real, fake = (torch.rand(12, 1, TINY_SIZE, TINY_SIZE, generator=rng) * 2 - 1 for _ in range(2))
    critic.step(real, torch.randint(1, 3, (12,), generator=rng), fake, 0, rng)
    record = critic.record()
    assert record["max_grad_norm"] == bound and record["noise_multiplier"] > 0.5

    rows = seen["rows"]
    assert all(len(g) == 12 + 12 + 4 for g in rows), "every real, generated and replayed row is an example"
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in rows], 1).norm(dim=1)
    assert (norms > bound).any() and (norms < bound).any()
    factor = (bound / norms).clamp(max=1.0)
    clipped = [torch.einsum("i,i...->...", factor, g) for g in rows]
    noise = torch.cat([(given * config.batch_size - total).flatten() for given, total in zip(seen["given"], clipped)])
    spread = record["noise_multiplier"] * record["max_grad_norm"]
    assert len(noise) > 1000
    assert abs(noise.std().item() / spread - 1) < 5 / (2 * len(noise)) ** 0.5  # five standard errors
    assert abs(noise.mean().item()) < 5 * spread / len(noise) ** 0.5
    assert stats.kstest((noise / spread).double().numpy(), "norm").pvalue > 1e-3


def test_a_private_task_forgets_nothing_bit_exactly(private_memory):
    memory, first = private_memory
    after, _ = memory.sampler().sample({"0": 16, "1": 16}, seed=3)
    assert torch.equal(first, after)


def test_a_private_task_refuses_a_solver_trained_on_real_images(tmp_path):
    with pytest.raises(InvalidSetting, match="--solver replay"):
        Memory(tmp_path / "m").learn_task(tiny_set(), ["0"], config=tiny_config(dp_epsilon=4.0),
                                          image_size=TINY_SIZE, base_width=2, progress=False)
    assert not (tmp_path / "m").exists()  # refused before anything was written


@pytest.mark.parametrize("epsilon, delta", [(float("inf"), 1e-5), (float("nan"), 1e-5), (0.0, 1e-5),
                                            (4.0, float("nan")), (4.0, 1.0)])
def test_a_guarantee_that_promises_nothing_is_refused(tmp_path, epsilon, delta):
    with pytest.raises(InvalidSetting, match="--dp-"):
        Memory(tmp_path / "m").learn_task(tiny_set(), ["0"], config=tiny_config(dp_epsilon=epsilon, dp_delta=delta,
                                                                               solver="replay"),
                                          image_size=TINY_SIZE, base_width=2, progress=False)
    assert not (tmp_path / "m").exists()
