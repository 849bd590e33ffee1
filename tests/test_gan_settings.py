"""`genmem bench protocol --gan-setting`: a full run with DGM's GAN trained otherwise, named apart, checked first."""

import numpy as np
import pytest
from click.testing import CliRunner

from genmem.benchmarks.profiles import PROFILES
from genmem.benchmarks.record import read_rows
from genmem.cli.main import main
from genmem.config import parse_overrides
from genmem.errors import InvalidSetting
from genmem.memory import Memory

from tiny import tiny_set


@pytest.fixture
def source(tmp_path):
    """A four-class npz source, its own test data: two tasks of two classes."""
    data = tiny_set(labels=(0, 1, 2, 3))
    np.savez(tmp_path / "d.npz", x=data.images[:, 0].numpy(), y=data.labels.numpy())
    return ["--data", f"npz:{tmp_path / 'd.npz'}", "--test-data", f"npz:{tmp_path / 'd.npz'}"]


def protocol(*arguments):
    return CliRunner().invoke(main, ["bench", "protocol", "--profile", "smoke", "--device", "cpu", "--quiet",
                                     *arguments])


def test_overrides_parse_json_values_and_keep_text_with_commas():
    assert parse_overrides("critic_head=projection; spectral_norm=true; average_decay=null; gp_every=2") == {
        "critic_head": "projection", "spectral_norm": True, "average_decay": None, "gp_every": 2}
    assert parse_overrides(" critic_augment=translation,cutout ;") == {"critic_augment": "translation,cutout"}
    assert parse_overrides("") == {}
    for bad in ("warp_speed=9", "critic_head"):
        with pytest.raises(InvalidSetting, match="not FIELD=VALUE with a TrainingConfig field"):
            parse_overrides(bad)


def test_a_profile_with_gan_settings_is_named_by_them_and_trains_with_them():
    quick = PROFILES["quick"]
    assert quick.with_gan_settings({}) is quick
    changed = quick.with_gan_settings({"critic_head": "projection", "spectral_norm": True})
    assert changed.name == "quick, critic_head=projection, spectral_norm=true"
    config = changed.training_config("mnist", "dgmw")
    assert (config.critic_head, config.spectral_norm) == ("projection", True)
    assert config.epochs == quick.training_config("mnist", "dgmw").epochs  # the budget is the profile's


def test_the_residual_family_trains_its_own_critic_unless_a_setting_says_otherwise():
    quick = PROFILES["quick"]
    critic = ("critic_head", "gan_loss", "spectral_norm")
    residual = quick.training_config("cifar10", "dgmw", arch="resnet")
    assert tuple(getattr(residual, name) for name in critic) == ("projection", "hinge", True)
    dcgan = quick.training_config("cifar10", "dgmw")
    assert tuple(getattr(dcgan, name) for name in critic) == ("acgan", "wgan-gp", False)
    back = quick.with_gan_settings({"critic_head": "acgan", "gan_loss": "wgan-gp", "spectral_norm": False})
    assert tuple(getattr(back.training_config("cifar10", "dgmw", arch="resnet"), name) for name in critic) == (
        "acgan", "wgan-gp", False)


def test_a_residual_run_gives_dgm_its_critic_and_the_baselines_theirs(tmp_path, source):
    out = tmp_path / "run"
    # The smoke profile's solver starts from the critic, which only the DCGAN's can give: a fresh one here.
    result = protocol(*source, "--classes-per-task", "2", "--images-per-class", "5", "--arch", "resnet",
                      "--gan-setting", "solver_start=fresh", "--methods", "dgm-replay,dgr", "--out", str(out))
    assert result.exit_code == 0, result.output  # dgr is not refused: its DCGAN keeps the paper's critic
    trained = [task["training"] for task in Memory(out / "memory").manifest()["tasks"]]
    assert [(t["critic_head"], t["gan_loss"], t["spectral_norm"]) for t in trained] == [
        ("projection", "hinge", True)] * 2


def test_the_protocol_trains_dgm_with_the_setting_and_names_every_figure_by_it(tmp_path, source):
    out, table = tmp_path / "run", tmp_path / "BENCHMARKS.csv"
    result = protocol(*source, "--classes-per-task", "2", "--images-per-class", "5", "--methods",
                      "dgm-replay,joint", "--gan-setting", "critic_head=projection; gan_loss=hinge", "--out",
                      str(out), "--csv", str(table))
    assert result.exit_code == 0, result.output
    trained = [task["training"] for task in Memory(out / "memory").manifest()["tasks"]]
    assert [(t["critic_head"], t["gan_loss"]) for t in trained] == [("projection", "hinge")] * 2
    profile = "smoke, GAN on 5 images per class, critic_head=projection, gan_loss=hinge"
    assert {r["profile"] for r in read_rows(table)} == {profile}
    assert {r["method"] for r in read_rows(table)} >= {"dgmw-replay", "joint"}
    resumed = CliRunner().invoke(main, ["bench", "protocol", "--resume", str(out), "--gan-setting",
                                        "critic_head=acgan"])
    assert resumed.exit_code != 0 and "drop --gan-setting" in resumed.output


@pytest.mark.parametrize(("setting", "methods", "message"), [
    ("epochs=3", "dgm-replay", "a field that --gan-epochs sets"),
    ("critic_head=projecton", "dgm-replay", "unknown critic head 'projecton'"),
    ("critic_head=projection", "dgm-replay,dgr", "dgr train against the paper's critic"),
    ("warp_speed=9", "dgm-replay", "not FIELD=VALUE"),
])
def test_a_setting_that_cannot_run_is_refused_before_anything_is_learned(tmp_path, source, setting, methods, message):
    out = tmp_path / "run"
    result = protocol(*source, "--methods", methods, "--gan-setting", setting, "--out", str(out))
    assert result.exit_code != 0 and message in result.output
    assert not (out / "memory").exists()
