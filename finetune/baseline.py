"""A TF-IDF + logistic regression baseline fitted on a run's own splits, reported beside the model.

Every ``finetune train`` with a validation split fits it after training (``baseline: tfidf``, the default;
``baseline: none`` turns it off), so that a run shows at once whether the network earns its cost:

    [finetune] baseline (TF-IDF char 1-3-grams + logistic regression, C 3): validation accuracy 0.8594, ...

The pipeline is scikit-learn's: ``HashingVectorizer`` (character 1- to 3-grams for a character tokenizer, word 1- and
2-grams otherwise, 2^22 buckets) with the n-grams of a single training row dropped, ``TfidfTransformer``
(``sublinear_tf``) and a logistic regression fitted by ``SGDClassifier`` (log loss,
L2 penalty ``alpha = 1 / (C * rows)``, 30 epochs), one-vs-rest for multi-label data. C is picked on the validation
split (macro-F1; micro-F1 for multi-label data), and the test split is scored once, with that C. The training texts
stream from the Arrow files through the hasher, so that only the sparse matrix is held (no vocabulary of every
n-gram, no list of every text); a training split larger than ``baseline_max_train_samples`` is subsampled (seeded),
which bounds that matrix. Validation and test rows are scored in batches, so they are never held at once.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from finetune.metrics import (
    MULTI_LABEL_METRICS,
    TRAINING_METRICS,
    add_counts,
    multilabel_counts,
    scores_from_confusion_matrix,
    scores_from_multilabel_counts,
)

if TYPE_CHECKING:  # the data modules import datasets, which `finetune report` (a user of this module) needs not
    import pyarrow as pa

    from finetune.data.splits import RawData

logger = logging.getLogger("finetune")

BASELINE_FILE = "baseline_results.json"
SPLIT_NAMES = (("eval", "validation"), ("test", "test"))  # result prefix, and the split's name in messages
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
HASH_BUCKETS = 2**22
MIN_ROWS = 2  # an n-gram of a single training row is dropped (TfidfVectorizer's min_df)
EPOCHS = 30
BATCH_ROWS = 2_000  # the hasher holds a Python int per n-gram of a batch while it counts them
# Scripts written without spaces between words, which a word analyzer would read as one token per sentence.
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


@dataclass
class BaselineSettings:
    """How the baseline's features are made; ``describe`` names them in logs and model cards."""

    analyzer: str  # "char" or "word"
    lowercase: bool = True

    @property
    def ngram_range(self) -> tuple[int, int]:
        return (1, 3) if self.analyzer == "char" else (1, 2)

    def describe(self) -> str:
        low, high = self.ngram_range
        unit = "char" if self.analyzer == "char" else "word"
        return f"TF-IDF {unit} {low}-{high}-grams + logistic regression"


@dataclass
class Features:
    """TF-IDF features of hashed n-grams: those seen in at least two training rows, idf-weighted, l2-normalised.

    Hashing (2^22 buckets, few collisions) needs no vocabulary of every n-gram while the training texts stream by;
    the n-grams of one training row only are dropped afterwards (``min_df`` 2) and the columns left renumbered.
    """

    hasher: object
    kept: np.ndarray  # the buckets used, ascending
    tfidf: object

    def transform(self, texts: list[str]):
        return self.tfidf.transform(self.hasher.transform(texts)[:, self.kept])


def make_hasher(settings: BaselineSettings):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer=settings.analyzer,
        ngram_range=settings.ngram_range,
        lowercase=settings.lowercase,
        n_features=HASH_BUCKETS,
        alternate_sign=False,
        norm=None,
        # Words of one character count too; a pattern given to the char analyzer would only draw a warning.
        token_pattern=r"(?u)\b\w+\b" if settings.analyzer == "word" else None,
    )


def fit_features(settings: BaselineSettings, batches: Iterator[list[str]]):
    """The features fitted on the training texts (given batch by batch), and the training rows' feature matrix;
    the features are None when no n-gram occurs in two training rows."""
    import scipy.sparse
    from sklearn.feature_extraction.text import TfidfTransformer

    hasher = make_hasher(settings)
    counts = scipy.sparse.vstack([hasher.transform(texts) for texts in batches], format="csr")
    kept = np.flatnonzero(np.bincount(counts.indices, minlength=HASH_BUCKETS) >= MIN_ROWS)
    counts = counts[:, kept]
    if not kept.size:  # no features to weight: the caller skips the baseline
        return None, counts
    tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)
    return Features(hasher, kept, tfidf), tfidf.transform(counts)


def make_classifier(C: float, rows: int, seed: int, multi_label: bool):
    from sklearn.linear_model import SGDClassifier
    from sklearn.multiclass import OneVsRestClassifier

    classifier = SGDClassifier(loss="log_loss", alpha=1.0 / (C * rows), max_iter=EPOCHS, tol=None, random_state=seed)
    return OneVsRestClassifier(classifier) if multi_label else classifier


def choose_analyzer(level: str | None, sample: list[str]) -> str:
    """``char`` for a character tokenizer, ``word`` for a word tokenizer; for a pretrained tokenizer (``level``
    None), ``char`` when most characters of the sampled texts are Chinese, Japanese or Korean, else ``word``."""
    if level is not None:
        return level
    characters = sum(len(text) for text in sample)
    return "char" if characters and sum(len(CJK.findall(text)) for text in sample) * 2 > characters else "word"


def joined_texts(batch: pa.Table, columns: list[str]) -> list[str]:
    """The rows' texts; a sentence pair becomes its two texts on two lines."""
    parts = [batch.column(column).to_pylist() for column in columns]
    return parts[0] if len(parts) == 1 else ["\n".join(text or "" for text in row) for row in zip(*parts, strict=True)]


def label_targets(raw: RawData, split: str, batch: pa.Table, num_labels: int) -> np.ndarray:
    """Label ids (one per row), or multi-hot rows for multi-label data."""
    ids = raw.label_ids(split, batch.column(raw.label_column))
    if not raw.multi_label:
        return ids.to_numpy()
    targets = np.zeros((len(ids), num_labels), dtype=np.int64)
    rows = np.repeat(np.arange(len(ids)), np.diff(ids.offsets.to_numpy()))
    targets[rows, ids.values.to_numpy()] = 1
    return targets


def training_rows(raw: RawData, max_rows: int, seed: int):
    """The training split, or a seeded random ``max_rows`` of it (in file order)."""
    train = raw.splits["train"]
    if len(train) <= max_rows:
        return train
    indices = np.sort(np.random.default_rng(seed).choice(len(train), size=max_rows, replace=False))
    return train.select(indices)


def fit_baseline(
    raw: RawData,
    text_columns: list[str],
    tokenizer_level: str | None,
    lowercase: bool,
    seed: int,
    max_train_rows: int,
    threshold: float = 0.5,
) -> dict | None:
    """Fits the baseline on ``raw``'s train split, picks C on validation and scores test.

    Args:
        raw: The run's splits as read (train and validation, and test when given).
        text_columns: The text column, and the pair column of sentence-pair data.
        tokenizer_level: The TextCNN tokenizer's level (char or word), or None for a pretrained tokenizer.
        lowercase: Whether the features lowercase the texts.
        seed: The run's seed (subsample and SGD).
        max_train_rows: Fit on a seeded random subsample of the training split when it is larger.
        threshold: Multi-label: a label is predicted when its probability is over this.

    Returns:
        ``baseline_results.json``'s content: the settings, ``C``, rows used and seconds, and the metrics with the
        Trainer's prefixes (``eval_accuracy``, ``eval_f1``, ``test_accuracy``, ...); None (with a log line) when
        the training split gives the baseline nothing to fit.
    """
    from finetune.data.splits import arrow_batches

    started = time.monotonic()
    num_labels = len(raw.label_list)
    if num_labels < 2:
        logger.info("baseline: skipped, the training split has one label")
        return None
    train = training_rows(raw, max_train_rows, seed)
    sample = next(iter(arrow_batches(train, text_columns, batch_rows=1_000)), None)
    settings = BaselineSettings(choose_analyzer(tokenizer_level, joined_texts(sample, text_columns)), lowercase)
    if len(train) < len(raw.splits["train"]):
        logger.info(
            "baseline: fitted on a random %s of the %s training rows (baseline_max_train_samples)",
            f"{len(train):,}",
            f"{len(raw.splits['train']):,}",
        )

    columns = [*text_columns, raw.label_column]
    targets: list[np.ndarray] = []

    def batches() -> Iterator[list[str]]:  # one pass: the texts of one batch at a time, never all of them
        for batch in arrow_batches(train, columns, BATCH_ROWS):
            targets.append(label_targets(raw, "train", batch, num_labels))
            yield joined_texts(batch, text_columns)

    featurizer, features = fit_features(settings, batches())
    if featurizer is None:
        hint = " (words are split at spaces: for text without them, tokenizer_level: char)" * (
            settings.analyzer == "word"
        )
        logger.info("baseline: skipped, no n-gram occurs in two training rows%s", hint)
        return None
    labels = np.concatenate(targets)
    if not raw.multi_label and np.unique(labels).size < 2:  # a subsample can miss every other label
        logger.info(
            "baseline: skipped, the %s training rows it was fitted on have one label (baseline_max_train_samples: "
            "more rows)",
            f"{len(train):,}",
        )
        return None
    classifiers = {}
    with warnings.catch_warnings():
        # A label without positive rows (multi-label) leaves a constant one-vs-rest model, as intended.
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
        for C in C_GRID:
            classifiers[C] = make_classifier(C, features.shape[0], seed, raw.multi_label).fit(features, labels)
    del features

    validation = score_split(raw, "validation", featurizer, classifiers, text_columns, num_labels, threshold)
    selection = "f1_micro" if raw.multi_label else "f1"
    best_C = max(C_GRID, key=lambda C: validation[C][selection])  # the first best: the stronger regularization
    results = {
        "baseline": "tfidf",
        "model": settings.describe(),
        "analyzer": settings.analyzer,
        "ngram_range": list(settings.ngram_range),
        "C": best_C,
        "selected_by": f"eval_{selection}",
        "train_samples": len(train),
        "train_rows": len(raw.splits["train"]),
        "features": len(featurizer.kept),
        **{f"eval_{name}": value for name, value in validation[best_C].items()},
        "eval_samples": len(raw.splits["validation"]),
    }
    if "test" in raw.splits:
        test = score_split(raw, "test", featurizer, {best_C: classifiers[best_C]}, text_columns, num_labels, threshold)
        results.update({f"test_{name}": value for name, value in test[best_C].items()})
        results["test_samples"] = len(raw.splits["test"])
    results["seconds"] = round(time.monotonic() - started, 2)
    return results


def score_split(
    raw: RawData,
    split: str,
    featurizer: Features,
    classifiers: dict,
    text_columns: list[str],
    num_labels: int,
    threshold,
) -> dict[float, dict[str, float]]:
    """Each classifier's metrics on a split, from counts added up batch by batch."""
    from finetune.data.splits import arrow_batches

    counts: dict[float, np.ndarray | dict | None] = dict.fromkeys(classifiers)
    for batch in arrow_batches(raw.splits[split], [*text_columns, raw.label_column], BATCH_ROWS):
        features = featurizer.transform(joined_texts(batch, text_columns))
        truth = label_targets(raw, split, batch, num_labels)
        for C, classifier in classifiers.items():
            if raw.multi_label:
                predicted = classifier.predict_proba(features) > threshold
                counts[C] = add_counts(counts[C], multilabel_counts(predicted, truth > 0))
            else:
                matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
                np.add.at(matrix, (truth, classifier.predict(features)), 1)
                counts[C] = matrix if counts[C] is None else counts[C] + matrix
    if raw.multi_label:
        return {C: pick(scores_from_multilabel_counts(total), MULTI_LABEL_METRICS) for C, total in counts.items()}
    return {C: pick(scores_from_confusion_matrix(total), TRAINING_METRICS) for C, total in counts.items()}


def pick(scores: dict, names: tuple[str, ...]) -> dict[str, float]:
    return {name: float(scores[name]) for name in names}


def prefixed(results: dict) -> dict[str, float]:
    """The baseline's numbers as all_results.json keeps them: ``baseline_eval_accuracy``, ``baseline_C``, ..."""
    return {
        f"baseline_{name}": value
        for name, value in results.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def log_baseline(results: dict) -> None:
    first = "subset_accuracy" if "eval_subset_accuracy" in results else "accuracy"
    shown = [f"validation {first.replace('_', ' ')} {results[f'eval_{first}']:.4f}, macro-F1 {results['eval_f1']:.4f}"]
    if f"test_{first}" in results:
        shown.append(
            f"test {first.replace('_', ' ')} {results[f'test_{first}']:.4f}, macro-F1 {results['test_f1']:.4f}"
        )
    logger.info(
        "baseline (%s, C %g, %s rows, %.1f s): %s",
        results["model"],
        results["C"],
        f"{results['train_samples']:,}",
        results["seconds"],
        "; ".join(shown),
    )


def comparison(results: dict, baseline: dict | None, split: str) -> str:
    """``baseline 0.8600, this model 0.8577`` for a split's first metric (accuracy, or subset accuracy)."""
    first = "subset_accuracy" if f"{split}_subset_accuracy" in results else "accuracy"
    name = f"{split}_{first}"
    if not baseline or name not in baseline or name not in results:
        return ""
    return f"baseline {baseline[name]:.4f}, this model {results[name]:.4f}"
