"""Long texts: truncate against windows (long_text) on the online shopping reviews' category task.

For each max_length (64 and 128 by default) and each long_text mode, one TextCNN run of `finetune train`
(configs/textcnn.yaml, the shopping_category files of bench/corpora.py, one seed) and then `finetune evaluate` of
its best model on the whole test split and on its long reviews: those with more characters than max_length (the
TextCNN reads one token a character, spaces dropped, so these are the texts that truncation cuts). Reports test
accuracy and macro-F1 on both, the training time and the windows per text, and the evaluation time over the whole
test split: what reading every part of a long review costs.

    python bench/long_text.py --output bench/results/long_text.json
    python bench/long_text.py --max_lengths 64 --epochs 1          # quicker, for a look
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from common import add_output_argument, write_result

REPO = Path(__file__).resolve().parent.parent
MODES = ("truncate", "windows")


def corpus_dir(name: str) -> Path:
    spec = importlib.util.spec_from_file_location("corpora", REPO / "bench" / "corpora.py")
    corpora = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpora)
    return corpora.corpus_dir(name)


def long_rows(test_file: Path, max_length: int, target: Path) -> int:
    """Writes the test rows with more than max_length characters (spaces not counted) to ``target``."""
    kept = 0
    with open(test_file, encoding="utf-8") as source, open(target, "w", encoding="utf-8") as output:
        for line in source:
            if len("".join(json.loads(line)["text"].split())) > max_length:
                output.write(line)
                kept += 1
    return kept


def evaluate(model: Path, test_file: Path, output: Path) -> dict:
    command = [sys.executable, "-m", "finetune", "evaluate", "--model", str(model), "--test_file", str(test_file)]
    started = time.perf_counter()
    subprocess.run([*command, "--output", str(output)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    document = json.loads(output.read_text(encoding="utf-8"))
    return {
        "samples": document["samples"],
        "accuracy": round(document["metrics"]["accuracy"], 4),
        "macro_f1": round(document["metrics"]["f1"], 4),
        "evaluate_seconds": round(seconds, 2),
    }


def run(mode: str, max_length: int, data: Path, work: Path, long_file: Path, args) -> dict:
    output_dir = work / f"{mode}-{max_length}"
    command = [sys.executable, "-m", "finetune", "train", "--config", "configs/textcnn.yaml"]
    command += ["--output_dir", str(output_dir), "--overwrite_output_dir", "true", "--disable_tqdm", "true"]
    command += [f"--{split}_file={data / f'{split}.jsonl'}" for split in ("train", "validation", "test")]
    command += ["--max_length", str(max_length), "--long_text", mode, "--seed", str(args.seed), "--baseline", "none"]
    command += ["--num_train_epochs", str(args.epochs)] if args.epochs else []
    print(f"[long_text] {mode}, max_length {max_length}", file=sys.stderr)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=sys.stderr)
    wall = time.perf_counter() - started
    results = json.loads((output_dir / "all_results.json").read_text(encoding="utf-8"))
    return {
        "train_rows": results["train_samples"],
        "train_windows": results.get("train_windows", results["train_samples"]),
        "windows_per_test_text": round(
            results.get("test_windows", results["test_samples"]) / results["test_samples"], 3
        ),
        "train_seconds": round(results["train_runtime"], 1),
        "epochs": results["epoch"],
        "train_wall_seconds": round(wall, 1),
        "test": evaluate(output_dir, data / "test.jsonl", work / f"{mode}-{max_length}-test.json"),
        "test_long": evaluate(output_dir, long_file, work / f"{mode}-{max_length}-long.json"),
        "command": " ".join(command[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="shopping_category", help="a name of bench/corpora.py")
    parser.add_argument("--max_lengths", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=float, help="num_train_epochs (default: the config's)")
    parser.add_argument("--work_dir", type=Path, default=REPO / "outputs" / "bench-long-text")
    add_output_argument(parser)
    args = parser.parse_args(argv)

    data = corpus_dir(args.corpus)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    settings = {}
    for max_length in args.max_lengths:
        long_file = args.work_dir / f"test_longer_than_{max_length}.jsonl"
        long_count = long_rows(data / "test.jsonl", max_length, long_file)
        runs = {mode: run(mode, max_length, data, args.work_dir, long_file, args) for mode in MODES}
        truncate, windows = runs["truncate"], runs["windows"]
        settings[str(max_length)] = {
            "long_test_texts": long_count,
            **runs,
            "windows_minus_truncate": {
                "test_accuracy": round(windows["test"]["accuracy"] - truncate["test"]["accuracy"], 4),
                "long_test_accuracy": round(windows["test_long"]["accuracy"] - truncate["test_long"]["accuracy"], 4),
            },
            "windows_over_truncate": {
                "train_seconds": round(windows["train_seconds"] / truncate["train_seconds"], 3),
                "evaluate_seconds": round(
                    windows["test"]["evaluate_seconds"] / truncate["test"]["evaluate_seconds"], 3
                ),
            },
        }
    write_result(
        {
            "benchmark": "long_text",
            "data": f"{args.corpus} ({data}); long texts: test rows with more characters than max_length",
            "seed": args.seed,
            "max_lengths": settings,
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
        args.output,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
