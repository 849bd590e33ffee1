"""The critic's projection head, hinge loss and spectral norm: what each computes, that each trains a task, that old
classes stay bit-identical with them on, and that the settings are recorded and checked."""

import pytest
import torch
from safetensors.torch import load as load_safetensors
from torch import nn

import genmem.critic
from genmem.artifact import SOLVER_FILE, decode_solver
from genmem.checkpoint import Checkpointing
from genmem.conditioning import ProjectionDiscriminator, ProjectionScore, build_critic
from genmem.config import check_settings
from genmem.critic import CriticStep, critic_loss, hinge_loss
from genmem.errors import InvalidSetting
from genmem.learn import learn_task
from genmem.memory import Memory
from genmem.nets import Discriminator, Generator

from tiny import TINY_NOISE, TINY_SIZE, tiny_config, tiny_set, tiny_spec

FULL = {"critic_head": "projection", "gan_loss": "hinge", "spectral_norm": True}
SETTINGS = [{"critic_head": "projection"}, {"critic_head": "projection", "class_loss_weight": 0.0},
            {"gan_loss": "hinge", "spectral_norm": True}, {**FULL, "critic_augment": "colour,translation,cutout"}]
IDS = ["projection+acgan", "projection", "hinge+sn", "projection+hinge+sn+diffaugment"]


def test_the_projection_score_of_a_class_reads_that_class_embedding_only():
    head = ProjectionScore(3, 2)
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        head.linear.bias.fill_(0.5)
        head.embed.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
    features = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    scores = head(features, torch.tensor([0, 1]))
    assert scores.tolist() == [1 + 0.5 + 2, 1 + 0.5 + 6]  # psi(phi) + <e_y, phi>

    scores[0].backward()
    assert head.embed.weight.grad[1].abs().sum() == 0 and head.embed.weight.grad[0].tolist() == [1.0, 2.0, 3.0]
    with torch.no_grad():
        head.embed.weight[1] = torch.tensor([5.0, -7.0, 9.0])
    assert head(features[:1], torch.tensor([0])).item() == 3.5, "another class's embedding changes nothing"
    with pytest.raises(ValueError, match="labels"):
        head(features, None)


def test_hinge_loss_on_hand_cases():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - real) = 0, 0.5, 2; relu(1 + fake) = 0, 1, 2
    assert hinge_loss(real, fake).item() == pytest.approx(2.5 / 3 + 3 / 3)
    assert hinge_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -4.0])).item() == 0, "past the margins"


def test_the_hinge_critic_has_no_gradient_penalty(monkeypatch):
    monkeypatch.setattr(genmem.critic, "gradient_penalty", lambda *args: pytest.fail("hinge takes no penalty"))
    critic = Discriminator(1, TINY_SIZE, 2, 4)
    real, fake = torch.randn(6, 1, TINY_SIZE, TINY_SIZE), torch.randn(6, 1, TINY_SIZE, TINY_SIZE)
    rng = torch.Generator().manual_seed(0)
    loss, gap, _ = critic_loss(critic, real, fake, 0, tiny_config(gan_loss="hinge", gp_every=1), rng)
    critic.eval()  # the same scores again: BatchNorm uses running statistics in training, so compare in eval
    loss, gap, _ = critic_loss(critic, real, fake, 0, tiny_config(gan_loss="hinge", gp_every=1), rng)
    score_real, score_fake = critic(real)[0], critic(fake)[0]
    assert loss.item() == pytest.approx(hinge_loss(score_real, score_fake).item())
    assert gap.item() == pytest.approx((score_real.mean() - score_fake.mean()).item())


def test_spectral_norm_keeps_the_critics_largest_singular_values_near_one_after_training():
    config = tiny_config(**FULL)
    rng = torch.Generator().manual_seed(0)
    critic = build_critic(config, rng, torch.device("cpu"), 1, TINY_SIZE, 3, 4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules()), "BatchNorm would undo the bound"
    step = CriticStep(critic, config, None, 4, classify=True)
    before = [p.detach().clone() for p in critic.parameters()]
    for index in range(30):
        labels = torch.randint(3, (12,), generator=rng)
        real = torch.randn(12, 1, TINY_SIZE, TINY_SIZE, generator=rng) + labels.view(-1, 1, 1, 1)
        step.step(real, labels, torch.randn(12, 1, TINY_SIZE, TINY_SIZE, generator=rng), index, rng)
    assert not all(torch.equal(a, b) for a, b in zip(before, critic.parameters())), "the critic trained"

    normalised = [m for m in critic.modules() if hasattr(m, "parametrizations")]
    assert len(normalised) == 4, "the trunk's two convolutions (16 px), the score head's linear layer and embedding"
    assert not hasattr(critic.classes, "parametrizations"), "the class head's logits keep their scale"
    critic.eval()  # no further power iteration: the weight the last step used
    for module in normalised:
        largest = torch.linalg.matrix_norm(module.weight.detach().flatten(1), ord=2).item()
        raw = torch.linalg.matrix_norm(module.parametrizations.weight.original.detach().flatten(1), ord=2).item()
        assert largest == pytest.approx(1.0, abs=0.05)
        assert abs(raw - 1.0) > 0.1, "not vacuous: the weight itself is not of norm 1"


def test_a_spectrally_normalised_critic_is_the_same_for_the_same_seed():
    config = tiny_config(**FULL)
    critics = [build_critic(config, torch.Generator().manual_seed(seed), torch.device("cpu"), 1, TINY_SIZE, 2, 4)
               for seed in (1, 1, 2)]
    states = [torch.cat([t.flatten() for t in c.state_dict().values()]) for c in critics]
    assert torch.equal(states[0], states[1]) and not torch.equal(states[0], states[2])


def learn(generator, data, labels, seed=0, **config):
    keep = torch.isin(data.labels, torch.tensor(labels))
    index = torch.tensor([labels.index(int(label)) for label in data.labels[keep]])
    return learn_task(generator, data.images[keep], index, len(labels), tiny_config("dgmw", seed=seed, **config),
                      progress=False)


@pytest.mark.parametrize("settings", SETTINGS, ids=IDS)
def test_each_head_and_loss_trains_a_task_and_old_classes_stay_bit_identical(settings):
    data = tiny_set(labels=(0, 1, 2, 3))
    plain, generator = Generator(tiny_spec("dgmw")), Generator(tiny_spec("dgmw"))
    learn(plain, data, [0, 1])
    report = learn(generator, data, [0, 1], **settings)  # task 0 holds two classes: the projection tells them apart
    noise = torch.randn(50, TINY_NOISE, generator=torch.Generator().manual_seed(5))
    classes = torch.arange(50) % 2
    with torch.no_grad():
        before = generator(noise, 0, classes)
        assert not torch.equal(before, plain(noise, 0, classes)), "the setting changed training"
    assert before.abs().max() <= 1 and all(torch.isfinite(torch.tensor(v)) for v in report.final_losses.values())

    learn(generator, data, [2], seed=1, **settings)
    learn(generator, data, [3], seed=2, **settings)
    with torch.no_grad():
        assert torch.equal(generator(noise, 0, classes), before)


def test_the_settings_are_recorded_and_a_solver_from_a_projection_critic_ships_no_score_head(tmp_path):
    memory = Memory(tmp_path / "m")
    config = tiny_config(critic_head="projection", gan_loss="hinge", solver_start="critic")
    version = memory.learn_task(tiny_set(), ["0", "1"], config=config, image_size=TINY_SIZE, base_width=2,
                                progress=False)
    manifest, files = memory.store.read(version)
    training = manifest["tasks"][-1]["training"]
    assert (training["critic_head"], training["gan_loss"], training["spectral_norm"]) == ("projection", "hinge", False)
    assert not any(name.startswith("critic.") for name in load_safetensors(files[SOLVER_FILE]))
    assert decode_solver(manifest, files)(torch.zeros(2, 1, TINY_SIZE, TINY_SIZE)).shape == (2, 2)


@pytest.mark.parametrize("settings, processes, message", [
    ({"critic_head": "cgan"}, 1, "unknown critic head 'cgan': choose one of acgan, projection"),
    ({"gan_loss": "wasserstein"}, 1, "unknown GAN loss 'wasserstein': choose one of wgan-gp, hinge"),
    ({"spectral_norm": "yes"}, 1, "must be true or false"),
    ({"spectral_norm": True, "solver_start": "critic"}, 1, "start a fresh solver or drop spectral_norm"),
    ({"critic_head": "projection"}, 2, "learn the task in one process"),
    ({"gan_loss": "hinge", "dp_epsilon": 5.0, "solver": "replay"}, 1, "drop gan_loss='hinge' or the DP epsilon"),
    ({**FULL, "dp_epsilon": 5.0, "solver": "replay"}, 1,
     "drop critic_head='projection', gan_loss='hinge', spectral_norm=True or the DP epsilon"),
])
def test_unknown_or_unfit_critic_settings_are_refused(settings, processes, message):
    with pytest.raises(InvalidSetting, match=message):
        check_settings(tiny_config(**settings), processes)


def test_a_task_stopped_after_a_checkpoint_continues_to_the_same_generator_with_every_option_on(tmp_path,
                                                                                               monkeypatch):
    """The spectral norm's vectors and the projection's embedding are saved with the critic."""
    def run(path, stop: bool):
        memory = Memory(path)
        config = tiny_config(**FULL, epochs=3)
        learn_it = lambda: memory.learn_task(tiny_set(), ["0", "1"], config=config, image_size=TINY_SIZE,  # noqa: E731
                                             base_width=2, progress=False, checkpoint_every=0)
        if stop:
            with monkeypatch.context() as patch:
                handle = Checkpointing.after_epoch

                def stop_after_first(self, state, progress, last):
                    handle(self, state, progress, last)
                    raise KeyboardInterrupt
                patch.setattr(Checkpointing, "after_epoch", stop_after_first)
                with pytest.raises(KeyboardInterrupt):
                    learn_it()
        version = learn_it()
        return memory.store.read(version)[1]["generator.safetensors"], memory.manifest(version)

    uninterrupted, _ = run(tmp_path / "a", stop=False)
    resumed, manifest = run(tmp_path / "b", stop=True)
    assert manifest["tasks"][-1]["resumed_after_epoch"] == 1
    assert resumed == uninterrupted


def test_a_projection_critic_keeps_the_trunk_and_class_head_of_the_plain_one():
    plain, projection = Discriminator(3, 32, 4, 8), ProjectionDiscriminator(3, 32, 4, 8)
    shared = {k for k in plain.state_dict() if not k.startswith("critic.")}
    assert shared <= set(projection.state_dict()) and "critic.embed.weight" in projection.state_dict()
