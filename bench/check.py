"""finetune check at scale, and how well --label_errors finds labels flipped on purpose.

1. Scale: for each N (default 100k and 1M) it writes N rows of jsonl cycled from the demo's train.jsonl, each text
   made unique by its row number (bench/scale.py's generator), and runs in a fresh process what `finetune check`
   runs (configs/textcnn.yaml, train_file the big file, the demo's validation and test): read into Arrow, build the
   tokenizer, hash, count and measure every row, find the file and line of the examples. The child reports its
   seconds and peak RSS; the growth from the smallest N to the largest is what the target (<= 300 MB) is about.
   Beside it, the TextCNN's training throughput (samples/s over ``--train_steps`` steps of the shipped config on
   the same generated rows) gives the time one epoch over the largest file would take, which the check should beat.
2. Label errors: the demo's training labels, ``--flip`` (2%) of them flipped at random (seeded), checked with
   --label_errors; precision and recall against the flipped rows, of the top k (k = the rows flipped) and of every
   row cleanlab flags. The same check on the unflipped files says how many rows it flags there (the demo's own
   label noise, which counts against precision here).

    python bench/check.py --output bench/results/check.json
    python bench/check.py --rows 20000 100000 --skip_label_errors
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import SOURCE, source_rows, write_rows  # noqa: E402

DEMO = REPO / "data" / "chinese_sentiment"
CONFIG = str(REPO / "configs" / "textcnn.yaml")


def check_child(train_file: str, flags: list[str]) -> None:
    """Runs finetune check's report in this process and prints the seconds, peak RSS and the report as JSON."""
    sys.path.insert(0, str(REPO))
    from finetune.check.command import build_report, make_parser, read_arguments

    args = make_parser().parse_args(["--config", CONFIG, *flags])
    train_flags = [
        "--train_file", train_file,
        "--validation_file", str(DEMO / "validation.jsonl"),
        "--test_file", str(DEMO / "test.jsonl"),
        "--cache_dir", tempfile.mkdtemp(prefix="check-bench-cache-"),
    ]  # fmt: skip
    started = time.perf_counter()
    model_args, data_args, namespace = read_arguments(args.config, train_flags)
    report, scan = build_report(model_args, data_args, namespace, args)
    scan.raw.close()
    print(
        json.dumps(
            {
                "seconds": round(time.perf_counter() - started, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "report": report,
            },
            ensure_ascii=False,
            default=str,
        )
    )


def run_child(train_file: str, *flags: str) -> dict:
    arguments = ["--child", train_file, "--child_flags", json.dumps(flags)]
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"child {arguments} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def training_throughput(train_file: Path, steps: int) -> float:
    """Samples per second of the shipped TextCNN config over ``steps`` training steps on ``train_file`` (the median
    of the logged figures)."""
    with tempfile.TemporaryDirectory(prefix="check-bench-train-") as folder:
        done = subprocess.run(
            [
                sys.executable, "-m", "finetune", "train", "--config", CONFIG,
                "--train_file", str(train_file),
                "--validation_file", str(DEMO / "validation.jsonl"),
                "--output_dir", f"{folder}/run", "--cache_dir", f"{folder}/cache",
                "--max_steps", str(steps), "--logging_steps", "20", "--save_strategy", "no",
                "--load_best_model_at_end", "false", "--baseline", "none", "--check", "none",
                "--disable_tqdm", "true", "--report_to", "none",
            ],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
    if done.returncode:
        sys.exit(f"training failed:\n{done.stderr[-3000:]}")
    # The training steps' own throughput, as logged every 20 steps (the first 20, with the warm-up, left out).
    found = [float(value) for value in re.findall(r"'samples_per_second': '([0-9.e+]+)'", done.stdout)]
    return round(statistics.median(found[1:] or found), 1)


def scale(rows_list: list[int], train_steps: int) -> dict:
    source = source_rows(SOURCE)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="check-bench-") as folder:
        for rows in rows_list:
            path = Path(folder) / f"rows-{rows}.jsonl"
            write_rows(path, rows, source)
            print(f"[check] {rows:,} rows", file=sys.stderr, flush=True)
            run = run_child(str(path))
            report = run.pop("report")
            run["problems"] = report["problems"]
            run["check_seconds_in_report"] = report["seconds"]
            runs[str(rows)] = run
            if rows == max(rows_list):
                print(f"[check] training throughput over {train_steps} steps", file=sys.stderr, flush=True)
                samples_per_second = training_throughput(path, train_steps)
            path.unlink()
    largest, smallest = max(rows_list), min(rows_list)
    growth = round(runs[str(largest)]["peak_rss_mb"] - runs[str(smallest)]["peak_rss_mb"], 1)
    epoch_seconds = round(largest / samples_per_second, 1)
    check_seconds = runs[str(largest)]["seconds"]
    return {
        "rows": rows_list,
        "runs": runs,
        "peak_rss_growth_mb": growth,
        "training": {
            "steps": train_steps,
            "samples_per_second": samples_per_second,
            "epoch_seconds_estimated": epoch_seconds,
            "how": f"{largest:,} rows / the samples per second of {train_steps} steps of configs/textcnn.yaml",
        },
        "check": {
            "peak_rss_growth_mb": growth,
            "rss_target": "<= 300",
            "rss_met": growth <= 300,
            "check_to_epoch_time": round(check_seconds / epoch_seconds, 3),
            "time_target": "< 1 (the check of the largest file takes less than one training epoch on it)",
            "time_met": check_seconds < epoch_seconds,
        },
    }


def label_errors(flip: float, seed: int, folds: int) -> dict:
    rows = [json.loads(line) for line in (DEMO / "train.jsonl").read_text(encoding="utf-8").splitlines() if line]
    labels = sorted({row["label"] for row in rows})
    generator = random.Random(seed)
    flipped = sorted(generator.sample(range(len(rows)), round(flip * len(rows))))
    for index in flipped:
        rows[index]["label"] = generator.choice([label for label in labels if label != rows[index]["label"]])
    flags = ["--label_errors", "--folds", str(folds), "--top", str(len(rows))]
    with tempfile.TemporaryDirectory(prefix="check-bench-flip-") as folder:
        path = Path(folder) / "train.jsonl"
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        print(f"[check] label errors: {len(flipped)} of {len(rows):,} training labels flipped", file=sys.stderr)
        run = run_child(str(path), *flags)
        print("[check] label errors: the same files unflipped", file=sys.stderr)
        unflipped = run_child(str(DEMO / "train.jsonl"), *flags)
    errors = run["report"]["label_errors"]
    truth = {index + 1 for index in flipped}  # jsonl line numbers

    def train_lines(top: list[dict]) -> list[int | None]:
        return [row["at"][0]["line"] if row["at"][0]["split"] == "train" else None for row in top]

    ranked = train_lines(errors["top"])
    k = len(flipped)
    at_k = sum(line in truth for line in ranked[:k])
    found = sum(line in truth for line in ranked)
    return {
        "training_rows": len(rows),
        "flipped": k,
        "seed": seed,
        "cross_validation": errors["cross_validation"],
        "flagged": errors["flagged"],
        "flagged_in_train": sum(line is not None for line in ranked),
        "top_k": {"k": k, "precision_and_recall": round(at_k / k, 4)},  # k rows named, k flipped: the two are one
        "recall_at": {f"{m}k": round(sum(line in truth for line in ranked[: m * k]) / k, 4) for m in (2, 4)},
        "all_flagged": {
            "precision": round(found / max(len(ranked), 1), 4),
            "recall": round(found / k, 4),
        },
        "unflipped": {
            "flagged": unflipped["report"]["label_errors"]["flagged"],
            "cross_validation": unflipped["report"]["label_errors"]["cross_validation"],
        },
        "seconds": run["seconds"],
        "label_errors_seconds": errors["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    from common import add_output_argument, write_result

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="training rows to try")
    parser.add_argument("--train_steps", type=int, default=200, help="steps that measure training throughput")
    parser.add_argument("--flip", type=float, default=0.02, help="share of the demo's training labels flipped")
    parser.add_argument("--seed", type=int, default=0, help="which labels are flipped")
    parser.add_argument("--folds", type=int, default=5, help="folds of --label_errors")
    parser.add_argument("--skip_scale", action="store_true")
    parser.add_argument("--skip_label_errors", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child_flags", default="[]", help=argparse.SUPPRESS)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if args.child:
        check_child(args.child, json.loads(args.child_flags))
        return 0
    if not SOURCE.is_file():
        sys.exit(f"{SOURCE} is missing: run `./run.sh prepare` (or data/chinese_sentiment/prepare.py).")
    result = {"benchmark": "check"}
    if not args.skip_label_errors:
        result["label_errors"] = label_errors(args.flip, args.seed, args.folds)
    if not args.skip_scale:
        result["scale"] = scale(args.rows, args.train_steps)
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
