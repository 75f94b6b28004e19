"""extend_vocabulary: a pretrained tokenizer learns the training texts' unknown characters; every run counts the
tokens its vocabulary reads as [UNK]."""

import json
import logging
from collections import Counter
from types import SimpleNamespace

from datasets import Dataset
from safetensors.torch import load_file
from test_train import make_tiny_bert
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from finetune.embeddings import log_unknown_tokens
from finetune.models.bert import extend_vocabulary
from finetune.tokenizer import build_vocab_tokenizer
from finetune.train import main as train_main

MISSING = set("好差棒烂")  # characters the tiny BERT's vocabulary lacks


def fixture_texts(reviews) -> list[str]:
    return [json.loads(line)["text"] for line in reviews["train"].read_text(encoding="utf-8").splitlines()]


def tiny_bert_without(reviews, directory, missing=MISSING):
    texts = fixture_texts(reviews)
    known = ["".join(character for character in text if character not in missing) for text in texts]
    return make_tiny_bert(directory, known)


def test_extend_vocabulary_adds_the_most_frequent_unknown_characters(reviews, tmp_path):
    texts = fixture_texts(reviews)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_without(reviews, tmp_path / "bert"))
    size = len(tokenizer)
    assert tokenizer.convert_ids_to_tokens(tokenizer("很好")["input_ids"]) == ["[CLS]", "很", "[UNK]", "[SEP]"]

    counts = Counter(character for text in texts for character in text if character in MISSING)
    expected = sorted(counts, key=lambda character: (-counts[character], character))[:3]
    added = extend_vocabulary(tokenizer, texts, max_new_tokens=3)
    assert added == expected
    assert len(tokenizer) == size + 3
    new_ids = tokenizer.convert_tokens_to_ids(expected)
    assert new_ids == list(range(size, size + 3))
    assert tokenizer(f"很{expected[0]}")["input_ids"][1:3] == [tokenizer.convert_tokens_to_ids("很"), new_ids[0]]
    assert extend_vocabulary(tokenizer, texts, max_new_tokens=10, min_frequency=10**6) == []


def test_training_with_extended_vocabulary_saves_resized_embeddings(reviews, data_args, tmp_path):
    model_dir = tiny_bert_without(reviews, tmp_path / "bert")
    base_size = len(AutoTokenizer.from_pretrained(model_dir))
    args = data_args + [
        "--model_type", "bert",
        "--model_name_or_path", str(model_dir),
        "--extend_vocabulary", "100",
        "--max_length", "32",
        "--num_train_epochs", "2",
        "--learning_rate", "1e-3",
    ]  # fmt: skip
    assert train_main(args) == 0
    best = tmp_path / "run" / "best"
    tokenizer = AutoTokenizer.from_pretrained(best)
    assert len(tokenizer) == base_size + len(MISSING)  # every missing character is frequent enough
    assert tokenizer.unk_token_id not in tokenizer("很好很差，太棒了")["input_ids"]
    model = AutoModelForSequenceClassification.from_pretrained(best)
    assert model.config.vocab_size == len(tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    weights = load_file(best / "model.safetensors")
    embedding = next(tensor for name, tensor in weights.items() if name.endswith("word_embeddings.weight"))
    assert embedding.shape[0] == len(tokenizer)
    hyperparameters = (best / "README.md").read_text(encoding="utf-8").split("### Training hyperparameters")[1]
    assert "- extend_vocabulary: 100\n" in hyperparameters and "- min_frequency: 1\n" in hyperparameters


def test_the_unknown_share_leaves_padding_out_and_the_warning_names_the_split_and_the_remedy(caplog):
    tokenizer = build_vocab_tokenizer(["好很", "很好"], level="char")
    splits = {
        split: Dataset.from_dict({"input_ids": [tokenizer(text, padding="max_length", max_length=8)["input_ids"]]})
        for split, text in (("train", "很好"), ("validation", "很差差差"))
    }
    textcnn = SimpleNamespace(model_type="textcnn", model_name_or_path=None, tokenizer_level="char")
    with caplog.at_level(logging.INFO, logger="finetune"):
        log_unknown_tokens(splits, tokenizer, textcnn)
    assert "read as [UNK]: 0 of 2 train tokens (0.0%), 3 of 4 validation tokens (75.0%)" in caplog.text
    assert "75.0% of the validation tokens are [UNK]" in caplog.text
    assert "characters that the training texts lack" in caplog.text
    caplog.clear()
    pretrained = SimpleNamespace(model_type="pretrained", model_name_or_path="bert", extend_vocabulary=0)
    with caplog.at_level(logging.INFO, logger="finetune"):
        log_unknown_tokens({"train": splits["validation"]}, tokenizer, pretrained)
    assert "vocabulary of bert: 4 tokens" in caplog.text and "extend_vocabulary: N adds" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="finetune"):
        log_unknown_tokens({"train": splits["train"]}, tokenizer, textcnn)
    assert "read as [UNK]: 0 of 2 train tokens" in caplog.text and "cannot tell apart" not in caplog.text
