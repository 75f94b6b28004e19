"""Padding: every text padded to max_length in random batches (the usual recipe) against finetune's default,
dynamic padding with length-grouped batches, for the demo TextCNN and the MiniLM BERT.

Each setting is one `finetune train` run (in-process, configs/textcnn.yaml or configs/bert.yaml) for --epochs
epochs, with only padding and batch sampling changed; dynamic padding with random batches is there too, to
tell the two effects apart. Training speed is the throughput callback's
(train_results.json: examples over the time spent training, evaluation left out); accuracy is that of the best
checkpoint on the validation split, to show the speed costs nothing. BERT on a CPU is slow, so it trains on the
first --bert_train_samples rows and is evaluated on the first --bert_eval_samples validation rows. The demo
reviews average about 60 characters, far below max_length (256 for TextCNN, 128 for BERT in their configs).

    python bench/padding.py --threads 1
    python bench/padding.py --models textcnn --textcnn_max_length 512
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from common import CONFIGS, add_output_argument, add_threads_argument, set_threads, write_result

from finetune.train import main as train_main

SETTINGS = {
    "max_length_random": ["--padding", "max_length", "--train_sampling_strategy", "random"],
    # Dynamic padding alone: the same batches as max_length_random, so the same accuracy, padded less.
    "dynamic_random": ["--padding", "longest", "--train_sampling_strategy", "random"],
    "dynamic_grouped": ["--padding", "longest", "--train_sampling_strategy", "group_by_length"],
}


def run(model: str, setting: str, output_dir: Path, extra: list[str]) -> dict:
    """One training run; its throughput, token counts and validation accuracy."""
    argv = ["--config", str(CONFIGS[model]), "--output_dir", str(output_dir), "--overwrite_output_dir", "true"]
    argv += ["--disable_tqdm", "true", "--test_file", "", *SETTINGS[setting], *extra]
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        train_main(argv)
    wall = time.perf_counter() - started
    results = json.loads((output_dir / "all_results.json").read_text())
    return {
        "train_samples_per_second": results["train_throughput_samples_per_second"],
        "train_tokens_per_second": results["train_throughput_tokens_per_second"],
        "train_step_seconds": results["train_step_seconds"],
        "train_samples": results["train_samples"],
        "eval_accuracy": round(results["eval_accuracy"], 4),
        "eval_samples": results["eval_samples"],
        "run_seconds": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["textcnn", "bert"], choices=sorted(CONFIGS))
    parser.add_argument("--textcnn_max_length", type=int, default=256, help="default: 256, as configs/textcnn.yaml")
    parser.add_argument("--bert_max_length", type=int, default=128, help="default: 128, as configs/bert.yaml")
    parser.add_argument("--bert_train_samples", type=int, default=1000, help="BERT training rows (default: 1000)")
    parser.add_argument("--bert_eval_samples", type=int, default=500, help="BERT validation rows (default: 500)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of every run (default: 1)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    add_threads_argument(parser)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)

    extra = {
        "textcnn": ["--max_length", str(args.textcnn_max_length)],
        "bert": [
            "--max_length", str(args.bert_max_length),
            "--max_train_samples", str(args.bert_train_samples),
            "--max_eval_samples", str(args.bert_eval_samples),
        ],
    }  # fmt: skip
    result = {"benchmark": "padding", "target_speedup": 2.0, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as output_root:
        for model in args.models:
            flags = [*extra[model], "--num_train_epochs", str(args.epochs)]
            runs = {
                setting: run(model, setting, Path(output_root) / f"{model}-{setting}", flags)
                for setting in args.settings
            }
            result[model] = {"max_length": int(extra[model][1]), **runs}
            if "max_length_random" in runs:
                padded = runs["max_length_random"]
                for setting in runs.keys() - {"max_length_random"}:
                    speed = runs[setting]["train_samples_per_second"] / padded["train_samples_per_second"]
                    result[model][f"speedup_{setting}"] = round(speed, 2)
                    accuracy = runs[setting]["eval_accuracy"] - padded["eval_accuracy"]
                    result[model][f"accuracy_difference_{setting}"] = round(accuracy, 4)
            print(json.dumps({model: result[model]}), file=sys.stderr)
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
