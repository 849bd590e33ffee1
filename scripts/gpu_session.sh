#!/usr/bin/env bash
# The long benchmarks, side by side on one lent GPU, each stopped at a time limit.
#
# A lent GPU comes for minutes, not hours, so everything that wants one runs at once, each in its own process
# (the networks are small: one process leaves most of an H100 idle):
#   the paper profile of MNIST DGMw, MNIST DGMa and CIFAR-10 DGMw (continued with --resume where RUNS already
#   holds a run, so a series of sessions finishes them); the quick profile of DGM beside every baseline;
#   CIFAR-10 on the budget that 2 CPU cores run in about 90 minutes; split-CIFAR-10 with ResNet-18 classifiers;
#   the privacy benchmark, one epsilon per process (merge with `genmem bench privacy --combine`); the test suite.
# Then the sampling benchmark on the GPU, alone. Finished tasks survive the time limit (results are written
# after every task); each run folder is packed into PACK for the trip back.
#
# Usage: scripts/gpu_session.sh DATA_DIR RUNS PACK SECONDS
#   SMOKE=1 swaps every budget for seconds-long ones, to try this script on any machine.
#   TASKS_PER_CALL=N stops each protocol run once it has finished N more tasks, rather than cut off a task it
#   started: with 15 minutes of device time and 10 per call, two calls of one task each (the second on the warm
#   machine, whose ignored RUNS folder is still there) finish two tasks where one call of 10 minutes finishes one.
#   CHECKPOINT_EVERY=SECONDS: how often DGM's protocol runs save the state of the task in progress (default 60;
#   empty: never).
#   ONLY="name ..." runs only the named jobs (the names of their logs: mnist-dgmw-paper, privacy-10, pytest, ...).
#
# On this workplace's lent GPU (whose Python has torch but not genmem's serving stack): copy MNIST's .gz files
# and the CIFAR-10 JPEG tarball into gpu/data (ignored by git), put wheels of genmem itself
# (`pip wheel --no-deps .`), fastapi, starlette, uvicorn, h11, pydantic, pydantic-core, annotated-types,
# annotated-doc, typing-inspection, typing-extensions, opentelemetry-api, opacus and opt-einsum into .whl, carry
# both, and run
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH \
#     bash scripts/gpu_session.sh gpu/data gpu/runs $OUT 410
# Unpack a previous session's <run>.tar.gz (its pieces joined with cat) into gpu/runs first to continue its paper runs
# (`[ -d gpu/runs/RUN ] || tar ...`: a second call on the warm machine finds the first call's progress there).
# A resume reads only a run's latest version: a run too large for a call's 64 MiB can travel without its older
# versions, which are put back when it returns (BENCHMARKS.md, "A lent H100").
set -uo pipefail
data=$1 runs=$2 pack=$3 limit=$4
device=${DEVICE:-cuda}
# DGM saves its task's state this often, so a task the time limit cuts off continues in the next call instead of
# starting again (the checkpoint travels inside the run's memory folder; a finished task removes it). It is 53 MiB
# on CIFAR-10's paper profile (BENCHMARKS.md): CHECKPOINT_EVERY= (empty) turns it off where that cannot travel.
checkpoint_every=${CHECKPOINT_EVERY-60}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$runs" "$pack"
if [ "${SMOKE:-0}" = 1 ]; then
  paper=(--profile smoke --tasks 2) quick=(--profile smoke --tasks 2)
  private=(--tasks 2 --images-per-class 10 --gan-epochs 1) private_more=(--tasks 2 --images-per-class 20 --gan-epochs 1)
  sizes=1,16 tests=tests/test_learn.py
else
  paper=(--profile paper) quick=(--profile quick) private=() private_more=(--images-per-class 5000 --gan-epochs 8)
  sizes=1,256,4096,65536 tests=tests
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  nproc; date -u; } > "$runs/device.txt" 2>&1
# Unpack MNIST once, before several processes would race to do it (where it was carried: a CIFAR-10-only session
# need not carry it).
[ -d "$data/MNIST" ] && python3 -P -c "from genmem.data import load_source as l
l('mnist', '$data', train=True); l('mnist', '$data', train=False)"

chosen() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
progress() {  # results.json: tasks finished and tasks in all, 0 0 before the first (it is replaced whole)
  python3 -c "import json, sys; r = json.load(open(sys.argv[1]))
print(len(next(iter(r['per_class'].values()))), len(r['classes']))" "$1" 2>/dev/null || echo 0 0
}
stop_after_tasks() {  # pid, results.json: stop the process once TASKS_PER_CALL more tasks are finished, bar the last
  local pid=$1 results=$2 start done total
  read -r start total < <(progress "$results")
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    read -r done total < <(progress "$results")
    if [ "$done" -ge $((start + TASKS_PER_CALL)) ] && [ "$done" -lt "$total" ]; then kill -TERM "$pid"; return; fi
  done
}
job() {  # name, genmem arguments: one process, stopped after $limit seconds (see TASKS_PER_CALL)
  local name=$1; shift
  chosen "$name" || return 0
  timeout -s TERM "$limit" genmem "$@" > "$runs/$name.log" 2>&1 &
  local pid=$!
  if [ -n "${TASKS_PER_CALL:-}" ] && [ -n "${results:-}" ]; then stop_after_tasks "$pid" "$results" & fi
  wait "$pid"
  echo "$name: exit $?" >> "$runs/status.txt"
}
protocol() {  # name, arguments of a new run: continued where RUNS holds one with results
  local name=$1; shift
  chosen "$name" || return 0
  local results=$runs/$name/results.json
  if [ -f "$results" ]; then
    results=$results job "$name" bench protocol --resume "$runs/$name" --data-dir "$data" --device "$device" --quiet \
      ${checkpoint_every:+--checkpoint-every "$checkpoint_every"}
  else
    rm -rf "${runs:?}/$name"
    results=$results job "$name" bench protocol "$@" --out "$runs/$name" --data-dir "$data" --device "$device" \
      --quiet ${checkpoint_every:+--checkpoint-every "$checkpoint_every"}
  fi
}
privacy() {  # name, arguments: a new run of the privacy benchmark on MNIST
  local name=$1; shift
  chosen "$name" || return 0
  rm -rf "${runs:?}/$name"
  job "$name" bench privacy --data mnist --data-dir "$data" "$@" --out "$runs/$name" --device "$device"
}

protocol mnist-dgmw-paper --data mnist --variant dgmw "${paper[@]}" &
protocol mnist-dgma-paper --data mnist --variant dgma "${paper[@]}" &
protocol cifar10-dgmw-paper --data cifar10 --variant dgmw "${paper[@]}" &
# The quick profile (DGM at the base widths of its CPU figures) beside each baseline, one process per method
# (merge them with `genmem bench protocol --combine`).
protocol mnist-quick-dgmw --data mnist --variant dgmw "${quick[@]}" --methods dgm-solver,dgm-replay,joint,finetune &
protocol mnist-quick-dgma --data mnist --variant dgma "${quick[@]}" --methods dgm-solver,dgm-replay &
for baseline in dgr mergan ewc; do
  protocol "mnist-quick-$baseline" --data mnist --variant dgmw "${quick[@]}" --methods "$baseline" &
done
protocol cifar10-dgmw-cpu --data cifar10 --variant dgmw "${quick[@]}" &  # the quick profile: the 2-core CIFAR budget
# Split-CIFAR-10 (5 tasks of 2) with ResNet-18 classifiers trained from scratch: the field's GPU protocol, whose
# figures (about 64 for diffusion replay) need a classifier the CPU cannot train. 10 passes: the CPU's best.
protocol split-cifar10-resnet18 --data cifar10 --variant dgmw "${quick[@]}" --classes-per-task 2 --classifier resnet18 \
  --classifier-epochs 10 --methods dgm-solver,dgm-replay,joint,buffer &
for epsilon in 1 4 10 none; do
  privacy "privacy-$epsilon" --epsilons "$epsilon" "${private[@]}" &
done
# Epsilon 10 on five times the images for about the same DP-SGD steps: a lower sampling rate needs less noise.
privacy privacy-10-more-images --epsilons 10 "${private_more[@]}" &
chosen pytest && (OMP_NUM_THREADS=4 timeout -s TERM "$limit" python3 -P -m pytest -v --tb=short -p no:cacheprovider "$tests" \
  > "$runs/pytest.log" 2>&1; echo "pytest: exit $?" >> "$runs/status.txt") &
wait

for memory in "$runs"/mnist-quick-dgmw/memory "$runs"/mnist-dgmw-paper/memory; do
  if chosen sampling && [ -d "$memory/versions" ]; then
    # float16, bfloat16 and float32, each in process and over HTTP (three servers start): 150 s.
    timeout 150 genmem bench sampling "$memory" --device "$device" --sizes "$sizes" --seconds 1 \
      --record "$runs/sampling.md" --csv "$runs/sampling.csv" > "$runs/sampling.log" 2>&1
    echo "sampling $memory: exit $?" >> "$runs/status.txt"
    break
  fi
done

# Everything but the memories in one archive; each paper run whole, to resume it, in pieces of 15 MiB (join
# them with cat). A resume reads the state of the last finished task only: older states stay behind.
tar -czf "$pack/summary.tar.gz" --exclude=memory --exclude=state --exclude=versions -C "$runs" .
for run in mnist-dgmw-paper mnist-dgma-paper cifar10-dgmw-paper; do
  [ -d "$runs/$run" ] && chosen "$run" || continue
  find "$runs/$run/state" -mindepth 1 -maxdepth 1 -name 'task*' | sort | head -n -2 | xargs -r rm -rf
  tar -czf - -C "$runs" "$run" | split -b 15M -d - "$pack/$run.tar.gz.part"
done
ls -l "$pack" >> "$runs/status.txt"
cat "$runs/status.txt"
