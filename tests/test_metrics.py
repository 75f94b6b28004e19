"""The shipped evaluate module and the confusion-matrix scores that `finetune evaluate` counts agree with
scikit-learn, classes that occur only as predictions or only as references included, and with scores worked out by
hand: a class that never occurs, divisions by zero."""

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics
from transformers import EvalPrediction

from finetune.metrics import (
    TRAINING_METRICS,
    classification_scores,
    compute_metrics,
    multilabel_counts,
    scores_from_confusion_matrix,
    scores_from_multilabel_counts,
)


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


# Worked by hand: classes 0, 1 and 2 occur, class 3 never does (neither as truth nor as prediction), class 2 is
# never predicted (its precision and F1 are 0/0). Rows are true labels, columns predicted ones.
REFERENCES = [0, 0, 0, 1, 1, 2]
PREDICTIONS = [0, 0, 1, 1, 1, 0]
MATRIX = [
    [2, 1, 0, 0],
    [0, 2, 0, 0],
    [1, 0, 0, 0],
    [0, 0, 0, 0],
]
BY_HAND = {
    "accuracy": 4 / 6,
    # per class: precision 2/3, 2/3, 0/0 -> 0; recall 2/3, 2/2, 0/1; F1 2/3, 4/5, 0/0 -> 0
    "precision": (2 / 3 + 2 / 3 + 0) / 3,  # macro over the three classes that occur: class 3 is left out
    "recall": (2 / 3 + 1 + 0) / 3,
    "f1": (2 / 3 + 4 / 5 + 0) / 3,
    "precision_weighted": (3 * 2 / 3 + 2 * 2 / 3 + 1 * 0) / 6,  # weighted by support 3, 2, 1 (and 0)
    "recall_weighted": (3 * 2 / 3 + 2 * 1 + 1 * 0) / 6,
    "f1_weighted": (3 * 2 / 3 + 2 * 4 / 5 + 1 * 0) / 6,
}


def test_multiclass_scores_by_hand():
    from_counts = scores_from_confusion_matrix(np.array(MATRIX))
    from_module = classification_scores(PREDICTIONS, REFERENCES)  # knows only classes 0 to 2
    for name, expected in BY_HAND.items():
        assert from_counts[name] == pytest.approx(expected), name
        assert from_module[name] == pytest.approx(expected), name
    per_class = from_counts["per_class"]
    assert per_class["precision"] == pytest.approx([2 / 3, 2 / 3, 0, 0])
    assert per_class["recall"] == pytest.approx([2 / 3, 1, 0, 0])
    assert per_class["f1"] == pytest.approx([2 / 3, 4 / 5, 0, 0])
    assert per_class["support"].tolist() == [3, 2, 1, 0]


def test_training_metrics_by_hand():
    logits = np.eye(4)[PREDICTIONS]  # the highest logit is the prediction
    scores = compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array(REFERENCES)))
    # Logit 1 for the predicted class, 0 for the other three: p = e / (e + 3) when right, 1 / (e + 3) when wrong.
    right = np.array(PREDICTIONS) == np.array(REFERENCES)
    log_loss = np.mean(np.where(right, -np.log(np.e / (np.e + 3)), -np.log(1 / (np.e + 3))))
    assert scores == pytest.approx({**{name: BY_HAND[name] for name in TRAINING_METRICS}, "log_loss": log_loss})


def test_log_loss_matches_scikit_learn_and_torch():
    import torch

    generator = np.random.default_rng(0)
    logits = generator.normal(scale=4.0, size=(64, 5)).astype(np.float32)
    references = generator.integers(0, 5, size=64)
    probabilities = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
    expected = sklearn_metrics.log_loss(references, probabilities, labels=range(5))
    assert compute_metrics(EvalPrediction(logits, references))["log_loss"] == pytest.approx(expected, rel=1e-9)

    multi_hot = generator.integers(0, 2, size=(64, 5)).astype(np.float32)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(logits).double(), torch.from_numpy(multi_hot).double()
    ).item()
    assert compute_metrics(EvalPrediction(logits, multi_hot))["log_loss"] == pytest.approx(expected, rel=1e-9)


def test_nothing_counted_scores_zero():
    scores = scores_from_confusion_matrix(np.zeros((3, 3), dtype=int))
    assert all(scores[name] == 0.0 for name in BY_HAND), scores
    assert not np.isnan(scores["per_class"]["f1"]).any()


def test_multi_label_scores_by_hand():
    # Label 2 is never true and never predicted: 0 for each of its scores, and it counts in the macro averages
    # (as scikit-learn averages multi-label data), unlike a class that never occurs in single-label data.
    references = np.array([[1, 0, 0], [1, 1, 0]])
    predicted = np.array([[1, 1, 0], [0, 1, 0]])
    scores = scores_from_multilabel_counts(multilabel_counts(predicted, references))
    # label 0: tp 1, fp 0, fn 1; label 1: tp 1, fp 1, fn 0; label 2: nothing
    assert scores["per_class"]["precision"] == pytest.approx([1, 1 / 2, 0])
    assert scores["per_class"]["recall"] == pytest.approx([1 / 2, 1, 0])
    assert scores["per_class"]["f1"] == pytest.approx([2 / 3, 2 / 3, 0])
    expected = {
        "precision_micro": 2 / 3,
        "recall_micro": 2 / 3,
        "f1_micro": 2 / 3,
        "precision": (1 + 1 / 2 + 0) / 3,
        "recall": (1 / 2 + 1 + 0) / 3,
        "f1": (2 / 3 + 2 / 3 + 0) / 3,
        "subset_accuracy": 0.0,  # neither row predicted exactly
        "hamming_loss": 2 / 6,  # two wrong cells of six
    }
    assert {name: scores[name] for name in expected} == pytest.approx(expected)
