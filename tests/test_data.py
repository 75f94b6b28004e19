"""Reading files, labels, splits, tokenization and the collator."""

import csv
import json
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import FIXTURES, read_jsonl
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoModelForSequenceClassification

from finetune.config import DataArguments
from finetune.data import (
    BadRows,
    ClassificationCollator,
    ShuffledLengthGroupedSampler,
    load_raw_splits,
    read_examples,
    tokenize_splits,
)
from finetune.data.splits import label_id_array
from finetune.errors import UserError
from finetune.models import TextCNNConfig, TextCNNForSequenceClassification
from finetune.rows import read_texts
from finetune.tokenizer import build_vocab_tokenizer


def write_all_formats(rows: list[dict], directory) -> dict[str, str]:
    """The same rows as csv, tsv, json, jsonl, parquet and headerless txt."""
    paths = {kind: directory / f"data.{kind}" for kind in ("csv", "tsv", "json", "jsonl", "parquet", "txt")}
    for kind, delimiter in (("csv", ","), ("tsv", "\t")):
        with open(paths[kind], "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["text", "label"], delimiter=delimiter)
            writer.writeheader()
            writer.writerows(rows)
    paths["json"].write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    paths["jsonl"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), paths["parquet"])
    paths["txt"].write_text("".join(f"{r['text']}\t{r['label']}\n" for r in rows), encoding="utf-8")
    return {kind: str(path) for kind, path in paths.items()}


def test_every_format_reads_the_same_examples(reviews, tmp_path):
    rows = read_jsonl(reviews["train"])
    rows[0]["text"] = 'a text with, a comma and "quotes"'
    paths = write_all_formats(rows, tmp_path)
    args = DataArguments(train_file=paths["jsonl"])
    expected = read_examples(paths["jsonl"], args)
    assert expected["text"][0] == rows[0]["text"] and len(expected["text"]) == len(rows)
    for kind, path in paths.items():
        assert read_examples(path, args) == expected, kind


def test_integer_labels_read_the_same_from_csv_and_jsonl(tmp_path):
    rows = [{"text": f"text {i}", "label": i % 3} for i in range(9)]
    paths = write_all_formats(rows, tmp_path)
    args = DataArguments(train_file=paths["csv"])
    assert read_examples(paths["csv"], args)["label"] == [i % 3 for i in range(9)]
    assert read_examples(paths["jsonl"], args) == read_examples(paths["csv"], args)


def test_integer_labels_sort_numerically(tmp_path):
    rows = [{"text": f"text {i}", "label": label} for i, label in enumerate([10, 2, 1, 2, 10, 1])]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    raw = load_raw_splits(DataArguments(train_file=str(path), validation_file=str(path)), seed=0)
    assert raw.label_list == [1, 2, 10]
    assert raw.id2label == {0: "1", 1: "2", 2: "10"}
    assert label_id_array(raw, "train").tolist() == [2, 1, 0, 1, 2, 0]


def test_bom_and_crlf_are_not_errors(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("\ufefftext,label\r\n好看,positive\r\n难看,negative\r\n".encode())
    columns = read_examples(path, DataArguments(train_file=str(path)))
    assert columns == {"text": ["好看", "难看"], "label": ["positive", "negative"]}


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1e"])
def test_unicode_line_separators_inside_texts_stay_in_the_text(tmp_path, separator):
    # str.splitlines() ends lines at these; a JSON string (written with ensure_ascii=False) or a csv field may
    # hold them as they are, and the txt format gives them no meaning either.
    rows = [{"text": f"好{separator}看", "label": "positive"}, {"text": "难看", "label": "negative"}]
    paths = write_all_formats(rows, tmp_path)
    for kind, path in paths.items():
        columns = read_examples(path, DataArguments(train_file=path))
        assert columns == {"text": [row["text"] for row in rows], "label": ["positive", "negative"]}, kind
        if kind != "txt":
            assert [record["text"] for _, record in read_texts(path, ["text"])] == columns["text"], kind
    one_a_line = tmp_path / "texts.txt"
    one_a_line.write_text(f"好{separator}看\r\n难看\n", encoding="utf-8")
    assert [record["text"] for _, record in read_texts(str(one_a_line), ["text"])] == [f"好{separator}看", "难看"]


def test_unseen_validation_labels_are_listed(reviews, tmp_path):
    rows = read_jsonl(reviews["validation"])
    rows[3]["label"] = "neutral"
    rows[7]["label"] = "mixed"
    path = tmp_path / "validation.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(UserError, match="'mixed', 'neutral'"):
        load_raw_splits(DataArguments(train_file=str(reviews["train"]), validation_file=str(path)), seed=0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok", "label": "a"}\n{"text": "broken"\n', "line 2: not valid JSON"),
        ('{"text": "ok", "label": "a"}\n{"text": "  ", "label": "b"}\n', "line 2: empty 'text'"),
        ('{"text": "ok", "label": "a"}\n{"text": "fine", "label": 3}\n', "mixes types"),
        ('{"review": "ok", "label": "a"}\n', "no column 'text'"),
        ("", "holds no examples"),
    ],
)
def test_bad_jsonl_names_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        read_examples(path, DataArguments(train_file=str(path)))


def test_bad_csv_and_encoding_name_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nfine,a\ntoo,many,fields\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 3: more fields"):
        read_examples(path, DataArguments(train_file=str(path)))
    path.write_bytes(b"text,label\nfine,a\n\xff\xfe,b\n")
    with pytest.raises(UserError, match="line 3: not valid UTF-8"):
        read_examples(path, DataArguments(train_file=str(path)))
    with pytest.raises(UserError, match="does not exist"):
        read_examples(tmp_path / "missing.csv", DataArguments(train_file="x"))


def test_validation_split_is_seeded_and_stratified(reviews):
    args = DataArguments(train_file=str(reviews["train"]), validation_split_percentage=20)
    first = load_raw_splits(args, seed=1)
    again = load_raw_splits(args, seed=1)
    other = load_raw_splits(args, seed=2)
    assert len(first.splits["validation"]) == 40 and len(first.splits["train"]) == 160
    assert first.splits["validation"]["text"] == again.splits["validation"]["text"]
    assert first.splits["validation"]["text"] != other.splits["validation"]["text"]
    assert label_id_array(first, "validation").tolist().count(0) == 20  # the fixture is balanced


def test_max_samples(reviews):
    args = DataArguments(
        train_file=str(reviews["train"]),
        validation_file=str(reviews["validation"]),
        test_file=str(reviews["test"]),
        max_train_samples=30,
        max_eval_samples=5,
        max_predict_samples=7,
    )
    splits = load_raw_splits(args, seed=0).splits
    assert (len(splits["train"]), len(splits["validation"]), len(splits["test"])) == (30, 5, 7)


def test_char_tokenizer_ids_and_determinism():
    texts = ["好好学习", "天天向上", "好 天气", "ABC abc"]
    tokenizer = build_vocab_tokenizer(texts, level="char")
    again = build_vocab_tokenizer(list(reversed(texts)), level="char")
    assert tokenizer.get_vocab() == again.get_vocab()
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token_id == 1
    assert tokenizer.convert_ids_to_tokens(tokenizer("好天")["input_ids"]) == ["好", "天"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("好 龙")["input_ids"]) == ["好", "[UNK]"]
    assert "a" in tokenizer.get_vocab() and "A" not in tokenizer.get_vocab()  # lowercased
    frequent_only = build_vocab_tokenizer(texts, level="char", min_frequency=2)
    assert set(frequent_only.get_vocab()) == {"[PAD]", "[UNK]", "好", "天", "a", "b", "c"}
    small = build_vocab_tokenizer(texts, level="char", max_vocab_size=4)
    assert len(small) == 4 and "好" in small.get_vocab()


def test_char_tokenizer_splits_like_a_regex_split_into_characters():
    # The char tokenizer is a BPE model without merges for speed; it must cut texts exactly as splitting on
    # Regex(".") after whitespace (the first build) does, unknown characters, Latin, digits and emoji included.
    texts = [row["text"] for row in read_jsonl(FIXTURES / "reviews_train.jsonl")]
    tokenizer = build_vocab_tokenizer(texts, level="char", min_frequency=2)
    regex_split = Tokenizer(models.WordLevel(vocab=tokenizer.get_vocab(), unk_token="[UNK]"))
    regex_split.normalizer = tokenizer.backend_tokenizer.normalizer
    regex_split.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    probes = texts + ["ＡＢＣ  abc\t123", "龘龘 好😀坏", "", "   ", "a\u3000b"]
    expected = [encoding.ids for encoding in regex_split.encode_batch(probes)]
    assert tokenizer(probes)["input_ids"] == expected
    assert any(tokenizer.unk_token_id in ids for ids in expected)


def test_word_tokenizer():
    tokenizer = build_vocab_tokenizer(["the movie was great", "the plot was thin"], level="word")
    assert tokenizer.convert_ids_to_tokens(tokenizer("The plot, great")["input_ids"]) == [
        "the",
        "plot",
        "[UNK]",
        "great",
    ]


def test_truncation_side_and_padding(reviews, tmp_path):
    args = DataArguments(train_file=str(reviews["train"]), validation_file=str(reviews["validation"]), max_length=4)
    raw = load_raw_splits(args, seed=0)
    tokenizer = build_vocab_tokenizer(raw.splits["train"]["text"])
    text = raw.splits["train"]["text"][0]
    right = tokenize_splits(raw, tokenizer, args, tmp_path / "a")["train"][0]["input_ids"]
    assert tokenizer.decode(right) == unicodedata.normalize("NFKC", text[:4])
    args.truncation_side = "left"
    left = tokenize_splits(raw, tokenizer, args, tmp_path / "b")["train"][0]["input_ids"]
    assert tokenizer.decode(left) == unicodedata.normalize("NFKC", text[-4:])
    args.padding, args.max_length = "max_length", 40
    padded = tokenize_splits(raw, tokenizer, args, tmp_path / "c")["train"]
    assert {len(ids) for ids in padded["input_ids"]} == {40}


def test_collator_pads_to_the_widest_kernel_and_multiple():
    tokenizer = build_vocab_tokenizer(["好坏"], level="char")
    features = [
        {"input_ids": [2], "attention_mask": [1], "labels": 0},
        {"input_ids": [2, 3], "attention_mask": [1, 1], "labels": 1},
    ]
    batch = ClassificationCollator(tokenizer, min_length=5)(features)
    assert batch["input_ids"].tolist() == [[2, 0, 0, 0, 0], [2, 3, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [0, 1]
    assert ClassificationCollator(tokenizer, pad_to_multiple_of=8)(features)["input_ids"].shape == (2, 8)


@pytest.mark.parametrize(
    ("ngram_buckets", "ngram_sizes", "wide_ngram_buckets"), [(0, [2], 0), (31, [2], 0), (31, [2, 3], 0), (0, [2], 37)]
)
def test_textcnn_output_does_not_depend_on_padding(ngram_buckets, ngram_sizes, wide_ngram_buckets):
    torch.manual_seed(0)
    config = TextCNNConfig(
        vocab_size=20,
        embedding_dim=8,
        kernel_sizes=[2, 3],
        num_filters=4,
        num_labels=3,
        ngram_buckets=ngram_buckets,
        ngram_sizes=ngram_sizes,
        wide_ngram_buckets=wide_ngram_buckets,
    )
    model = TextCNNForSequenceClassification(config).eval()
    if model.wide is not None:  # trained weights, not the zeros it starts with; the padding bucket stays 0
        torch.nn.init.normal_(model.wide.weight.data[1:])
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 4, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    short = model(ids[:, :4], mask[:, :4]).logits
    long_ = model(torch.nn.functional.pad(ids, (0, 10)), torch.nn.functional.pad(mask, (0, 10))).logits
    assert torch.allclose(short, long_, atol=1e-6)
    output = model(ids, mask, labels=torch.tensor([0, 2]))
    assert output.logits.shape == (2, 3) and output.loss.ndim == 0 and output.loss > 0


def test_textcnn_ngram_embeddings_see_token_order_and_reload(tmp_path):
    torch.manual_seed(0)
    config = TextCNNConfig(
        vocab_size=20,
        embedding_dim=8,
        kernel_sizes=[1],
        num_filters=4,
        num_labels=2,
        ngram_buckets=31,
        ngram_sizes=[2, 3],
    )
    model = TextCNNForSequenceClassification(config).eval()
    ids = torch.tensor([[5, 6, 7, 0], [7, 6, 5, 0]])
    for size in (2, 3):
        buckets = model.ngram_ids(ids, [size])[0]
        assert buckets[:, 3].tolist() == [0, 0] and ((buckets[:, :3] >= 1) & (buckets[:, :3] < 31)).all()
    assert not torch.equal(*model.ngram_ids(ids, [2, 3]))
    # Kernel width 1 sees one position at a time: the same tokens in another order differ only through n-grams.
    logits = model(ids, (ids != 0).long()).logits
    assert not torch.allclose(logits[0], logits[1])
    without = TextCNNForSequenceClassification(TextCNNConfig(**{**config.to_dict(), "ngram_buckets": 0})).eval()
    plain = without(ids, (ids != 0).long()).logits
    assert torch.allclose(plain[0], plain[1])

    model.save_pretrained(tmp_path / "model")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    assert (reloaded.config.ngram_buckets, reloaded.config.ngram_sizes) == (31, [2, 3])
    assert torch.equal(reloaded(ids, (ids != 0).long()).logits, logits)


def test_textcnn_ngram_buckets_are_the_hash_that_trained_models_were_saved_with():
    # Saved wide weights are indexed by these buckets: the hash of each n-gram, recomputed here with Python ints.
    model = TextCNNForSequenceClassification(TextCNNConfig(vocab_size=9000, embedding_dim=8, num_labels=2))
    ids = torch.tensor([[8123, 17, 4001, 5, 0, 0], [3, 2, 1, 0, 0, 0]])
    sizes, buckets = [1, 2, 3, 4], 1_048_576
    got = model.ngram_ids(ids, sizes, buckets)
    for index, size in enumerate(sizes):
        for row in range(2):
            tokens = ids[row].tolist() + [0] * (size - 1)
            for position in range(ids.shape[1]):
                hashed = size
                for token in tokens[position : position + size]:
                    hashed = (hashed * 1_000_003 + token) % 2**40
                expected = 0 if tokens[position] == 0 else hashed % (buckets - 1) + 1
                assert got[index, row, position] == expected


def test_textcnn_wide_part_starts_silent_counts_ngrams_and_reloads(tmp_path):
    torch.manual_seed(0)
    config = TextCNNConfig(vocab_size=20, embedding_dim=8, kernel_sizes=[2], num_filters=4, num_labels=2)
    wide_config = TextCNNConfig(**{**config.to_dict(), "wide_ngram_buckets": 1009, "wide_ngram_sizes": [1, 2]})
    deep = TextCNNForSequenceClassification(config).eval()
    wide = TextCNNForSequenceClassification(wide_config).eval()
    assert wide.load_state_dict(deep.state_dict(), strict=False).missing_keys == ["wide.weight"]
    ids = torch.tensor([[5, 6, 7, 0], [7, 6, 5, 0]])
    mask = (ids != 0).long()
    # Zero weights at first: the same logits as the CNN alone.
    assert torch.count_nonzero(wide.wide.weight) == 0
    assert torch.equal(wide(ids, mask).logits, deep(ids, mask).logits)
    with torch.no_grad():
        wide.wide.weight[1:] = torch.randn(1008, 2)
    # The wide logits: the weights of each text's unigrams and bigrams (the last one running into padding),
    # summed and divided by the square root of its length.
    for row in range(2):
        buckets = list(wide.ngram_ids(ids[row : row + 1], [1, 2], 1009)[:, 0, :3])
        expected = wide.wide.weight[torch.cat(buckets)].sum(dim=0) / 3**0.5
        assert torch.allclose(wide.wide_logits(ids[row : row + 1])[0], expected, atol=1e-6)
    assert not torch.allclose(wide.wide_logits(ids)[0], wide.wide_logits(ids)[1])  # bigrams see the order
    logits = wide(ids, mask).logits
    assert torch.allclose(logits - deep(ids, mask).logits, wide.wide_logits(ids), atol=1e-6)

    wide.save_pretrained(tmp_path / "model")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    assert (reloaded.config.wide_ngram_buckets, reloaded.config.wide_ngram_sizes) == (1009, [1, 2])
    assert torch.equal(reloaded(ids, mask).logits, logits)


def test_length_grouped_batches_hold_every_example_once_in_random_order():
    torch.manual_seed(0)
    lengths = [int(x) for x in torch.randint(1, 300, (1000,))]
    sampler = ShuffledLengthGroupedSampler(16, lengths=lengths)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(1000)) and sorted(second) == list(range(1000))
    assert first != second
    batches = [first[i : i + 16] for i in range(0, 1000, 16)]
    padded = sum(16 * max(lengths[i] for i in batch) for batch in batches)
    random_order = list(torch.randperm(1000))
    padded_random = sum(16 * max(lengths[i] for i in random_order[j : j + 16]) for j in range(0, 1000, 16))
    assert padded < 0.75 * padded_random  # far less padding than random batches
    # No long-to-short sweep: batch maxima are not sorted within the first 50 batches.
    maxima = [max(lengths[i] for i in batch) for batch in batches[:50]]
    assert maxima != sorted(maxima, reverse=True)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("extra.csv", "text,label\nfine,a\ntoo,many,fields\n", "line 3: more fields than the header"),
        ("quote.csv", 'text,label\nfine,a\n"never closed,b\nnext,a\n', "line 3: unexpected end of data"),
        ("utf8.csv", b"text,label\nfine,a\n\xff\xfe,b\n", "line 3: not valid UTF-8"),
        ("json.jsonl", '{"text": "ok", "label": "a"}\n{"text": "broken"\n', "line 2: not valid JSON"),
        ("label.jsonl", '{"text": "ok", "label": "a"}\n{"text": "no label"}\n', "line 2: no 'label'"),
        ("empty.jsonl", '{"text": "ok", "label": "a"}\n{"text": " \\t ", "label": "b"}\n', "line 2: empty 'text'"),
        ("types.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": "c", "label": 3}\n', "line 3: label 3 is int, but most labels are str"),
        ("fields.csv", "text,label\nfine,a\nshort\n", "line 3: no 'label'"),
    ],
)  # fmt: skip
def test_each_bad_row_names_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError, match=message) as error:
        read_examples(path, DataArguments(train_file=str(path)))
    assert str(error.value).startswith(f"{path}, line ")


def test_bad_rows_skip_leaves_out_and_records_each_bad_row(tmp_path):
    csv_path = tmp_path / "train.csv"
    csv_path.write_bytes(
        b"text,label\ngood one,a\ntoo,many,fields\n\xff\xfe broken,b\n,b\nshort\n"
        b'good two,b\n"never closed,a\ngood three,a\n'
    )
    jsonl_path = tmp_path / "train.jsonl"
    jsonl_path.write_text(
        '{"text": "good", "label": "a"}\nnot json\n[1, 2]\n{"label": "b"}\n{"text": "  ", "label": "b"}\n'
        '{"text": "typed", "label": 7}\n{"text": "good too", "label": "b"}\n',
        encoding="utf-8",
    )
    bad_rows = BadRows("skip")
    args = DataArguments(train_file=str(csv_path), bad_rows="skip")
    columns = read_examples(csv_path, args, bad_rows=bad_rows)
    # After the quote left open on line 8, reading goes on at line 9.
    assert columns == {"text": ["good one", "good two", "good three"], "label": ["a", "b", "a"]}
    assert [(row["line"], row["reason"].split(" (")[0]) for row in bad_rows.rows] == [
        (3, "more fields than the header has columns"),
        (4, "not valid UTF-8"),
        (5, "empty 'text'."),
        (6, "no 'label'."),
        (8, "unexpected end of data; is a quote left open?"),
    ]  # in file order
    assert {row["file"] for row in bad_rows.rows} == {str(csv_path)}

    bad_rows = BadRows("skip")
    columns = read_examples(jsonl_path, args, bad_rows=bad_rows)
    assert columns == {"text": ["good", "good too"], "label": ["a", "b"]}
    assert [row["line"] for row in bad_rows.rows] == [2, 3, 4, 5, 6]
    assert all(row["file"] == str(jsonl_path) for row in bad_rows.rows)


def test_empty_or_missing_files_are_errors_even_when_skipping(tmp_path):
    args = DataArguments(train_file="x", bad_rows="skip")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UserError, match="holds no examples"):
        read_examples(tmp_path / "empty.jsonl", args, bad_rows=BadRows("skip"))
    with pytest.raises(UserError, match="does not exist"):
        read_examples(tmp_path / "missing.jsonl", args, bad_rows=BadRows("skip"))
    (tmp_path / "all_bad.jsonl").write_text("not json\n")
    with pytest.raises(UserError, match="no usable examples"):
        read_examples(tmp_path / "all_bad.jsonl", args, bad_rows=BadRows("skip"))


def test_length_grouping_in_numpy_is_transformers_order_from_the_same_generator():
    # transformers' get_length_grouped_indices (Python lists) is the oracle; lengths with many ties.
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from finetune.data.sampler import length_grouped_indices

    lengths = torch.randint(1, 20, (2345,), generator=torch.Generator().manual_seed(1)).tolist()
    for seed, batch_size in ((0, 16), (1, 64), (2, 1000)):
        expected = get_length_grouped_indices(lengths, batch_size, generator=torch.Generator().manual_seed(seed))
        ours = length_grouped_indices(np.array(lengths), batch_size, torch.Generator().manual_seed(seed))
        assert ours.tolist() == expected


def test_every_dataloader_batch_is_one_length_group_and_the_partial_batch_comes_last():
    # 1000 = 15 x 64 + 40: a partial batch served in the middle would shift every later DataLoader batch by 40
    # rows, so that each mixed two length groups.
    lengths = torch.randint(1, 300, (1000,), generator=torch.Generator().manual_seed(0)).tolist()
    sampler = ShuffledLengthGroupedSampler(64, lengths=lengths, seed=3)
    for epoch in range(2):
        groups = [sorted(group.tolist()) for group in sampler.batches(epoch)]
        loader = torch.utils.data.DataLoader(range(1000), batch_size=64, sampler=sampler)
        served = [sorted(batch.tolist()) for batch in loader]
        assert served == groups and len(served[-1]) == 40
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in served)
    random_order = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).tolist()
    padded_random = sum(64 * max(lengths[i] for i in random_order[j : j + 64]) for j in range(0, 1000, 64))
    assert padded < 0.75 * padded_random


def padded_positions(batches: list[np.ndarray], lengths: np.ndarray, multiple: int = 1) -> int:
    return sum(len(batch) * -(-int(lengths[batch].max()) // multiple) * multiple for batch in batches)


def test_length_groups_by_padded_length_keep_the_padding_and_shuffle_within_a_bucket():
    # Sorting by the length rounded up to pad_to_multiple_of: every batch pads to what exact sorting pads it to,
    # but examples of one bucket come in random order instead of by their exact length.
    lengths = torch.randint(1, 300, (3000,), generator=torch.Generator().manual_seed(0)).numpy()
    exact = ShuffledLengthGroupedSampler(64, lengths, seed=5).batches(0)
    bucketed = ShuffledLengthGroupedSampler(64, lengths, seed=5, bucket=32).batches(0)
    assert padded_positions(bucketed, lengths, 32) == padded_positions(exact, lengths, 32)
    assert sorted(np.concatenate(bucketed).tolist()) == list(range(3000))
    assert sum(np.array_equal(a, b) for a, b in zip(exact, bucketed, strict=True)) < len(exact) / 2


def test_length_groups_by_label_give_each_batch_its_groups_label_mix():
    # Long texts mostly one label, as long reviews in the demo are mostly positive: plain length groups give
    # batches of one label; by label, every batch holds about its mega-batch's share of each label.
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 300, (4000,), generator=generator).numpy()
    labels = np.where(lengths > 150, torch.rand(4000, generator=generator).numpy() < 0.9, 0).astype(int)
    plain = ShuffledLengthGroupedSampler(32, lengths, seed=1, group_batches=20).batches(0)
    mixed = ShuffledLengthGroupedSampler(32, lengths, seed=1, group_batches=20, labels=labels).batches(0)
    assert sorted(np.concatenate(mixed).tolist()) == list(range(4000))
    share = labels.mean()
    assert max(abs(labels[batch].mean() - share) for batch in plain) > 0.4
    assert max(abs(labels[batch].mean() - share) for batch in mixed[:-1]) < 0.15
    random_order = torch.randperm(4000, generator=generator).numpy()
    random_batches = [random_order[i : i + 32] for i in range(0, 4000, 32)]
    assert padded_positions(mixed, lengths) < 0.8 * padded_positions(random_batches, lengths)


def test_fast_readers_give_what_the_row_reader_gives(reviews, tmp_path):
    # The row reader (Python, line by line) is the oracle: on clean files the fast readers must read the same rows.
    from finetune.data.fast_readers import fast_batches
    from finetune.data.readers import Columns, row_reader_batches

    rows = read_jsonl(reviews["train"])
    rows[0]["text"] = 'a text with, a comma, "quotes", a tab\there and a line\nbreak'
    rows[1]["text"] = "好\u2028看 \x85 U+2028 and NEL stay"
    paths = write_all_formats(rows, tmp_path)
    del paths["json"]  # one JSON array: always read object by object
    for kind, path in paths.items():
        columns = Columns(["text"], "label")
        fast = pa.concat_tables(fast_batches(Path(path), kind, columns))
        slow = pa.concat_tables(row_reader_batches(Path(path), kind, columns, BadRows()))
        if kind == "txt":  # one example a line: the line break stays out of the txt file
            assert fast.num_rows == slow.num_rows == len(rows) + 1, kind
        else:
            assert fast.num_rows == len(rows), kind
        assert fast.to_pylist() == slow.to_pylist(), kind


def test_a_large_file_is_read_in_bounded_batches(tmp_path, monkeypatch):
    import finetune.data.fast_readers as fast_readers

    monkeypatch.setattr(fast_readers, "BLOCK_BYTES", 4096)
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}", "label": i % 2}) + "\n" for i in range(3000)))
    batches = list(fast_readers.fast_batches(path, "jsonl", fast_readers.Columns(["text"], "label")))
    assert len(batches) > 10 and max(batch.num_rows for batch in batches) < 300
    assert sum(batch.num_rows for batch in batches) == 3000
    assert batches[-1].column("label").to_pylist()[-1] == 1


@pytest.mark.parametrize(
    ("min_frequency", "max_vocab_size", "lowercase"), [(1, 30000, True), (2, 60, True), (1, 40, False)]
)
def test_char_vocabulary_is_what_the_word_level_trainer_learns(min_frequency, max_vocab_size, lowercase):
    # The characters are counted with numpy; tokenizers' WordLevelTrainer after a regex split into characters
    # (how the vocabulary was first built) is the oracle, ties, white space and normalisation included.
    texts = [row["text"] for row in read_jsonl(FIXTURES / "reviews_train.jsonl")]
    texts += ["ＡＢＣ  abc\t123", "龘龘 好😀坏", "", "   ", "a\u3000b\u2028c\x85d", "İstanbul ΣΑΣ"]
    oracle = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    oracle.normalizer = normalizers.Sequence([normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else []))
    oracle.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    trainer = trainers.WordLevelTrainer(
        vocab_size=max_vocab_size, min_frequency=min_frequency, special_tokens=["[PAD]", "[UNK]"]
    )
    oracle.train_from_iterator(texts, trainer=trainer)
    for given in (texts, [texts[:7], texts[7:]]):  # texts one by one, or in batches
        tokenizer = build_vocab_tokenizer(
            given, min_frequency=min_frequency, max_vocab_size=max_vocab_size, lowercase=lowercase
        )
        assert tokenizer.get_vocab() == oracle.get_vocab()


def test_only_the_block_with_a_bad_row_is_read_row_by_row(tmp_path, monkeypatch):
    import finetune.data.fast_readers as readers

    monkeypatch.setattr(readers, "BLOCK_BYTES", 4096)
    rows = [json.dumps({"text": f"text {i}", "label": "ab"[i % 2]}) for i in range(3000)]
    rows[2000] = '{"text": "broken"'
    rows[2500] = '{"text": "  ", "label": "a"}'
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    parsed_by_python = []
    records_from_lines = readers.records_from_lines

    def counting(lines, *args, **kwargs):
        for item in records_from_lines(lines, *args, **kwargs):
            parsed_by_python.append(item[0])
            yield item

    monkeypatch.setattr(readers, "records_from_lines", counting)
    args = DataArguments(train_file=str(path), bad_rows="skip")
    bad_rows = BadRows("skip")
    columns = read_examples(path, args, bad_rows=bad_rows)
    assert [(row["line"], row["reason"].split(" (")[0]) for row in bad_rows.rows] == [
        (2001, "not valid JSON"),
        (2501, "empty 'text'."),
    ]
    assert len(columns["text"]) == 2998 and columns["text"][-1] == "text 2999"
    assert 0 < len(parsed_by_python) < 600  # two blocks of about 150 lines, not the 3,000 rows
    with pytest.raises(UserError, match=f"{path}, line 2001: not valid JSON"):
        read_examples(path, DataArguments(train_file=str(path)))


def test_a_file_read_row_by_row_says_so_once(tmp_path, finetune_log):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n好,a\n,b\n差,b\n", encoding="utf-8")  # an empty text: the row reader names it
    for _ in range(3):  # as training, its data check and its baseline read the file
        columns = read_examples(path, DataArguments(train_file=str(path), bad_rows="skip"), bad_rows=BadRows("skip"))
        assert list(columns["text"]) == ["好", "差"]
    assert [message for message in finetune_log if "reading row by row" in message] == [
        f"{path}: reading row by row (an empty 'text')"
    ]
