"""Accuracy and macro / weighted precision, recall and F1 for single-label classification.

An `evaluate` module that ships with finetune, so ``evaluate.load`` finds it on disk and never needs the network.
Classes that never occur in references or predictions are left out of the averages, as scikit-learn does.
"""

import datasets
import evaluate
import numpy as np

from finetune.metrics import scores_from_confusion_matrix

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
        size = int(max(predictions.max(initial=-1), references.max(initial=-1))) + 1
        matrix = np.zeros((size, size), dtype=np.int64)
        np.add.at(matrix, (references, predictions), 1)
        scores = scores_from_confusion_matrix(matrix)
        del scores["per_class"]
        return scores
