"""The paper's presets: an override is kept as given, None included where a setting takes None."""

from genmem.config import TrainingConfig
from genmem.presets import paper_config
from genmem.solver import phase_steps


def test_an_explicit_none_is_kept_where_a_setting_takes_none():
    config = paper_config("mnist", "dgmw", solver_epochs=None, average_decay=None, solver_steps=20)
    assert config.solver_epochs is None and config.average_decay is None
    assert phase_steps(config, images=10_000) == 20, "no passes asked: the solver phase runs its steps alone"
    left_out = paper_config("mnist", "dgmw")
    assert left_out.solver_epochs == TrainingConfig.solver_epochs == 5.0
    assert left_out.average_decay == TrainingConfig.average_decay == 0.99


def test_none_for_a_setting_that_needs_a_value_leaves_the_recipes():
    config = paper_config("cifar10", "dgma", epochs=None, lr=None, critic_width=None, solver_steps=None)
    assert (config.epochs, config.lr, config.critic_width) == (251, 2e-4, 128)
    assert (config.solver_steps, config.s_max) == (TrainingConfig.solver_steps, 1e5)
    assert paper_config("cifar10", "dgma", epochs=7, lr=1e-3).epochs == 7
