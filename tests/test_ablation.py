"""`genmem bench replay`: settings parse into TrainingConfig fields, and a setting's memory is scored."""

import pytest

from genmem.benchmarks.ablation import judge_for, markdown_table, run_setting
from genmem.classifier import ClassifierConfig
from genmem.cli.bench_replay import parse_setting
from genmem.errors import InvalidSetting

from tiny import tiny_config, tiny_set


def test_settings_parse_json_values_and_keep_text_with_commas():
    assert parse_setting("ema: average_decay=0.99") == ("ema", {"average_decay": 0.99})
    assert parse_setting("plain: average_decay=null; gp_every=4") == ("plain", {"average_decay": None, "gp_every": 4})
    assert parse_setting("aug: critic_augment=translation,cutout") == ("aug", {"critic_augment": "translation,cutout"})
    assert parse_setting("recipe") == ("recipe", {})
    with pytest.raises(InvalidSetting, match="not FIELD=VALUE"):
        parse_setting("bad: warp_speed=9")
    with pytest.raises(InvalidSetting, match="no name"):
        parse_setting(": gp_every=2")


def test_a_setting_learns_its_classes_and_is_scored_by_the_cached_judge(tmp_path):
    train, test = tiny_set(labels=(0, 1), per_class=16), tiny_set(labels=(0, 1), per_class=8)
    judge = judge_for(train, tmp_path, "cpu")
    assert (tmp_path / "judge.safetensors").exists()
    row = run_setting("ema", tiny_config(epochs=1, average_decay=0.9), train, test, [0, 1], "dgmw", 12, tmp_path,
                      judge, base_width=2)
    assert set(row["per_class"]) == {"0", "1"}
    assert 0 <= row["judge_accuracy"] <= 100 and row["frechet"] >= 0 and row["iterations_per_second"] > 0
    assert row["config"]["average_decay"] == 0.9
    cached = judge_for(train, tmp_path, "cpu")
    assert all((a == b).all() for a, b in zip(cached.state_dict().values(), judge.state_dict().values()))
    assert "| ema |" in markdown_table([row]) and row["replay_accuracy"] is None


def test_a_setting_is_scored_by_a_classifier_trained_on_its_replay(tmp_path):
    train, test = tiny_set(labels=(0, 1), per_class=16), tiny_set(labels=(0, 1), per_class=8)
    row = run_setting("projection", tiny_config(epochs=1, critic_head="projection"), train, test, [0, 1], "dgmw", 12,
                      tmp_path, judge_for(train, tmp_path, "cpu"), base_width=2,
                      classifier=ClassifierConfig(width=4, epochs=1.0, batch_size=8))
    assert 0 <= row["replay_accuracy"] <= 100 and row["config"]["critic_head"] == "projection"
    assert f"| {row['replay_accuracy']:.2f} |" in markdown_table([row])
