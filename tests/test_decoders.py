"""Decoder checkpoints (tiny, randomly initialised Llama and Qwen2 models saved here) as pretrained classifiers:
a pad token when the tokenizer has none, the model kind read from config.json, and the score of the last real
token whichever side the padding is on."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, pretrained_run_flags, read_jsonl
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from finetune.parsing import parse_args
from finetune.predict import Classifier
from finetune.train import main as train_main

ARCHITECTURES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}


def make_tiny_decoder(directory: Path, architecture: str, with_eos: bool = True) -> Path:
    """A 2-layer decoder with a character vocabulary, a tokenizer without a pad token (and without eos when
    ``with_eos`` is off), saved like a hub model: the causal LM, no classification head."""
    if architecture == "qwen2":  # Qwen2's own tokenizer class (AutoTokenizer picks it by model type): byte-level BPE
        symbols = list(bytes_to_unicode().values())
        vocabulary = [*symbols, "<|endoftext|>"]
        tokenizer = Qwen2Tokenizer(
            vocab={token: index for index, token in enumerate(vocabulary)},
            merges=[],
            eos_token="<|endoftext|>",
            pad_token=None,
            unk_token=None,
            bos_token=None,
        )
    else:
        texts = [row["text"] for row in read_jsonl(FIXTURES / "reviews_train.jsonl")]
        specials = ["<unk>", "<s>", "</s>"] if with_eos else ["<unk>", "<s>"]
        vocabulary = specials + sorted({character for text in texts for character in text})
        backend = Tokenizer(models.WordLevel({token: i for i, token in enumerate(vocabulary)}, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one token a character
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>" if with_eos else None
        )
    tokenizer.save_pretrained(directory)
    config_class, model_class = ARCHITECTURES[architecture]
    config = config_class(
        vocab_size=len(vocabulary),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=None,
    )
    torch.manual_seed(0)
    model_class(config).save_pretrained(directory)
    loaded = AutoTokenizer.from_pretrained(directory)  # as training will load it
    assert loaded.pad_token is None and len(loaded("很好")["input_ids"]) >= 2
    return directory


def train_decoder(model_dir: Path, tmp_path: Path) -> Path:
    assert train_main(pretrained_run_flags(model_dir, tmp_path, "3e-3", 3)) == 0
    return tmp_path / "run"


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_decoder_trains_and_scores_the_last_real_token(architecture, tmp_path):
    model_dir = make_tiny_decoder(tmp_path / architecture, architecture)
    model_args, _, _ = parse_args(["--model_name_or_path", str(model_dir), "--train_file", "x.jsonl"])
    assert model_args.model_type == "pretrained"  # read from the checkpoint; no model_type given
    run = train_decoder(model_dir, tmp_path)
    config = json.loads((run / "best" / "config.json").read_text(encoding="utf-8"))
    tokenizer_eos = AutoTokenizer.from_pretrained(model_dir).eos_token_id
    assert config["model_type"] == architecture and config["pad_token_id"] == tokenizer_eos
    results = json.loads((run / "all_results.json").read_text(encoding="utf-8"))
    assert results["test_accuracy"] >= 0.7

    classifier = Classifier.load(run, device="cpu")
    texts = ["很好", "酒店太烂了，下次不会再来", "服务特别喜欢，下次还会来"]
    with torch.no_grad():
        alone = torch.cat(
            [classifier.model(**classifier.tokenizer([text], return_tensors="pt")).logits for text in texts]
        )
        for side in ("right", "left"):
            classifier.tokenizer.padding_side = side
            batch = classifier.tokenizer(texts, padding=True, return_tensors="pt")
            assert (batch["input_ids"] == classifier.tokenizer.pad_token_id).any()
            assert torch.allclose(classifier.model(**batch).logits, alone, atol=1e-5), side


def test_a_tokenizer_without_eos_gets_an_added_pad_token(tmp_path):
    model_dir = make_tiny_decoder(tmp_path / "llama", "llama", with_eos=False)
    vocabulary = len(AutoTokenizer.from_pretrained(model_dir))
    run = train_decoder(model_dir, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(run / "best")
    config = json.loads((run / "best" / "config.json").read_text(encoding="utf-8"))
    assert tokenizer.pad_token == "[PAD]" and tokenizer.pad_token_id == vocabulary  # one new token, at the end
    assert config["pad_token_id"] == vocabulary and config["vocab_size"] == vocabulary + 1


def decoder_classifier_from_elsewhere(tmp_path: Path, with_eos: bool) -> Path:
    """A decoder's classifier not trained here: no pad token in its tokenizer, no pad_token_id in its config."""
    from transformers import AutoModelForSequenceClassification

    model_dir = make_tiny_decoder(tmp_path / "decoder", "llama", with_eos=with_eos)
    classifier_dir = tmp_path / "classifier"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    assert model.config.pad_token_id is None
    model.save_pretrained(classifier_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(classifier_dir)
    return classifier_dir


def test_predict_pads_a_decoder_from_elsewhere_with_its_eos_token(tmp_path):
    classifier = Classifier.load(decoder_classifier_from_elsewhere(tmp_path, with_eos=True), device="cpu")
    assert classifier.tokenizer.pad_token == "</s>"
    assert classifier.model.config.pad_token_id == classifier.tokenizer.eos_token_id
    texts = [row["text"] for row in read_jsonl(FIXTURES / "reviews_test.jsonl")][:8]
    together = classifier.probabilities(texts, batch_size=8)
    alone = [classifier.probabilities([text])[0] for text in texts]
    np.testing.assert_allclose(together, np.stack(alone), atol=1e-6)  # the last real token is scored, not padding


def test_a_decoder_without_any_usable_pad_token_is_a_named_error(tmp_path, capsys):
    from finetune.cli import main as cli_main

    model = decoder_classifier_from_elsewhere(tmp_path, with_eos=False)
    texts = str(FIXTURES / "reviews_test.jsonl")
    assert cli_main(["predict", "--model", str(model), "--input", texts]) == 2
    assert "neither a pad token nor an eos token" in capsys.readouterr().err
