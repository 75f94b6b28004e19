"""Cache benchmark: data preparation with an empty cache (cold), then with it warm, each in a fresh process.

Data preparation is everything a training run does before it builds the model: read and parse the files,
build the tokenizer (for TextCNN: learn the vocabulary from the training texts) and tokenize. It runs the
TextCNN config's data (data/chinese_sentiment, made by `./run.sh prepare`) through the driver's own
prepare_data. A warm run hashes the files and, when a prepared-data index holds their content, loads the
tokenizer and the tokenized splits without reading them. Prints one JSON object with medians over the
repeats; the target is warm <= 5% of cold (warm_over_cold, target_met).

    python bench/cache.py
    python bench/cache.py --repeats 5
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
from functools import partial
from pathlib import Path

from common import add_output_argument, write_result

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "textcnn.yaml"
TARGET = 0.05


def measure(cache_root: str) -> dict:
    """One run's data preparation, timed in this process (imports and argument parsing excluded)."""
    import datasets

    from finetune.data.prepared import prepare_data
    from finetune.parsing import parse_args
    from finetune.train import build_tokenizer

    datasets.disable_progress_bars()
    arguments = ["--config", str(CONFIG), "--cache_dir", cache_root, "--output_dir", str(Path(cache_root) / "run")]
    model_args, data_args, training_args = parse_args(arguments)
    start = time.perf_counter()
    prepared = prepare_data(model_args, data_args, training_args.seed, partial(build_tokenizer, model_args, data_args))
    seconds = time.perf_counter() - start
    return {
        "data_preparation_seconds": seconds,
        "prepared_hit": prepared.hit,
        "rows": {split: len(dataset) for split, dataset in prepared.splits.items()},
        "vocabulary": len(prepared.tokenizer),
    }


def measure_in_new_process(cache_root: str) -> dict:
    environment = dict(os.environ, PYTHONPATH=str(REPO), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, __file__, "--measure", cache_root]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold/warm pairs; the medians are reported")
    add_output_argument(parser)
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
    for cold_run, warm_run in zip(cold_runs, warm_runs, strict=True):
        if cold_run["prepared_hit"] or not warm_run["prepared_hit"]:
            sys.exit("a cold run hit the prepared data or a warm run missed it: the timing is not what it claims")
        if (cold_run["rows"], cold_run["vocabulary"]) != (warm_run["rows"], warm_run["vocabulary"]):
            sys.exit("a warm run loaded other data than its cold run prepared")
    cold = statistics.median(run["data_preparation_seconds"] for run in cold_runs)
    warm = statistics.median(run["data_preparation_seconds"] for run in warm_runs)
    report = {
        "benchmark": "cache",
        "corpus": "data/chinese_sentiment",
        "config": "configs/textcnn.yaml",
        "rows": cold_runs[0]["rows"],
        "repeats": args.repeats,
        "measured": "read + parse + vocabulary + tokenize (prepare_data), each run in a fresh process",
        "cold_seconds": round(cold, 4),
        "warm_seconds": round(warm, 4),
        "cold_runs": [round(run["data_preparation_seconds"], 4) for run in cold_runs],
        "warm_runs": [round(run["data_preparation_seconds"], 4) for run in warm_runs],
        "warm_over_cold": round(warm / cold, 4),
        "target": TARGET,
        "target_met": warm / cold <= TARGET,
    }
    write_result(report, args.output)


if __name__ == "__main__":
    main()
