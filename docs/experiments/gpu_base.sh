#!/usr/bin/env bash
# The `base` preset on one GPU inside a fixed wall-clock window: build shards on every core,
# train the four stages with --time-budget, evaluate suite by suite. Written for a lent GPU
# box whose Python has torch but neither Open3D nor the MiniLM weights: rays go through the
# torch engine (TANGO3D_RAYCAST=torch) and captions through a precomputed table.
#
#   # here, once: the caption table for the shards the GPU box will build
#   python -m tango3d_core.train.text_table .gpu/text.safetensors --shapes-per-category 64 --prompts
#   # there (OUT: where results go; WINDOW_S: the whole run's seconds)
#   OUT=out WINDOW_S=560 bash docs/experiments/gpu_base.sh
#
# Everything lands in $OUT/results.tar.gz (refreshed after each phase, so a run cut short
# still returns what it finished) plus $OUT/summary.txt.
set -u
OUT=${OUT:-out}
WINDOW_S=${WINDOW_S:-560}
PRESET=${PRESET:-base}
SPC=${SPC:-56}                 # training shapes per category (952 shapes = 30 shards of 32: two rounds on 15 workers)
VIEWS=${VIEWS:-6}
RES=${RES:-128}
WORKERS=${WORKERS:-14}
EVAL_RESERVE_S=${EVAL_RESERVE_S:-150}
EVAL_ARGS=${EVAL_ARGS:-}       # e.g. "--quick" for a rehearsal
DEVICE=${DEVICE:-cuda}
TABLE=${TABLE:-.gpu/text.safetensors}
WORK=${WORK:-/tmp/t3gpu}
T0=$(date +%s)
left() { echo $(( WINDOW_S - ($(date +%s) - T0) )); }
mkdir -p "$OUT" "$WORK/logs"
export PYTHONUNBUFFERED=1 TANGO3D_RAYCAST=torch PYTORCH_NVML_BASED_CUDA_CHECK=1
pack() {
  for d in "$WORK"/run/*/; do
    [ -f "$d/log.csv" ] && cp -f "$d/log.csv" "$WORK/logs/$(basename "$d").csv"
    [ -f "$d/DONE" ] && cp -f "$d/DONE" "$WORK/logs/$(basename "$d").done.json"
  done
  cp -f "$WORK/run/run.json" "$WORK/logs/" 2>/dev/null
  tar -czf "$OUT/results.tar.gz" -C "$WORK" logs
  { echo "elapsed $(( $(date +%s) - T0 )) s"
    grep -a -h -o -E "stage [a-z_]+: ([0-9]+ of [0-9]+ steps fit [0-9]+ s|[0-9]+ s)|exported .*|train (exit|bf16|fp32).*|data build.*|\"(shapes|seconds|shapes_per_second)\": [0-9.]+" \
      "$WORK"/logs/data.log "$WORK"/logs/train.log 2>/dev/null
    cat "$WORK"/logs/eval_*.log 2>/dev/null | grep -v -E "^ +(File|\^)" | tail -40; } > "$OUT/summary.txt"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; python3 -c "import torch, numpy, trimesh; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'trimesh', trimesh.__version__)"; nproc; } > "$WORK/logs/machine.log" 2>&1

# 1. data (the train CLI then finds the shards built). A build that overruns DATA_S is
# dropped for a quarter-size one, so training still gets its time.
DATA_S=${DATA_S:-210}
build() {
  timeout "$2" python3 -m tango3d_core.data build "$WORK/data" --split train --shapes-per-category "$1" \
    --views "$VIEWS" --resolution "$RES" --workers "$((WORKERS + 1))" --no-progress >> "$WORK/logs/data.log" 2>&1
  local rc=$?
  echo "data build ($1 per category) exit $rc after $(( $(date +%s) - T0 )) s" >> "$WORK/logs/data.log"
  return $rc
}
build "$SPC" "$DATA_S" || { rm -rf "$WORK/data"; SPC=$(( (SPC + 3) / 4 )); build "$SPC" 120; }
pack

train() {  # $1: precision
  TRAIN_MIN=$(python3 -c "print(max(0.5, ($(left) - $EVAL_RESERVE_S - 45) / 60))")
  echo "train $1, budget $TRAIN_MIN min" >> "$WORK/logs/train.log"
  timeout $(( $(left) - EVAL_RESERVE_S + 20 )) python3 -m tango3d_core.train --preset "$PRESET" --out "$WORK/run" \
    --data "$WORK/data" --shapes-per-category "$SPC" --views "$VIEWS" --resolution "$RES" --workers "$WORKERS" \
    --threads 4 --device "$DEVICE" --xyz-loss yaw_invariant --text-table "$TABLE" --precision "$1" \
    --time-budget "$TRAIN_MIN" --export "$WORK/ckpt" --export-dtype float32 --no-progress >> "$WORK/logs/train.log" 2>&1
  local rc=$?
  echo "train exit $rc" >> "$WORK/logs/train.log"
  return $rc
}
# 2. train in what is left before the evaluation reserve; if bf16 breaks, resume in fp32.
train bf16 || { [ "$(left)" -gt $(( EVAL_RESERVE_S + 90 )) ] && train fp32; }
pack

# 3. evaluate, most telling suite first, each with its own deadline and JSON.
for suite in pixel2point retrieval vae point2pixel part-transfer; do
  t=$(( $(left) - 10 ))
  [ "$t" -lt 15 ] && { echo "skipped: no time" > "$WORK/logs/eval_$suite.log"; continue; }
  timeout "$t" python3 -m tango3d_core.eval --suite "$suite" --checkpoint "$WORK/ckpt" --device "$DEVICE" \
    --baselines random --text-table "$TABLE" --threads 4 --no-progress $EVAL_ARGS \
    --json "$WORK/logs/eval_$suite.json" > "$WORK/logs/eval_$suite.log" 2>&1
  echo "eval $suite exit $?" >> "$WORK/logs/eval_$suite.log"
  pack
done
pack
cat "$OUT/summary.txt"
