"""Likely label errors: out-of-fold probabilities of the TF-IDF baseline, ranked by cleanlab.

Every labelled row (all splits together, or a seeded random ``max_rows`` of them) is scored by a model that never
saw it: the rows are cut into ``folds`` parts (stratified by label), and each part is predicted by the baseline's
logistic regression fitted on the others. cleanlab's ``find_label_issues`` then flags the rows whose given label the
predictions contradict, ranked by self-confidence (the predicted probability of the given label, lowest first).
The features (hashed TF-IDF n-grams, see finetune/baseline.py) are fitted once on all the rows' texts, which uses
no labels; C is picked by log loss on the first fold.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np

from finetune.baseline import (
    BATCH_ROWS,
    C_GRID,
    BaselineSettings,
    choose_analyzer,
    fit_features,
    joined_texts,
    label_targets,
    make_classifier,
)
from finetune.check.scan import Scan
from finetune.data.splits import arrow_batches

logger = logging.getLogger("finetune")


def pooled_rows(scan: Scan, max_rows: int, seed: int) -> dict[str, np.ndarray]:
    """The rows of each split to score: all of them, or a seeded random ``max_rows`` of all splits together."""
    sizes = {split: len(split_scan.hashes) for split, split_scan in scan.splits.items()}
    total = sum(sizes.values())
    if total <= max_rows:
        return {split: np.arange(size) for split, size in sizes.items()}
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))
    rows, start = {}, 0
    for split, size in sizes.items():
        rows[split] = chosen[(chosen >= start) & (chosen < start + size)] - start
        start += size
    return rows


def out_of_fold_probabilities(features, targets: np.ndarray, multi_label: bool, folds: int, seed: int):
    """Each row's predicted probabilities from the fold model that did not see it, the C used, and the accuracy
    of each fold."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = None if multi_label else np.bincount(targets)
    stratified = counts is not None and counts[counts > 0].min() >= folds
    splitter = (StratifiedKFold if stratified else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    parts = list(splitter.split(np.zeros(len(targets)), targets if stratified else None))
    num_labels = targets.shape[1] if multi_label else int(targets.max()) + 1
    probabilities = np.zeros((len(targets), num_labels))

    def fit_predict(C: float, train: np.ndarray, held: np.ndarray) -> np.ndarray:
        classifier = make_classifier(C, len(train), seed, multi_label).fit(features[train], targets[train])
        predicted = classifier.predict_proba(features[held])
        if not multi_label and predicted.shape[1] < num_labels:  # a label absent from this fold's training rows
            full = np.zeros((len(held), num_labels))
            full[:, classifier.classes_] = predicted
            predicted = full
        return predicted

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
        train, held = parts[0]
        first = {C: fit_predict(C, train, held) for C in C_GRID}
        loss = {C: log_loss(targets[held], np.clip(first[C], 1e-12, 1), labels=range(num_labels)) for C in C_GRID}
        best_C = min(C_GRID, key=lambda C: loss[C])
        probabilities[held] = first[best_C]
        for train, held in parts[1:]:
            probabilities[held] = fit_predict(best_C, train, held)
    accuracies = [fold_accuracy(probabilities[held], targets[held], multi_label) for _, held in parts]
    return probabilities, best_C, accuracies


def fold_accuracy(probabilities: np.ndarray, targets: np.ndarray, multi_label: bool) -> float:
    """Accuracy (subset accuracy at 0.5 for multi-label data) of a fold's predictions."""
    if multi_label:
        return float(((probabilities > 0.5) == (targets > 0)).all(axis=1).mean())
    return float((probabilities.argmax(axis=1) == targets).mean())


def find_label_errors(
    scan: Scan, tokenizer_level: str | None, lowercase: bool, seed: int, max_rows: int, folds: int, top: int
) -> dict:
    """The rows whose labels look wrong, most likely first (see the module's docstring).

    Returns:
        The cross-validation (folds, C, rows, accuracy mean and std), how many rows cleanlab flags, and the ``top``
        of them: split, row, given label, the label the model predicts and its probability, the quality score.
    """
    from cleanlab.filter import find_label_issues

    started = time.monotonic()
    raw, text_columns = scan.raw, scan.text_columns
    num_labels = len(raw.label_list)
    rows = pooled_rows(scan, max_rows, seed)
    total = sum(len(split_rows) for split_rows in rows.values())
    if total < sum(len(split_scan.hashes) for split_scan in scan.splits.values()):
        logger.info(
            "label errors: cross-validated on a random %s of the rows (baseline_max_train_samples)", f"{total:,}"
        )
    sample = next(iter(arrow_batches(raw.splits["train"], text_columns, batch_rows=1_000)))
    settings = BaselineSettings(choose_analyzer(tokenizer_level, joined_texts(sample, text_columns)), lowercase)
    targets, origin = [], []

    def batches():
        for split, split_rows in rows.items():
            dataset = raw.splits[split].select(split_rows)
            for batch in arrow_batches(dataset, [*text_columns, raw.label_column], BATCH_ROWS):
                targets.append(label_targets(raw, split, batch, num_labels))
                yield joined_texts(batch, text_columns)
            origin.extend((split, int(row)) for row in split_rows)

    _, features = fit_features(settings, batches())
    targets = np.concatenate(targets)
    # Rows with a label training never has (finetune check reports them apart) cannot be scored.
    known = (targets >= 0).all(axis=1) if raw.multi_label else targets >= 0
    features, targets = features[np.flatnonzero(known)], targets[known]
    origin = [place for place, keep in zip(origin, known.tolist(), strict=True) if keep]
    probabilities, C, accuracies = out_of_fold_probabilities(features, targets, raw.multi_label, folds, seed)

    if raw.multi_label:
        given = [np.flatnonzero(row).tolist() for row in targets]
        issues = find_label_issues(given, probabilities, multi_label=True, return_indices_ranked_by="self_confidence")
        quality = np.array([probabilities[i][given[i]].min() if given[i] else 1.0 for i in range(len(given))])
    else:
        issues = find_label_issues(targets, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
        quality = probabilities[np.arange(len(targets)), targets]
    flagged = []
    for index in issues[:top].tolist():
        split, row = origin[index]
        predicted = int(probabilities[index].argmax())
        flagged.append(
            {
                "_rows": {split: [row]},
                "label": [raw.label_list[i] for i in given[index]]
                if raw.multi_label
                else raw.label_list[targets[index]],
                "predicted": raw.label_list[predicted],
                "predicted_probability": round(float(probabilities[index, predicted]), 4),
                "quality": round(float(quality[index]), 4),
            }
        )
    return {
        "method": f"{folds}-fold out-of-fold probabilities of {settings.describe()}, ranked by cleanlab "
        "find_label_issues (self_confidence)",
        "cross_validation": {
            "folds": folds,
            "C": C,
            "rows": len(targets),
            "accuracy_mean": round(float(np.mean(accuracies)), 4),
            "accuracy_std": round(float(np.std(accuracies, ddof=1)), 4) if len(accuracies) > 1 else 0.0,
        },
        "flagged": len(issues),
        "top": flagged,
        "seconds": round(time.monotonic() - started, 1),
    }
