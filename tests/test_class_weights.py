"""class_weights: balanced as scikit-learn computes it, or by label; applied to the training loss only."""

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES, QUICK_TEXTCNN, read_jsonl
from sklearn.utils.class_weight import compute_class_weight

from finetune.config import TrainingArguments
from finetune.errors import UserError
from finetune.evaluation import main as evaluate_main
from finetune.labels import class_weights, classification_loss
from finetune.models import TextCNNConfig, TextCNNForSequenceClassification
from finetune.parsing import parse_args
from finetune.train import main as train_main
from finetune.trainer import ClassifierTrainer


def test_balanced_weights_are_scikit_learns():
    labels = np.array([0] * 50 + [1] * 7 + [2] * 3)
    counts = np.bincount(labels)
    weights = class_weights("balanced", ["a", "b", "c"], counts, len(labels), multi_label=False)
    np.testing.assert_allclose(weights, compute_class_weight("balanced", classes=np.arange(3), y=labels))
    # Multi-label: each label's negatives per positive (BCE pos_weight); a label on no row weighs 1.
    weights = class_weights("balanced", ["a", "b", "c"], np.array([10, 40, 0]), 50, multi_label=True)
    np.testing.assert_allclose(weights, [4.0, 0.25, 1.0])


def test_weights_by_label_name():
    weights = class_weights({"b": 3.0}, ["a", "b"], np.array([5, 5]), 10, multi_label=False)
    np.testing.assert_allclose(weights, [1.0, 3.0])
    with pytest.raises(UserError, match="class_weights names label.*'z'.*Training labels: 'a', 'b'"):
        class_weights({"z": 2.0}, ["a", "b"], np.array([5, 5]), 10, multi_label=False)


def test_class_weights_from_the_command_line_and_yaml(tmp_path):
    flags = ["--train_file", "x.jsonl", "--output_dir", str(tmp_path / "run")]
    assert parse_args([*flags, "--class_weights", '{"pos": 2, "neg": 1}'])[2].class_weights == {"pos": 2.0, "neg": 1.0}
    assert parse_args([*flags, "--class_weights", "balanced"])[2].class_weights == "balanced"
    config = tmp_path / "config.yaml"
    config.write_text("class_weights:\n  正面: 1\n  负面: 4.5\n", encoding="utf-8")
    assert parse_args([*flags, "--config", str(config)])[2].class_weights == {"正面": 1.0, "负面": 4.5}
    for wrong in ("often", '{"pos": -1}', '{"pos": "high"}'):
        with pytest.raises(UserError, match="class_weights"):
            parse_args([*flags, "--class_weights", wrong])
    with pytest.raises(UserError, match="threshold must be a number between 0 and 1, or tune"):
        parse_args([*flags, "--threshold", "1.5"])


def test_the_weights_apply_while_training_and_not_in_evaluation(tmp_path):
    config = TextCNNConfig(vocab_size=20, embedding_dim=8, kernel_sizes=[1, 2], num_filters=4, num_labels=3, dropout=0)
    model = TextCNNForSequenceClassification(config)
    weights = np.array([1.0, 5.0, 0.5])
    trainer = ClassifierTrainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path), use_cpu=True, eval_strategy="no", load_best_model_at_end=False
        ),
        class_weights=weights,
    )
    inputs = {"input_ids": torch.randint(2, 20, (6, 5)), "labels": torch.tensor([0, 1, 2, 1, 0, 2])}
    model.train()
    trained = trainer.compute_loss(model, dict(inputs))
    model.eval()
    evaluated = trainer.compute_loss(model, dict(inputs))
    logits = model(input_ids=inputs["input_ids"]).logits
    weighted = torch.nn.functional.cross_entropy(logits, inputs["labels"], weight=torch.tensor(weights).float())
    assert trained.item() == pytest.approx(weighted.item(), rel=1e-5)
    assert evaluated.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, inputs["labels"]).item())
    assert trainer.loss_is_scaled_for_ga is False  # a per-batch mean: the Trainer divides it for accumulation


def test_multi_label_loss_with_positive_weights_and_smoothing():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    weight = torch.tensor([2.0, 3.0])
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=weight)(logits, labels * 0.9 + 0.05)
    assert classification_loss(logits, labels, weight, smoothing=0.1).item() == pytest.approx(expected.item())


def test_an_imbalanced_run_with_balanced_weights(tmp_path, capsys):
    rows = read_jsonl(FIXTURES / "reviews_train.jsonl")
    negatives = [row for row in rows if row["label"] == "negative"][:8]
    train = tmp_path / "train.jsonl"  # 100 positive, 8 negative rows: positive holds 92.6%
    train.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows if row["label"] == "positive")
        + "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in negatives),
        encoding="utf-8",
    )
    run = tmp_path / "run"
    argv = [
        "--train_file", str(train),
        "--validation_file", str(FIXTURES / "reviews_validation.jsonl"),
        "--test_file", str(FIXTURES / "reviews_test.jsonl"),
        "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(run), "--disable_tqdm", "true",
        "--class_weights", "balanced", *QUICK_TEXTCNN,
    ]  # fmt: skip
    assert train_main(argv) == 0
    log = capsys.readouterr().out  # train's log goes to stdout
    assert "label positive is on 92.6% of the training rows" in log
    expected = {"negative": 108 / (2 * 8), "positive": 108 / (2 * 100)}
    logged = next(line for line in log.splitlines() if line.startswith("[finetune] class weights"))
    assert f"negative {expected['negative']:.3g}" in logged and f"positive {expected['positive']:.3g}" in logged
    arguments = json.loads((run / "best" / "finetune_args.json").read_text(encoding="utf-8"))
    assert arguments["training"]["class_weights"] == "balanced"
    assert "class_weights: balanced" in (run / "best" / "README.md").read_text(encoding="utf-8")
    # The test loss the Trainer reports is the plain cross-entropy that evaluate computes from probabilities.
    output = tmp_path / "evaluation.json"
    argv = ["--model", str(run), "--test_file", str(FIXTURES / "reviews_test.jsonl"), "--output", str(output)]
    assert evaluate_main(argv) == 0
    test_loss = json.loads((run / "test_results.json").read_text(encoding="utf-8"))["test_loss"]
    assert json.loads(output.read_text(encoding="utf-8"))["metrics"]["loss"] == pytest.approx(test_loss, abs=1e-4)
