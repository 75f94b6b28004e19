"""The shipped evaluate module and the confusion-matrix scores that `finetune evaluate` counts agree with
scikit-learn, classes that occur only as predictions or only as references included."""

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics

from finetune.metrics import classification_scores, scores_from_confusion_matrix


def test_scores_match_scikit_learn():
    generator = np.random.default_rng(0)
    references = generator.integers(0, 4, 300)  # class 4 is only ever predicted
    predictions = np.where(generator.random(300) < 0.6, references, generator.integers(0, 5, 300))
    scores = classification_scores(predictions, references)
    matrix = sklearn_metrics.confusion_matrix(references, predictions, labels=range(6))  # 5: in neither
    from_counts = scores_from_confusion_matrix(matrix)
    assert scores["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(references, predictions))
    for average, suffix in (("macro", ""), ("weighted", "_weighted")):
        for name, function in (
            ("f1", sklearn_metrics.f1_score),
            ("precision", sklearn_metrics.precision_score),
            ("recall", sklearn_metrics.recall_score),
        ):
            expected = function(references, predictions, average=average, zero_division=0)
            assert scores[name + suffix] == pytest.approx(expected), name + suffix
            assert from_counts[name + suffix] == pytest.approx(expected), name + suffix
