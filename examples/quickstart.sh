#!/usr/bin/env bash
# Quick start, offline after setup: learn the built-in MNIST digits 0, 1 and 2 as three tasks, describe the
# memory, draw a grid of samples of every class and write an HTML report.
# On a fresh clone it first creates .venv and installs genmem (the network is needed once).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/genmem ]; then
  echo "setting up .venv (once; a few minutes) ..."
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  # The same torch line as .ci/run: these machines serve torch 2.14.1 / torchvision 0.29.1 from local disk.
  # Elsewhere, a machine without an NVIDIA GPU takes torch's CPU wheel rather than the multi-gigabyte CUDA one.
  cpu_wheels=()
  command -v nvidia-smi >/dev/null || cpu_wheels=(--index-url https://download.pytorch.org/whl/cpu)
  .venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 \
    || .venv/bin/python -m pip install --quiet torch torchvision "${cpu_wheels[@]}"
  .venv/bin/python -m pip install --quiet -e .
fi
genmem=.venv/bin/genmem
memory=runs/quickstart.mem     # a scratch memory this script owns: it starts afresh each time
rm -rf "$memory"
mkdir -p runs
for digit in 0 1 2; do
  "$genmem" learn-task "$memory" --data builtin --classes "$digit" --gan-epochs 60
done
"$genmem" info "$memory"
"$genmem" sample "$memory" --count 12 -o runs/quickstart-samples.png
"$genmem" report "$memory" -o runs/quickstart-report.html
echo "open runs/quickstart-samples.png (one row per learned digit) and runs/quickstart-report.html"
