"""The membership audit: its arithmetic on hand-made cases, and an audit kept beside a version end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from genmem.audit import FeatureSpace, copy_rate, distance_scores, pixels, roc_auc, tpr_at_fpr
from genmem.cli.main import main
from genmem.errors import CorruptMemory
from genmem.memory import Memory
from genmem.store import read_audits
from tiny import class_images


def test_auc_counts_the_pairs_a_member_wins():
    assert roc_auc(np.array([3.0, 4, 5]), np.array([0.0, 1, 2])) == 1.0
    assert roc_auc(np.array([0.0, 1, 2]), np.array([3.0, 4, 5])) == 0.0
    assert roc_auc(np.array([1.0, 1]), np.array([1.0, 1, 1])) == 0.5  # ties count half
    rng = np.random.default_rng(0)
    members, non_members = rng.normal(0.3, 1, 40).round(1), rng.normal(0, 1, 30).round(1)
    pairs = (members[:, None] > non_members[None]).mean() + 0.5 * (members[:, None] == non_members[None]).mean()
    assert roc_auc(members, non_members) == pytest.approx(pairs)


def test_tpr_at_fpr_uses_the_strictest_threshold_that_allows_that_many_false_positives():
    non_members = np.arange(100.0)  # 0..99
    members = np.array([99.5, 98.5, 97.5, 50.0])
    assert tpr_at_fpr(members, non_members, 0.01) == 0.5  # one non-member (99) may pass: threshold 98
    assert tpr_at_fpr(members, non_members, 0.001) == 0.25  # none may pass: threshold 99
    assert tpr_at_fpr(members, non_members, 0.03) == 0.75


def labelled(label: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(class_images(label, count, seed=seed)).permute(0, 3, 1, 2).contiguous()
    return images, torch.full((count,), label)


def joined(*parts):
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@pytest.mark.parametrize("space", ["pixel", "feature"])
def test_a_copying_generator_is_caught_and_an_independent_one_is_not(space):
    members = joined(labelled(0, 150, seed=1), labelled(1, 150, seed=1))
    non_members = joined(labelled(0, 150, seed=2), labelled(1, 150, seed=2))
    fresh = joined(labelled(0, 300, seed=3), labelled(1, 300, seed=3))
    embed = pixels if space == "pixel" else FeatureSpace(1, 16)

    def auc(generated, reference=None):
        return roc_auc(*(distance_scores(q, generated, reference, embed) for q in (members, non_members)))

    assert auc(members) == 1.0  # a "generator" that returns its training images
    assert abs(auc(fresh) - 0.5) < 0.08  # one that draws new images from the same distribution
    reference = joined(labelled(0, 150, seed=4), labelled(1, 150, seed=4))
    assert auc(members, reference) == 1.0 and abs(auc(fresh, reference) - 0.5) < 0.08  # calibrated, the same
    assert copy_rate(members, members, non_members)["rate"] == 1.0
    assert copy_rate(fresh, members, non_members)["rate"] < 0.15


def test_an_audit_of_held_out_images_is_kept_beside_the_version_and_shown(tmp_path, tiny_npz):
    learn = ["learn-task", str(tmp_path / "m"), "--data", f"npz:{tiny_npz}", "--classes", "0,1", "--epochs", "1",
             "--batch-size", "12", "--critic-width", "4", "--image-size", "16", "--width", "2", "--quiet",
             "--holdout", "0.25", "--device", "cpu"]
    result = CliRunner().invoke(main, learn)
    assert result.exit_code == 0, result.output
    memory = Memory(tmp_path / "m")
    manifest = memory.manifest()
    holdout = manifest["tasks"][0]["data"]["holdout"]
    assert holdout["count"] == 12 and len(holdout["indices"]) == 12 and manifest["tasks"][0]["data"]["images"] == 36
    before = {p.name: p.read_bytes() for p in (tmp_path / "m" / "versions" / "v0001").iterdir()}

    args = ["audit", str(tmp_path / "m"), "--members", f"npz:{tiny_npz}", "--non-members", "holdout",
            "--samples", "50", "--device", "cpu"]
    result = CliRunner().invoke(main, args + ["--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert (record["members"], record["non_members"]) == (36, 12)
    parts = {a["part"] for a in record["attacks"]}
    assert parts == {"generator", "solver"}
    assert all(0 <= a["auc"] <= 1 and a["auc_interval"][0] <= a["auc"] <= a["auc_interval"][1]
               for a in record["attacks"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "m" / "versions" / "v0001").iterdir()} == before
    memory.store.read()  # the version still verifies
    [kept] = read_audits(memory.store)
    assert kept["attacks"] == record["attacks"]
    shown = CliRunner().invoke(main, ["info", str(tmp_path / "m")])
    assert "audit" in shown.output and "worst AUC" in shown.output and "12 images held out" in shown.output

    (tmp_path / "m" / "audits" / "v0001" / "a0001" / "AUDIT.md").write_text("tampered")
    with pytest.raises(CorruptMemory, match="a0001"):
        read_audits(memory.store)


def test_an_audit_with_images_the_task_did_not_learn_from_is_refused(tmp_path, tiny_npz):
    learn = ["learn-task", str(tmp_path / "m"), "--data", f"npz:{tiny_npz}", "--classes", "0", "--epochs", "1",
             "--batch-size", "12", "--critic-width", "4", "--image-size", "16", "--width", "2", "--quiet",
             "--holdout", "0.25", "--device", "cpu", "--solver", "none"]
    assert CliRunner().invoke(main, learn).exit_code == 0
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros((8, 16, 16), np.uint8), y=np.zeros(8, np.int64))
    result = CliRunner().invoke(main, ["audit", str(tmp_path / "m"), "--members", f"npz:{other}",
                                       "--non-members", "holdout"])
    assert result.exit_code != 0 and "not the ones it learned from" in result.output
