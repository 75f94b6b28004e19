"""End-to-end training runs on the small fixture: outputs, best checkpoint, Auto classes, tiny BERT."""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
import transformers
from conftest import QUICK_TEXTCNN, REPO, sentence_pair_files
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel, BertTokenizer

import finetune  # noqa: F401  (registers TextCNN with the Auto classes)
from finetune.cli import SUBCOMMANDS
from finetune.cli import main as cli_main
from finetune.errors import UserError
from finetune.predict import main as predict_main
from finetune.train import main as train_main


def best_eval_loss_step(trainer_state: dict) -> int:
    evaluations = [entry for entry in trainer_state["log_history"] if "eval_loss" in entry]
    return min(evaluations, key=lambda entry: entry["eval_loss"])["step"]


def assert_run_outputs(run: Path) -> dict:
    for name in ("best.json", "train_results.json", "eval_results.json", "test_results.json", "all_results.json"):
        assert (run / name).is_file(), name
    assert (run / "trainer_state.json").is_file()
    assert (run / "best" / "model.safetensors").is_file()
    assert (run / "best" / "config.json").is_file()
    assert (run / "best" / "finetune_args.json").is_file()
    pickles = [
        p.name for p in run.rglob("*") if p.suffix in (".bin", ".pkl", ".pickle") or p.name == "pytorch_model.bin"
    ]
    assert pickles == []

    best = json.loads((run / "best.json").read_text())
    state = json.loads((run / "trainer_state.json").read_text())
    assert best["metric"] == "eval_loss" and best["greater_is_better"] is False
    assert best["step"] == best_eval_loss_step(state)
    assert best["checkpoint"] == f"checkpoint-{best['step']}"
    checkpoint = run / best["checkpoint"]
    assert checkpoint.is_dir()
    assert abs(best["value"] - min(e["eval_loss"] for e in state["log_history"] if "eval_loss" in e)) < 1e-9

    best_weights = load_file(run / "best" / "model.safetensors")
    checkpoint_weights = load_file(checkpoint / "model.safetensors")
    assert best_weights.keys() == checkpoint_weights.keys()
    for name, tensor in best_weights.items():
        assert torch.equal(tensor, checkpoint_weights[name]), name

    all_results = json.loads((run / "all_results.json").read_text())
    for key in ("train_loss", "eval_loss", "eval_accuracy", "eval_f1", "test_accuracy", "test_f1", "test_recall"):
        assert key in all_results, key
    return all_results


def test_textcnn_end_to_end(data_args, tmp_path, capfd):
    assert train_main(data_args + QUICK_TEXTCNN) == 0
    # disable_tqdm: no bar at all, the tokenizing of the splits and the writing of weights included; and the
    # libraries' bars are on again after the run.
    assert "%|" not in capfd.readouterr().err
    assert datasets.is_progress_bar_enabled() and transformers.utils.logging.is_progress_bar_enabled()
    run = tmp_path / "run"
    results = assert_run_outputs(run)
    assert results["test_accuracy"] >= 0.85  # the fixture is easy; chance is 0.5
    # Without label smoothing, the loss is the plain one: eval_log_loss is eval_loss at every evaluation.
    evaluations = [entry for entry in json.loads((run / "trainer_state.json").read_text())["log_history"]]
    evaluations = [entry for entry in evaluations if "eval_loss" in entry]
    assert evaluations and all(
        entry["eval_log_loss"] == pytest.approx(entry["eval_loss"], rel=1e-5) for entry in evaluations
    )
    assert results["test_log_loss"] == pytest.approx(results["test_loss"], rel=1e-5)
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["model_type"] == "textcnn"
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}

    # best/ loads through the Auto classes and classifies like the trained model did.
    model = AutoModelForSequenceClassification.from_pretrained(run / "best")
    tokenizer = AutoTokenizer.from_pretrained(run / "best")
    assert type(model).__name__ == "TextCNNForSequenceClassification"
    assert tokenizer.pad_token_id == 0 and tokenizer.convert_tokens_to_ids("[UNK]") == 1
    batch = tokenizer(["房间很好，非常棒", "质量差，非常失望"], padding=True, return_tensors="pt")
    batch = {k: torch.nn.functional.pad(v, (0, max(0, 3 - v.shape[1]))) for k, v in batch.items()}
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    assert [model.config.id2label[i] for i in predicted] == ["positive", "negative"]


def test_log_loss_leaves_label_smoothing_out_as_evaluate_does(data_args, reviews, tmp_path):
    flags = [*QUICK_TEXTCNN, "--num_train_epochs", "2", "--label_smoothing_factor", "0.2"]
    flags += ["--metric_for_best_model", "eval_log_loss"]  # a loss: lower is better, as for eval_loss
    assert train_main(data_args + flags) == 0
    run = tmp_path / "run"
    results = json.loads((run / "all_results.json").read_text())
    best = json.loads((run / "best.json").read_text())
    assert best["metric"] == "eval_log_loss" and best["greater_is_better"] is False
    state = json.loads((run / "trainer_state.json").read_text())
    assert best["value"] == min(entry["eval_log_loss"] for entry in state["log_history"] if "eval_log_loss" in entry)
    assert results["test_loss"] > results["test_log_loss"]  # the smoothed loss of the same logits is higher here
    output = tmp_path / "evaluation.json"
    command = ["evaluate", "--model", str(run), "--test_file", str(reviews["test"]), "--output", str(output)]
    assert cli_main(command) == 0
    assert json.loads(output.read_text())["metrics"]["loss"] == pytest.approx(results["test_log_loss"], rel=1e-5)


def test_tokenizer_loads_without_finetune(data_args, tmp_path):
    """AutoTokenizer needs nothing from this package to load a TextCNN run's tokenizer. With trust_remote_code it
    asks nothing; without, transformers asks whether to run textcnn.py (config.json's auto_map names it), and a
    process without a terminal declines and still gets the tokenizer."""
    assert train_main(data_args + QUICK_TEXTCNN + ["--num_train_epochs", "1"]) == 0
    for trust, asked in (("True", False), ("None", True)):
        code = (
            "import sys; from transformers import AutoTokenizer; "
            f"t = AutoTokenizer.from_pretrained({str(tmp_path / 'run' / 'best')!r}, trust_remote_code={trust}); "
            "assert 'finetune' not in sys.modules; print(t('很好')['input_ids'])"
        )
        environment = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=True,
            env=environment,
            stdin=subprocess.DEVNULL,
        )
        assert ("Do you wish to run the custom code?" in out.stdout) is asked
        ids = json.loads(out.stdout.rpartition("[y/N] ")[2])
        assert len(ids) == 2 and all(i > 1 for i in ids)


def test_best_checkpoint_survives_save_total_limit(data_args, tmp_path):
    # With a "higher loss is better" rule the first evaluation wins, so later checkpoints rotate around it.
    args = data_args + QUICK_TEXTCNN + ["--save_total_limit", "2", "--greater_is_better", "true"]
    assert train_main(args) == 0
    run = tmp_path / "run"
    best = json.loads((run / "best.json").read_text())
    state = json.loads((run / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_loss" in entry]
    assert best["step"] == max(evaluations, key=lambda entry: entry["eval_loss"])["step"]
    assert best["step"] != state["global_step"], "the fixture should make an early checkpoint the best"
    kept = sorted(path.name for path in run.glob("checkpoint-*"))
    assert kept == sorted([best["checkpoint"], f"checkpoint-{state['global_step']}"])


def make_tiny_bert(directory: Path, texts: list[str]) -> Path:
    """A randomly initialised 2-layer BERT with a character vocabulary, saved like a hub model."""
    characters = sorted({character for text in texts for character in text})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + characters
    directory.mkdir(parents=True)
    BertTokenizer(vocab={token: index for index, token in enumerate(vocab)}).save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory


def test_tiny_bert_end_to_end(data_args, reviews, tmp_path):
    texts = [json.loads(line)["text"] for line in reviews["train"].read_text(encoding="utf-8").splitlines()]
    model_dir = make_tiny_bert(tmp_path / "tiny-bert", texts)
    args = data_args + [
        "--model_type", "bert",
        "--model_name_or_path", str(model_dir),
        "--max_length", "32",
        "--per_device_train_batch_size", "16",
        "--learning_rate", "2e-3",
        "--num_train_epochs", "4",
    ]  # fmt: skip
    with pytest.raises(UserError, match="max_length 65 is longer than the model can take"):  # 64 positions
        train_main(args + ["--max_length", "65"])
    assert train_main(args) == 0
    results = assert_run_outputs(tmp_path / "run")
    assert results["test_accuracy"] >= 0.8
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "best")
    assert model.config.model_type == "bert" and model.config.label2id == {"negative": 0, "positive": 1}


def test_sentence_pairs_train_and_predict(reviews, tmp_path):
    files = sentence_pair_files(reviews, tmp_path)
    args = [
        "--train_file", str(files["train"]),
        "--validation_file", str(files["validation"]),
        "--test_file", str(files["test"]),
        "--text_column", "first",
        "--text_pair_column", "second",
        "--cache_dir", str(tmp_path / "cache"),
        "--output_dir", str(tmp_path / "run"),
        "--disable_tqdm", "true",
        *QUICK_TEXTCNN,
    ]  # fmt: skip
    assert train_main(args) == 0
    results = assert_run_outputs(tmp_path / "run")
    assert results["test_accuracy"] >= 0.8
    # predict takes the columns from the run and gives the same accuracy on the test pairs.
    output = tmp_path / "predictions.jsonl"
    assert (
        predict_main(["--model", str(tmp_path / "run"), "--input", str(files["test"]), "--output", str(output)]) == 0
    )
    predicted = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    accuracy = sum(row["label"] == row["input_label"] for row in predicted) / len(predicted)
    assert accuracy == pytest.approx(results["test_accuracy"])


def test_script_and_subcommand_take_the_same_arguments(tmp_path, capsys, monkeypatch):
    # The script (what `accelerate launch finetune/train.py` runs) in a process of its own; the subcommand here.
    monkeypatch.setenv("COLUMNS", "100")
    command = [sys.executable, str(REPO / "finetune" / "train.py"), "--help"]
    environment = {**os.environ, "COLUMNS": "100"}
    script_help = subprocess.run(command, capture_output=True, text=True, check=True, cwd=tmp_path, env=environment)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli_main(["train", "--help"])
    assert exit_.value.code == 0
    subcommand_help = capsys.readouterr().out
    assert "--early_stopping_patience" in script_help.stdout and "--kernel_sizes" in script_help.stdout
    assert script_help.stdout == subcommand_help


@pytest.mark.parametrize("subcommand", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(subcommand, capsys):
    # In this process: `python -m finetune` itself runs in test_top_level_help and in test_startup's light commands.
    with pytest.raises(SystemExit) as exit_:
        cli_main([subcommand, "--help"])
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_ctrl_c_ends_training_with_one_line_that_names_resume(command, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(f"finetune.{command}.{command}", interrupted)
    argv = [command, "--output_dir", str(tmp_path / "run"), "--train_file", str(tmp_path / "x.jsonl")]
    assert cli_main(argv + (["--model_name_or_path", str(tmp_path)] if command == "pretrain" else [])) == 130
    error = capsys.readouterr().err
    assert "stopped (Ctrl-C); run it again with --resume (and --overwrite_output_dir false where it is set)" in error
    assert "Traceback" not in error


def test_top_level_help():
    result = subprocess.run([sys.executable, "-m", "finetune", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout


def test_seeds_train_once_per_seed_and_write_the_spread(data_args, tmp_path):
    assert train_main(data_args + QUICK_TEXTCNN + ["--num_train_epochs", "2", "--seeds", "1", "2", "3"]) == 0
    run = tmp_path / "run"
    summary = json.loads((run / "seeds_results.json").read_text())
    assert summary["seeds"] == [1, 2, 3]
    per_seed = [json.loads((run / f"seed-{seed}" / "all_results.json").read_text()) for seed in (1, 2, 3)]
    for seed in (1, 2, 3):
        assert (run / f"seed-{seed}" / "best" / "model.safetensors").is_file()
    losses = [results["eval_loss"] for results in per_seed]
    assert len(set(losses)) == 3, "different seeds should train differently"
    accuracies = [results["test_accuracy"] for results in per_seed]
    assert summary["mean"]["test_accuracy"] == pytest.approx(sum(accuracies) / 3)
    mean_loss = sum(losses) / 3
    sample_std = (sum((loss - mean_loss) ** 2 for loss in losses) / 2) ** 0.5
    assert summary["std"]["eval_loss"] == pytest.approx(sample_std)


def test_seeds_replace_an_earlier_run_and_resume_skips_finished_seeds(data_args, tmp_path):
    quick = data_args + QUICK_TEXTCNN + ["--num_train_epochs", "1"]
    assert train_main(quick) == 0  # an earlier single run in the same output_dir
    run = tmp_path / "run"
    assert train_main(quick + ["--seeds", "1", "2", "--overwrite_output_dir", "true"]) == 0
    assert sorted(path.name for path in run.iterdir()) == ["seed-1", "seed-2", "seeds_results.json"]

    # Cut short while training seed 2: seed 1 is finished, seed 2 is not.
    (run / "seed-2" / "best.json").unlink()
    (run / "seeds_results.json").unlink()
    seed_1 = {path: path.stat().st_mtime_ns for path in (run / "seed-1").rglob("*")}
    assert train_main(quick + ["--seeds", "1", "2", "--resume"]) == 0
    assert {path: path.stat().st_mtime_ns for path in (run / "seed-1").rglob("*")} == seed_1
    assert (run / "seed-2" / "best.json").is_file()
    summary = json.loads((run / "seeds_results.json").read_text())
    assert summary["runs"]["1"] == json.loads((run / "seed-1" / "all_results.json").read_text())


def test_tensorboard_holds_losses_metrics_and_throughput(data_args, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    flags = data_args + QUICK_TEXTCNN + ["--num_train_epochs", "2", "--report_to", "tensorboard", "--baseline", "none"]
    assert train_main(flags) == 0
    run = tmp_path / "run"
    scalars: dict[str, list] = {}
    for folder in sorted((run / "runs").iterdir()):
        events = EventAccumulator(str(folder))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((event.step, event.value) for event in events.Scalars(tag))
    history = json.loads((run / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    evaluations = [(entry["step"], entry["eval_loss"]) for entry in history if "eval_loss" in entry]
    during = scalars["eval/loss"][: len(evaluations)]  # then the best model's evaluation after training
    assert len(scalars["eval/loss"]) == len(evaluations) + 1
    assert [step for step, _ in during] == [step for step, _ in evaluations]
    assert [value for _, value in during] == pytest.approx([value for _, value in evaluations])
    trained = [(entry["step"], entry["samples_per_second"]) for entry in history if "loss" in entry]
    assert [step for step, _ in scalars["train/samples_per_second"]] == [step for step, _ in trained]
    assert [value for _, value in scalars["train/samples_per_second"]] == pytest.approx([v for _, v in trained])
    for tag in ("train/loss", "eval/accuracy", "eval/f1", "train/tokens_per_second", "train/step_seconds"):
        assert scalars[tag], tag
