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


def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
    """The Trainer's compute_metrics: accuracy and macro F1, precision and recall from logits."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    scores = classification_scores(np.argmax(logits, axis=-1), eval_prediction.label_ids)
    return {name: scores[name] for name in TRAINING_METRICS}
