"""Labels in training: class weights for imbalanced data, binary cross-entropy and the decision threshold for
multi-label data.

Without class weights, a single-label run leaves the loss to the model (and label smoothing to the Trainer), as
transformers does. With ``class_weights``, or for multi-label data (where the Trainer's label smoother, a softmax,
does not apply), the Trainer computes the loss from the logits with ``classification_loss``: the weights only while
training, so that eval loss, which picks the best checkpoint, stays the plain loss and compares runs fairly.
"""

from __future__ import annotations

import logging
from functools import partial

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset

from finetune.config import EVAL_METRICS, MULTI_LABEL_EVAL_METRICS, TrainingArguments
from finetune.data.splits import LABELS, arrow_batches
from finetune.errors import UserError
from finetune.metrics import DEFAULT_THRESHOLD, compute_metrics, sigmoid, tune_threshold

logger = logging.getLogger(__name__)

DOMINANT_SHARE = 0.9  # a class on more training rows than this gets a warning


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None, smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy for class ids, binary cross-entropy over labels for multi-hot float rows (multi-label).

    Args:
        weight: Per class: the weight of its examples (cross-entropy, a weighted mean as torch computes it), or
            for multi-label data the weight of its positives (``pos_weight``).
        smoothing: Label smoothing: ``smoothing`` of each target spread over the classes (cross-entropy), or
            targets moved ``smoothing / 2`` towards one half (binary cross-entropy).
    """
    if labels.is_floating_point():
        targets = labels.to(logits.dtype)
        if smoothing:
            targets = targets * (1 - smoothing) + smoothing / 2
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
    return torch.nn.functional.cross_entropy(
        logits.view(-1, logits.shape[-1]), labels.view(-1), weight=weight, label_smoothing=smoothing
    )


def label_counts(dataset: Dataset, num_labels: int, multi_label: bool) -> np.ndarray:
    """How many rows of a tokenized split carry each label, counted batch by batch from the Arrow column."""
    counts = np.zeros(num_labels, dtype=np.int64)
    for batch in arrow_batches(dataset, [LABELS]):
        ids = batch.column(LABELS)
        ids = pc.list_flatten(ids) if multi_label else ids
        counts += np.bincount(ids.to_numpy(), minlength=num_labels)[:num_labels]
    return counts


def class_weights(
    setting: str | dict | None, label_list: list, counts: np.ndarray, rows: int, multi_label: bool
) -> np.ndarray | None:
    """The weight of each label for ``class_weights``: None (no weights), balanced, or a mapping by label name.

    balanced is scikit-learn's ``compute_class_weight("balanced")``: rows / (classes * the class's rows), so that
    every class weighs as much in all as an equal share of the rows would. For multi-label data it is each label's
    positive weight, negatives per positive. A label without training rows weighs 1.
    """
    if setting is None:
        return None
    names = [str(label) for label in label_list]
    if setting == "balanced":
        present = counts > 0
        if multi_label:
            weights = np.divide(rows - counts, counts, out=np.ones(len(counts)), where=present)
        else:
            weights = np.divide(rows, present.sum() * counts, out=np.ones(len(counts)), where=present)
    else:
        unknown = sorted(set(setting) - set(names))
        if unknown:
            raise UserError(
                f"class_weights names label(s) the training data does not have: {', '.join(map(repr, unknown))}. "
                f"Training labels: {', '.join(map(repr, names))}."
            )
        weights = np.array([setting.get(name, 1.0) for name in names], dtype=float)
    logger.info(
        "class weights (%s, training loss only): %s",
        "positive weight per label" if multi_label else "per class",
        ", ".join(f"{name} {weight:.3g}" for name, weight in zip(names, weights, strict=True)),
    )
    return weights


def warn_dominant_label(label_list: list, counts: np.ndarray, rows: int) -> None:
    """Warns when one label is on more than DOMINANT_SHARE of the training rows: accuracy then says little."""
    if not rows:
        return
    top = int(counts.argmax())
    if counts[top] / rows > DOMINANT_SHARE:
        logger.warning(
            "label %s is on %.1f%% of the training rows: accuracy says little here; watch macro-F1, and consider "
            "class_weights: balanced",
            label_list[top],
            100 * counts[top] / rows,
        )


def training_class_weights(training_args: TrainingArguments, train: Dataset, label_list: list, multi_label: bool):
    """Counts the training labels (warning when one dominates), checks that metric_for_best_model is one that
    evaluation of this kind of data reports, and returns the class weights (None without class_weights)."""
    metric = (training_args.metric_for_best_model or "eval_loss").removeprefix("eval_")
    reported = MULTI_LABEL_EVAL_METRICS if multi_label else EVAL_METRICS
    if metric not in reported:
        kind = "multi-label" if multi_label else "single-label"
        raise UserError(
            f"metric_for_best_model eval_{metric} is not reported for {kind} data; choose one of "
            + ", ".join(f"eval_{name}" for name in reported)
            + "."
        )
    counts = label_counts(train, len(label_list), multi_label)
    warn_dominant_label(label_list, counts, len(train))
    return class_weights(training_args.class_weights, label_list, counts, len(train), multi_label)


def initial_threshold(setting: str) -> float:
    """The threshold evaluation uses during training: the one given, or the default until tune picks one."""
    return DEFAULT_THRESHOLD if setting == "tune" else float(setting)


def settle_threshold(trainer, validation: Dataset, setting: str) -> float:
    """Multi-label: the threshold of the trained model, tuned on the validation split (maximising micro-F1) when
    ``setting`` is tune; stored in the model's config (for predict and pipeline users) and used by the
    Trainer's compute_metrics from now on."""
    threshold = initial_threshold(setting)
    if setting == "tune":
        output = trainer.predict(validation, metric_key_prefix="tune")
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        threshold = tune_threshold(sigmoid(logits), output.label_ids > 0.5)
        logger.info("threshold: %.4f, the one that maximises micro-F1 on the validation split", threshold)
    trainer.model.config.threshold = threshold
    trainer.compute_metrics = partial(compute_metrics, threshold=threshold)
    return threshold
