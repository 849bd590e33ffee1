"""The replay-quality figures: a Fréchet distance that behaves like one, and a judge that tells classes apart."""

import torch

from genmem.classifier import ClassifierConfig
from genmem.quality import class_quality, frechet_distance, mean_quality, train_judge

from tiny import tiny_set


def test_frechet_distance_is_zero_on_itself_and_grows_with_a_shift_or_a_spread():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 4, generator=g, dtype=torch.float64)
    b = torch.randn(4000, 4, generator=g, dtype=torch.float64)
    assert abs(frechet_distance(a, a)) < 1e-9
    assert frechet_distance(a, b) < 0.05
    assert abs(frechet_distance(a, a + 1.0) - 4.0) < 1e-9  # |mean shift|^2 = 4 x 1^2
    assert abs(frechet_distance(a, 2 * a) - 4.0) < 0.3  # 4 x (1 - 2)^2 from the spread, + |mean|^2


def test_class_quality_rewards_the_right_class_and_punishes_the_wrong_one():
    data = tiny_set(labels=(0, 1, 2), per_class=40)
    judge = train_judge(data.images, data.labels, [0, 1, 2], ClassifierConfig(width=4, epochs=4, batch_size=24))
    real, labels = data.images, data.labels
    # "Replay" that is exactly the real images, and replay whose labels are swapped between classes 0 and 1.
    right = class_quality(judge, [0, 1, 2], real, labels, real, labels)
    swapped = class_quality(judge, [0, 1, 2], real, torch.tensor([{0: 1, 1: 0}.get(int(v), int(v)) for v in labels]),
                            real, labels)
    assert mean_quality(right).judge_accuracy > 90
    assert swapped[0].judge_accuracy < 10
    assert right[0].frechet < 1e-12 and swapped[0].frechet > 1e-6  # the same images, then another class's
    assert swapped[2] == right[2]
