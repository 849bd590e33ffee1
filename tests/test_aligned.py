"""dgm-aligned: the gap between the classifier's features of real and generated images of the newest classes, as a
penalty beside the cross-entropy (genmem.benchmarks.methods.aligned)."""

import itertools
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from tiny import tiny_set

from genmem.benchmarks.methods import base
from genmem.benchmarks.methods.aligned import newest_feature_gap, statistics_gap
from genmem.benchmarks.profiles import PROFILES
from genmem.benchmarks.protocol import run_protocol
from genmem.benchmarks.rows import csv_name
from genmem.classifier import ClassifierConfig, train_classifier
from genmem.cli.main import main
from genmem.errors import InvalidSetting
from genmem.nets import Classifier, channels_last
from genmem.pixels import to_unit_range

PROFILE = replace(PROFILES["smoke"], images_per_class=12, classifier_epochs=0.25, solver_steps=5, critic_width=4,
                  classifier_width=4)
TRAIN = tiny_set(labels=(0, 1, 2), per_class=24, size=32)
TEST = tiny_set(labels=(0, 1, 2), per_class=4, size=32)


def run(out, **kwargs) -> dict:
    return run_protocol(TRAIN, TEST, "mnist", "dgmw", PROFILE, out, progress=False, base_width=2, **kwargs)


def test_the_gap_is_zero_for_equal_statistics_and_grows_with_a_shift_in_any_units():
    rng = torch.Generator().manual_seed(0)
    real = torch.randn(64, 8, generator=rng)
    assert float(statistics_gap(real, real.flip(0))) == pytest.approx(0, abs=1e-6), "same rows in another order"
    shifted = real + torch.tensor([3.0] + [0.0] * 7)
    gap = float(statistics_gap(real, shifted))
    assert gap > 0.1
    assert float(statistics_gap(10 * real, 10 * shifted)) == pytest.approx(gap, rel=1e-4), "in the features' units"
    assert float(statistics_gap(real, 2 * real)) > 0.05, "a wider spread is a gap too"


def test_only_the_real_and_generated_rows_of_each_newest_class_are_compared():
    rng = torch.Generator().manual_seed(1)
    features = torch.randn(20, 6, generator=rng)
    # rows 0-5 real, 6-11 generated, 12-19 earlier classes; outputs 2 and 3 are the newest classes
    targets = torch.tensor([2, 2, 2, 3, 3, 3, 2, 2, 2, 3, 3, 3, 0, 0, 1, 1, 0, 1, 0, 1])
    gap = newest_feature_gap(features, targets, real=6, generated=6, newest=[2, 3])
    expected = (statistics_gap(features[0:3], features[6:9]) + statistics_gap(features[3:6], features[9:12])) / 2
    assert float(gap) == pytest.approx(float(expected))
    changed = features.clone()
    changed[12:] += 100
    assert float(newest_feature_gap(changed, targets, 6, 6, [2, 3])) == pytest.approx(float(gap)), \
        "earlier classes' rows play no part"
    one_real = targets.clone()
    one_real[0:2] = 0  # class 2 keeps one real row: too few for a spread, so only class 3 counts
    assert float(newest_feature_gap(features, one_real, 6, 6, [2, 3])) == pytest.approx(
        float(statistics_gap(features[3:6], features[9:12])))
    assert float(newest_feature_gap(features, targets, 12, 0, [2, 3])) == 0, "nothing generated: no gap"


def test_train_classifier_hands_the_penalty_the_features_its_last_layer_reads():
    model = Classifier(1, 16, 2, width=4)
    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
    targets = torch.tensor([0, 1] * 4)
    calls = []

    def penalty(features, batch_targets):
        with torch.no_grad():
            expected = model.features(channels_last(to_unit_range(images)))
        calls.append((torch.equal(features.detach(), expected), torch.equal(batch_targets, targets)))
        return features.pow(2).mean()

    train_classifier(itertools.repeat((images, targets)), 3, 2, 1, 16, ClassifierConfig(width=4), model=model,
                     feature_penalty=penalty)
    assert calls == [(True, True)] * 3


def test_the_penalty_pulls_real_and_generated_features_of_a_class_together():
    """Real images of the newest class carry a bright band that its generated ones and the earlier class lack: a
    classifier can use the band to tell the newest class; with the penalty its features of real and generated
    newest images end far closer."""
    rng = torch.Generator().manual_seed(2)

    def images(count, digit_row, band):
        x = torch.randint(0, 60, (count, 1, 16, 16), generator=rng, dtype=torch.uint8)
        x[:, :, digit_row: digit_row + 3, 4:12] = 200
        if band:
            x[:, :, :, 14:] = 255
        return x

    def batches():
        while True:
            yield (torch.cat([images(8, 2, True), images(8, 2, False), images(16, 10, False)]),
                   torch.tensor([1] * 16 + [0] * 16))

    def trained(weight):
        model = Classifier(1, 16, 2, width=4)
        penalty = (lambda f, t: weight * newest_feature_gap(f, t, 8, 8, [1])) if weight else None
        return train_classifier(batches(), 80, 2, 1, 16, ClassifierConfig(width=4, seed=3), model=model,
                                feature_penalty=penalty)

    probe = torch.cat([images(64, 2, True), images(64, 2, False)])

    def gap(model):
        with torch.no_grad():
            features = model.features(channels_last(to_unit_range(probe)))
        return float(statistics_gap(features[:64], features[64:]))

    assert gap(trained(10.0)) < 0.5 * gap(trained(0.0))


def test_the_protocol_runs_one_instance_per_weight_on_dgm_newest_50s_batches(tmp_path, monkeypatch):
    seen: dict[str, list] = {}
    train = base.train_classifier

    def spy(batches, *args, desc, feature_penalty=None, **kwargs):
        batches = iter(batches)
        first = next(batches)
        seen.setdefault(desc, []).append((first, feature_penalty is not None))
        return train(itertools.chain([first], batches), *args, desc=desc, feature_penalty=feature_penalty, **kwargs)

    monkeypatch.setattr(base, "train_classifier", spy)
    results = run(tmp_path / "run", methods=("dgm-newest", "dgm-aligned"), method_options={"align_weight": [10, 1]})
    assert list(results["accuracy"]) == ["dgm-newest-50", "dgm-aligned-1", "dgm-aligned-10"]
    assert all(len(results["accuracy"][name]) == 3 for name in results["accuracy"])
    for name in ("dgm-aligned-1", "dgm-aligned-10"):
        for (batch, penalised), (newest_batch, plain) in zip(seen[f"{name} classifier"],
                                                              seen["dgm-newest-50 classifier"]):
            assert penalised and not plain
            assert torch.equal(batch[0], newest_batch[0]) and torch.equal(batch[1], newest_batch[1])
    assert csv_name("dgm-aligned-10", results) == "dgmw-aligned-10"


def test_weights_that_cannot_scale_a_penalty_are_refused_before_anything_is_learned(tmp_path):
    for weights in ([0.0], [float("nan")], []):
        with pytest.raises(InvalidSetting, match="give numbers above 0"):
            run(tmp_path / "run", methods=("dgm-aligned",), method_options={"align_weight": weights})
    assert not (tmp_path / "run").exists()
    refused = CliRunner().invoke(main, ["bench", "protocol", "--data", "builtin", "--methods", "dgm-replay",
                                        "--align-weight", "1", "--out", str(tmp_path / "n")])
    assert refused.exit_code != 0 and "--align-weight is an option of dgm-aligned" in refused.output
