"""YAML + command-line parsing, precedence, preflight checks, GPU selection, and every shipped config."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from finetune.cli import main as cli_main
from finetune.errors import UserError
from finetune.parsing import check_yaml_values, make_parser, parse_args

CONFIGS = sorted(path for path in (REPO / "configs").glob("*.yaml") if path.name != "pretrain.yaml")  # train's
ACCELERATE_CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))


def write_yaml(path: Path, values: dict) -> str:
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


def test_defaults_keep_the_best_checkpoint_by_eval_loss(reviews, tmp_path):
    _, _, training = parse_args(["--train_file", str(reviews["train"]), "--output_dir", str(tmp_path / "run")])
    assert training.eval_strategy == "epoch" and training.save_strategy == "epoch"
    assert training.load_best_model_at_end is True
    assert training.metric_for_best_model == "eval_loss" and training.greater_is_better is False
    assert training.save_total_limit == 2
    assert training.report_to == [] or training.report_to in ("none", ["none"])
    # Another metric: larger is better unless it is a loss, or the config says otherwise.
    base = ["--train_file", str(reviews["train"]), "--output_dir", str(tmp_path / "run")]
    assert parse_args([*base, "--metric_for_best_model", "eval_accuracy"])[2].greater_is_better is True
    assert (
        parse_args([*base, "--metric_for_best_model", "eval_f1", "--greater_is_better", "false"])[2].greater_is_better
        is False
    )


def test_precedence_default_yaml_cli(reviews, tmp_path):
    config = write_yaml(
        tmp_path / "c.yaml",
        {
            "train_file": str(reviews["train"]),
            "output_dir": str(tmp_path / "run"),
            "learning_rate": "3e-3",  # YAML reads 3e-3 as a string; it must still become a float
            "num_filters": 7,
            "kernel_sizes": [3, 5],
            "num_train_epochs": 2,
        },
    )
    model, data, training = parse_args(["--config", config, "--num_train_epochs", "5", "--max_length", "64"])
    assert training.learning_rate == 3e-3  # YAML over default
    assert model.num_filters == 7 and model.kernel_sizes == [3, 5]  # YAML over default
    assert training.num_train_epochs == 5  # CLI over YAML
    assert data.max_length == 64  # CLI over default
    assert model.embedding_dim == 128  # default
    model, _, _ = parse_args(["--config", config, "--kernel_sizes", "2", "4"])
    assert model.kernel_sizes == [2, 4]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli_main(["train", *args])
    captured = capsys.readouterr()
    return code, captured.err


def test_unknown_yaml_key_exits_2_naming_it(reviews, tmp_path, capsys):
    config = write_yaml(tmp_path / "c.yaml", {"train_file": str(reviews["train"]), "learnin_rate": 0.1})
    code, err = run_cli(["--config", config], capsys)
    assert code == 2
    assert "learnin_rate" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model_type": "rnn"}, "model_type: 'rnn' is not one of textcnn, pretrained, bert"),
        ({"truncation_side": "middle"}, "truncation_side: 'middle' is not one of right, left"),
        ({"tokenizer_level": "byte"}, "tokenizer_level: 'byte' is not one of char, word"),
        ({"bad_rows": "ignore"}, "bad_rows: 'ignore' is not one of error, skip"),
        ({"kernel_sizes": [3, "four"]}, "kernel_sizes: 'four' is not a valid value"),
        ({"learning_rate": [0.1, 0.2]}, "learning_rate takes a single value"),
        ({"kernel_sizes": []}, "kernel_sizes needs at least one value"),
        ({"kernel_sizes": None}, "kernel_sizes cannot be null; leave the key out for its default ([2, 3, 4])"),
        ({"max_length": None}, "max_length cannot be null"),
        ({"tokenizer_level": None}, "tokenizer_level cannot be null"),
        ({"text_column": None}, "text_column cannot be null"),
    ],
)
def test_yaml_values_get_the_checks_of_flags(reviews, tmp_path, capsys, values, message):
    config = write_yaml(tmp_path / "c.yaml", {"train_file": str(reviews["train"]), **values})
    code, err = run_cli(["--config", config, "--output_dir", str(tmp_path / "run")], capsys)
    assert code == 2
    assert message in err and "c.yaml" in err and "Traceback" not in err


def test_a_single_yaml_value_for_a_list_is_a_list_of_one(reviews, tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"train_file": str(reviews["train"]), "kernel_sizes": 3, "seeds": "7"})
    model_args, _, training_args = parse_args(["--config", config, "--output_dir", str(tmp_path / "run")])
    assert model_args.kernel_sizes == [3] and training_args.seeds == [7]
    assert check_yaml_values({"gpus": 0}, make_parser(), "c.yaml") == {"gpus": "0"}  # a number, read as a flag's text
    # null where None is a value; a list or mapping where the argument takes one as it is.
    values = {"save_total_limit": None, "report_to": ["tensorboard"], "lr_scheduler_kwargs": {"power": 2.0}}
    assert check_yaml_values(values, make_parser(), "c.yaml") == values


def test_unseen_labels_exit_2(reviews, tmp_path, capsys):
    validation = tmp_path / "validation.jsonl"
    validation.write_text('{"text": "还行吧", "label": "neutral"}\n', encoding="utf-8")
    args = ["--train_file", str(reviews["train"]), "--validation_file", str(validation)]
    code, err = run_cli(args + ["--output_dir", str(tmp_path / "run"), "--cache_dir", str(tmp_path)], capsys)
    assert code == 2
    assert "'neutral'" in err and "Traceback" not in err


def test_unseen_labels_exit_2_from_a_real_process(reviews, tmp_path):
    validation = tmp_path / "validation.jsonl"
    validation.write_text('{"text": "还行吧", "label": "neutral"}\n', encoding="utf-8")
    command = [sys.executable, "-m", "finetune", "train", "--train_file", str(reviews["train"])]
    command += ["--validation_file", str(validation), "--output_dir", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "neutral" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--metric_for_best_model", "bleu"], "metric_for_best_model 'bleu'"),
        (["--save_strategy", "steps", "--save_steps", "10"], "save and eval strategy"),
        (["--eval_strategy", "no"], "load_best_model_at_end"),
        (
            ["--eval_strategy", "no", "--load_best_model_at_end", "false", "--early_stopping_patience", "2"],
            "early_stopping_patience needs evaluation",
        ),
        (["--gpus", "0"], "no CUDA GPU"),
        (["--gpus", "first"], "GPU indices"),
        (["--gpus", "0", "--use_cpu", "true"], "contradict"),
        (["--train_file", "nowhere.jsonl"], "does not exist"),
        (["--model_type", "bert"], "needs model_name_or_path"),
        (["--ngram_buckets", "1"], "ngram_buckets is for model_type textcnn and 0 or at least 2"),
        (["--ngram_sizes", "1"], "ngram_sizes must be 2 or more"),
        (["--wide_ngram_buckets", "1"], "wide_ngram_buckets is for model_type textcnn and 0 or at least 2"),
        (["--wide_ngram_sizes", "0"], "wide_ngram_sizes must be positive"),
        (["--num_train_epochs", "many"], "invalid float value"),
        (["--max_train_samples", "0"], "max_train_samples must be at least 1, got 0"),
        (["--num_train_epochs", "0"], "num_train_epochs 0 trains nothing"),
        (["--max_eval_samples", "-5"], "max_eval_samples must be at least 1, got -5"),
        (["--max_predict_samples", "0"], "max_predict_samples must be at least 1"),
        (["--push_to_hub", "true"], "push_to_hub needs the network, but HF_HUB_OFFLINE is set"),
        (["--text_pair_column", "text"], "text_pair_column (text) and label_column (label) must name different"),
    ],
)
def test_preflight_errors_exit_2(reviews, tmp_path, capsys, flags, message):
    args = ["--train_file", str(reviews["train"]), "--output_dir", str(tmp_path / "run"), "--cache_dir", str(tmp_path)]
    try:
        code, err = run_cli(args + flags, capsys)
    except SystemExit as exit_:  # argparse rejects a badly typed flag itself, also with exit code 2
        code, err = exit_.code, capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


def test_output_dir_with_a_run_is_not_overwritten(reviews, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoint-10").mkdir(parents=True)
    (run / "best.json").write_text("{}")
    args = ["--train_file", str(reviews["train"]), "--output_dir", str(run)]
    code, err = run_cli(args, capsys)
    assert code == 2 and "already holds a run" in err
    assert (run / "checkpoint-10").is_dir() and (run / "best.json").read_text() == "{}"
    parse_args(args + ["--overwrite_output_dir", "true"])  # allowed when asked for


def test_gpus_conflicting_with_the_launcher(reviews, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with pytest.raises(UserError, match="--gpu_ids 0,1"):
        parse_args(["--train_file", str(reviews["train"]), "--output_dir", str(tmp_path), "--gpus", "0,1"])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_parses(config, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    model, data, training = parse_args(["--config", str(config), "--output_dir", str(tmp_path / "run")])
    assert data.train_file and training.metric_for_best_model == "eval_loss"
    assert model.model_type == ("pretrained" if model.model_name_or_path else "textcnn")


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_every_accelerate_config_loads(config):
    from accelerate.commands.config.config_args import ClusterConfig

    loaded = ClusterConfig.from_yaml_file(str(config))
    assert loaded.num_processes >= 1 and loaded.distributed_type is not None


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"textcnn.yaml", "bert.yaml"}
    assert len(ACCELERATE_CONFIGS) >= 3


def test_run_classification_names_are_aliases(reviews, tmp_path, capsys):
    base = ["--train_file", str(reviews["train"]), "--output_dir", str(tmp_path / "run")]
    config = write_yaml(
        tmp_path / "aliases.yaml",
        {"max_seq_length": 48, "text_column_names": "sentence1,sentence2", "label_column_name": "tag"},
    )
    _, data, _ = parse_args(["--config", config, *base])
    assert (data.max_length, data.text_column, data.text_pair_column, data.label_column) == (
        48, "sentence1", "sentence2", "tag",
    )  # fmt: skip
    _, data, _ = parse_args(
        [*base, "--max_seq_length=32", "--text_column_names", "review", "--label_column_name", "y"]
    )
    assert (data.max_length, data.text_column, data.text_pair_column, data.label_column) == (32, "review", None, "y")
    with pytest.raises(UserError, match="text_column_names takes one column or two"):
        parse_args([*base, "--text_column_names", "a,b,c"])


def test_cache_dir_is_the_model_cache_and_the_data_cache_follows_it(reviews, tmp_path, capsys):
    base = ["--train_file", str(reviews["train"]), "--output_dir", str(tmp_path / "run")]
    model, data, _ = parse_args([*base, "--cache_dir", "models"])
    assert model.cache_dir == "models" and data.data_cache_dir == "models"  # one folder, as cache_dir was
    model, data, _ = parse_args([*base, "--cache_dir", "models", "--data_cache_dir", "tokens"])
    assert model.cache_dir == "models" and data.data_cache_dir == "tokens"
    model, data, _ = parse_args(base)
    assert model.cache_dir is None and data.data_cache_dir is None
    config = write_yaml(tmp_path / "old.yaml", {"model_cache_dir": "hub"})
    model, data, _ = parse_args(["--config", config, *base])
    assert model.cache_dir == "hub" and data.data_cache_dir == "hub"
    assert "model_cache_dir is now cache_dir" in capsys.readouterr().err
