#!/usr/bin/env bash
# A check on one GPU, not a benchmark: the demo trained on cuda, `finetune search` with three processes sharing
# the GPU, a search killed with SIGKILL and resumed by the same command, a run and a search out of GPU memory (the
# allocator held to a small share of it), and the training, search and model tests with cuda visible. Logs and
# search.json go to $OUT (default /tmp/gpu_check). About 6 minutes on an H100 before the out-of-memory part.
#
#   bash bench/gpu_check.sh           # on the GPU machine
#   SMALL=1 bash bench/gpu_check.sh   # the test fixture and a tiny model on the CPU: checks the script
#
# A GPU machine without the network gets the packages its image lacks as wheels in the git-ignored .whl/
# (Python 3.12 there), fetched here with:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     datasets==5.2.0 evaluate==0.4.6 optuna==5.1.0 alembic==1.20.1 SQLAlchemy==2.1.9 colorlog==6.12.0 \
#     Mako==1.4.3 greenlet==3.5.6 multiprocess==0.70.19 dill==0.4.1 transformers==5.24.0 fsspec==2026.9.0 \
#     tokenizers==0.23.3
# (tokenizers 0.23.3: the image's 0.23.2 drops windows, and long_text: windows refuses it), and
# data/chinese_sentiment/*.jsonl (./run.sh prepare) travel beside it.
set -uo pipefail
cd "$(dirname "$0")/.."
SMALL=${SMALL:-0}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python}
if [ -d .whl ] && command -v nvidia-smi >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -m finetune "$@"\n' >/tmp/bin/finetune && chmod +x /tmp/bin/finetune
  export PATH=/tmp/bin:$PATH
  PY=python3
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export HF_HOME=/tmp/gpu_check_hf
W=/tmp/gpu_check_work
rm -rf "$W" && mkdir -p "$W"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, transformers, tokenizers, datasets, optuna, finetune
print('cuda', torch.cuda.is_available(), 'torch', torch.__version__, 'transformers', transformers.__version__,
      'tokenizers', tokenizers.__version__, 'datasets', datasets.__version__, 'optuna', optuna.__version__)"
if [ "$SMALL" = 1 ]; then
  DATA=(--train_file tests/fixtures/reviews_train.jsonl --validation_file tests/fixtures/reviews_validation.jsonl
        --test_file tests/fixtures/reviews_test.jsonl --embedding_dim 16 --num_filters 8 --wide_ngram_buckets 1024)
  TRIALS=3 JOBS=2 KILL_AFTER=20
else
  DATA=() TRIALS=9 JOBS=3 KILL_AFTER=30
fi
states() {  # the trials of a search.json: how many in each state, and their numbers
  $PY -c "import collections, json, sys
trials = json.load(open(sys.argv[1]))['trials']
print('states', dict(collections.Counter(t['state'] for t in trials)), 'numbers', sorted(t['number'] for t in trials))" "$1"
}

echo "== 1. the demo trained on the GPU"
start=$(date +%s)
timeout 150 $PY -m finetune train --config configs/textcnn.yaml --output_dir "$W/train" --cache_dir "$W/cache" \
  --overwrite_output_dir true "${DATA[@]}" >"$OUT/train.log" 2>&1
echo "train: exit $?, $(($(date +%s) - start)) s"
grep -E "^\[finetune\] (model|best checkpoint|baseline|against)" "$OUT/train.log"
cp "$W/train/all_results.json" "$OUT/" 2>/dev/null

echo "== 2. search: $TRIALS trials, $JOBS processes on one GPU"
start=$(date +%s)
timeout 200 $PY -m finetune search --config configs/textcnn.yaml --n_trials "$TRIALS" --n_jobs "$JOBS" --top_k 2 \
  --selection_seeds 1 --search_dir "$W/search" --cache_dir "$W/cache" "${DATA[@]}" >"$OUT/search.log" 2>&1
echo "search: exit $?, $(($(date +%s) - start)) s"
grep -E "^\[finetune\] (selection: trial [0-9]+,|winner|test accuracy)" "$OUT/search.log"
states "$W/search/search.json" && cp "$W/search/search.json" "$OUT/"

echo "== 3. a search killed with SIGKILL after $KILL_AFTER s, then the same command"
printf 'learning_rate: {low: 1.0e-3, high: 5.0e-3, log: true}\nnum_train_epochs: [1, 2]\n' >"$W/space.yaml"
RESUME=(--config configs/textcnn.yaml --search_space "$W/space.yaml" --n_trials 4 --top_k 1 --selection_seeds 1
        --search_dir "$W/resume" --cache_dir "$W/cache" --heartbeat_interval 5 "${DATA[@]}")
$PY -m finetune search "${RESUME[@]}" >"$OUT/resume1.log" 2>&1 &
pid=$!
sleep "$KILL_AFTER"
kill -9 "$pid"
wait "$pid" 2>/dev/null
start=$(date +%s)
timeout 150 $PY -m finetune search "${RESUME[@]}" >"$OUT/resume2.log" 2>&1
echo "resumed search: exit $?, $(($(date +%s) - start)) s"
states "$W/resume/search.json"

echo "== 4. the GPU out of memory: a run with a batch too large, and a search whose space holds one"
if $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  # torch's allocator held to 0.2% of the GPU (160 MB of an H100): batches of 32 fit, batches of 4096 do not.
  printf 'import sys, torch\ntorch.cuda.set_per_process_memory_fraction(0.002)\nfrom finetune.cli import main\nsys.exit(main(sys.argv[1:]))\n' >"$W/small_gpu.py"
  timeout 100 $PY "$W/small_gpu.py" train --config configs/textcnn.yaml --output_dir "$W/oom" --cache_dir "$W/cache" \
    --per_device_train_batch_size 4096 --max_length 512 --num_train_epochs 1 >"$OUT/oom_train.log" 2>&1
  echo "train, batch 4096: exit $? (2 expected)"; grep -E "^error:" "$OUT/oom_train.log"
  printf 'per_device_train_batch_size: [32, 4096]\nlearning_rate: {low: 1.0e-3, high: 5.0e-3, log: true}\n' >"$W/oom_space.yaml"
  timeout 200 $PY "$W/small_gpu.py" search --config configs/textcnn.yaml --search_space "$W/oom_space.yaml" \
    --n_trials 4 --top_k 1 --selection_seeds 0 --num_train_epochs 1 --search_dir "$W/oom_search" \
    --cache_dir "$W/cache" >"$OUT/oom_search.log" 2>&1
  echo "search: exit $? (0 expected, the trials of batch 4096 failed)"
  grep -E "trial [0-9]+: failed" "$OUT/oom_search.log" | cut -c1-200
  states "$W/oom_search/search.json"
else
  echo "skipped: no cuda"
fi

if [ "$SMALL" != 1 ]; then
  echo "== 5. tests with cuda visible"
  timeout 200 $PY -m pytest -q -p no:cacheprovider -n 6 tests/test_train.py tests/test_search.py tests/test_decoders.py \
    tests/test_windows.py tests/test_predict.py tests/test_lora.py tests/test_multilabel.py \
    tests/test_class_weights.py >"$OUT/pytest.log" 2>&1
  echo "tests: exit $?"
  grep -E "passed|failed|^FAILED|^ERROR" "$OUT/pytest.log" | tail -20
fi
