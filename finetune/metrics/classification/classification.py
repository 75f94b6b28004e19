"""Accuracy and macro / weighted precision, recall and F1 for single-label classification.

An `evaluate` module that ships with finetune, so ``evaluate.load`` finds it on disk and never needs the network.
Classes that never occur in references or predictions are left out of the averages, as scikit-learn does.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy, and precision, recall and F1 averaged over classes (macro) and by support (weighted)."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): Predicted class ids.
    references (list of int): True class ids.
Returns:
    accuracy, f1, precision, recall (macro averages), f1_weighted, precision_weighted, recall_weighted.
"""


class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        classes = np.union1d(predictions, references)
        true_positives = np.array([np.sum((predictions == c) & (references == c)) for c in classes], dtype=float)
        predicted = np.array([np.sum(predictions == c) for c in classes], dtype=float)
        support = np.array([np.sum(references == c) for c in classes], dtype=float)
        # 0/0 counts as 0, like scikit-learn's zero_division=0.
        precision = np.divide(true_positives, predicted, out=np.zeros_like(predicted), where=predicted > 0)
        recall = np.divide(true_positives, support, out=np.zeros_like(support), where=support > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
        weights = support / support.sum() if support.sum() else support
        return {
            "accuracy": float(np.mean(predictions == references)) if len(references) else 0.0,
            "f1": float(f1.mean()) if len(classes) else 0.0,
            "precision": float(precision.mean()) if len(classes) else 0.0,
            "recall": float(recall.mean()) if len(classes) else 0.0,
            "f1_weighted": float(np.sum(f1 * weights)),
            "precision_weighted": float(np.sum(precision * weights)),
            "recall_weighted": float(np.sum(recall * weights)),
        }
