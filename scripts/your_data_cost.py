"""What a task of your own images costs: seconds per image and GAN epoch, and the solver phase, per image size.

A user budgets `learn-task --epochs` on their own folder by the GAN's cost per image and epoch; this measures it
for the quick profile's networks (critic 16 wide, DGMw base width 10, a fresh 16-wide solver, 2 solver passes) on
grey 32 px, colour 32 px and colour 64 px images, as the first task of a new memory (two classes of IMAGES images
each; random pixels cost what real ones do). Every GAN epoch is timed from one epoch's end to the next (read
where a checkpointing task hands over its state, which is told to save nothing), and the median is taken, so a
busy machine's bursts move it less; what follows the last epoch (BatchNorm re-estimation, the solver phase, the
sample strip) is the task's fixed cost.

Usage: python benchmarks/your_data_cost.py [--images 200] [--epochs 5] [--device cpu] [--sizes 32,64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from genmem.checkpoint import Checkpointing
from genmem.data import ImageSet
from genmem.memory import Memory
from genmem.presets import paper_config

QUICK = {"critic_width": 16, "solver_width": 16, "solver_epochs": 2.0}


def task_times(channels: int, size: int, images: int, epochs: int, device: str) -> tuple[float, float]:
    """The median seconds of a GAN epoch, and the seconds after the last one, of a first task of two classes of
    `images` random images each."""
    pixels = torch.randint(0, 256, (2 * images, channels, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    data = ImageSet(pixels, torch.arange(2).repeat_interleave(images), {0: "a", 1: "b"}, "random")
    config = paper_config("mnist" if channels == 1 else "colour", "dgmw", epochs=epochs, **QUICK)
    ends = []
    Checkpointing.after_epoch = lambda self, state, progress, last: ends.append(time.perf_counter())  # saves nothing
    with tempfile.TemporaryDirectory() as folder:
        Memory(Path(folder) / "m").learn_task(data, ["a", "b"], config=config, device=device, image_size=size,
                                             base_width=10, progress=False, checkpoint_every=0)
        finished = time.perf_counter()
    return statistics.median(b - a for a, b in zip(ends, ends[1:])), finished - ends[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="images per class (two classes)")
    parser.add_argument("--epochs", type=int, default=5, help="GAN epochs, the first not timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="32,64", help="image sizes, colour at each; grey at 32 px too")
    args = parser.parse_args()
    cases = [(1, 32)] + [(3, int(size)) for size in args.sizes.split(",")]
    print(f"{torch.get_num_threads()} threads on {args.device}; {2 * args.images} images per task")
    print("images          ms per image and GAN epoch   seconds after the GAN (solver phase, ...)")
    for channels, size in cases:
        epoch, after = task_times(channels, size, args.images, args.epochs, args.device)
        print(f"{'grey' if channels == 1 else 'colour':6} {size:3} px   {1000 * epoch / (2 * args.images):26.2f}   "
              f"{after:10.1f}", flush=True)


if __name__ == "__main__":
    main()
