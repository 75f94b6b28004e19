"""The TF-IDF baseline of every run, against the same pipeline fitted here from scikit-learn on the same files."""

import json
import logging
import random

import numpy as np
import pytest
from conftest import QUICK_TEXTCNN, read_jsonl
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import MultiLabelBinarizer
from test_multilabel import run_flags, topics  # noqa: F401  (the multi-label fixture files)

from finetune.baseline import C_GRID, choose_analyzer, fit_baseline
from finetune.config import DataArguments
from finetune.data import load_raw_splits
from finetune.parsing import parse_args
from finetune.report import main as report_main
from finetune.train import main as train_main
from finetune.train import run_baseline


class Oracle:
    """The baseline as documented, built here from scikit-learn and numpy alone: hashed character 1-3-grams, those of
    one training row dropped, TF-IDF, logistic regression by SGD (one-vs-rest for multi-label data)."""

    def __init__(self, C: float, seed: int, multi_label: bool = False):
        self.hasher = HashingVectorizer(
            analyzer="char", ngram_range=(1, 3), n_features=2**22, alternate_sign=False, norm=None
        )
        self.C, self.seed, self.multi_label = C, seed, multi_label

    def fit(self, texts: list[str], labels):
        counts = self.hasher.transform(texts)
        self.columns = np.flatnonzero((counts > 0).sum(axis=0).A1 >= 2)
        self.tfidf = TfidfTransformer(sublinear_tf=True).fit(counts[:, self.columns])
        classifier = SGDClassifier(
            loss="log_loss", alpha=1 / (self.C * len(texts)), max_iter=30, tol=None, random_state=self.seed
        )
        self.classifier = OneVsRestClassifier(classifier) if self.multi_label else classifier
        self.classifier.fit(self.features(texts), labels)
        return self

    def features(self, texts: list[str]):
        return self.tfidf.transform(self.hasher.transform(texts)[:, self.columns])

    def predict(self, texts: list[str]):
        if self.multi_label:
            return self.classifier.predict_proba(self.features(texts)) > 0.5
        return self.classifier.predict(self.features(texts))


def columns(path) -> tuple[list[str], list]:
    rows = read_jsonl(path)
    return [row["text"] for row in rows], [row["label"] for row in rows]


def test_a_run_reports_the_baseline_that_scikit_learn_fits(data_args, reviews, tmp_path, capsys):
    assert train_main(data_args + QUICK_TEXTCNN + ["--num_train_epochs", "1", "--seed", "7"]) == 0
    run = tmp_path / "run"
    baseline = json.loads((run / "baseline_results.json").read_text())

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (
        columns(reviews[s]) for s in ("train", "validation", "test")
    )
    validation_f1 = {}
    for C in C_GRID:
        predicted = Oracle(C, seed=7).fit(train_x, train_y).predict(val_x)
        validation_f1[C] = f1_score(val_y, predicted, average="macro")
    best_C = max(C_GRID, key=validation_f1.get)
    pipeline = Oracle(best_C, seed=7).fit(train_x, train_y)
    assert baseline["C"] == best_C and baseline["train_samples"] == len(train_x) == 200
    assert baseline["eval_f1"] == pytest.approx(validation_f1[best_C], abs=1e-12)
    assert baseline["eval_accuracy"] == pytest.approx(accuracy_score(val_y, pipeline.predict(val_x)), abs=1e-12)
    assert baseline["test_accuracy"] == pytest.approx(accuracy_score(test_y, pipeline.predict(test_x)), abs=1e-12)
    assert baseline["test_f1"] == pytest.approx(f1_score(test_y, pipeline.predict(test_x), average="macro"), abs=1e-12)
    assert baseline["analyzer"] == "char" and baseline["test_accuracy"] > 0.8  # chance is 0.5

    # Beside the model: all_results.json, the log, the model card and finetune report.
    results = json.loads((run / "all_results.json").read_text())
    assert results["baseline_test_accuracy"] == baseline["test_accuracy"]
    assert results["baseline_eval_f1"] == baseline["eval_f1"] and "test_accuracy" in results
    comparison = f"baseline {baseline['test_accuracy']:.4f}, this model {results['test_accuracy']:.4f}"
    log = capsys.readouterr().out
    assert comparison in log
    assert "vocabulary built from the training texts" in log and "cannot tell apart" not in log
    assert comparison in (run / "best" / "README.md").read_text()
    assert report_main([str(run)]) == 0
    assert f"test {comparison}" in capsys.readouterr().out


def test_multi_label_runs_get_the_one_vs_rest_baseline(topics, tmp_path):  # noqa: F811
    data_args = parse_args(run_flags(topics, tmp_path) + ["--seed", "3"])[1]
    raw = load_raw_splits(data_args, seed=3)
    baseline = fit_baseline(raw, ["text"], "char", True, seed=3, max_train_rows=10_000)
    raw.close()

    (train_x, train_y), (val_x, val_y) = columns(topics["train"]), columns(topics["validation"])
    binarizer = MultiLabelBinarizer(classes=sorted({label for labels in train_y for label in labels}))
    train_targets, val_targets = binarizer.fit_transform(train_y), binarizer.transform(val_y)
    micro = {}
    for C in C_GRID:
        pipeline = Oracle(C, seed=3, multi_label=True).fit(train_x, train_targets)
        micro[C] = f1_score(val_targets, pipeline.predict(val_x), average="micro")
    best_C = max(C_GRID, key=micro.get)
    assert baseline["C"] == best_C and baseline["selected_by"] == "eval_f1_micro"
    assert baseline["eval_f1_micro"] == pytest.approx(micro[best_C], abs=1e-12)
    assert "test_f1_micro" in baseline and "eval_subset_accuracy" in baseline


def test_a_large_training_split_is_subsampled_and_says_so(reviews, caplog):
    data_args = DataArguments(train_file=str(reviews["train"]), validation_file=str(reviews["validation"]))
    raw = load_raw_splits(data_args, seed=1)
    with caplog.at_level(logging.INFO, logger="finetune"):
        baseline = fit_baseline(raw, ["text"], "char", True, seed=1, max_train_rows=120)
    raw.close()
    assert baseline["train_samples"] == 120 and baseline["train_rows"] == 200
    assert "fitted on a random 120 of the 200 training rows" in caplog.text

    # So few rows that they have one label (seed 1 draws three of one): no classifier to fit, the run goes on.
    raw = load_raw_splits(data_args, seed=1)
    with caplog.at_level(logging.INFO, logger="finetune"):
        assert fit_baseline(raw, ["text"], "char", True, seed=1, max_train_rows=3) is None
    raw.close()
    assert "skipped, the 3 training rows it was fitted on have one label" in caplog.text


def test_text_without_spaces_read_as_words_warns_and_skips_the_baseline(data_args, tmp_path, capsys):
    """Chinese without punctuation read by a word tokenizer: every text is one token, none of the validation's in the
    vocabulary, and no word in two training rows for the baseline. The run says what to change and still finishes."""
    generator = random.Random(0)
    files = []
    for split, rows in (("train", 60), ("validation", 20)):
        path = tmp_path / f"{split}.jsonl"
        texts = ("".join(generator.choices("好差棒烂很不是的了", k=12)) for _ in range(rows))
        path.write_text("".join(json.dumps({"text": text, "label": i % 2}) + "\n" for i, text in enumerate(texts)))
        files += [f"--{split}_file", str(path)]
    args = (
        data_args + QUICK_TEXTCNN + files + ["--test_file", "", "--num_train_epochs", "1", "--tokenizer_level", "word"]
    )
    assert train_main(args) == 0
    log = capsys.readouterr().out
    assert "100.0% of the validation tokens are [UNK], which the model cannot tell apart" in log
    assert "for text written without spaces (Chinese, Japanese), tokenizer_level: char" in log
    assert "baseline: skipped, no n-gram occurs in two training rows" in log
    run = tmp_path / "run"
    assert (run / "best.json").is_file() and not (run / "baseline_results.json").exists()


def test_a_failing_baseline_costs_the_run_nothing(data_args, tmp_path, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise MemoryError("no room for the matrix")

    monkeypatch.setattr("finetune.train.fit_baseline", fail)
    assert train_main(data_args + QUICK_TEXTCNN + ["--num_train_epochs", "1"]) == 0
    assert (
        "baseline: failed, the run goes on without it (MemoryError: no room for the matrix)" in capsys.readouterr().out
    )
    run = tmp_path / "run"
    assert (run / "best.json").is_file() and (run / "best" / "README.md").is_file()
    assert not (run / "baseline_results.json").exists()
    assert "test_accuracy" in json.loads((run / "all_results.json").read_text())


def test_baseline_none_fits_nothing(data_args):
    model_args, data, training_args = parse_args(data_args + ["--baseline", "none"])
    assert run_baseline(model_args, data, training_args) is None
    with pytest.raises(SystemExit):
        parse_args(data_args + ["--baseline", "logistic"])


def test_the_analyzer_follows_the_tokenizer_or_the_script():
    assert choose_analyzer("word", ["房间很好"]) == "word"
    assert choose_analyzer(None, ["房间很好，服务也好", "OK"]) == "char"
    assert choose_analyzer(None, ["the room was clean", "很好"]) == "word"
