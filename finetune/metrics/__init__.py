"""Metrics from the `evaluate` modules shipped in this folder, loaded by path so no network is needed."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # transformers takes seconds to import, which finetune report needs not pay
    from transformers import EvalPrediction

MODULES_DIR = Path(__file__).parent
# Reported during training; the weighted averages stay in the evaluate module for `finetune evaluate`.
TRAINING_METRICS = ("accuracy", "f1", "precision", "recall")
# Reported for multi-label data: f1, precision and recall are macro averages over labels, as for one label a row.
MULTI_LABEL_METRICS = (
    "f1_micro",
    "precision_micro",
    "recall_micro",
    "f1",
    "precision",
    "recall",
    "subset_accuracy",
    "hamming_loss",
)
# The loss without label smoothing (cross-entropy; binary cross-entropy averaged over labels for multi-label data),
# beside the Trainer's eval_loss, which includes the run's label_smoothing_factor: runs with different smoothing
# compare on it, as `finetune evaluate`'s loss does.
PLAIN_LOSS = "log_loss"
DEFAULT_THRESHOLD = 0.5  # multi-label: a label is predicted when its probability is over this


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


def multilabel_counts(predicted: np.ndarray, references: np.ndarray) -> dict:
    """What the multi-label scores are computed from, for ``(rows, labels)`` boolean arrays: per label true
    positives, false positives, false negatives; rows, rows predicted exactly, wrong cells. Counts of several
    chunks add up (``add_counts``), so a file is scored chunk by chunk."""
    predicted, references = np.asarray(predicted, dtype=bool), np.asarray(references, dtype=bool)
    return {
        "tp": (predicted & references).sum(axis=0),
        "fp": (predicted & ~references).sum(axis=0),
        "fn": (~predicted & references).sum(axis=0),
        "rows": len(references),
        "exact": int((predicted == references).all(axis=1).sum()),
        "wrong": int((predicted != references).sum()),
    }


def add_counts(total: dict | None, counts: dict) -> dict:
    return counts if total is None else {name: total[name] + counts[name] for name in counts}


def ratio(numerator, denominator):
    """numerator / denominator, elementwise, with 0/0 as 0 (scikit-learn's zero_division=0)."""
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def scores_from_multilabel_counts(counts: dict) -> dict:
    """Micro and macro (over every label, as scikit-learn averages multi-label data) F1, precision and recall,
    subset accuracy (rows predicted exactly), Hamming loss (share of wrong cells), and ``per_class`` arrays
    (precision, recall, f1, support)."""
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    precision, recall, f1 = ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(2 * tp, 2 * tp + fp + fn)
    cells = counts["rows"] * len(tp)
    return {
        "f1_micro": float(ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())),
        "precision_micro": float(ratio(tp.sum(), tp.sum() + fp.sum())),
        "recall_micro": float(ratio(tp.sum(), tp.sum() + fn.sum())),
        "f1": float(f1.mean()),
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "subset_accuracy": counts["exact"] / counts["rows"] if counts["rows"] else 0.0,
        "hamming_loss": counts["wrong"] / cells if cells else 0.0,
        "per_class": {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn},
    }


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def tune_threshold(probabilities: np.ndarray, references: np.ndarray) -> float:
    """The one threshold that maximises micro-F1 over every label and row (a label is predicted when its
    probability is over the threshold): exact, from the scores sorted once; halfway between the two scores where
    the best cut falls."""
    scores = np.asarray(probabilities, dtype=np.float64).ravel()
    truth = np.asarray(references, dtype=bool).ravel()
    order = np.argsort(-scores, kind="stable")
    scores, truth = scores[order], truth[order]
    true_positives = np.cumsum(truth)  # cutting after position i predicts the i + 1 highest scores
    f1 = 2 * true_positives / (np.arange(1, len(scores) + 1) + truth.sum())
    cut_possible = np.append(scores[:-1] > scores[1:], True)  # ties are all in or all out
    best = int(np.argmax(np.where(cut_possible, f1, -1.0)))
    below = scores[best + 1] if best + 1 < len(scores) else 0.0
    return float((scores[best] + below) / 2)


def compute_metrics(eval_prediction: EvalPrediction, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """The Trainer's compute_metrics from logits: accuracy and macro F1, precision and recall; for multi-label
    data (multi-hot label rows), MULTI_LABEL_METRICS with labels predicted over ``threshold``. Both with the
    PLAIN_LOSS."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    references = np.asarray(eval_prediction.label_ids)
    if references.ndim == 2:
        scores = scores_from_multilabel_counts(multilabel_counts(sigmoid(logits) > threshold, references > 0.5))
        return {**{name: scores[name] for name in MULTI_LABEL_METRICS}, PLAIN_LOSS: log_loss(logits, references)}
    scores = classification_scores(np.argmax(logits, axis=-1), references)
    return {**{name: scores[name] for name in TRAINING_METRICS}, PLAIN_LOSS: log_loss(logits, references)}


def log_loss(logits: np.ndarray, references: np.ndarray) -> float:
    """Mean cross-entropy of the softmax of ``logits`` for class ids; for multi-hot rows, binary cross-entropy of
    each logit's sigmoid, averaged over labels and rows. Computed in float64 from the logits, as the losses are."""
    logits = np.asarray(logits, dtype=np.float64)
    references = np.asarray(references)
    if references.ndim == 2:  # log(1 + e^x) - y x: -log sigmoid(x) for y = 1, -log(1 - sigmoid(x)) for y = 0
        return float(np.mean(np.logaddexp(0.0, logits) - references * logits))
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-log_probabilities[np.arange(len(references)), references.astype(np.int64)].mean())
