"""Throughput instrumentation: the callback's numbers in the logs and train_results.json."""

import json

from conftest import QUICK_TEXTCNN, read_jsonl
from transformers import AutoTokenizer

import finetune  # noqa: F401  (registers TextCNN with the Auto classes)
from finetune.parsing import parse_args
from finetune.train import main as train_main

THROUGHPUT_LOGS = ("samples_per_second", "tokens_per_second", "step_seconds", "peak_rss_mb")


def test_throughput_in_logs_and_train_results(data_args, reviews, tmp_path):
    # Batches collated in a worker process: the tokens are still counted (by the Trainer, in the main process).
    workers = ["--dataloader_num_workers", "1", "--dataloader_persistent_workers", "true"]
    assert train_main(data_args + QUICK_TEXTCNN + ["--max_length", "64", *workers]) == 0
    run = tmp_path / "run"
    results = json.loads((run / "train_results.json").read_text())
    for name in (
        "train_throughput_samples_per_second",
        "train_throughput_tokens_per_second",
        "train_step_seconds",
        "train_peak_rss_mb",
    ):
        assert results[name] > 0, name
    assert 50 < results["train_peak_rss_mb"] < 4096

    # Every training example's tokens, once per epoch: padding is not counted.
    tokenizer = AutoTokenizer.from_pretrained(run / "best")
    texts = [row["text"] for row in read_jsonl(reviews["train"])]
    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=64)["input_ids"])
    epochs = int(QUICK_TEXTCNN[QUICK_TEXTCNN.index("--num_train_epochs") + 1])
    assert results["train_tokens"] == tokens * epochs
    assert results["train_throughput_tokens_per_second"] > results["train_throughput_samples_per_second"]

    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    train_logs = [entry for entry in history if "loss" in entry]
    assert train_logs
    for entry in train_logs:
        for name in THROUGHPUT_LOGS:
            assert entry[name] > 0, (name, entry)
    assert not any(name in entry for entry in history if "eval_loss" in entry for name in THROUGHPUT_LOGS)
    # The tokens are the Trainer's count; its per-log speed figures give way to the callback's, so that only the
    # final summary has a train_runtime (transformers' model card and `finetune report` look for it).
    assert train_logs[-1]["num_input_tokens_seen"] <= results["train_tokens"]
    assert [entry for entry in history if "train_runtime" in entry] == [history[-1]]
    # Each evaluation says how long the run had trained by then, evaluations left out: rising, below the runtime.
    trained = [entry["training_seconds"] for entry in history if "eval_loss" in entry]
    runtime = next(entry["train_runtime"] for entry in history if "train_runtime" in entry)
    assert len(trained) >= 2 and 0 < trained[0] < trained[-1] < runtime


def test_speed_knobs_parse_from_yaml(reviews, tmp_path):
    config = tmp_path / "speed.yaml"
    config.write_text(
        f"train_file: {reviews['train']}\n"
        "dataloader_num_workers: 2\n"
        "dataloader_pin_memory: false\n"
        "dataloader_persistent_workers: true\n"
        "bf16: false\n"
        "fp16: false\n"
        "tf32: null\n"
        "torch_compile: false\n"
    )
    _, _, training = parse_args(["--config", str(config), "--output_dir", str(tmp_path / "run")])
    assert training.dataloader_num_workers == 2
    assert training.dataloader_pin_memory is False and training.dataloader_persistent_workers is True
    assert training.bf16 is False and training.fp16 is False and training.tf32 is None
    assert training.torch_compile is False
    # bf16 without a GPU is refused unless the run is explicitly a CPU run.
    flags = ["--config", str(config), "--output_dir", str(tmp_path / "run"), "--bf16", "true", "--use_cpu", "true"]
    _, _, training = parse_args(flags)
    assert training.bf16 is True
