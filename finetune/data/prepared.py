"""Prepared data: a warm run loads its tokenizer and tokenized splits without reading or parsing the files.

Before anything is parsed, a run computes the prepared-data key (keys.prepared_inputs). ``prepared-{key}.json``
in the cache folder maps it to the saved tokenizer, the label list and the cache entries of the tokenized splits.
When all of them are there, the run loads them in milliseconds; otherwise it reads, builds the tokenizer and
tokenizes (tokenize_splits says why each split missed) and then writes the index. A dataset from the hub, or a
BERT tokenizer that is not a local folder, has no key: its files cannot be hashed before loading, so every run
takes the full path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict, List, concatenate_datasets
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from finetune import cache
from finetune.config import DataArguments, ModelArguments
from finetune.data import keys
from finetune.data.splits import LABELS, RawData, load_raw_splits, release_mapped_pages
from finetune.data.tokenize import tokenize_splits
from finetune.data.windows import sample_counts

logger = logging.getLogger(__name__)

# Tokenizer attributes kept in tokenizer_config.json, not in the vocabulary that names the saved folder.
SETTINGS = ("model_max_length", "padding_side", "truncation_side")


@dataclass
class PreparedData:
    """The tokenized splits, their label list, the tokenizer that made them and the rows bad_rows: skip left out."""

    splits: DatasetDict
    label_list: list
    bad_rows: list[dict]
    tokenizer: PreTrainedTokenizerBase
    hit: bool = False  # loaded through a prepared-data index, without reading the files

    id2label = RawData.id2label
    label2id = RawData.label2id

    @property
    def multi_label(self) -> bool:
        """Whether each row has a list of labels (see RawData)."""
        return isinstance(self.splits["train"].features[LABELS], List)


def load_prepared(cache_dir: Path, key: str) -> PreparedData | None:
    """The tokenizer and tokenized splits an index names, or None (and why, in the log) when any is missing."""
    index = cache.read_prepared(cache.prepared_path(cache_dir, key))
    if index is None:
        logger.info("prepared data: no index prepared-%s for these files and settings; reading the files", key)
        return None
    try:  # a KeyError (an index or manifest without a field) is a LookupError too
        tokenizer = load_tokenizer(cache_dir, index["tokenizer"])
        splits = DatasetDict({split: load_split(cache_dir, entry) for split, entry in index["splits"].items()})
        labels = index["labels"]
        bad_rows = index.get("bad_rows", [])
    except LookupError as error:
        logger.info("prepared data: prepared-%s cannot be used (%s); reading the files", key, error)
        return None
    files = index["inputs"].get("files", {})
    for split, entry in index["splits"].items():
        source = files.get("train" if split == "validation" and "validation" not in files else split, {})
        cache.record_use(cache_dir, entry, source.get("path"))
    cache.record_last_use(cache.prepared_path(cache_dir, key))
    logger.info(
        "prepared data: hit prepared-%s: tokenizer %s and %d splits from the cache; files hashed, not read",
        key,
        index["tokenizer"]["identity"],
        len(splits),
    )
    for split, entry in index["splits"].items():
        logger.info("%s: cache hit %s (prepared data)", split, entry)
        counts = sample_counts(splits[split], split)
        windows = f" in {counts[f'{split}_windows']} windows" if f"{split}_windows" in counts else ""
        logger.info("%s: %d rows%s; tokenizer calls in this process: 0", split, counts[f"{split}_samples"], windows)
    if bad_rows:
        logger.warning("%d bad row(s) were left out of these files (bad_rows: skip)", len(bad_rows))
    return PreparedData(splits, labels, bad_rows, tokenizer=tokenizer, hit=True)


def load_tokenizer(cache_dir: Path, recorded: dict) -> PreTrainedTokenizerBase:
    """The saved tokenizer, with the settings of the run that made the index; LookupError when it differs."""
    folder = cache_dir / keys.TOKENIZERS_DIR / recorded["identity"]
    if not folder.is_dir():
        raise LookupError(f"its tokenizer {folder.name} is not saved")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise LookupError(f"its tokenizer in {folder} does not load: {error}") from None
    for name, value in recorded["settings"].items():
        setattr(tokenizer, name, value)
    if keys.tokenizer_identity(tokenizer) != recorded["identity"]:
        raise LookupError(f"the tokenizer saved in {folder.name} has another vocabulary")
    if tokenizer.special_tokens_map != recorded["special_tokens"] or type(tokenizer).__name__ != recorded["class"]:
        raise LookupError(f"the tokenizer saved in {folder.name} has other special tokens or another class")
    return tokenizer


def load_split(cache_dir: Path, key: str) -> Dataset:
    """A tokenized split from its cache entry; LookupError when its manifest or an Arrow file is missing."""
    manifest = cache.read_manifest(cache.manifest_path(cache_dir, key))
    if manifest is None:
        raise LookupError(f"the manifest of {key} is missing")
    files = [cache_dir / name for name in manifest["files"]]
    missing = [path.name for path in files if not path.is_file()]
    if missing or not files:
        raise LookupError(f"{', '.join(missing) or 'the Arrow file of ' + key} is missing")
    parts = [Dataset.from_file(str(path)) for path in files]
    dataset = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    if len(dataset) != manifest["rows"]:
        raise LookupError(f"{key} holds {len(dataset)} rows, its manifest says {manifest['rows']}")
    release_mapped_pages(cache_dir)  # the pages opening the file read
    return dataset


def record_prepared(
    cache_dir: Path, key: str, inputs: dict, raw: RawData, tokenizer: PreTrainedTokenizerBase, tokenized
) -> None:
    """Records what a full preparation produced, so that the next run with the same key can load it: the tokenizer
    saved in the cache folder, and the prepared-data index (``cache.write_prepared``) naming it and the splits."""
    entries = {split: cache.entry_key_of(dataset) for split, dataset in tokenized.items()}
    if None in entries.values():
        return
    identity = keys.tokenizer_identity(tokenizer)
    cache.save_tokenizer(cache_dir, tokenizer, identity)
    recorded = {
        "identity": identity,
        "class": type(tokenizer).__name__,
        "settings": {name: getattr(tokenizer, name) for name in SETTINGS},
        "special_tokens": tokenizer.special_tokens_map,
    }
    cache.write_prepared(cache_dir, key, inputs, recorded, raw.label_list, entries, raw.bad_rows)


def prepare_data(
    model_args: ModelArguments,
    data_args: DataArguments,
    seed: int,
    build_tokenizer: Callable[[RawData], PreTrainedTokenizerBase],
) -> PreparedData:
    """Reads the splits, builds the tokenizer and tokenizes, or loads all three when a prepared index holds them.

    ``overwrite_cache`` always takes the full path. The index is written only when the files still hash as
    they did before they were read, so it never maps a key to rows read from other content.
    """
    cache_dir = cache.cache_directory(data_args.data_cache_dir)
    files = None if data_args.dataset_name else keys.hash_files(data_args)
    inputs = keys.prepared_inputs(model_args, data_args, seed, files)
    key = keys.content_hash(inputs) if inputs else None
    if key and not data_args.overwrite_cache:
        prepared = load_prepared(cache_dir, key)
        if prepared is not None:
            return prepared
    raw = load_raw_splits(data_args, seed=seed)
    try:
        tokenizer = build_tokenizer(raw)
        tokenized = tokenize_splits(raw, tokenizer, data_args, cache_dir, seed=seed, files=files)
    finally:
        raw.close()
    if key and keys.hash_files(data_args) == inputs["files"]:
        record_prepared(cache_dir, key, inputs, raw, tokenizer, tokenized)
    return PreparedData(tokenized, raw.label_list, raw.bad_rows, tokenizer=tokenizer)
