"""Accuracy benchmark on the Chinese review sentiment demo: TF-IDF baseline, TextCNN and MiniLM BERT.

Every model is trained and tested on the same split (data/chinese_sentiment, made by prepare.py) with
each seed; TextCNN and BERT go through `finetune train --seeds ...`, the real command. BERT on a CPU is
slow, so by default it trains on the first --bert_train_samples training rows and picks its best checkpoint
on the first --bert_eval_samples validation rows (the test split is whole for every model); bert_no_extension
(MiniLM without extend_vocabulary) runs with the first seed only, to show what the option does.
Prints one JSON object: accuracy and macro-F1 as mean and standard deviation over the seeds, train
seconds and training samples per second, for each model.

    python bench/accuracy.py                                  # everything, 3 seeds
    python bench/accuracy.py --models tfidf textcnn --seeds 1 2 3
    python bench/accuracy.py --corpus shopping_category --models textcnn --seeds 42 43 44   # ../shared/data

--corpus takes a name of bench/corpora.py (demo by default). Every TextCNN and BERT run also reports the TF-IDF
baseline that `finetune train` fits on its splits (``baseline``, and ``textcnn_minus_baseline_accuracy``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import add_output_argument, write_result

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data" / "chinese_sentiment"
MODELS = ("tfidf", "textcnn", "bert", "bert_no_extension")


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "values": [round(value, 4) for value in values],
    }


def run_tfidf(seeds: list[int], data_dir: Path) -> dict:
    baseline = load_module(REPO / "bench" / "baseline_tfidf.py")
    runs = [baseline.run_baseline(data_dir, seed) for seed in seeds]
    return {
        "accuracy": spread([run["accuracy"] for run in runs]),
        "macro_f1": spread([run["macro_f1"] for run in runs]),
        "train_seconds": spread([run["train_seconds"] for run in runs]),
        "train_samples_per_second": round(statistics.fmean(run["n_train"] / run["train_seconds"] for run in runs), 1),
        "n_train": runs[0]["n_train"],
        "n_test": runs[0]["n_test"],
    }


def bert_subset_flags(args: argparse.Namespace) -> list[str]:
    """MiniLM's rows: the first --bert_train_samples training rows (all with 0), the first --bert_eval_samples
    validation rows."""
    flags = ["--max_eval_samples", str(args.bert_eval_samples)]
    return flags + (["--max_train_samples", str(args.bert_train_samples)] if args.bert_train_samples else [])


def train_command(config: str, seeds: list[int], output_dir: Path, extra: list[str]) -> list[str]:
    command = [sys.executable, "-m", "finetune", "train", "--config", config, "--output_dir", str(output_dir)]
    return command + ["--overwrite_output_dir", "true", "--disable_tqdm", "true", "--seeds", *map(str, seeds), *extra]


def run_finetune(config: str, seeds: list[int], output_dir: Path, extra: list[str]) -> dict:
    command = train_command(config, seeds, output_dir, extra)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=sys.stderr)
    wall_seconds = time.perf_counter() - started
    runs = json.loads((output_dir / "seeds_results.json").read_text())["runs"].values()
    return {
        "accuracy": spread([run["test_accuracy"] for run in runs]),
        "macro_f1": spread([run["test_f1"] for run in runs]),
        "train_seconds": spread([run["train_runtime"] for run in runs]),
        "train_samples_per_second": round(statistics.fmean(run["train_samples_per_second"] for run in runs), 1),
        "baseline": {  # the one each run fitted on its own splits
            "accuracy": spread([run["baseline_test_accuracy"] for run in runs]),
            "macro_f1": spread([run["baseline_test_f1"] for run in runs]),
        }
        if all("baseline_test_accuracy" in run for run in runs)
        else None,
        "n_train": next(iter(runs))["train_samples"],
        "n_test": next(iter(runs))["test_samples"],
        "wall_seconds_all_seeds": round(wall_seconds, 1),
        "command": " ".join(command[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="demo", help="a corpus of bench/corpora.py: demo, shopping_category, ...")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--bert_train_samples", type=int, default=2000, help="training rows for BERT (0: all)")
    parser.add_argument("--bert_eval_samples", type=int, default=500, help="validation rows for BERT")
    parser.add_argument(
        "--no_extension_seeds", type=int, default=1, help="seeds for bert_no_extension, which only shows the effect"
    )
    parser.add_argument("--output_dir", type=Path, default=REPO / "outputs" / "bench-accuracy")
    add_output_argument(parser)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    data_dir = load_module(REPO / "bench" / "corpora.py").corpus_dir(args.corpus)
    files = [] if args.corpus == "demo" else [f"--{split}_file" for split in ("train", "validation", "test")]
    files = [item for flag in files for item in (flag, str(data_dir / f"{flag[2:-5]}.jsonl"))]

    # BERT picks its best checkpoint on a validation subset too; the test split stays whole for every model.
    bert_subset = bert_subset_flags(args)
    results = {}
    for model in args.models:
        print(f"== {model}", file=sys.stderr)
        if model == "tfidf":
            results[model] = run_tfidf(args.seeds, data_dir)
        elif model == "textcnn":
            results[model] = run_finetune("configs/textcnn.yaml", args.seeds, args.output_dir / model, files)
        elif model == "bert":
            results[model] = run_finetune(
                "configs/bert.yaml", args.seeds, args.output_dir / model, bert_subset + files
            )
        else:
            no_extension = bert_subset + files + ["--extend_vocabulary", "0"]
            seeds = args.seeds[: args.no_extension_seeds]
            results[model] = run_finetune("configs/bert.yaml", seeds, args.output_dir / model, no_extension)

    report = {
        "benchmark": "accuracy",
        "data": f"{args.corpus} ({data_dir}), test split",
        "seeds": args.seeds,
        "models": results,
    }
    if "tfidf" in results and "textcnn" in results:
        report["textcnn_minus_tfidf_accuracy"] = round(
            results["textcnn"]["accuracy"]["mean"] - results["tfidf"]["accuracy"]["mean"], 4
        )
    if "textcnn" in results and results["textcnn"]["baseline"]:
        report["textcnn_minus_baseline_accuracy"] = round(
            results["textcnn"]["accuracy"]["mean"] - results["textcnn"]["baseline"]["accuracy"]["mean"], 4
        )
    write_result(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
