"""PyTorch eager against ONNX Runtime fp32 and int8 (`finetune export`), on this CPU, in one run: texts/s of
batched prediction (``Classifier.probabilities``, what `finetune predict` runs) on the demo test split, with the
accuracy of each and the largest logit difference to PyTorch.

For each model (TextCNN and MiniLM BERT; trained here unless --textcnn_model / --bert_model name a run) the model is
exported twice with the real command, fp32 and ``--quantize int8``; the three backends then alternate, repeat by
repeat, on the same texts. Prints JSON with the ratios to PyTorch.

    python bench/export.py --textcnn_model outputs/textcnn --bert_model outputs/bert
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import CONFIGS, add_output_argument, add_threads_argument, median, set_threads, write_result
from predict import TEST_FILE, train_quickly

from finetune.export import main as export_main
from finetune.predict import Classifier
from finetune.rows import read_texts

# MiniLM classifies about 20 texts/s here: its part uses the first rows of the test split.
DEFAULT_ROWS = {"textcnn": None, "bert": 400}
# MiniLM trained on more rows than predict's benchmark, so that accuracy differences mean something.
BERT_TRAINING = ["--num_train_epochs", "1", "--max_train_samples", "2000", "--max_eval_samples", "200"]


def bench_model(model_dir: Path, scratch: Path, rows: int | None, repeats: int, batch_size: int) -> dict:
    exports = {}
    for name, extra in (("onnxruntime fp32", []), ("onnxruntime int8", ["--quantize", "int8"])):
        exports[name] = scratch / name.replace(" ", "-")
        argv = [
            "--model",
            str(model_dir),
            "--output",
            str(exports[name]),
            "--overwrite",
            "--check_file",
            str(TEST_FILE),
        ]
        argv += extra
        with contextlib.redirect_stdout(sys.stderr):
            export_main(argv)
    backends = {"pytorch": Classifier.load(model_dir, device="cpu")}
    backends.update({name: Classifier.load(path, device="cpu") for name, path in exports.items()})
    reference = backends["pytorch"]
    records = [record for _, record in read_texts(TEST_FILE, [reference.text_column])][:rows]
    texts = [record[reference.text_column] for record in records]
    labels = np.array([reference.label2id[record[reference.label_column]] for record in records])

    seconds: dict[str, list[float]] = {name: [] for name in backends}
    probabilities = {}
    for classifier in backends.values():
        classifier.probabilities(texts[:batch_size], batch_size=batch_size)  # warm up
    for _ in range(repeats):
        for name, classifier in backends.items():
            started = time.perf_counter()
            probabilities[name] = classifier.probabilities(texts, batch_size=batch_size)
            seconds[name].append(time.perf_counter() - started)
    rates = {name: median([len(texts) / value for value in values]) for name, values in seconds.items()}
    result = {"model_dir": str(model_dir), "texts": len(texts), "batch_size": batch_size, "repeats": repeats}
    for name in backends:
        result[name] = {
            "texts_per_second": round(rates[name], 1),
            "ratio_to_pytorch": round(rates[name] / rates["pytorch"], 3),
            "accuracy": round(float((probabilities[name].argmax(-1) == labels).mean()), 4),
            "same_labels_as_pytorch": int(
                (probabilities[name].argmax(-1) == probabilities["pytorch"].argmax(-1)).sum()
            ),
            "model_megabytes": round(sum(path.stat().st_size for path in exports[name].glob("model.onnx*")) / 1e6, 1)
            if name in exports
            else None,
        }
        if name in exports:  # the export's own check on the whole test split: logits against PyTorch's
            manifest = json.loads((exports[name] / "export.json").read_text(encoding="utf-8"))
            result[name]["export_check"] = manifest["checks"][str(TEST_FILE)]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["textcnn", "bert"], choices=sorted(CONFIGS))
    parser.add_argument("--textcnn_model", type=Path, help="a TextCNN run (default: train one epoch here)")
    parser.add_argument("--bert_model", type=Path, help="a BERT run (default: train on 2,000 rows here)")
    parser.add_argument("--rows", type=int, help="test rows to classify (default: all for TextCNN, 400 for MiniLM)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each backend (default: 3)")
    parser.add_argument("--batch_size", type=int, default=64, help="as finetune predict's default (64)")
    add_threads_argument(parser)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)

    result = {"benchmark": "export", "targets": {"bert int8 ratio_to_pytorch": 2.0, "accuracy points lost": 0.5}}
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            model_dir = getattr(args, f"{model}_model") or train_quickly(
                model, Path(scratch) / model, BERT_TRAINING if model == "bert" else None
            )
            rows = args.rows or DEFAULT_ROWS[model]
            result[model] = bench_model(
                model_dir, Path(scratch) / f"{model}-exports", rows, args.repeats, args.batch_size
            )
            print(json.dumps({model: result[model]}), file=sys.stderr)
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
