#!/usr/bin/env bash
# The training-paths benchmark at full size on a GPU machine, its output kept in a file.
#
#     benchmarks/gpu_check.sh [OUTPUT_DIR] [more training_paths.py flags, e.g. --num-workers 8]
#
# Runs `benchmarks/training_paths.py --device cuda --size full` (both workloads) and writes what it prints to
# OUTPUT_DIR/training_paths_full_<UTC time>.txt and its figures to the .json beside it. OUTPUT_DIR defaults
# to $OUT when that is set (a device machine's folder that comes back), else /tmp/training-paths-results.
# LIMIT_S (default 480) is the hard limit in seconds.
#
# Offline: no pip, no hub. It needs the repository's .venv already holding the CUDA build of torch,
# torchvision, transformers, scipy and soundfile (PYTHON=... names another interpreter), one NVIDIA GPU, and
# a C compiler for torch.compile's Triton launcher (without one, only the +compile row reports an error).
# The data is generated on the machine (include/datasets); the wav2vec2 model is built from its config.
#
# Time on one H200-class GPU, estimated (not yet run on one): about 3-4 minutes; the hard limit below stops
# it at 8 minutes. Rough shares: imports and data generation (60,000 CIFAR-sized images at ~0.15 ms each
# on one core, 280 five-second clips) ~20-30 s; CIFAR-10 plain, train.py and train.py+device-data rows,
# 2 epochs x 100 steps of 500 images each, ~10-20 s apiece with their 20 evaluations of 10,000 images;
# the +compile row 1-2 minutes, nearly all of it torch.compile (a fresh Inductor cache, so compile time
# is measured, not a cache hit); wav2vec2-base-sized model saved and loaded twice plus 2 x 35 steps of
# 8 five-second clips, ~30 s.
set -uo pipefail

cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out_dir=${OUT:-/tmp/training-paths-results}
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    out_dir=$1
    shift
fi
limit_s=${LIMIT_S:-480}
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log="$out_dir/training_paths_full_$stamp.txt"
figures="$out_dir/training_paths_full_$stamp.json"

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no nvidia-smi on this machine; run it where there is an NVIDIA GPU" >&2
    exit 2
fi
if [ ! -x "$python" ]; then
    echo "gpu_check: no interpreter at $python (make the .venv first, or set PYTHON=...)" >&2
    exit 2
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PIP_NO_INDEX=1
inductor_cache=$(mktemp -d -t training-paths-inductor-XXXXXX)
export TORCHINDUCTOR_CACHE_DIR="$inductor_cache" TRITON_CACHE_DIR="$inductor_cache/triton"
trap 'rm -rf "$inductor_cache"' EXIT

{
    echo "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
    echo "cpu cores: $(nproc), limit ${limit_s} s"
} | tee "$log"

timeout --signal=TERM --kill-after=20 "$limit_s" \
    "$python" -u benchmarks/training_paths.py --device cuda --size full --workloads cifar10,acoustic_shield \
    --json "$figures" "$@" 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ]; then
    echo "gpu_check: stopped after ${limit_s} s (LIMIT_S raises it); the rows above finished" | tee -a "$log"
fi
if [ -f "$figures" ]; then
    echo "gpu_check: exit $status; output in $log, figures in $figures"
else
    echo "gpu_check: exit $status; output in $log"
fi
exit "$status"
