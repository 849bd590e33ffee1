"""The DP levers (genmem.private): an image's augmented views count as one clipped example; with every lever on,
old classes stay bit-identical, the recorded epsilon is the accountant's, and `genmem info` states the total; the
critic's default loss and batch size follow epsilon."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from opacus.accountants import RDPAccountant

from genmem.cli.render import render_summary
from genmem.memory import Memory
from genmem.nets import Discriminator
from genmem.config import DP_LOSSES
from genmem.private import BATCH_SIZES, SMALL_BATCHES_FROM, WASSERSTEIN_UP_TO, PrivateCritic, dp_config
from genmem.summary import summarise
from tiny import TINY_SIZE, tiny_config, tiny_set

LEVERS = dict(dp_augmentations=3, critic_augment="translation", dp_activation="tanh", dp_loss="logistic",
              generator_steps=2)


def row_gradient(module: torch.nn.Module, image: torch.Tensor, loss_of) -> torch.Tensor:
    """The flat gradient of one row's own loss, computed alone (GroupNorm mixes nothing between rows)."""
    module.zero_grad(set_to_none=True)
    score, logits = module(image[None])
    loss_of(score, logits).backward()
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in module.parameters()])


@pytest.mark.parametrize("loss", ["wasserstein", "logistic"])
def test_an_images_views_are_averaged_into_one_example_before_it_is_clipped(loss):
    views, images, bound = 3, 5, 0.5
    config = tiny_config(dp_epsilon=4.0, solver="replay", dp_augmentations=views, critic_augment="translation",
                         dp_activation="tanh", dp_loss=loss, dp_max_grad_norm=bound)
    rng = torch.Generator().manual_seed(0)
    critic = PrivateCritic(Discriminator(1, TINY_SIZE, 2, width=4), config, None, 4, 48, rng)
    real = torch.rand(images * views, 1, TINY_SIZE, TINY_SIZE, generator=rng) * 2 - 1  # each image's views in turn
    targets = torch.randint(0, 2, (images,), generator=rng)
    fake = torch.rand(config.batch_size, 1, TINY_SIZE, TINY_SIZE, generator=rng) * 2 - 1
    module = critic.network._module
    real_term = (lambda s: F.softplus(-s).sum()) if loss == "logistic" else (lambda s: -s.sum())
    fake_term = (lambda s: F.softplus(s).sum()) if loss == "logistic" else (lambda s: s.sum())
    expected = [torch.stack([row_gradient(module, real[i * views + k],
                                          lambda s, z: F.cross_entropy(z, targets[i, None]) + real_term(s))
                             for k in range(views)]).mean(0) for i in range(images)]
    expected += [row_gradient(module, image, lambda s, z: fake_term(s)) for image in fake]
    seen = {}

    def before_adam(optimiser, args, kwargs):
        seen["examples"] = torch.cat([g.flatten(1) for g in critic.optimiser.grad_samples], 1)
        seen["summed"] = torch.cat([p.summed_grad.flatten() for p in critic.optimiser.params])

    critic.optimiser.original_optimizer.register_step_pre_hook(before_adam)
    critic.step(real, targets, fake, 0, torch.Generator().manual_seed(1))

    expected = torch.stack(expected)
    assert len(seen["examples"]) == images + len(fake), "one example per real image, not per view"
    # float32: the batched and the one-row passes sum in different orders, so gradients near 0 differ by ~1e-6
    torch.testing.assert_close(seen["examples"], expected, rtol=1e-4, atol=1e-5)
    norms = expected.norm(dim=1)
    assert (norms[:images] > bound).any(), "the test must clip some real images"
    clipped = expected * (bound / norms).clamp(max=1.0)[:, None]  # no example moves the sum by more than the bound
    torch.testing.assert_close(seen["summed"], clipped.sum(0), rtol=1e-4, atol=1e-5)


def test_the_tempered_critic_has_no_leaky_relu_left():
    config = tiny_config(dp_epsilon=4.0, solver="replay", dp_activation="tanh")
    critic = PrivateCritic(Discriminator(1, TINY_SIZE, 1, width=4), config, None, 4, 48, torch.Generator())
    kinds = {type(m) for m in critic.network.modules()}
    assert torch.nn.Tanh in kinds and torch.nn.LeakyReLU not in kinds and torch.nn.GroupNorm in kinds


@pytest.fixture(scope="module")
def lever_memory(tmp_path_factory):
    """Two DP tasks with every lever on (classes 0 and 1, then 2), and class 0's images drawn after the first."""
    memory = Memory(tmp_path_factory.mktemp("dp-levers") / "m")
    for seed, classes in enumerate((["0", "1"], ["2"])):
        memory.learn_task(tiny_set(), classes, config=tiny_config(seed=seed, dp_epsilon=4.0, solver="replay",
                                                                  **LEVERS),
                          image_size=TINY_SIZE, base_width=2, progress=False)
        if seed == 0:
            first, _ = memory.sampler().sample({"0": 16, "1": 16}, seed=3)
    return memory, first


def test_every_lever_on_forgets_nothing_bit_exactly(lever_memory):
    memory, first = lever_memory
    after, _ = memory.sampler().sample({"0": 16, "1": 16}, seed=3)
    assert torch.equal(first, after)


def test_the_recorded_epsilon_is_the_accountants_for_the_recorded_history_and_the_levers_are_recorded(lever_memory):
    memory, _ = lever_memory
    for task in memory.manifest()["tasks"]:
        record, training = task["privacy"], task["training"]
        accountant = RDPAccountant()
        accountant.history = [tuple(entry) for entry in record["history"]]
        assert record["epsilon"] == pytest.approx(accountant.get_epsilon(record["delta"], alphas=record["orders"]),
                                                  rel=1e-12)
        assert record["history"] == [[record["noise_multiplier"], record["sample_rate"], record["steps"]]]
        assert (record["augmentations"], record["activation"], record["loss"]) == (3, "tanh", "logistic")
        assert record["weight_clip"] is None, "the logistic loss clips no weights"
        assert {k: training[k] for k in LEVERS} == LEVERS


def test_genmem_info_states_the_total_for_an_image_in_one_task_and_for_a_person_in_every_task(lever_memory):
    memory, _ = lever_memory
    records = [task["privacy"] for task in memory.manifest()["tasks"]]
    summary = summarise(memory)
    budget = summary["privacy"]["budget"]
    assert budget["per_task"]["epsilon"] == max(r["epsilon"] for r in records)
    accountant = RDPAccountant()
    accountant.history = [tuple(entry) for r in records for entry in r["history"]]
    composed = accountant.get_epsilon(1e-5, alphas=records[0]["orders"])
    assert budget["composed"] == {"epsilon": pytest.approx(composed, rel=1e-12), "delta": 1e-5}
    assert max(r["epsilon"] for r in records) < composed < sum(r["epsilon"] for r in records)
    text = render_summary(summary)
    assert f"an image in one task: ({budget['per_task']['epsilon']:.2f}, 1e-05)-DP at most" in text
    assert f"each of the 2 DP tasks: ({composed:.2f}, 1e-05)-DP by RDP composition" in text


def test_two_private_runs_of_one_seed_differ_because_the_noise_is_secret(tmp_path):
    """With the noise drawn from the recorded seed, anyone could replay training with and without an image and
    tell membership exactly; the version must not be a function of the data and the manifest."""
    versions = []
    for name in ("a", "b"):
        memory = Memory(tmp_path / name)
        memory.learn_task(tiny_set(), ["0"], config=tiny_config(dp_epsilon=4.0, solver="replay"),
                          image_size=TINY_SIZE, base_width=2, progress=False)
        versions.append(memory.store.read()[1]["generator.safetensors"])
        assert memory.manifest()["tasks"][-1]["privacy"]["noise_source"] == "operating system entropy, not recorded"
    assert versions[0] != versions[1]


def test_learn_task_with_dp_epsilon_takes_genmems_dp_defaults_where_no_option_is_given(tmp_path, tiny_npz):
    from click.testing import CliRunner

    from genmem.cli.main import main
    from genmem.private import dp_defaults

    result = CliRunner().invoke(main, ["learn-task", str(tmp_path / "m"), "--data", f"npz:{tiny_npz}", "--classes",
                                       "0", "--image-size", "16", "--base-width", "2", "--gan-epochs", "1",
                                       "--solver", "none", "--dp-epsilon", "1", "--dp-activation", "tanh",
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "genmem's DP defaults" in result.output and "with the wasserstein loss, DP-SGD at epsilon 1" in result.output
    training = Memory(tmp_path / "m").manifest()["tasks"][-1]["training"]
    given = {"epochs": 1, "solver": "none", "dp_epsilon": 1.0, "dp_activation": "tanh"}
    assert {k: training[k] for k in given} == given
    defaults = dp_defaults(1.0)
    assert {k: training[k] for k in defaults if k not in given} == {k: v for k, v in defaults.items()
                                                                     if k not in given}
    assert (training["dp_loss"], training["batch_size"]) == ("wasserstein", BATCH_SIZES[0]), \
        "at epsilon 1 genmem's critic loss is the Wasserstein one, its batches the larger"


@pytest.mark.parametrize(("epsilon", "loss", "batch"), [
    (0.5, "wasserstein", BATCH_SIZES[0]), (WASSERSTEIN_UP_TO, "wasserstein", BATCH_SIZES[0]),
    (WASSERSTEIN_UP_TO * 1.01, "logistic", BATCH_SIZES[0]), (SMALL_BATCHES_FROM * 0.99, "logistic", BATCH_SIZES[0]),
    (SMALL_BATCHES_FROM, "logistic", BATCH_SIZES[1]), (10.0, "logistic", BATCH_SIZES[1])])
def test_genmems_dp_critic_loss_and_batch_follow_epsilon_unless_given(epsilon, loss, batch):
    assert (dp_config(epsilon).dp_loss, dp_config(epsilon).batch_size) == (loss, batch)
    other = next(name for name in DP_LOSSES if name != loss)
    assert (dp_config(epsilon, dp_loss=other, batch_size=7).dp_loss, dp_config(epsilon, batch_size=7).batch_size) \
        == (other, 7)


def test_generator_steps_update_the_generator_that_many_times_per_critic_step(tmp_path, monkeypatch):
    from genmem.learn import GanStep

    calls = []
    step = GanStep.generator_step
    monkeypatch.setattr(GanStep, "generator_step", lambda self, *args: calls.append(1) or step(self, *args))
    memory = Memory(tmp_path / "m")
    memory.learn_task(tiny_set(), ["0", "1"], config=tiny_config(dp_epsilon=4.0, solver="none", generator_steps=3),
                      image_size=TINY_SIZE, base_width=2, progress=False)
    task = memory.manifest()["tasks"][-1]
    assert len(calls) == 3 * task["iterations"] == 3 * task["privacy"]["steps"]
