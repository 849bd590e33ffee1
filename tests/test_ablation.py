"""`genmem bench replay` and `bench quality`: settings parse into TrainingConfig fields, a setting's memory is scored,
and memories that exist are scored by one judge."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from genmem.benchmarks.ablation import judge_for, judge_names, markdown_table, run_setting
from genmem.classifier import ClassifierConfig
from genmem.cli.bench_replay import parse_setting
from genmem.cli.main import main
from genmem.data import ImageSet
from genmem.errors import InvalidSetting
from genmem.evaluate import replay_quality
from genmem.memory import Memory

from tiny import TINY_SIZE, tiny_config, tiny_set


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


def test_replay_quality_matches_the_judge_and_the_test_images_to_the_memory_by_name(two_versions, tmp_path):
    train, memory = tiny_set(), Memory(two_versions)
    judge = judge_for(train, tmp_path, "cpu", image_size=TINY_SIZE)
    names = judge_names(train)
    scores = replay_quality(memory, tiny_set(), judge, names, images_per_class=8)
    assert set(scores) == {0, 1, 2}, "every class of the latest version, none it lacks"
    assert all(0 <= q.judge_accuracy <= 100 and q.frechet >= 0 for q in scores.values())
    relabelled = tiny_set()
    relabelled = ImageSet(relabelled.images, relabelled.labels + 10,
                          {label + 10: name for label, name in relabelled.class_names.items()}, "shifted")
    assert replay_quality(memory, relabelled, judge, names, images_per_class=8) == scores, "test labels by name"
    order = [3, 2, 1, 0]
    permuted = judge_for(train, tmp_path, "cpu", image_size=TINY_SIZE)
    with torch.no_grad():
        permuted.classes.weight.copy_(judge.classes.weight[order])
        permuted.classes.bias.copy_(judge.classes.bias[order])
    assert replay_quality(memory, tiny_set(), permuted, [names[i] for i in order], images_per_class=8) == scores
    assert replay_quality(memory, tiny_set(), judge, names, "v0001", images_per_class=8).keys() == {0, 1}


def test_a_judge_of_other_data_or_size_is_refused_not_reused(tmp_path):
    judge_for(tiny_set(), tmp_path, "cpu", image_size=TINY_SIZE)
    with pytest.raises(InvalidSetting, match="judge of other data or another image size"):
        judge_for(tiny_set(), tmp_path, "cpu", image_size=2 * TINY_SIZE)
    with pytest.raises(InvalidSetting, match="judge of other data"):
        judge_for(tiny_set(labels=(0, 1)), tmp_path, "cpu", image_size=TINY_SIZE)


def test_bench_quality_scores_existing_memories_side_by_side(two_versions, tiny_npz, tmp_path):
    out = tmp_path / "judge"
    arguments = ["bench", "quality", str(two_versions), str(two_versions), "--data", f"npz:{tiny_npz}", "--out",
                 str(out), "--images-per-class", "8", "--device", "cpu", "--quiet", "--record", str(tmp_path / "r.md")]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "quality.json").read_text())
    assert [r["version"] for r in rows] == ["v0002", "v0002"] and rows[0] == rows[1], "same memory, same judge"
    assert f"| {two_versions} | v0002 | {rows[0]['judge_accuracy']:.2f} | {rows[0]['frechet']:.2f} |" in result.output
    assert "Replay quality" in (tmp_path / "r.md").read_text()
    older = CliRunner().invoke(main, [*arguments[:4], "--version", "v0001", *arguments[4:]])
    assert older.exit_code == 0 and set(json.loads((out / "quality.json").read_text())[0]["per_class"]) == {"0", "1"}
    colour = tmp_path / "colour.npz"
    np.savez(colour, x=np.zeros((4, 16, 16, 3), np.uint8), y=np.array([0, 1, 2, 3]))
    refused = CliRunner().invoke(main, [*arguments[:4], "--data", f"npz:{colour}", *arguments[6:]])
    assert refused.exit_code != 0 and "3-channel images but the memories hold 1-channel" in refused.output
