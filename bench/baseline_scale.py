"""How the TF-IDF baseline of every run grows with the training rows: time and peak memory at 100k and 1M rows.

For each N it writes N rows of jsonl cycled from data/chinese_sentiment/train.jsonl, each text made unique by its
row number (bench/scale.py's generator), and runs, in a fresh process, what `finetune train` runs for the baseline
(`finetune.train.run_baseline` with configs/textcnn.yaml, train_file the big file, the demo's validation and test):
read the file into Arrow, subsample to baseline_max_train_samples (100,000), fit, pick C, score. The child reports its
RSS after the imports and its peak RSS (ru_maxrss); the growth from the smallest N to the largest is the figure the
target (<= 300 MB) is about.

    python bench/baseline_scale.py
    python bench/baseline_scale.py --rows 20000 100000 --output bench/results/baseline_scale.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import SOURCE, source_rows, write_rows  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def child(train_file: str) -> None:
    """Runs the baseline as a training run would and prints what it measured as one JSON line."""
    sys.path.insert(0, str(REPO))
    from finetune.parsing import parse_args
    from finetune.train import run_baseline

    demo = REPO / "data" / "chinese_sentiment"
    model_args, data_args, training_args = parse_args(
        [
            "--config", str(REPO / "configs" / "textcnn.yaml"),
            "--train_file", train_file,
            "--validation_file", str(demo / "validation.jsonl"),
            "--test_file", str(demo / "test.jsonl"),
            "--output_dir", tempfile.mkdtemp(prefix="baseline-scale-"),
            "--cache_dir", tempfile.mkdtemp(prefix="baseline-scale-cache-"),
        ]
    )  # fmt: skip
    before = rss_mb()
    started = time.perf_counter()
    results = run_baseline(model_args, data_args, training_args)
    print(
        json.dumps(
            {
                "seconds": round(time.perf_counter() - started, 2),
                "rss_after_imports_mb": round(before, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "baseline": results,
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    from common import add_output_argument, write_result

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="training rows to try")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    if not SOURCE.is_file():
        sys.exit(f"{SOURCE} is missing: run `./run.sh prepare` (or data/chinese_sentiment/prepare.py).")
    source = source_rows(SOURCE)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="baseline-scale-") as folder:
        for rows in args.rows:
            path = Path(folder) / f"rows-{rows}.jsonl"
            write_rows(path, rows, source)
            print(f"[baseline_scale] {rows:,} rows", file=sys.stderr, flush=True)
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=True
            )
            runs[str(rows)] = json.loads(done.stdout.strip().splitlines()[-1])
            path.unlink()
    smallest, largest = runs[str(min(args.rows))], runs[str(max(args.rows))]
    growth = round(largest["peak_rss_mb"] - smallest["peak_rss_mb"], 1)
    result = {
        "benchmark": "baseline_scale",
        "rows": args.rows,
        "runs": runs,
        "peak_rss_growth_mb": growth,
        "check": {"peak_rss_growth_mb": growth, "target": "<= 300", "met": growth <= 300},
    }
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
