"""The paper's baselines on tiny data: DGR trains on replay of old classes, MeRGAN's alignment pulls back."""

import copy

import torch

import genmem.critic

from genmem.benchmarks import baselines
from genmem.benchmarks.baselines import (BaselineReplay, PlainGenerator, _frozen_copy, alignment_loss, generate,
                                         learn_baseline_task)
from genmem.pixels import to_unit_range
from genmem.replay import ReplayStream

from tiny import TINY_SIZE, tiny_config, tiny_set

SEED = 3


def tiny_generator(classes: int = 3) -> PlainGenerator:
    return PlainGenerator(1, TINY_SIZE, classes, base_width=4, noise_dim=16, rng=torch.Generator().manual_seed(0))


def class_images(label: int) -> torch.Tensor:
    data = tiny_set(labels=(label,))
    return data.images


def task_of(*labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A task's images of `labels` and their generator conditions (here condition i is class i)."""
    data = tiny_set(labels=labels)
    return data.images, data.labels


def test_dgr_trains_the_new_generator_on_its_own_replay_of_old_classes(monkeypatch):
    generator = tiny_generator()
    learn_baseline_task(generator, *task_of(0), tiny_config(seed=SEED), progress=False)
    before = copy.deepcopy(generator)
    replay = to_unit_range(generate(before, 0, len(class_images(1)), SEED)).flatten(1)
    batches = []
    real_penalty = genmem.critic.gradient_penalty
    monkeypatch.setattr(genmem.critic, "gradient_penalty",
                        lambda critic, real, fake, rng: batches.append(real.detach()) or real_penalty(critic, real,
                                                                                                      fake, rng))
    learn_baseline_task(generator, *task_of(1), tiny_config(seed=SEED), progress=False)
    assert batches, "the critic was trained"
    for real in batches:
        new, old = real.flatten(1).chunk(2)
        # the second half of every "real" batch is the previous generator's replay of class 0
        assert torch.cdist(old, replay).min(1).values.max() == 0
        assert torch.cdist(new, replay).min(1).values.min() > 0
    assert not all(torch.equal(a, b) for a, b in zip(before.parameters(), generator.parameters()))


def test_mergan_alignment_is_zero_at_the_start_and_pulls_towards_the_old_generator():
    generator = tiny_generator()
    learn_baseline_task(generator, *task_of(0), tiny_config(seed=SEED), progress=False)
    previous = _frozen_copy(generator)
    stats = [norm.running_mean.clone() for norm in previous.norms]
    generator.train()
    noise = torch.randn(12, 16, generator=torch.Generator().manual_seed(1))
    old = torch.zeros(12, dtype=torch.long)
    assert alignment_loss(generator(noise, old), previous(noise, old)).item() == 0.0

    with torch.no_grad():
        for p in generator.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    loss = alignment_loss(generator(noise, old), previous(noise, old))
    assert loss.item() > 0
    loss.backward()
    towards_old = sum(float((-p.grad * (q - p)).sum().detach()) for p, q in
                      zip(generator.parameters(), previous.parameters()) if p.grad is not None)
    assert towards_old > 0, "a gradient step moves the new generator towards the old one"
    assert all(torch.equal(a, norm.running_mean) for a, norm in zip(stats, previous.norms)), "old one stays fixed"


def test_alignment_keeps_old_classes_closer_to_what_they_were():
    start = tiny_generator()
    learn_baseline_task(start, *task_of(0), tiny_config(seed=SEED), progress=False)
    drift = {}
    for weight in (0.0, 1.0):
        generator = copy.deepcopy(start)
        learn_baseline_task(generator, *task_of(1), tiny_config(seed=SEED, epochs=4),
                            baselines.Baseline(alignment_weight=weight), progress=False)
        drift[weight] = float((generate(generator, 0, 32, 0).float() - generate(start, 0, 32, 0).float()).abs().mean())
    assert drift[1.0] < drift[0.0]


def test_a_baseline_generator_serves_reproducible_class_balanced_replay_streams():
    source = BaselineReplay(tiny_generator(), [5, 7, 9], {5: "five", 7: "seven", 9: "nine"}, "test")
    first = list(ReplayStream(source, classes=[5, 7], batch_size=6, batches=2, seed=4))
    again = list(ReplayStream(source, classes=["five", "seven"], batch_size=6, batches=2, seed=4))
    for (images, labels), (same, same_labels) in zip(first, again):
        assert images.dtype == torch.uint8 and images.shape == (6, 1, TINY_SIZE, TINY_SIZE)
        assert sorted(labels.tolist()) == [5, 5, 5, 7, 7, 7]
        assert torch.equal(images, same) and torch.equal(labels, same_labels)
    assert not torch.equal(first[0][0], first[1][0])


def test_ewc_trains_without_replay_and_holds_the_weights_old_tasks_need(monkeypatch):
    start = tiny_generator()
    ewc = baselines.Baseline(replay=False, ewc_weight=1e6)
    fisher = learn_baseline_task(start, *task_of(0), tiny_config(seed=SEED), ewc, progress=False)["fisher"]
    assert set(fisher) == {name for name, _ in start.named_parameters()}
    assert all(f.min() >= 0 for f in fisher.values()) and sum(float(f.sum()) for f in fisher.values()) > 0
    anchor = {name: p.detach().clone() for name, p in start.named_parameters()}
    assert float(baselines.ewc_penalty(start, fisher, anchor).detach()) == 0.0

    rows = []
    real_penalty = genmem.critic.gradient_penalty
    monkeypatch.setattr(genmem.critic, "gradient_penalty",
                        lambda critic, real, fake, rng: rows.append(len(real)) or real_penalty(critic, real, fake, rng))
    moved, summed = {}, None
    for weight in (0.0, 1e6):
        generator = copy.deepcopy(start)
        report = learn_baseline_task(generator, *task_of(1), tiny_config(seed=SEED),
                                     baselines.Baseline(replay=False, ewc_weight=weight), fisher, progress=False)
        moved[weight] = float(baselines.ewc_penalty(generator, fisher, anchor).detach())
        summed = report["fisher"]
    assert max(rows) <= tiny_config().batch_size, "no replay joins the task's real images"
    assert moved[1e6] < moved[0.0]
    assert all(torch.all(summed[name] >= fisher[name]) for name in fisher), "Fisher information adds up over tasks"


def test_baselines_take_dgms_lazy_penalty(monkeypatch):
    calls = []
    real_penalty = genmem.critic.gradient_penalty
    monkeypatch.setattr(genmem.critic, "gradient_penalty",
                        lambda *args: calls.append(1) or real_penalty(*args))
    config = tiny_config(seed=SEED, epochs=3, gp_every=4)
    images, conditions = task_of(0)
    learn_baseline_task(tiny_generator(), images, conditions, config, progress=False)
    steps = config.epochs * -(-len(images) // config.batch_size)
    assert steps > 4 and len(calls) == -(-steps // 4)


def test_baselines_sample_from_the_average_of_every_weight_with_statistics_for_it(monkeypatch):
    averages = []

    class Recorded(baselines.ParameterAverage):
        def __init__(self, *args):
            super().__init__(*args)
            averages.append(self)

    monkeypatch.setattr(baselines, "ParameterAverage", Recorded)
    last, averaged = tiny_generator(), tiny_generator()
    learn_baseline_task(last, *task_of(0), tiny_config(seed=SEED, average_decay=None), progress=False)
    learn_baseline_task(averaged, *task_of(0), tiny_config(seed=SEED, average_decay=0.9), progress=False)
    (average,) = averages
    assert [p.data_ptr() for p in average.tensors] == [p.data_ptr() for p in averaged.parameters()]
    assert all(torch.equal(p, s) for p, s in zip(averaged.parameters(), average.shadow))
    assert not all(torch.equal(a, b) for a, b in zip(last.parameters(), averaged.parameters()))
    # eval-mode statistics were re-estimated for the averaged weights, after training
    config = tiny_config()
    assert all(int(norm.num_batches_tracked) == config.recalibration_batches for norm in averaged.norms)
    assert all(int(norm.num_batches_tracked) > config.recalibration_batches for norm in last.norms)


def test_dgr_learns_tasks_of_two_classes_and_replays_both_earlier_ones(monkeypatch):
    generator = tiny_generator(classes=4)
    batches = []
    real_step = baselines.BaselineSteps.critic_step

    def recorded(self, real, cls, step):
        batches.append((real.detach().flatten(1), cls.clone(), self.critic.classes.out_features))
        return real_step(self, real, cls, step)

    monkeypatch.setattr(baselines.BaselineSteps, "critic_step", recorded)
    learn_baseline_task(generator, *task_of(0, 1), tiny_config(seed=SEED), progress=False)
    assert {outputs for _, _, outputs in batches} == {2}, "the first task's critic tells its two classes apart"
    assert set(torch.cat([cls for _, cls, _ in batches]).tolist()) == {0, 1}
    before, batches = copy.deepcopy(generator), []
    images, conditions = task_of(2, 3)
    replay = {c: to_unit_range(generate(before, c, len(images) // 2, SEED)).flatten(1) for c in (0, 1)}
    learn_baseline_task(generator, images, conditions, tiny_config(seed=SEED), progress=False)
    for real, cls, outputs in batches:
        assert outputs == 4
        (new, old), (new_cls, old_cls) = real.chunk(2), cls.chunk(2)
        assert set(new_cls.tolist()) <= {2, 3} and set(old_cls.tolist()) <= {0, 1}
        exact = "donot_use_mm_for_euclid_dist"
        assert torch.cdist(new, to_unit_range(images).flatten(1), compute_mode=exact).min(1).values.max() == 0
        for c in (0, 1):  # every replayed image is the previous generator's image of the class it is labelled
            if (old_cls == c).any():
                assert torch.cdist(old[old_cls == c], replay[c], compute_mode=exact).min(1).values.max() == 0
    assert set(torch.cat([cls.chunk(2)[1] for _, cls, _ in batches]).tolist()) == {0, 1}
