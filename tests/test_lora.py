"""LoRA through peft on a tiny BERT: adapters and head trained, best/ merged (plus the adapter), resume, errors."""

import json
import shutil

import pytest
import torch
from conftest import FIXTURES, pretrained_run_flags, read_jsonl
from safetensors.torch import load_file
from test_train import make_tiny_bert
from test_vocabulary import tiny_bert_without
from transformers import AutoTokenizer

from finetune.cli import main as cli_main
from finetune.train import main as train_main


# 10 epochs: the adapters on a random tiny BERT learn the fixture on any seed (test accuracy 0.94-1.0 on seeds 1-7
# and 42); with 3, seeds 1-3 stayed at chance (0.5) and only 42 passed.
def lora_flags(model_dir, tmp_path, epochs: int = 10) -> list[str]:
    return [*pretrained_run_flags(model_dir, tmp_path, "2e-2", epochs), "--lora_r", "4", "--lora_alpha", "8"]


@pytest.fixture
def tiny_bert(tmp_path):
    return make_tiny_bert(
        tmp_path / "tiny-bert", [row["text"] for row in read_jsonl(FIXTURES / "reviews_train.jsonl")]
    )


def test_lora_trains_adapters_and_saves_the_merged_model(tiny_bert, tmp_path, capsys):
    assert train_main(lora_flags(tiny_bert, tmp_path)) == 0
    run = tmp_path / "run"
    assert "LoRA rank 4:" in capsys.readouterr().out
    merged = load_file(run / "best" / "model.safetensors")
    assert not any("lora" in name for name in merged)  # a plain BERT classifier
    adapter = run / "best" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    adapter_weights = load_file(adapter / "adapter_model.safetensors")
    assert any("lora_A" in name for name in adapter_weights) and any("classifier" in name for name in adapter_weights)

    # The encoder's own weights are those of the checkpoint; training changed the adapters and the head only.
    original = load_file(tiny_bert / "model.safetensors")
    name = "encoder.layer.0.attention.output.dense.weight"  # a module without an adapter
    assert torch.equal(merged[f"bert.{name}"], original.get(name, original.get(f"bert.{name}")))
    query = "encoder.layer.0.attention.self.query.weight"  # with an adapter: merged in, so changed
    assert not torch.equal(merged[f"bert.{query}"], original.get(query, original.get(f"bert.{query}")))

    results = json.loads((run / "all_results.json").read_text())
    assert results["test_accuracy"] >= 0.7
    output = tmp_path / "predictions.jsonl"  # predict loads best/ as any model
    assert (
        cli_main(
            ["predict", "--model", str(run), "--input", str(FIXTURES / "reviews_test.jsonl"), "--output", str(output)]
        )
        == 0
    )
    rows = read_jsonl(output)
    truth = [row["label"] for row in read_jsonl(FIXTURES / "reviews_test.jsonl")]
    assert sum(row["label"] == label for row, label in zip(rows, truth, strict=True)) / len(truth) == pytest.approx(
        results["test_accuracy"]
    )


def test_lora_run_resumes_from_its_checkpoint(tiny_bert, tmp_path, capsys):
    assert train_main(lora_flags(tiny_bert, tmp_path, epochs=2)) == 0
    run = tmp_path / "run"
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == 26  # 200 rows in batches of 16: 13 steps an epoch
    # A run interrupted during its second epoch: the first epoch's checkpoint left, nothing after it.
    for name in ("best.json", "best", "checkpoint-26"):
        path = run / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert train_main([*lora_flags(tiny_bert, tmp_path, epochs=2), "--resume"]) == 0
    assert "checkpoint-13" in capsys.readouterr().out
    resumed = json.loads((run / "trainer_state.json").read_text())
    assert resumed["global_step"] == state["global_step"]
    assert (run / "best" / "adapter" / "adapter_model.safetensors").is_file()


def test_lora_flags_on_a_textcnn_are_an_error(tmp_path, capsys):
    flags = ["--train_file", str(FIXTURES / "reviews_train.jsonl"), "--output_dir", str(tmp_path / "run")]
    assert cli_main(["train", *flags, "--lora_r", "8"]) == 2
    assert "lora_r and lora_target_modules are for model_type pretrained" in capsys.readouterr().err


def test_lora_trains_the_embeddings_of_added_tokens(reviews, tmp_path, capsys):
    encoder = tiny_bert_without(reviews, tmp_path / "bert")
    known = len(AutoTokenizer.from_pretrained(encoder))
    assert train_main([*lora_flags(encoder, tmp_path), "--extend_vocabulary", "3"]) == 0
    assert "with the embeddings of 3 added tokens" in capsys.readouterr().out
    best = tmp_path / "run" / "best"
    adapter = load_file(best / "adapter" / "adapter_model.safetensors")
    trained = [tensor for name, tensor in adapter.items() if "trainable_tokens" in name]
    assert len(trained) == 1 and trained[0].shape[0] == 3
    # The merged model holds the trained rows of the added tokens, the rows of the others unchanged.
    embeddings = load_file(best / "model.safetensors")["bert.embeddings.word_embeddings.weight"]
    assert embeddings.shape[0] == known + 3
    assert torch.equal(embeddings[known:], trained[0])
    original = load_file(encoder / "model.safetensors")
    name = "embeddings.word_embeddings.weight"
    assert torch.equal(embeddings[:known], original.get(name, original.get(f"bert.{name}")))
