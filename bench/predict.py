"""Prediction throughput: `finetune predict` on the demo test split against the bare model forward.

For each model (TextCNN and MiniLM BERT, trained briefly here unless --textcnn_model / --bert_model name a run):

- command: the predict command in-process, `finetune predict --model RUN --input test.jsonl --output FILE`:
  loading the model, reading the file, tokenizing, batching, the forward passes, writing the predictions;
- batched: ``Classifier.probabilities`` on the texts with the model already loaded (tokenizing, batching by
  length, the forward passes, softmax, rows back in input order);
- bare: the forward passes alone, on the same batches tokenized and padded beforehand, under inference_mode.

Repeats alternate between the three in one process. Prints JSON: texts/s of each and the ratios to bare.

    python bench/predict.py --threads 1
    python bench/predict.py --textcnn_model outputs/textcnn --bert_model outputs/bert
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import CONFIGS, REPO, add_output_argument, add_threads_argument, median, set_threads, write_result

from finetune.data import ClassificationCollator
from finetune.predict import Classifier
from finetune.predict import main as predict_main
from finetune.rows import read_texts
from finetune.train import main as train_main

TEST_FILE = REPO / "data" / "chinese_sentiment" / "test.jsonl"
# A short run is enough: speed does not depend on how well the model learned.
QUICK_TRAINING = {
    "textcnn": ["--num_train_epochs", "1"],
    "bert": ["--num_train_epochs", "1", "--max_train_samples", "300", "--max_eval_samples", "100"],
}


def train_quickly(model: str, output_dir: Path, training: list[str] | None = None) -> Path:
    """A short run of the model's demo config; ``training`` replaces QUICK_TRAINING's flags for it."""
    training = QUICK_TRAINING[model] if training is None else training
    argv = ["--config", str(CONFIGS[model]), "--output_dir", str(output_dir), "--overwrite_output_dir", "true"]
    argv += ["--disable_tqdm", "true", "--test_file", "", "--save_total_limit", "1", *training]
    with contextlib.redirect_stdout(sys.stderr):
        train_main(argv)
    return output_dir


def bare_batches(classifier: Classifier, texts: list[str], batch_size: int) -> list[dict[str, torch.Tensor]]:
    """The batches predict builds (sorted by token length, padded by its collator), made ahead of time."""
    encoded = classifier.tokenizer(texts, truncation=True, max_length=classifier.max_length)
    names = [name for name in classifier.tokenizer.model_input_names if name in encoded]
    order = sorted(range(len(texts)), key=lambda row: len(encoded["input_ids"][row]))
    collator = ClassificationCollator(classifier.tokenizer)
    return [
        collator([{name: encoded[name][row] for name in names} for row in order[start : start + batch_size]])
        for start in range(0, len(order), batch_size)
    ]


def time_bare(classifier: Classifier, batches: list[dict[str, torch.Tensor]]) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            classifier.model(**batch)
    return time.perf_counter() - start


def time_batched(classifier: Classifier, texts: list[str], batch_size: int) -> float:
    start = time.perf_counter()
    classifier.probabilities(texts, batch_size=batch_size)
    return time.perf_counter() - start


def time_command(model_dir: Path, input_file: Path, output_file: Path, batch_size: int) -> float:
    start = time.perf_counter()
    predict_main(["--model", str(model_dir), "--input", str(input_file), "--output", str(output_file)]
                 + ["--device", "cpu", "--batch_size", str(batch_size)])  # fmt: skip
    return time.perf_counter() - start


def bench_model(model_dir: Path, input_file: Path, repeats: int, batch_size: int, scratch: Path) -> dict:
    classifier = Classifier.load(model_dir, device="cpu")
    texts = [record[classifier.text_column] for _, record in read_texts(input_file, [classifier.text_column])]
    batches = bare_batches(classifier, texts, batch_size)
    time_bare(classifier, batches[:2])  # warm up
    seconds: dict[str, list[float]] = {"command": [], "batched": [], "bare": []}
    for _ in range(repeats):
        seconds["bare"].append(time_bare(classifier, batches))
        seconds["batched"].append(time_batched(classifier, texts, batch_size))
        seconds["command"].append(time_command(model_dir, input_file, scratch / "predictions.jsonl", batch_size))
    per_second = {path: [round(len(texts) / s, 1) for s in runs] for path, runs in seconds.items()}
    medians = {path: median(values) for path, values in per_second.items()}
    return {
        "model_dir": str(model_dir),
        "texts": len(texts),
        "batch_size": batch_size,
        "texts_per_second": per_second,
        "median_texts_per_second": medians,
        "ratio_command_over_bare": round(medians["command"] / medians["bare"], 3),
        "ratio_batched_over_bare": round(medians["batched"] / medians["bare"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["textcnn", "bert"], choices=sorted(CONFIGS))
    parser.add_argument("--textcnn_model", type=Path, help="a TextCNN run (default: train one epoch here)")
    parser.add_argument("--bert_model", type=Path, help="a BERT run (default: train briefly on 300 rows here)")
    parser.add_argument("--input", type=Path, default=TEST_FILE, help="texts to classify (default: the test split)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each path (default: 3)")
    parser.add_argument("--batch_size", type=int, default=64, help="as finetune predict's default (64)")
    add_threads_argument(parser)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)

    result = {"benchmark": "predict", "target_ratio": 0.9}
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            model_dir = getattr(args, f"{model}_model") or train_quickly(model, Path(scratch) / model)
            result[model] = bench_model(model_dir, args.input, args.repeats, args.batch_size, Path(scratch))
            print(json.dumps({model: result[model]}), file=sys.stderr)
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
