"""Show what the demo run produced: test metrics of the best checkpoint and a few predictions.

python data/chinese_sentiment/show_results.py outputs/textcnn
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
EXAMPLES = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, help="output_dir of a finished `finetune train` run")
    parser.add_argument("--test_file", type=Path, default=DATA_DIR / "test.jsonl")
    args = parser.parse_args(argv)

    best = json.loads((args.output_dir / "best.json").read_text(encoding="utf-8"))
    results = json.loads((args.output_dir / "all_results.json").read_text(encoding="utf-8"))
    best_dir = (args.output_dir / best["best_dir"]).resolve()
    print()
    print(f"best checkpoint: {args.output_dir / best['checkpoint']} ({best['metric']} {best['value']:.4f})")
    print(f"exported to:     {best_dir}")
    print(
        f"test ({results['test_samples']} reviews): accuracy {results['test_accuracy']:.4f}, "
        f"macro-F1 {results['test_f1']:.4f}"
    )

    from transformers import pipeline
    from transformers.utils import logging as transformers_logging

    import finetune  # noqa: F401  (registers TextCNN with the Auto classes that pipeline uses)

    transformers_logging.disable_progress_bar()  # no "Loading weights" bar between the lines of this summary
    classifier = pipeline("text-classification", model=str(best_dir), device="cpu")
    lines = args.test_file.read_text(encoding="utf-8").split("\n")  # not splitlines(): see prepare.py
    rows = [json.loads(line) for line in lines[:EXAMPLES] if line.strip()]
    print("examples from the test split:")
    for row, scores in zip(rows, classifier([row["text"] for row in rows], top_k=None), strict=True):
        probabilities = ", ".join(f"{score['label']} {score['score']:.3f}" for score in scores)
        text = row["text"] if len(row["text"]) <= 60 else row["text"][:60] + "…"
        print(f"  {text}\n    true: {row['label']}; predicted: {probabilities}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
