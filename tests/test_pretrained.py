"""Pretrained starting points: a classifier checkpoint keeps its head on the same labels, else gets a new one."""

import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUICK_TEXTCNN, read_jsonl
from test_train import make_tiny_bert
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from finetune.embeddings import Vectors, normalized, usable_tokens
from finetune.errors import UserError
from finetune.models.heads import load_classifier
from finetune.parsing import parse_args
from finetune.tokenizer import build_vocab_tokenizer
from finetune.train import main as train_main


def make_tiny_classifier(directory, texts, labels: list[str] | None) -> BertForSequenceClassification:
    """A tiny BERT classifier saved with a head for ``labels`` (default names LABEL_i when None)."""
    make_tiny_bert(directory, texts)
    config = BertConfig.from_pretrained(directory, num_labels=len(labels or ["a", "b"]))
    if labels:
        config.id2label, config.label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}
    torch.manual_seed(1)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    return model


def encoder_state(model) -> dict[str, torch.Tensor]:
    return {name: value for name, value in model.state_dict().items() if name.startswith("bert.")}


@pytest.fixture
def texts(reviews) -> list[str]:
    return [row["text"] for row in read_jsonl(reviews["train"])]


def test_the_model_type_must_match_the_checkpoint(texts, tmp_path):
    make_tiny_classifier(tmp_path / "ckpt", texts, ["negative", "positive"])
    with pytest.raises(UserError, match="holds a bert model: set model_type: pretrained"):
        load_classifier(str(tmp_path / "ckpt"), ["negative", "positive"], textcnn=True)


def test_head_is_kept_and_reordered_when_the_labels_match(texts, tmp_path, finetune_log):
    # Saved as [positive, negative]; finetune's label ids are sorted: [negative, positive].
    source = make_tiny_classifier(tmp_path / "ckpt", texts, ["positive", "negative"])
    model = load_classifier(str(tmp_path / "ckpt"), ["negative", "positive"]).eval()
    assert model.config.id2label == {0: "negative", 1: "positive"}
    inputs = AutoTokenizer.from_pretrained(tmp_path / "ckpt")(texts[:8], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected, logits = source(**inputs).logits, model(**inputs).logits
    assert torch.allclose(logits, expected[:, [1, 0]], atol=1e-6)  # the same model, outputs in the new order
    assert any("kept the classification head" in message for message in finetune_log)


@pytest.mark.parametrize(
    ("saved", "labels", "reason"),
    [
        (["negative", "positive"], ["negative", "neutral", "positive"], "trained on the labels"),  # another count
        (["bad", "good"], ["negative", "positive"], "trained on the labels"),  # other names
        (None, ["negative", "positive"], "no label names"),  # LABEL_0, LABEL_1
        (["negative", "positive"], ["negative", "positive"], "new_head is set"),  # forced
    ],
)
def test_a_new_head_keeps_the_encoder_and_says_why(texts, tmp_path, finetune_log, saved, labels, reason):
    source = make_tiny_classifier(tmp_path / "ckpt", texts, saved)
    forced = reason == "new_head is set"
    model = load_classifier(str(tmp_path / "ckpt"), labels, new_head=forced)
    assert model.config.num_labels == len(labels) and model.config.id2label == dict(enumerate(labels))
    kept = encoder_state(source)
    assert all(torch.equal(value, kept[name]) for name, value in encoder_state(model).items())
    if len(labels) == source.config.num_labels:
        assert not torch.equal(model.classifier.weight, source.classifier.weight)
    warning = next(message for message in finetune_log if "new classification head" in message)
    assert reason in warning and str(labels) in warning


def write_three_labels(reviews, tmp_path) -> list[str]:
    """The fixture with every fifth row relabelled 'neutral'."""
    paths = []
    for split, path in reviews.items():
        rows = read_jsonl(path)
        for index, row in enumerate(rows):
            row["label"] = "neutral" if index % 5 == 0 else row["label"]
        paths.append(tmp_path / f"three_{split}.jsonl")
        paths[-1].write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return [
        "--train_file", str(paths[0]), "--validation_file", str(paths[1]), "--test_file", str(paths[2]),
    ]  # fmt: skip


def test_training_goes_on_from_a_classifier_on_its_labels_and_on_new_ones(data_args, reviews, texts, tmp_path, capsys):
    make_tiny_classifier(tmp_path / "ckpt", texts, ["negative", "positive"])
    bert = ["--model_type", "bert", "--model_name_or_path", str(tmp_path / "ckpt"), "--max_length", "32"]
    bert += ["--num_train_epochs", "1", "--learning_rate", "2e-3"]
    assert train_main(data_args + bert) == 0
    assert "kept the classification head" in capsys.readouterr().out  # train's log goes to stdout

    three = write_three_labels(reviews, tmp_path) + ["--encoder_dropout", "0"]
    assert train_main(data_args + bert + three + ["--output_dir", str(tmp_path / "three")]) == 0
    assert "new classification head is made for the training labels" in capsys.readouterr().out
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "three" / "best")
    assert model.config.label2id == {"negative": 0, "neutral": 1, "positive": 2}
    assert model.config.hidden_dropout_prob == model.config.attention_probs_dropout_prob == 0.0


@pytest.mark.parametrize("labels", [["negative", "positive"], ["bad", "good"]])  # the head kept, a new head
def test_encoder_dropout_replaces_every_dropout_of_the_model(texts, tmp_path, labels):
    make_tiny_classifier(tmp_path / "ckpt", texts, ["negative", "positive"])
    inputs = AutoTokenizer.from_pretrained(tmp_path / "ckpt")(texts[:8], padding=True, return_tensors="pt")
    for dropout, same in ((None, False), (0.0, True)):
        model = load_classifier(str(tmp_path / "ckpt"), labels, dropout=dropout).train()
        with torch.no_grad():
            first, second = model(**inputs).logits, model(**inputs).logits
        assert torch.equal(first, second) == same  # in training mode, only dropout makes two passes differ
    assert model.config.hidden_dropout_prob == model.config.attention_probs_dropout_prob == 0.0
    assert all(module.p == 0.0 for module in model.modules() if isinstance(module, torch.nn.Dropout))


def test_encoder_dropout_is_for_bert_models(data_args):
    with pytest.raises(UserError, match="encoder_dropout is for model_type pretrained"):
        parse_args(data_args + ["--model_type", "textcnn", "--encoder_dropout", "0"])


def test_a_textcnn_run_goes_on_from_an_earlier_best_with_its_vocabulary(data_args, reviews, tmp_path, capsys):
    assert train_main(data_args + QUICK_TEXTCNN) == 0
    first = tmp_path / "run" / "best"
    vocabulary = AutoTokenizer.from_pretrained(first).get_vocab()
    # New data: the fixture's texts with characters the first run never saw.
    new = tmp_path / "new_train.jsonl"
    rows = read_jsonl(reviews["train"])
    new.write_text(
        "".join(json.dumps({**row, "text": row["text"] + "鑫淼"}, ensure_ascii=False) + "\n" for row in rows),
        encoding="utf-8",
    )
    again = data_args + QUICK_TEXTCNN + ["--train_file", str(new), "--model_name_or_path", str(first)]
    source = AutoModelForSequenceClassification.from_pretrained(first)
    assert train_main(again + ["--output_dir", str(tmp_path / "again"), "--embedding_dim", "64"]) == 0
    assert AutoTokenizer.from_pretrained(tmp_path / "again" / "best").get_vocab() == vocabulary
    second = AutoModelForSequenceClassification.from_pretrained(tmp_path / "again" / "best")
    assert second.config.embedding_dim == source.config.embedding_dim  # the checkpoint's sizes, not the flag's
    log = capsys.readouterr().out
    assert "kept the classification head" in log
    tokenizer = AutoTokenizer.from_pretrained(first)
    encoded = tokenizer([row["text"] + "鑫淼" for row in rows], truncation=True, max_length=128)["input_ids"]
    expected = sum(ids.count(tokenizer.unk_token_id) for ids in encoded)
    assert expected >= 2 * len(rows)  # at least the two new characters of every row
    assert f"read as [UNK]: {expected:,} of {sum(map(len, encoded)):,} train tokens" in log


def write_vectors(tmp_path, tokens: list[str], vectors: np.ndarray) -> dict[str, Path]:
    """The same vectors in every supported format."""
    lines = [
        f"{token} {' '.join(f'{value:.6f}' for value in vector)}"
        for token, vector in zip(tokens, vectors, strict=True)
    ]
    header = f"{len(tokens)} {vectors.shape[1]}\n"
    paths = {
        "txt_header": tmp_path / "vectors.txt",
        "vec_no_header": tmp_path / "vectors.vec",
        "gz_header": tmp_path / "vectors.txt.gz",
        "npy": tmp_path / "vectors.npy",
    }
    paths["txt_header"].write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    paths["vec_no_header"].write_text("\n".join(line + " " for line in lines) + "\n", encoding="utf-8")
    paths["gz_header"].write_bytes(gzip.compress((header + "\n".join(lines) + "\n").encode("utf-8")))
    np.save(paths["npy"], vectors)
    (tmp_path / "vectors.vocab").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return paths


@pytest.fixture
def vectors(reviews, tmp_path):
    # Vectors for half of the fixture's characters, in frequency order, plus characters the texts never use;
    # "Ｈ" (full width) normalises to "h" as the tokenizer's NFKC + lowercase does.
    counts = Counter(character for row in read_jsonl(reviews["train"]) for character in row["text"])
    seen = [character for character, _ in counts.most_common()][::2]
    tokens = seen[:10] + ["鑫", "淼", "Ｈ"] + seen[10:]
    values = np.random.default_rng(0).normal(size=(len(tokens), 8)).astype(np.float32)
    return tokens, values, write_vectors(tmp_path, tokens, values)


def test_every_vectors_format_gives_the_same_embeddings(vectors, reviews, tmp_path):
    tokens, values, paths = vectors
    texts = [row["text"] + " h" for row in read_jsonl(reviews["train"])]
    tokenizer = build_vocab_tokenizer(texts, min_frequency=1)
    vocabulary = tokenizer.get_vocab()
    expected = {normalized(tokenizer.backend_tokenizer, t): v for t, v in zip(tokens, values, strict=True)}
    expected = {token: vector for token, vector in expected.items() if token in vocabulary}
    assert "h" in expected and "鑫" not in expected
    for kind, path in paths.items():
        found = Vectors(path)
        assert found.dimension == 8, kind
        ids, rows = found.lookup(vocabulary, lambda token: normalized(tokenizer.backend_tokenizer, token))
        assert sorted(ids.tolist()) == sorted(vocabulary[token] for token in expected), kind
        for token, vector in expected.items():
            assert np.allclose(rows[ids.tolist().index(vocabulary[token])], vector, atol=1e-6), (kind, token)


def test_vectors_vocabulary_adds_the_files_first_tokens_within_max_vocab_size(vectors, reviews):
    tokens, _, paths = vectors
    texts = [row["text"] for row in read_jsonl(reviews["train"])]
    plain = build_vocab_tokenizer(texts, min_frequency=1)
    skeleton = build_vocab_tokenizer([])
    extra = usable_tokens(Vectors(paths["vec_no_header"]), skeleton, 100)
    assert extra[10:13] == ["鑫", "淼", "h"]
    grown = build_vocab_tokenizer(texts, min_frequency=1, extra_tokens=extra, max_vocab_size=len(plain) + 2)
    assert len(grown) == len(plain) + 2 and {"鑫", "淼"} <= set(grown.get_vocab()) and "h" not in grown.get_vocab()


def test_embedding_dim_follows_the_vectors_and_contradictions_are_errors(vectors, tmp_path):
    _, _, paths = vectors
    base = ["--train_file", "x.jsonl", "--output_dir", str(tmp_path / "run")]
    _, _, _ = parse_args(base + ["--pretrained_embeddings", str(paths["gz_header"])])
    model_args, _, _ = parse_args(base + ["--pretrained_embeddings", str(paths["npy"])])
    assert model_args.embedding_dim == 8
    assert parse_args(base)[0].embedding_dim == 128
    with pytest.raises(UserError, match="embedding_dim 128 contradicts .* 8 dimensions"):
        parse_args(base + ["--pretrained_embeddings", str(paths["npy"]), "--embedding_dim", "128"])
    with pytest.raises(UserError, match="needs pretrained_embeddings"):
        parse_args(base + ["--pretrained_vocabulary_size", "10"])
    (tmp_path / "lonely.npy").write_bytes(paths["npy"].read_bytes())
    with pytest.raises(UserError, match="lonely.vocab"):
        list(Vectors(tmp_path / "lonely.npy").tokens())


def test_training_from_frozen_vectors_keeps_them_and_reports_coverage(vectors, data_args, reviews, tmp_path, capsys):
    tokens, values, paths = vectors
    flags = ["--pretrained_embeddings", str(paths["txt_header"]), "--freeze_embeddings", "true"]
    flags += ["--pretrained_vocabulary_size", "12", "--min_frequency", "1"]
    assert train_main(data_args + QUICK_TEXTCNN + flags + ["--embedding_dim", "8"]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "best")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "best")
    vocabulary = tokenizer.get_vocab()
    assert "鑫" in vocabulary and "Ｈ" not in vocabulary  # the file's first 12 tokens joined the vocabulary
    weights = model.get_input_embeddings().weight.detach()
    for token, vector in zip(tokens, values, strict=True):
        key = normalized(tokenizer.backend_tokenizer, token)
        if key in vocabulary:
            assert torch.allclose(weights[vocabulary[key]], torch.from_numpy(vector), atol=1e-6), token
    encoded = tokenizer([row["text"] for row in read_jsonl(reviews["train"])], truncation=True, max_length=128)
    ids = [i for row in encoded["input_ids"] for i in row]
    with_vector = {vocabulary.get(normalized(tokenizer.backend_tokenizer, t)) for t in tokens} & set(ids)
    share = 100 * sum(i in with_vector for i in ids) / len(ids)
    assert f"covering {share:.1f}% of the {len(ids)} training tokens" in capsys.readouterr().out
