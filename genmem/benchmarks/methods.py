"""The methods a protocol run compares, by name; free of torch, so that the command line's help can list them."""

DGM_METHODS = ("dgm-solver", "dgm-replay")
BASELINE_METHODS = ("dgr", "mergan", "ewc")  # trained by genmem.benchmarks.baselines
METHODS = (*DGM_METHODS, *BASELINE_METHODS, "joint", "finetune")  # the order of tables and plots
DEFAULT_METHODS = (*DGM_METHODS, "joint", "finetune")  # a dgr or mergan step holds twice DGM's batch
