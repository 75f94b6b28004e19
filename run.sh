#!/usr/bin/env bash
# Set-up and the main jobs, from a fresh clone:
#   ./run.sh          install, prepare the Chinese review sentiment demo, train TextCNN, show test results
#   ./run.sh test     install with the dev extra and run the tests (extra arguments go to pytest)
#   ./run.sh prepare  only write data/chinese_sentiment/{train,validation,test}.jsonl
# Without an active virtual environment, one is created in .venv. Everything runs offline.
set -euo pipefail
cd "$(dirname "$0")"

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PIP_DISABLE_PIP_VERSION_CHECK=1

setup() {
  local extras=$1
  if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    source .venv/bin/activate
  fi
  # Install torch on its own first: a pinned release (CPU build where the machine provides one) instead
  # of whatever newest build a plain `torch` requirement would pull in. TORCH_VERSION picks another.
  python -c "import torch" 2>/dev/null || pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
  # The tested versions of the libraries (constraints.txt), unless TORCH_VERSION asks for another torch.
  if [ -n "${TORCH_VERSION:-}" ]; then
    pip install --quiet -e ".[${extras}]"
  else
    pip install --quiet -e ".[${extras}]" -c constraints.txt
  fi
}

case "${1:-demo}" in
  demo)
    setup demo,deploy
    python data/chinese_sentiment/prepare.py
    finetune train --config configs/textcnn.yaml --overwrite_output_dir true "${@:2}"
    python data/chinese_sentiment/show_results.py outputs/textcnn
    ;;
  prepare)
    setup demo
    python data/chinese_sentiment/prepare.py "${@:2}"
    ;;
  test)
    setup dev,demo,deploy,tracking,lora
    python -m pytest "${@:2}"
    ;;
  *)
    echo "usage: ./run.sh [demo|test|prepare] [arguments]" >&2
    exit 2
    ;;
esac
