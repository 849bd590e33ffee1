"""Rank the DP utility levers on a few digits (docs/experiments/2026-12-02-dp-levers.md): one memory per run.

    python scripts/dp_levers.py NAME --digits 3,5,8 --epsilon 10 --set batch_size=512 --set critic_width=16

learns one digit per task on every training image of each digit (no holdout),
with genmem's DP mode and the settings given (TrainingConfig fields, values
as Python literals), ships no solver, then scores the memory: a fixed
classifier trained only on replay (ClassifierConfig's defaults, 1000
generated images per digit), tested on the real test images of the digits;
and per digit the judge's accuracy and Fréchet distance (genmem.quality; the
judge is trained once on the real training images and cached). One JSON line
per run is appended to --results, with the CPU seconds of each task's
learning (process time: one thread, so other users of a shared CPU slow the
wall clock, much less the count). --device cuda runs it on a GPU.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from genmem.classifier import ClassifierConfig
from genmem.data import fit_images, load_source
from genmem.evaluate import replay_classifier_score
from genmem.memory import Memory
from genmem.presets import paper_config
from genmem.quality import class_quality, mean_quality, train_judge

IMAGE_SIZE = 32


def judge_for(images: torch.Tensor, labels: torch.Tensor, digits: list[int], cache: Path):
    """The quality judge of these digits, trained on their real images once and kept in `cache`."""
    from genmem.nets import Classifier

    config = ClassifierConfig(epochs=2.0)
    path = cache / f"judge-{'-'.join(map(str, digits))}.safetensors"
    if path.exists():
        judge = Classifier(1, IMAGE_SIZE, len(digits), config.width)
        judge.load_state_dict(load_file(path))
        return judge.eval()
    judge = train_judge(images, labels, digits, config)
    save_file({k: v.contiguous() for k, v in judge.state_dict().items()}, path)
    return judge.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--digits", default="3,5,8")
    parser.add_argument("--epsilon", type=float, default=10.0)
    parser.add_argument("--images-per-class", type=int, default=None, help="default: every training image")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dpx"))
    parser.add_argument("--results", type=Path, default=Path("/tmp/dpx/results.jsonl"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    digits = [int(d) for d in args.digits.split(",")]
    overrides = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = paper_config("mnist", "dgmw", dp_epsilon=args.epsilon, solver="none", **overrides)

    train = load_source("mnist", args.data_dir, train=True).select(digits).first_per_class(args.images_per_class)
    test = load_source("mnist", args.data_dir, train=False).select(digits)
    if (args.out / "memories" / args.name).exists():
        raise SystemExit(f"{args.out / 'memories' / args.name} exists: name the run anew")
    memory = Memory(args.out / "memories" / args.name)
    seconds, records = [], []
    for task, digit in enumerate(digits):
        started = time.process_time()
        version = memory.learn_task(train, [digit], config=replace(config, seed=task),
                                    image_size=IMAGE_SIZE, device=args.device, progress=False)
        seconds.append(round(time.process_time() - started, 1))
        records.append(memory.manifest(version)["tasks"][-1]["privacy"])
    score = replay_classifier_score(memory, test, config=ClassifierConfig(), images_per_class=1000,
                                    device=args.device)

    real = fit_images(train.images, 1, IMAGE_SIZE, train.source)
    judge = judge_for(real, train.labels, digits, args.out).to(args.device)
    generated, labels = memory.sampler(device=args.device).sample({d: 500 for d in digits}, seed=1)
    quality = class_quality(judge, digits, generated.cpu(), labels, real, train.labels, args.device)
    overall = mean_quality(quality)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    row = {"name": args.name, "digits": digits, "epsilon": args.epsilon, "settings": overrides,
           "replay_classifier": round(score.average, 2),
           "per_digit": {str(k): round(v, 1) for k, v in score.per_class.items()},
           "judge_accuracy": round(overall.judge_accuracy, 1), "frechet": round(overall.frechet, 2),
           "frechet_per_digit": {str(k): round(q.frechet, 2) for k, q in quality.items()},
           "cpu_seconds_per_task": seconds, "noise_multiplier": records[0]["noise_multiplier"],
           "steps": records[0]["steps"], "spent": [round(r["epsilon"], 3) for r in records],
           "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with args.results.open("a") as out:
        out.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
