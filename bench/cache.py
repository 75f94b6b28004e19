"""Cache benchmark: data preparation (read + tokenize) with an empty tokenized-data cache, then with it warm.

Runs the TextCNN config's data (data/chinese_sentiment, made by `./run.sh prepare`) through the training
driver's own functions, each time in a fresh process as a training run would: load_raw_splits (read the
files) and tokenize_splits (the cache). The vocabulary is built in between, as in training; its time is
reported apart, since the cache does not hold it. The files are read on every run, warm or cold: that is
what guarantees the current content is what gets tokenized. Prints one JSON object with medians over the
repeats; the target is warm data preparation <= 5% of cold (warm_over_cold), and tokenize_warm_over_cold
is the same ratio for the tokenization step alone.

    python bench/cache.py
    python bench/cache.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "textcnn.yaml"
TARGET = 0.05


def measure(cache_root: str) -> dict:
    """One run's data preparation, timed in this process (imports excluded)."""
    import datasets

    from finetune.config import parse_args
    from finetune.data import default_cache_dir, load_raw_splits, tokenize_splits
    from finetune.train import build_tokenizer

    datasets.disable_progress_bars()
    arguments = ["--config", str(CONFIG), "--cache_dir", cache_root, "--output_dir", str(Path(cache_root) / "run")]
    model_args, data_args, training_args = parse_args(arguments)
    start = time.perf_counter()
    raw = load_raw_splits(data_args, seed=training_args.seed)
    read = time.perf_counter()
    tokenizer = build_tokenizer(model_args, data_args, raw)
    vocabulary = time.perf_counter()
    tokenized = tokenize_splits(raw.splits, tokenizer, data_args, default_cache_dir(data_args))
    done = time.perf_counter()
    return {
        "read_seconds": read - start,
        "tokenize_seconds": done - vocabulary,
        "data_preparation_seconds": (read - start) + (done - vocabulary),
        "vocabulary_seconds": vocabulary - read,
        "rows": {split: len(dataset) for split, dataset in tokenized.items()},
    }


def measure_in_new_process(cache_root: str) -> dict:
    environment = dict(os.environ, PYTHONPATH=str(REPO), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, __file__, "--measure", cache_root]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    keys = ("read_seconds", "tokenize_seconds", "data_preparation_seconds", "vocabulary_seconds")
    return {key: round(statistics.median(run[key] for run in runs), 4) for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold/warm pairs; the medians are reported")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one run in this process, into this cache
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    if not (REPO / "data" / "chinese_sentiment" / "train.jsonl").is_file():
        sys.exit("data/chinese_sentiment/train.jsonl is missing: run `./run.sh prepare` first.")
    cold_runs, warm_runs = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache_root:
            cold_runs.append(measure_in_new_process(cache_root))
            warm_runs.append(measure_in_new_process(cache_root))
    cold, warm = median_of(cold_runs), median_of(warm_runs)
    ratio = warm["data_preparation_seconds"] / cold["data_preparation_seconds"]
    tokenize_ratio = warm["tokenize_seconds"] / cold["tokenize_seconds"]
    report = {
        "corpus": "data/chinese_sentiment",
        "config": "configs/textcnn.yaml",
        "rows": cold_runs[0]["rows"],
        "repeats": args.repeats,
        "cold": cold,
        "warm": warm,
        "warm_over_cold": round(ratio, 4),
        "tokenize_warm_over_cold": round(tokenize_ratio, 4),
        "target": TARGET,
        "target_met": ratio <= TARGET,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
