"""A class-incremental classifier that learns each task from its real images plus replay from a genmem server.

Run the quick start first (it writes runs/quickstart.mem, digits 0, 1, 2 as three tasks), then:

    python examples/class_incremental.py                       # starts `genmem serve` itself
    python examples/class_incremental.py --url http://host:8000 # or uses a server already running
    python examples/class_incremental.py --local                # or reads the memory directly: one argument apart

For every version of the memory (one per task) two copies of the same small
classifier learn that task's real images; one also trains on replay of every
earlier class, drawn from the server pinned to that version. After each task
both are tested on the real test images of every class seen so far, and A_t
(the mean per-class accuracy) is printed side by side. Only the newest
task's real images are ever used for training.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn

from genmem import Memory, load_source, to_memory_labels, to_memory_pixels
from genmem.replay import ReplayStream
from genmem.benchmarks.subprocess_server import serving


def small_cnn(num_classes: int, channels: int, image_size: int) -> nn.Module:
    """Any classifier will do; this one is small enough for a CPU."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (image_size // 4) ** 2, 128), nn.ReLU(), nn.Linear(128, num_classes))


def train_step(model, optimiser, images, labels) -> None:
    loss = F.cross_entropy(model(images), labels)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()


@torch.no_grad()
def mean_class_accuracy(model, images, labels, seen: list[int]) -> float:
    logits = model(images)
    unseen = torch.ones(logits.shape[1], dtype=torch.bool)
    unseen[seen] = False
    predicted = logits.masked_fill(unseen, float("-inf")).argmax(1)  # one head over the classes seen so far
    return 100 * sum(float((predicted[labels == c] == c).float().mean()) for c in seen) / len(seen)


def learn_tasks(memory: Memory, source: str, args: argparse.Namespace) -> None:
    """Every version in order: both classifiers learn its new classes; print A_t for both.

    Real images meet the classifier as they met the memory: at its size, channels and [-1, 1] range
    (to_memory_pixels), under its labels (to_memory_labels). Replay comes at that size already, as uint8.
    """
    spec = memory.manifest()["generator"]
    train, test = (to_memory_labels(load_source(args.data, args.data_dir, train=split, image_size=spec["image_size"]),
                                    memory) for split in (True, False))
    num_classes = max(train.class_names) + 1
    torch.manual_seed(0)
    with_replay = small_cnn(num_classes, spec["channels"], spec["image_size"])
    without = small_cnn(num_classes, spec["channels"], spec["image_size"])
    without.load_state_dict(with_replay.state_dict())  # the same start, so only replay differs
    optimisers = [torch.optim.Adam(m.parameters(), 1e-3) for m in (with_replay, without)]

    print(f"replay from {source}\n\ntask  classes  A_t with replay  A_t without replay")
    seen: list[int] = []
    for version in memory.versions():
        manifest = memory.manifest(version)
        new = manifest["tasks"][-1]["classes"]
        earlier = list(seen)
        seen += new
        mine = torch.isin(train.labels, torch.tensor(new))
        real_images, real_labels = to_memory_pixels(train.images[mine], memory), train.labels[mine]
        replay = iter(ReplayStream(source, classes=earlier, batch_size=args.batch_size * len(earlier),
                                   version=version)) if earlier else None
        for _ in range(args.steps):
            pick = torch.randint(len(real_images), (args.batch_size,))
            images, labels = real_images[pick], real_labels[pick]
            train_step(without, optimisers[1], images, labels)
            if replay is not None:  # one batch of every earlier class for each batch of new ones
                old_images, old_labels = next(replay)  # uint8 at the memory's size: only the range to change
                images, labels = torch.cat([images, old_images.float() / 127.5 - 1]), torch.cat([labels, old_labels])
            train_step(with_replay, optimisers[0], images, labels)
        keep = torch.isin(test.labels, torch.tensor(seen))
        test_images, test_labels = to_memory_pixels(test.images[keep], memory), test.labels[keep]
        print(f"{len(manifest['tasks']) - 1:>4}  {','.join(map(str, new)):<7}  "
              f"{mean_class_accuracy(with_replay, test_images, test_labels, seen):15.2f}  "
              f"{mean_class_accuracy(without, test_images, test_labels, seen):18.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", default="runs/quickstart.mem", help="memory learned one task at a time")
    parser.add_argument("--data", default="builtin", help="the data set the memory learned (its real images)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--url", help="a running genmem server for --memory (default: start one)")
    parser.add_argument("--local", action="store_true", help="read the memory directly instead of over HTTP")
    parser.add_argument("--steps", type=int, default=300, help="training steps per task")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    memory = Memory(args.memory)
    if not memory.versions():
        sys.exit(f"{args.memory} holds no version: run `bash examples/quickstart.sh` first")
    if args.local or args.url:
        learn_tasks(memory, args.memory if args.local else args.url, args)
        return
    with serving(args.memory, ["--device", "cpu"]) as url:
        learn_tasks(memory, url, args)


if __name__ == "__main__":
    main()
