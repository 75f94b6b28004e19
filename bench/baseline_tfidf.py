"""Classical baseline for the Chinese sentiment demo corpus: character TF-IDF + logistic regression.

Fits ``TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)`` and a
``LogisticRegression`` on ``train.jsonl``, picks C on ``validation.jsonl`` (macro-F1) and reports
test metrics for the chosen C as one JSON object on stdout::

    python bench/baseline_tfidf.py [--data_dir data/chinese_sentiment] [--seed 42]

If the split files are missing, ``data/chinese_sentiment/prepare.py`` is run first. Other
benchmarks can import this file by path and call :func:`run_baseline`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / "data" / "chinese_sentiment"
PREPARE_SCRIPT = DEFAULT_DATA_DIR / "prepare.py"
C_GRID: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
SPLITS: tuple[str, ...] = ("train", "validation", "test")


def load_prepare_module() -> ModuleType:
    """Import ``data/chinese_sentiment/prepare.py`` by file path (it is not part of a package).

    Returns:
        The loaded module.
    """
    spec = importlib.util.spec_from_file_location("chinese_sentiment_prepare", PREPARE_SCRIPT)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {PREPARE_SCRIPT}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_split(path: Path) -> tuple[list[str], list[str]]:
    """Read a JSON lines split.

    Args:
        path: File with one ``{"text": ..., "label": ...}`` object a line.

    Returns:
        The texts and the labels, in file order.
    """
    texts: list[str] = []
    labels: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts.append(row["text"])
            labels.append(row["label"])
    return texts, labels


def make_pipeline(C: float, seed: int) -> Pipeline:
    """Build the TF-IDF + logistic regression pipeline.

    Args:
        C: Inverse regularization strength of the logistic regression.
        seed: ``random_state`` of the logistic regression.

    Returns:
        An unfitted pipeline.
    """
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)),
            ("logreg", LogisticRegression(C=C, max_iter=2000, random_state=seed)),
        ]
    )


def run_baseline(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR, seed: int = 42) -> dict:
    """Tune C on validation, then fit on train and evaluate on test.

    Args:
        data_dir: Directory with ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``; they are
            created with ``prepare.py`` (default seed) if any is missing.
        seed: ``random_state`` of the logistic regression.

    Returns:
        ``model``, ``C``, ``accuracy``, ``macro_f1``, ``train_seconds`` (fitting vectorizer and
        classifier with the chosen C), ``predict_seconds`` (vectorizing and predicting the test
        split), ``n_train``, ``n_test`` and ``seed``.
    """
    data_path = Path(data_dir)
    if not all((data_path / f"{split}.jsonl").is_file() for split in SPLITS):
        counts = load_prepare_module().prepare(data_path)
        print(f"prepared {data_path}: {counts['total']} rows", file=sys.stderr)
    train_x, train_y = load_split(data_path / "train.jsonl")
    val_x, val_y = load_split(data_path / "validation.jsonl")
    test_x, test_y = load_split(data_path / "test.jsonl")

    # The vectorizer does not depend on C: fit it once for the search over C.
    vectorizer = make_pipeline(1.0, seed).named_steps["tfidf"]
    train_matrix = vectorizer.fit_transform(train_x)
    val_matrix = vectorizer.transform(val_x)
    val_scores: dict[float, float] = {}
    for C in C_GRID:
        classifier = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(train_matrix, train_y)
        val_scores[C] = f1_score(val_y, classifier.predict(val_matrix), average="macro")
        print(f"C={C:g}: validation macro-F1 {val_scores[C]:.4f}", file=sys.stderr)
    best_C = max(C_GRID, key=lambda C: val_scores[C])  # first C wins ties: more regularization

    # Refit the whole pipeline so train_seconds is the cost of training the final model.
    pipeline = make_pipeline(best_C, seed)
    start = time.perf_counter()
    pipeline.fit(train_x, train_y)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = pipeline.predict(test_x)
    predict_seconds = time.perf_counter() - start

    return {
        "model": "tfidf_char1-3_logreg",
        "C": best_C,
        "accuracy": round(accuracy_score(test_y, predictions), 4),
        "macro_f1": round(f1_score(test_y, predictions, average="macro"), 4),
        "train_seconds": round(train_seconds, 3),
        "predict_seconds": round(predict_seconds, 3),
        "n_train": len(train_x),
        "n_test": len(test_x),
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: print the result of :func:`run_baseline` as one JSON object.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit code.
    """
    from common import add_output_argument, write_result  # here: other benchmarks import this file by path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, default=DEFAULT_DATA_DIR, help="directory with the jsonl splits")
    parser.add_argument("--seed", type=int, default=42, help="random_state of the logistic regression")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    write_result({"benchmark": "baseline_tfidf", **run_baseline(args.data_dir, args.seed)}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
