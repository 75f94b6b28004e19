"""Imbalanced classes: the demo TextCNN on a 10:1 training set, with and without class_weights: balanced.

The demo's training split (data/chinese_sentiment, made by `./run.sh prepare`) keeps every negative review and a
seeded random tenth as many positive ones; validation and test stay as they are (balanced). configs/textcnn.yaml
is trained with `--seeds` on it twice, as shipped and with `--class_weights balanced`, and the script prints one
JSON object: the training counts and, per setting, test macro-F1 and accuracy (mean and standard deviation over
the seeds).

    python bench/imbalanced.py --output bench/results/imbalanced.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

from char_vectors import train_demo
from common import REPO, add_output_argument, write_result

SETTINGS = {"unweighted": [], "balanced": ["--class_weights", "balanced"]}
DEMO = REPO / "data" / "chinese_sentiment"


def imbalanced_train(target: Path, ratio: int, seed: int) -> dict:
    """Writes the demo's training rows with ``ratio`` negatives per positive; returns the counts."""
    rows = [json.loads(line) for line in (DEMO / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    negatives = [row for row in rows if row["label"] == "negative"]
    positives = [row for row in rows if row["label"] == "positive"]
    kept = random.Random(seed).sample(positives, len(negatives) // ratio)
    chosen = negatives + kept
    random.Random(seed).shuffle(chosen)
    target.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chosen), encoding="utf-8")
    return dict(Counter(row["label"] for row in chosen))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--ratio", type=int, default=10, help="negatives per positive in the training split")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if not (DEMO / "train.jsonl").is_file():
        raise SystemExit("The demo data is missing: run ./run.sh prepare first.")

    result = {"benchmark": "imbalanced", "config": "configs/textcnn.yaml", "ratio": args.ratio, "settings": {}}
    with tempfile.TemporaryDirectory() as folder:
        train = Path(folder) / "train.jsonl"
        result["train_counts"] = imbalanced_train(train, args.ratio, seed=0)
        for name in args.settings:
            flags = ["--train_file", str(train), *SETTINGS[name]]
            result["settings"][name] = {"flags": SETTINGS[name], **train_demo(flags, Path(folder) / name, args.seeds)}
            print(json.dumps({name: result["settings"][name]}), file=sys.stderr)
    write_result(result, args.output, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
