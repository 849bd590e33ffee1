"""One home per rule: every setting is checked by genmem.config before anything changes."""

import pytest
import torch

from genmem.config import check_settings
from genmem.errors import InvalidSetting
from genmem.learn import learn_task
from genmem.memory import Memory
from genmem.nets import Generator

from tiny import tiny_config, tiny_set, tiny_spec

REFUSED = [
    ({"dp_epsilon": 10.0, "solver": "real"}, {}, "cannot ship a solver trained on real images"),
    ({"dp_epsilon": 10.0, "solver": "replay", "dp_delta": 1.5}, {}, "dp-delta must lie in"),
    ({"dp_epsilon": 10.0, "solver": "replay"}, {"processes": 2}, "runs in one process"),
    ({"dp_epsilon": 10.0, "solver": "replay", "dp_augmentations": 4}, {}, "would be identical without"),
    ({"dp_epsilon": 10.0, "solver": "replay", "dp_loss": "hinge"}, {}, "unknown DP critic loss"),
    ({"dp_epsilon": 10.0, "solver": "replay", "dp_activation": "relu"}, {}, "unknown DP critic activation"),
    ({"recalibration_batches": -1}, {}, "recalibration batches -1"),
    ({"gp_every": 0}, {}, "gp_every 0"),
    ({"average_decay": 1.0}, {}, "average decay 1.0"),
    ({"critic_augment": "rotation"}, {}, "rotation"),
    ({"solver": "critic"}, {}, "unknown solver mode"),
]


@pytest.mark.parametrize("settings, context, message", REFUSED, ids=[m for _, _, m in REFUSED])
def test_a_refused_setting_changes_neither_the_generator_nor_the_memory(tmp_path, settings, context, message):
    config = tiny_config(**settings)
    with pytest.raises(InvalidSetting, match=message):
        check_settings(config, **context)
    generator = Generator(tiny_spec("dgmw"))
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    data = tiny_set(labels=(0,))
    if not context:  # the same refusal from learn_task, before the generator grows in place
        with pytest.raises(InvalidSetting, match=message):
            learn_task(generator, data.images, torch.zeros(len(data.labels), dtype=torch.long), 1, config,
                       progress=False)
        assert len(generator.tasks) == 0 and all(torch.equal(before[k], v) for k, v in generator.state_dict().items())
        memory = Memory(tmp_path / "m")
        with pytest.raises(InvalidSetting, match=message):
            memory.learn_task(data, ["0"], config=config, image_size=16, base_width=2, progress=False)
        assert memory.versions() == []


def test_zero_recalibration_batches_keep_the_statistics_training_left():
    """The paper's behaviour: no re-estimation after the GAN (recalibration_batches=0 once reset them to 0 and 1)."""
    data = tiny_set(labels=(0,))
    index = torch.zeros(len(data.labels), dtype=torch.long)
    runs = {}
    for batches in (0, 2):
        generator = Generator(tiny_spec("dgmw"))
        learn_task(generator, data.images, index, 1, tiny_config(recalibration_batches=batches), progress=False)
        runs[batches] = [(norm.running_mean.clone(), norm.running_var.clone()) for norm in generator.tasks[0].norms]
    for (mean, var), (mean_re, var_re) in zip(runs[0], runs[2]):
        assert not torch.equal(mean, torch.zeros_like(mean)) and not torch.equal(var, torch.ones_like(var))
        assert not torch.equal(mean, mean_re)  # training's statistics, not the re-estimated ones

