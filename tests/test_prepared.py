"""Prepared data: a warm run loads tokenizer and tokenized splits without parsing a file, and never stale ones."""

import json
import os
import shutil
import unicodedata
from functools import partial
from pathlib import Path

import pytest
from conftest import read_jsonl
from test_vocabulary import tiny_bert_without

import finetune.data.splits
from finetune.config import DataArguments, ModelArguments
from finetune.data import tokenizer_identity
from finetune.data.prepared import prepare_data
from finetune.train import build_tokenizer


@pytest.fixture
def counts(monkeypatch) -> dict[str, int]:
    """How many data files were parsed (read_file) and tokenizers built, counted in this process."""
    counted = {"parsed": 0, "built": 0}
    read_file = finetune.data.splits.read_file

    def counting_read_file(path, *args):
        counted["parsed"] += 1
        return read_file(path, *args)

    monkeypatch.setattr(finetune.data.splits, "read_file", counting_read_file)
    return counted


@pytest.fixture
def log(finetune_log) -> list[str]:
    return finetune_log


@pytest.fixture
def files(reviews, tmp_path) -> dict[str, Path]:
    """Private copies of the train and validation fixtures, for tests that change them."""
    return {
        split: Path(shutil.copy(reviews[split], tmp_path / reviews[split].name)) for split in ("train", "validation")
    }


def prepare(files: dict, cache_root: Path, counts: dict, model_args: ModelArguments | None = None, **overrides):
    """prepare_data as a training run calls it, counting the tokenizer builds."""
    data_args = DataArguments(
        train_file=str(files["train"]),
        validation_file=str(files.get("validation") or "") or None,
        data_cache_dir=str(cache_root),
        max_length=64,
        **overrides,
    )
    model_args = model_args or ModelArguments(min_frequency=1)

    def counting_build(raw):
        counts["built"] += 1
        return build_tokenizer(model_args, data_args, raw)

    return prepare_data(model_args, data_args, 0, counting_build)


def decoded(prepared, split: str, row: int) -> str:
    return prepared.tokenizer.decode(prepared.splits[split][row]["input_ids"])


def test_a_warm_run_neither_parses_the_files_nor_builds_the_vocabulary(files, tmp_path, counts, log):
    cold = prepare(files, tmp_path / "cache", counts)
    assert not cold.hit and counts == {"parsed": 2, "built": 1}

    log.clear()
    warm = prepare(files, tmp_path / "cache", counts)
    assert warm.hit and counts == {"parsed": 2, "built": 1}, "the warm run parsed a file or built a vocabulary"
    assert any(message.startswith("prepared data: hit prepared-") for message in log), log
    assert warm.label_list == cold.label_list
    assert tokenizer_identity(warm.tokenizer) == tokenizer_identity(cold.tokenizer)
    assert warm.tokenizer.model_max_length == cold.tokenizer.model_max_length == 64
    for split in ("train", "validation"):
        assert warm.splits[split]["input_ids"] == cold.splits[split]["input_ids"]
        assert warm.splits[split].features == cold.splits[split].features

    fewer = prepare(files, tmp_path / "cache", counts, max_train_samples=50)  # another argument: another key
    assert not fewer.hit and counts == {"parsed": 4, "built": 2} and len(fewer.splits["train"]) == 50


def test_held_out_validation_depends_on_the_seed(files, tmp_path, counts):
    only_train = {"train": files["train"]}
    first = prepare(only_train, tmp_path / "cache", counts)
    assert prepare(only_train, tmp_path / "cache", counts).hit
    model_args, data_args = (
        ModelArguments(min_frequency=1),
        DataArguments(train_file=str(files["train"]), data_cache_dir=str(tmp_path / "cache"), max_length=64),
    )
    other_seed = prepare_data(model_args, data_args, 1, partial(build_tokenizer, model_args, data_args))
    assert not other_seed.hit
    assert other_seed.splits["validation"]["input_ids"] != first.splits["validation"]["input_ids"]


def test_a_changed_byte_with_the_old_mtime_takes_the_full_path(files, tmp_path, counts, log):
    prepare(files, tmp_path / "cache", counts)
    train = files["train"]
    rows = read_jsonl(train)
    rows[0]["text"] = rows[0]["text"][::-1]  # the same characters: same size, same vocabulary
    before = train.stat()
    train.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    os.utime(train, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (train.stat().st_size, train.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    log.clear()
    changed = prepare(files, tmp_path / "cache", counts)
    expected = unicodedata.normalize("NFKC", rows[0]["text"]).lower()
    assert not changed.hit and counts["parsed"] == 4
    assert any("prepared data: no index" in message for message in log), log
    assert decoded(changed, "train", 0) == expected
    again = prepare(files, tmp_path / "cache", counts)
    assert again.hit and decoded(again, "train", 0) == expected


@pytest.mark.parametrize("lost", ["arrow file", "manifest", "tokenizer"])
def test_a_missing_referent_takes_the_full_path(files, tmp_path, counts, log, lost):
    cold = prepare(files, tmp_path / "cache", counts)
    directory = tmp_path / "cache" / "finetune"
    if lost == "tokenizer":
        shutil.rmtree(next((directory / "tokenizers").iterdir()))
    else:
        suffix = ".arrow" if lost == "arrow file" else ".json"
        next(directory.glob(f"tokenized-train-*{suffix}")).unlink()

    log.clear()
    rebuilt = prepare(files, tmp_path / "cache", counts)
    assert not rebuilt.hit and counts["parsed"] == 4
    assert any("cannot be used" in message and "reading the files" in message for message in log), log
    assert rebuilt.splits["train"]["input_ids"] == cold.splits["train"]["input_ids"]
    assert prepare(files, tmp_path / "cache", counts).hit


def test_overwrite_cache_takes_the_full_path(files, tmp_path, counts):
    prepare(files, tmp_path / "cache", counts)
    assert not prepare(files, tmp_path / "cache", counts, overwrite_cache=True).hit
    assert counts == {"parsed": 4, "built": 2}


def test_bert_with_extend_vocabulary_gets_the_same_tokenizer_back(files, reviews, tmp_path, counts):
    model_dir = tiny_bert_without(reviews, tmp_path / "bert")
    model_args = ModelArguments(model_type="bert", model_name_or_path=str(model_dir), extend_vocabulary=3)
    cold = prepare(files, tmp_path / "cache", counts, model_args)
    warm = prepare(files, tmp_path / "cache", counts, model_args)
    assert warm.hit and counts["built"] == 1
    assert len(cold.tokenizer.get_added_vocab()) > len(cold.tokenizer.all_special_tokens)  # tokens were added
    assert warm.tokenizer.get_added_vocab() == cold.tokenizer.get_added_vocab()
    assert len(warm.tokenizer) == len(cold.tokenizer)
    assert tokenizer_identity(warm.tokenizer) == tokenizer_identity(cold.tokenizer)
    assert warm.tokenizer.model_max_length == cold.tokenizer.model_max_length
    text = read_jsonl(files["train"])[0]["text"]
    assert warm.tokenizer(text)["input_ids"] == cold.tokenizer(text)["input_ids"]
    assert warm.splits["train"]["input_ids"] == cold.splits["train"]["input_ids"]

    # A changed tokenizer file in the model folder is another key. Its vocabulary is the same, so the saved
    # tokenizer folder is shared; the setting comes from the index, not from the folder's first copy.
    settings = model_dir / "tokenizer_config.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "model_max_length": 32}))
    assert not prepare(files, tmp_path / "cache", counts, model_args).hit
    shorter = prepare(files, tmp_path / "cache", counts, model_args)
    assert shorter.hit and shorter.tokenizer.model_max_length == 32 and warm.tokenizer.model_max_length > 32
