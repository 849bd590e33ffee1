"""genmem beside Avalanche's own strategies, on one stream, one classifier and one budget, in Avalanche's metrics.

    python examples/avalanche_side_by_side.py                                 # offline: the built-in MNIST digits
    python examples/avalanche_side_by_side.py --data mnist --data-dir ~/data  # MNIST, one class per experience

Needs `pip install -e '.[avalanche]'`. Four strategies train the same
Avalanche SimpleMLP with the same Adam, epochs and minibatch on a
class-incremental stream built from local data:

    Avalanche Naive              fine-tuning, no replay
    Avalanche GenerativeReplay   replay from its VAE
    Avalanche Replay             a buffer of real images as large, in bytes, as genmem's generator and masks
    Naive + GenmemReplayPlugin   replay from a genmem memory the plugin learns experience by experience

The genmem strategy is plain Avalanche code with one plugin added:

    plugin = GenmemReplayPlugin("runs/avalanche-example/memory", epochs=10, images_per_class=200)
    strategy = Naive(model=SimpleMLP(), optimizer=Adam(...), criterion=CrossEntropyLoss(), plugins=[plugin])

After every experience each strategy is evaluated on the test experiences
seen so far by Avalanche's EvaluationPlugin; the tables give the final
accuracy per experience, stream accuracy and forgetting, then stream accuracy
and seconds after every experience. The GAN budget here is the protocol's
quick one cut to 200 images per class for 10 epochs, to finish in minutes on
a laptop; `genmem bench avalanche` runs the same comparison at the whole
quick budget (and iCaRL with `--strategies icarl`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genmem.benchmarks.avalanche import Budget, report, side_by_side
from genmem.data import load_source
from genmem.presets import recipe_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="builtin", choices=["builtin", "mnist", "fashion-mnist", "cifar10"])
    parser.add_argument("--data-dir", type=Path, help="folder of the data sets (not needed for builtin)")
    parser.add_argument("--experiences", type=int, default=10, help="one class per experience by default")
    parser.add_argument("--gan-epochs", type=int, default=10)
    parser.add_argument("--images-per-class", type=int, default=200, help="real images per class the GAN sees")
    parser.add_argument("--out", type=Path, default=Path("runs/avalanche-example"),
                        help="the genmem memory goes to OUT/memory, and is reused when it is there")
    args = parser.parse_args()
    train, test = (load_source(args.data, args.data_dir, train=split) for split in (True, False))
    budget = Budget.from_profile("quick", recipe_for(args.data, train.images.shape[1]), args.images_per_class,
                                 args.gan_epochs)
    strategies = ("genmem", "naive", "gr", "replay") if args.data != "cifar10" else ("genmem", "naive", "replay")
    results = side_by_side(train, test, args.out, budget, args.experiences, strategies)
    print(report(results))


if __name__ == "__main__":
    main()
