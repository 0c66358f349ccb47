#!/usr/bin/env bash
# GPU validation of gan-launch on a machine with one NVIDIA GPU and PyTorch 2.11.0+cu130, from
# binaries built elsewhere (no Rust needed here). In under 10 minutes it runs:
#   1. NCCL with world size 1: collectives correct, host-staged all-reduce bandwidth;
#   2. 1-rank training of biggan-cifar and stylegan2-cifar at their batch, fp32 and bf16:
#      imgs/s, sec/kimg, peak GPU memory (and, in fp32, plan --memory's estimate next to it);
#   3. stylegan2.yaml (256x256) at its per-GPU batch (64 / 8 GPUs = 8): sec/kimg;
#   4. FID feature extraction imgs/s (batch 50), at 256x256 with G generating 4 and 50 images
#      a pass (eval.gen_batch), StyleGAN2's seeded metric noise at 256x256
#      drawn on the device next to the host loop it replaced (ms per image, and equality), and
#      precision/recall and density/coverage of 50,000 fakes against 10,000 reals (seconds);
#   5. the same biggan-cifar step on the CPU and on the GPU from the same weights and batch:
#      relative difference of the updated weights and of the updates (fp32, TF32 off);
# and prints one table at the end. Every command's full output stays in the log directory.
#
#   scripts/gpu-check.sh [--bin DIR] [--python PY] [--out DIR] [--steps N] [--cpu]
#
#   --bin DIR     gan-launch and gan-train (default: target/release)
#   --python PY   the Python whose torch supplies libtorch and the NVIDIA libraries
#                 (default: $GAN_TORCH_PYTHON, else /opt/torch/.venv/bin/python, else .venv/bin/python)
#   --out DIR     logs and the table (default: a new directory under /tmp)
#   --steps N     measured training steps per benchmark (default 20)
#   --only LIST   run only these parts, e.g. --only 1,5 (default: all)
#   --part-secs N stop any one command after N seconds (default 150), so a hang (a stuck NCCL
#                 init, say) costs one row, not the machine's whole time
#   --budget-secs N  start no command after N seconds in all, and cut the last one short there
#                 (default: no budget), so the table is printed within a machine's time limit
#   --cpu         check the script itself on a machine without a GPU: every part runs on the CPU
#                 with tiny settings, and the GPU-only parts (1, 5) are reported as skipped
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=target/release
PY=${GAN_TORCH_PYTHON:-}
OUT=""
STEPS=20
CPU=0
ONLY=1,2,3,4,5
PART_SECS=150
BUDGET_SECS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --cpu) CPU=1; shift ;;
    --only) ONLY=$2; shift 2 ;;
    --part-secs) PART_SECS=$2; shift 2 ;;
    --budget-secs) BUDGET_SECS=$2; shift 2 ;;
    *) echo "gpu-check: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
if [ -z "$PY" ]; then
  for candidate in /opt/torch/.venv/bin/python .venv/bin/python; do
    [ -x "$candidate" ] && { PY=$candidate; break; }
  done
fi
[ -n "$PY" ] && [ -x "$PY" ] || { echo "gpu-check: no Python with torch found; pass --python" >&2; exit 2; }
for b in gan-launch gan-train; do
  [ -x "$BIN/$b" ] || { echo "gpu-check: $BIN/$b is missing; build with 'cargo build --release' or pass --bin" >&2; exit 2; }
done
OUT=${OUT:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
mkdir -p "$OUT"

# libtorch and the NVIDIA libraries (CUDA runtime, cuDNN, NCCL, ...) of that torch.
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') ||
  { echo "gpu-check: $PY cannot import torch" >&2; exit 2; }
SITE=$(dirname "$(dirname "$TORCH_LIB")")
NVIDIA_LIBS=$(ls -d "$SITE"/nvidia/*/lib "$SITE"/nvidia/*/*/lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$TORCH_LIB:$NVIDIA_LIBS${LD_LIBRARY_PATH:-}"
# cudarc opens libnccl.so; the wheel ships libnccl.so.2. gan-launch links the one for its ranks
# (launcher/src/nccl_lib.rs); part 1 runs gan-train directly, so link it here the same way.
NCCL_SO=$(ls "$SITE"/nvidia/nccl/lib/libnccl.so.2 2>/dev/null | head -n1)
if [ -n "$NCCL_SO" ]; then
  mkdir -p "$OUT/lib" && ln -sfn "$NCCL_SO" "$OUT/lib/libnccl.so"
  export LD_LIBRARY_PATH="$OUT/lib:$LD_LIBRARY_PATH"
fi
NCCL_LOADS=$("$PY" -c 'import ctypes; ctypes.CDLL("libnccl.so"); print("yes")' 2>/dev/null || echo no)
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
LAUNCH="$BIN/gan-launch"
TRAIN="$BIN/gan-train"

ROWS=()
# Each row also goes to the log as it comes (and to rows.txt), so a run cut short still tells
# what it measured.
row() {
  ROWS+=("$(printf '%-44s %s' "$1" "$2")")
  printf '%s\n' "${ROWS[-1]}" | tee -a "$OUT/rows.txt" >&2
}
limited() { # limited COMMAND...: COMMAND for at most PART_SECS seconds, and not past the budget
  local secs=$PART_SECS why="--part-secs" rc
  if [ "$BUDGET_SECS" -gt 0 ]; then
    local left=$((started + BUDGET_SECS - $(date +%s)))
    if [ "$left" -le 0 ]; then
      echo "gpu-check: not run, the --budget-secs of $BUDGET_SECS s is spent" >&2
      return 124
    fi
    [ "$left" -lt "$secs" ] && { secs=$left; why="--budget-secs"; }
  fi
  # TERM at the limit, KILL 10 s later if the command is still there. In the foreground, so a
  # Ctrl-C reaches the command at once (gan-launch passes signals on to its ranks, which also
  # die with it).
  timeout --foreground -k 10 "$secs" "$@"
  rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "gpu-check: stopped after $secs s ($why)" >&2
  fi
  return "$rc"
}
step() { echo "== $1" >&2; }
want() { [[ ",$ONLY," == *",$1,"* ]]; }
started=$(date +%s)

if [ "$CPU" = 1 ]; then
  DEVICE=cpu
  GPU="none (--cpu: the script's own check)"
  STEPS=1
else
  DEVICE=cuda
  GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader --id=0 2>/dev/null || echo "unknown (nvidia-smi failed)")
fi

# 1. NCCL
step "1. NCCL world size 1"
if ! want 1; then
  :
elif [ "$CPU" = 1 ]; then
  row "1. NCCL world size 1" "skipped (--cpu); libnccl.so loads: $NCCL_LOADS"
elif [ "$NCCL_LOADS" = no ]; then
  row "1. NCCL world size 1" "FAILED: libnccl.so does not load (no nvidia/nccl/lib/libnccl.so.2 next to $TORCH_LIB)"
elif limited "$TRAIN" gpu-check nccl --max-mib 256 >"$OUT/nccl.txt" 2>&1; then
  correct=$(grep -c "correct" "$OUT/nccl.txt")
  # The last row of each table: host-staged (the first table), device-resident (the second).
  largest=$(awk '/size MiB/ {t++} $1 ~ /^[0-9]+$/ {size[t]=$1; bw[t]=$3}
    END {printf "all-reduce %s MiB: host-staged %s GB/s, on device %s GB/s", size[1], bw[1], bw[2]}' "$OUT/nccl.txt")
  row "1. NCCL world size 1" "$([ "$correct" = 1 ] && echo correct || echo WRONG); $largest"
else
  row "1. NCCL world size 1" "FAILED: $(tail -n1 "$OUT/nccl.txt")"
fi

# 2 and 3. Training throughput through gan-launch bench train.
bench() { # bench LABEL CONFIG BATCH PRECISION [extra bench args]
  local label=$1 config=$2 batch=$3 precision=$4 log
  shift 4
  log="$OUT/bench-$(basename "$config" .yaml)-$precision.txt"
  step "$label"
  if limited "$LAUNCH" bench train "$config" --device "$DEVICE" --precision "$precision" --batch "$batch" \
      --steps "$STEPS" "$@" >"$log" 2>&1; then
    awk -v c="$config" '$1 == c {printf "%s imgs/s, %s sec/kimg, data wait %s%%, peak %s MiB", $2, $3, $8, $10;
      if ($11 != "-") printf " (plan --memory estimate %s MiB)", $11}' "$log" >"$log.row"
    row "$label" "$(cat "$log.row")"
  else
    row "$label" "FAILED: $(grep -m1 '^gpu-check: ' "$log" || grep -m1 -i error "$log" || tail -n1 "$log")"
  fi
}
cpu_args=()
[ "$CPU" = 1 ] && cpu_args=(--threads 2)
if want 2; then
  for precision in fp32 bf16; do
    # The fp32 runs also check plan --memory's estimate (measured in fp32 on the CPU) against
    # the peak the GPU run held.
    estimate=()
    [ "$precision" = fp32 ] && estimate=(--estimate-memory)
    bench "2. biggan-cifar $precision (batch 50)" configs/biggan-cifar.yaml 50 "$precision" "${cpu_args[@]}" "${estimate[@]}"
    bench "2. stylegan2-cifar $precision (batch 64)" configs/stylegan2-cifar.yaml 64 "$precision" "${cpu_args[@]}" "${estimate[@]}"
  done
fi
if ! want 3; then
  :
elif [ "$CPU" = 1 ]; then
  row "3. stylegan2 256x256 (batch 8)" "skipped (--cpu: minutes per step on a CPU)"
else
  for precision in fp32 bf16; do
    bench "3. stylegan2 256x256 $precision (batch 8)" configs/stylegan2.yaml 8 "$precision"
  done
  row "   published (SPECS 5.2)" "2.47 sec/kimg on 8 A100 = about 19.8 GPU-seconds/kimg"
fi

# 4. FID feature extraction: a short run to score, with the standard Inception weights when
# $GAN_FID_WEIGHTS names them, else random ones of the same architecture (same arithmetic).
step "4. FID feature extraction"
weights=${GAN_FID_WEIGHTS:-$OUT/random-inception.safetensors}
want 4 && { [ -f "$weights" ] || limited "$TRAIN" gpu-check random-inception "$weights" >"$OUT/fid-weights.txt" 2>&1; }
if ! want 4; then
  :
elif limited "$LAUNCH" configs/ci-tiny.yaml --set "run.dir=$OUT/runs" --set "train.device=$DEVICE" \
    --set data.resolution=32 --set train.total_kimg=0.064 >"$OUT/fid-run.txt" 2>&1 &&
   limited "$LAUNCH" eval is "$OUT/runs/ci-tiny" --num "$([ "$CPU" = 1 ] && echo 100 || echo 5000)" --batch 50 \
    --weights "$weights" >"$OUT/fid.txt" 2>&1; then
  row "4. FID feature extraction (batch 50)" "$(grep -o '[0-9.]* imgs/s' "$OUT/fid.txt") (generation included)"
else
  row "4. FID feature extraction (batch 50)" "FAILED: $(tail -n1 "$OUT/fid.txt" 2>/dev/null || tail -n1 "$OUT/fid-run.txt")"
fi

# The generator's batch in the metrics at 256x256: a one-step stylegan2.yaml run, its images
# scored with G making 4 (the recipe's eval.gen_batch) and 50 images a pass. The metric is the
# same; this is what the smaller passes cost.
if ! want 4; then
  :
elif [ "$CPU" = 1 ]; then
  row "4. FID 256x256 imgs/s, gen batch 4 | 50" "skipped (--cpu: seconds per image on a CPU)"
else
  step "4. FID generation batch at 256x256"
  rates=()
  if limited "$LAUNCH" configs/stylegan2.yaml --gpus 1 --set "run.dir=$OUT/runs" --set data.source=generated \
      --set train.batch_size=8 --set train.total_kimg=0.008 --set eval.every_kimg=0 \
      >"$OUT/fid256-run.txt" 2>&1; then
    for gen_batch in 4 50; do
      limited "$LAUNCH" eval is "$OUT/runs/stylegan2" --num 1000 --batch 50 --gen-batch "$gen_batch" \
        --weights "$weights" >"$OUT/fid256-$gen_batch.txt" 2>&1
      rates+=("$(grep -o '[0-9.]* imgs/s' "$OUT/fid256-$gen_batch.txt" || echo FAILED)")
    done
    row "4. FID 256x256 imgs/s, gen batch 4 | 50" "${rates[0]} | ${rates[1]} (generation included)"
  else
    row "4. FID 256x256 imgs/s, gen batch 4 | 50" "FAILED: $(tail -n1 "$OUT/fid256-run.txt")"
  fi
fi

if want 4; then
  step "4. seeded metric noise"
  noise_args=(--device "$DEVICE")
  [ "$CPU" = 1 ] && noise_args+=(--images 4)
  if limited "$TRAIN" gpu-check noise "${noise_args[@]}" >"$OUT/noise.txt" 2>&1; then
    row "4. StyleGAN2 metric noise 256x256 (ms/image)" "$(awk '/host stream/ {h=$(NF-1)}
      /tensor form/ {d=$(NF-1)} /largest difference/ {g=$NF}
      END {printf "host loop %s, on %s %s; largest difference %s", h, "'"$DEVICE"'", d, g}' "$OUT/noise.txt")"
  else
    row "4. StyleGAN2 metric noise 256x256 (ms/image)" "FAILED: $(tail -n1 "$OUT/noise.txt")"
  fi
fi

if want 4; then
  step "4. precision/recall and density/coverage"
  manifold_args=(--device "$DEVICE")
  [ "$CPU" = 1 ] && manifold_args+=(--reals 500 --fakes 1000)
  if limited "$TRAIN" gpu-check manifold "${manifold_args[@]}" >"$OUT/manifold.txt" 2>&1; then
    row "4. precision/recall, density/coverage" "$(awk '/reals vs/ {n=$3" vs "$6}
      /precision\/recall/ {p=$5} /density\/coverage/ {d=$5}
      END {printf "%s reals/fakes: pr %s s, dc %s s", n, p, d}' "$OUT/manifold.txt")"
  else
    row "4. precision/recall, density/coverage" "FAILED: $(tail -n1 "$OUT/manifold.txt")"
  fi
fi

# 5. CPU step next to GPU step.
step "5. CPU step vs GPU step"
if ! want 5; then
  :
elif [ "$CPU" = 1 ]; then
  row "5. CPU vs GPU step (biggan-cifar, fp32)" "skipped (--cpu)"
elif limited "$TRAIN" gpu-check step configs/biggan-cifar.yaml >"$OUT/step.txt" 2>&1; then
  row "5. CPU vs GPU step (biggan-cifar, fp32)" "$(grep -E '^  [GD]:' "$OUT/step.txt" | sed 's/relative difference/rel. diff/g' | tr -s ' ' | paste -sd';')"
else
  row "5. CPU vs GPU step (biggan-cifar, fp32)" "FAILED: $(tail -n1 "$OUT/step.txt")"
fi

{
  echo
  echo "gan-launch GPU check: GPU $GPU; torch $TORCH_VERSION; $(($(date +%s) - started)) s; logs in $OUT"
  printf '%-44s %s\n' "check" "result"
  printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/table.txt"
