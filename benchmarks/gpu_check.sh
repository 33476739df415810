#!/usr/bin/env bash
# One command for a machine with a GPU: install as the README says, run the CUDA tests, the bench's CUDA
# cells (float32 and bfloat16 autocast for the codecs and VGG16, channels_last, torch.compile) and the SR-step cost
# cell; JSON into one folder. OUT/gpu.txt also says whether bf16 is fast there (codecloss._dtype.fast_bf16_available).
# Sized to finish in under 8 minutes on one modern GPU: the steps' time limits add up to 480 s.
#
#   benchmarks/gpu_check.sh                      # venv in .venv-gpu, results in gpu_check_results/
#   benchmarks/gpu_check.sh --out /tmp/gpu --venv /opt/venv-codecloss
#   benchmarks/gpu_check.sh --no-install         # reuse the venv as it is
#   benchmarks/gpu_check.sh --dry-run            # list what it would run, run nothing (works without a GPU)
#
# Writes OUT/summary.json (each step: command, exit code, seconds), OUT/gpu.txt (nvidia-smi -L, torch, fast bf16),
# OUT/cuda_tests.xml (pytest JUnit), OUT/bench_cuda_eager.json, OUT/bench_cuda_compile.json, OUT/sr_step.json.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/gpu_check_results"
VENV="$ROOT/.venv-gpu"
DRY_RUN=0
INSTALL=1

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --no-install) INSTALL=0 ;;
    --out) [ $# -ge 2 ] || { echo "gpu_check.sh: error: --out needs a folder" >&2; exit 2; }; OUT="$2"; shift ;;
    --venv) [ $# -ge 2 ] || { echo "gpu_check.sh: error: --venv needs a folder" >&2; exit 2; }; VENV="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

PY="$VENV/bin/python"
CODEC_NETS="codecloss-small-mse bmshj2018-hyperprior-mse-q3"

# name|time limit in seconds|command (run from the repository root)
STEPS=()
if [ "$INSTALL" = 1 ]; then
  STEPS+=("venv|30|python3 -m venv $VENV")
  STEPS+=("install|180|$PY -m pip install --quiet --upgrade pip && $PY -m pip install --quiet \".[test]\"")
fi
STEPS+=(
  "gpu|20|nvidia-smi -L > $OUT/gpu.txt && $PY -c \"import torch, sys; from codecloss._dtype import fast_bf16_available as fast; print(torch.__version__, torch.cuda.get_device_name(0), 'fast bf16:', fast('cuda')); sys.exit(0 if torch.cuda.is_available() else 1)\" >> $OUT/gpu.txt && cat $OUT/gpu.txt"
  "cuda-tests|40|$PY -m pytest tests -q -k 'cuda or gpu' -m 'slow or not slow' -p no:cacheprovider --junitxml $OUT/cuda_tests.xml"
  "bench-eager|50|$PY -m codecloss bench --device cuda --dtype float32 bfloat16 --channels-last both --compile off --networks $CODEC_NETS vgg16-lpips vgg19-gatys --modes forward forward_backward --batch 4 --resolution 256 --reps 10 --no-progress --json $OUT/bench_cuda_eager.json"
  "bench-compile|100|$PY -m codecloss bench --device cuda --dtype float32 bfloat16 --channels-last on --compile on --networks codecloss-small-mse vgg16-lpips --modes forward_backward --batch 4 --resolution 256 --reps 10 --no-progress --json $OUT/bench_cuda_compile.json"
  "sr-step|60|$PY benchmarks/sr_step.py --device cuda --dtype float32 bfloat16 --batch 16 --lr-size 48 --reps 20 --out $OUT/sr_step.json"
)

if [ "$DRY_RUN" = 1 ]; then
  echo "gpu_check.sh --dry-run: would write into $OUT and run, from $ROOT:"
  for step in "${STEPS[@]}"; do
    IFS='|' read -r name limit command <<< "$step"
    printf '  [%s, limit %ss] %s\n' "$name" "$limit" "$command"
  done
  exit 0
fi

cd "$ROOT" || exit 1
mkdir -p "$OUT"
SUMMARY="$OUT/summary.json"
echo '{"steps": [' > "$SUMMARY"
failed=0
first=1
for step in "${STEPS[@]}"; do
  IFS='|' read -r name limit command <<< "$step"
  echo "== $name (limit ${limit}s): $command"
  start=$(date +%s)
  timeout "$limit" bash -c "$command" 2>&1 | tee "$OUT/$name.log"
  code=${PIPESTATUS[0]}
  seconds=$(( $(date +%s) - start ))
  [ "$code" = 0 ] || failed=1
  [ "$first" = 1 ] || echo ',' >> "$SUMMARY"
  first=0
  "${PYTHON_FOR_JSON:-python3}" -c 'import json, sys; print(json.dumps({"step": sys.argv[1], "command": sys.argv[2], "exit_code": int(sys.argv[3]), "seconds": int(sys.argv[4]), "timed_out": sys.argv[3] == "124"}), end="")' \
    "$name" "$command" "$code" "$seconds" >> "$SUMMARY"
  if [ "$name" = gpu ] && [ "$code" != 0 ]; then
    echo "gpu_check.sh: no usable CUDA GPU; stopping" >&2
    break
  fi
done
echo ']}' >> "$SUMMARY"
echo "results in $OUT (summary: $SUMMARY)"
exit "$failed"
