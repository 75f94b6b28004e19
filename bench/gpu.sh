#!/usr/bin/env bash
# BERT-base-sized fine-tuning on one GPU at bf16, eager and with torch.compile: samples/s, step time (CUDA
# events), peak GPU memory and MFU, as one JSON object on stdout (progress on stderr). About 2-3 minutes on an
# H100, most of it compiling. Arguments go to bench/gpu_mfu.py:
#
#   bash bench/gpu.sh                          # the benchmark
#   bash bench/gpu.sh --tiny                   # a tiny model on the CPU: checks that the script runs
#   bash bench/gpu.sh --batch_size 32 --seq_len 512 --modes compiled
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if command -v nvidia-smi >/dev/null && [[ " $* " != *" --tiny "* ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >&2
fi
exec "${PYTHON:-python}" bench/gpu_mfu.py "$@"
