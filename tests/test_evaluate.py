"""Evaluation arithmetic on hand-made cases, stored solvers, and replay classifiers on tiny data."""

import pytest
import torch

from genmem.classifier import ClassifierConfig
from genmem.data import ImageSet
from genmem.errors import DataError, InvalidSetting
from genmem.evaluate import (average_accuracy, confusion_matrix, forgetting, images_of_classes, per_class_accuracy,
                             replay_classifier_score, solver_score)
from genmem.memory import Memory

from tiny import tiny_config, tiny_set


def test_a_t_is_the_unweighted_mean_of_per_class_accuracies():
    true = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 2])
    per_class = per_class_accuracy(predicted, true, [0, 1, 2])
    assert per_class == pytest.approx({0: 75.0, 1: 100.0, 2: 50.0})
    assert average_accuracy(per_class) == pytest.approx(75.0)  # the pooled accuracy would be 5/7 = 71.4
    assert confusion_matrix(predicted, true, [0, 1, 2]) == [[3, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_a_class_without_test_images_is_an_error():
    with pytest.raises(DataError, match="no images of class 3"):
        per_class_accuracy(torch.tensor([0]), torch.tensor([0]), [0, 3])


@pytest.mark.parametrize("setting, message", [
    ({"epochs": float("inf")}, "epochs inf are out of range"), ({"epochs": float("nan")}, "epochs nan"),
    ({"epochs": 0}, "epochs 0"), ({"epochs": 1e300}, "at most 1000"), ({"lr": float("nan")}, "learning rate nan"),
    ({"lr": 0}, "learning rate 0"), ({"width": 0}, "width 0"), ({"batch_size": 0}, "batch size 0"),
    ({"seed": -1}, "seed -1 is out of range"), ({"seed": 2**70}, "seed 11805916207174113034"),
    ({"augment": "flip"}, "flip"),
])
def test_a_classifier_config_that_could_never_train_or_finish_is_refused_when_made(setting, message):
    """The CLI bounds these; the Python API must too, before a memory is sampled for a classifier that would
    never finish (infinite epochs) or would learn NaN weights."""
    with pytest.raises(InvalidSetting, match=message):
        ClassifierConfig(**setting)
    assert ClassifierConfig(epochs=1000, lr=1e-3, width=1, batch_size=1).epochs == 1000


def test_forgetting_is_best_earlier_minus_last():
    history = [{0: 90.0}, {0: 80.0, 1: 70.0}, {0: 60.0, 1: 75.0, 2: 99.0}]
    assert forgetting(history) == pytest.approx({0: 30.0, 1: -5.0})


def test_test_images_are_matched_to_the_memory_by_name():
    test = ImageSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([7, 7, 8, 9]),
                    {7: "cat", 8: "dog", 9: "owl"}, "t")
    images, labels = images_of_classes([1, 0], {0: "dog", 1: "cat"}, test, 1, 16)
    assert images.shape == (3, 1, 16, 16) and sorted(labels.tolist()) == [0, 1, 1]
    with pytest.raises(DataError, match="has no classes named 'emu'"):
        images_of_classes([0], {0: "emu"}, test, 1, 16)


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    memory = Memory(tmp_path_factory.mktemp("e") / "m")
    data = tiny_set()
    for seed, classes in enumerate((["0"], ["1"], ["2", "3"])):
        memory.learn_task(data, classes, config=tiny_config(seed=seed, epochs=3), image_size=16, base_width=2,
                          progress=False)
    return memory


def test_every_version_stores_a_solver_over_the_classes_it_knows(memory):
    test = tiny_set(per_class=10)
    scores = [solver_score(memory, test, v) for v in memory.versions()]
    assert [sorted(s.per_class) for s in scores] == [[0], [0, 1], [0, 1, 2, 3]]
    assert scores[0].average == 100.0  # one class: nothing to confuse it with
    assert all(0 <= a <= 100 for s in scores for a in s.per_class.values())
    assert len(scores[-1].confusion) == 4 and sum(map(sum, scores[-1].confusion)) == 40


def test_replay_classifier_learns_from_the_memory_alone(memory):
    score = replay_classifier_score(memory, tiny_set(per_class=10), config=ClassifierConfig(epochs=1),
                                    images_per_class=64)
    assert sorted(score.per_class) == [0, 1, 2, 3]
    assert sum(map(sum, score.confusion)) == 40


def test_a_filtered_replay_classifier_draws_only_through_the_versions_solver(memory, monkeypatch):
    from genmem import evaluate
    from genmem.filtering import ConfidentReplay

    made, original = [], ConfidentReplay.from_memory.__func__
    monkeypatch.setattr(evaluate.ConfidentReplay, "from_memory",
                        classmethod(lambda cls, *args: made.append(original(cls, *args)) or made[-1]))
    score = replay_classifier_score(memory, tiny_set(per_class=10), config=ClassifierConfig(epochs=1),
                                    images_per_class=64, min_confidence=0.6)
    (replay,) = made
    assert replay.version == memory.versions()[-1] and replay.min_confidence == 0.6
    assert sorted(replay.kept) == [0, 1, 2, 3] and all(scored >= 2 * 64 for _, scored in replay.kept.values())
    assert sorted(score.per_class) == [0, 1, 2, 3]


def test_evaluate_command_reports_a_t_forgetting_and_plots(memory, tmp_path):
    import json

    import numpy as np
    from click.testing import CliRunner

    from genmem.cli.main import main

    test = tiny_set(per_class=10)
    np.savez(tmp_path / "test.npz", x=test.images[:, 0].numpy(), y=test.labels.numpy())
    args = ["evaluate", str(memory.path), "--data", f"npz:{tmp_path / 'test.npz'}", "--device", "cpu"]
    text = CliRunner().invoke(main, args + ["--plots", str(tmp_path / "plots")])
    assert text.exit_code == 0, text.output
    assert "v0003" in text.output and "forgetting" in text.output
    report = json.loads(CliRunner().invoke(main, args + ["--json"]).output)
    assert len(report["A_t"]) == 3 and report["A_t"][0] == 100.0
    assert set(report["forgetting"]) == {"0", "1"}
    assert (tmp_path / "plots" / "confusion-solver.png").stat().st_size > 1000
    missing = CliRunner().invoke(main, ["evaluate", str(tmp_path / "none"), "--data", "builtin"])
    assert missing.exit_code != 0 and "is not a genmem memory" in missing.output


def test_the_solver_phase_after_the_gan_trains_the_class_head(tmp_path):
    test = tiny_set(per_class=10)
    critic = {"solver_start": "critic", "solver_epochs": None, "solver_augment": ""}  # the paper's head, unshifted
    phases = {"none": {**critic, "solver_steps": 0}, "80 steps": {**critic, "solver_steps": 80},
              # 20 passes over the task's 96 images in steps of 2 batches of 12: the same 80 steps, set by epochs
              "20 epochs": {**critic, "solver_steps": 0, "solver_epochs": 20.0}}
    averages = {}
    for name, phase in phases.items():  # a GAN learning rate so small that only the solver phase can teach the head
        memory = Memory(tmp_path / name.replace(" ", "-"))
        memory.learn_task(tiny_set(), ["0", "1", "2", "3"], config=tiny_config(epochs=1, lr=1e-9, **phase),
                          image_size=16, base_width=2, progress=False)
        averages[name] = solver_score(memory, test).average
    assert averages["none"] < 60 and averages["80 steps"] >= 95, averages
    assert averages["20 epochs"] == averages["80 steps"], averages  # the same steps on the same random numbers
