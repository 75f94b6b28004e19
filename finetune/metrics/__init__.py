"""Metrics from the `evaluate` modules shipped in this folder, loaded by path so no network is needed."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from transformers import EvalPrediction

MODULES_DIR = Path(__file__).parent
# Reported during training; the weighted averages stay in the evaluate module for `finetune evaluate`.
TRAINING_METRICS = ("accuracy", "f1", "precision", "recall")


@cache
def load_metric(name: str = "classification"):
    """Loads one of the shipped evaluate modules."""
    import evaluate

    return evaluate.load(str(MODULES_DIR / name / f"{name}.py"))


def classification_scores(predictions, references) -> dict[str, float]:
    """All scores of the classification module for class-id predictions."""
    return load_metric().compute(predictions=predictions, references=references)


def scores_from_confusion_matrix(matrix: np.ndarray) -> dict:
    """The classification module's scores, from counts (rows true labels, columns predicted ones): accuracy,
    macro and weighted precision, recall and F1 over the labels that occur as truth or prediction, and
    ``per_class`` arrays (precision, recall, f1, support) for every label. 0/0 counts as 0."""
    matrix = np.asarray(matrix, dtype=float)
    correct, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    recall = np.divide(correct, support, out=np.zeros_like(correct), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    occurring = (support + predicted) > 0
    weights = support / support.sum() if support.sum() else support
    return {
        "accuracy": float(correct.sum() / matrix.sum()) if matrix.sum() else 0.0,
        "f1": float(f1[occurring].mean()) if occurring.any() else 0.0,
        "precision": float(precision[occurring].mean()) if occurring.any() else 0.0,
        "recall": float(recall[occurring].mean()) if occurring.any() else 0.0,
        "f1_weighted": float(np.sum(f1 * weights)),
        "precision_weighted": float(np.sum(precision * weights)),
        "recall_weighted": float(np.sum(recall * weights)),
        "per_class": {"precision": precision, "recall": recall, "f1": f1, "support": support},
    }


def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
    """The Trainer's compute_metrics: accuracy and macro F1, precision and recall from logits."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    scores = classification_scores(np.argmax(logits, axis=-1), eval_prediction.label_ids)
    return {name: scores[name] for name in TRAINING_METRICS}
