"""Prepared data: a warm run loads its tokenizer and tokenized splits without reading or parsing the files.

Before anything is parsed, a run computes a key from the sha256 of each data file's bytes (never the
modification time), every data argument that decides which rows and labels are read and how they are
tokenized, the seed where it picks the held-out validation rows, the tokenizer's recipe (TextCNN: level,
min_frequency, max_vocab_size, lowercase; BERT: the tokenizer files' hashes, extend_vocabulary and
min_frequency) and the package version. ``prepared-{key}.json`` in the cache folder maps the key to the
saved tokenizer, the label list and the cache entries of the tokenized splits. When all of them are there,
the run loads them in milliseconds; otherwise it reads, builds the tokenizer and tokenizes as before
(tokenize_splits says why each split missed) and then writes the index. A dataset from the hub, or a BERT
tokenizer that is not a local folder, has no key: its files cannot be hashed before loading, so every run
takes the full path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict, concatenate_datasets
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from finetune import cache
from finetune.config import DataArguments, ModelArguments
from finetune.data import (
    RawData,
    content_hash,
    default_cache_dir,
    load_raw_splits,
    tokenize_splits,
    tokenizer_identity,
)
from finetune.errors import UserError
from finetune.model_card import file_sha256
from finetune.tokenizer import BUILD_VERSION

logger = logging.getLogger(__name__)

# DataArguments fields that change neither the rows, the labels nor the token ids; every other field is in the key,
# so a field added later counts until it is listed here.
NOT_IN_KEY = ("cache_dir", "overwrite_cache", "preprocessing_num_workers", "pad_to_multiple_of")
FILE_FIELDS = ("train_file", "validation_file", "test_file")
# Files of a model folder that the tokenizer never reads: hashing them would cost seconds on every run.
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".h5", ".msgpack", ".ot", ".onnx", ".pt", ".pth", ".ckpt", ".gguf"}
# Tokenizer attributes kept in tokenizer_config.json, not in the vocabulary that names the saved folder.
SETTINGS = ("model_max_length", "padding_side", "truncation_side")


@dataclass
class PreparedData(RawData):
    """The tokenized splits (in ``splits``), their label list and the tokenizer that made them."""

    tokenizer: PreTrainedTokenizerBase | None = None
    hit: bool = False  # loaded through a prepared-data index, without reading the files


def data_files(data_args: DataArguments) -> dict[str, str]:
    files = {split: getattr(data_args, f"{split}_file") for split in ("train", "validation", "test")}
    return {split: path for split, path in files.items() if path}


def hash_files(data_args: DataArguments) -> dict[str, dict] | None:
    """Each data file's resolved path and content hash; None when one is missing (the full path says so)."""
    hashes = {}
    for split, path in data_files(data_args).items():
        if not Path(path).is_file():
            return None
        hashes[split] = {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}
    return hashes


def tokenizer_recipe(model_args: ModelArguments) -> dict | None:
    """What decides the tokenizer before any text is seen; None for a tokenizer that is not in a local folder."""
    if model_args.model_type == "textcnn":
        fields = ("tokenizer_level", "min_frequency", "max_vocab_size", "lowercase")
        recipe = {name: getattr(model_args, name) for name in fields}
        return {"model_type": "textcnn", **recipe, "build_version": BUILD_VERSION}
    from finetune.models.bert import resolve_model_path

    name = model_args.tokenizer_name or model_args.model_name_or_path
    try:
        folder = Path(resolve_model_path(name))
    except UserError:
        return None
    if not folder.is_dir():
        return None
    files = sorted(path for path in folder.iterdir() if path.is_file() and path.suffix not in WEIGHT_SUFFIXES)
    return {
        "model_type": "bert",
        "tokenizer": name,
        "folder": str(folder.resolve()),
        "files": {path.name: file_sha256(path) for path in files},
        "extend_vocabulary": model_args.extend_vocabulary,
        "min_frequency": model_args.min_frequency if model_args.extend_vocabulary else None,
        "trust_remote_code": model_args.trust_remote_code,
    }


def prepared_inputs(model_args: ModelArguments, data_args: DataArguments, seed: int) -> dict | None:
    """Everything that decides the prepared data, computed without parsing a file; None when that is impossible."""
    from finetune import __version__

    if data_args.dataset_name:
        return None
    files = hash_files(data_args)
    recipe = tokenizer_recipe(model_args)
    if files is None or recipe is None:
        return None
    # The files enter through their resolved paths and content hashes.
    arguments = {name: value for name, value in asdict(data_args).items() if name not in NOT_IN_KEY + FILE_FIELDS}
    return {
        "files": files,
        "data_arguments": arguments,
        "split_seed": None if data_args.validation_file else seed,
        "tokenizer_recipe": recipe,
        "package_version": __version__,
    }


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
    for entry in index["splits"].values():
        cache.record_use(cache_dir, entry)
    cache.record_last_use(cache.prepared_path(cache_dir, key))
    logger.info(
        "prepared data: hit prepared-%s: tokenizer %s and %d splits from the cache; files hashed, not read",
        key,
        index["tokenizer"]["identity"],
        len(splits),
    )
    for split, entry in index["splits"].items():
        logger.info("%s: cache hit %s (prepared data)", split, entry)
        logger.info("%s: %d rows; tokenizer calls in this process: 0", split, len(splits[split]))
    if bad_rows:
        logger.warning("%d bad row(s) were left out of these files (bad_rows: skip)", len(bad_rows))
    return PreparedData(splits, labels, bad_rows, tokenizer=tokenizer, hit=True)


def load_tokenizer(cache_dir: Path, recorded: dict) -> PreTrainedTokenizerBase:
    """The saved tokenizer, with the settings of the run that made the index; LookupError when it differs."""
    folder = cache_dir / cache.TOKENIZERS_DIR / recorded["identity"]
    if not folder.is_dir():
        raise LookupError(f"its tokenizer {folder.name} is not saved")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise LookupError(f"its tokenizer in {folder} does not load: {error}") from None
    for name, value in recorded["settings"].items():
        setattr(tokenizer, name, value)
    if tokenizer_identity(tokenizer) != recorded["identity"]:
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
    return dataset


def write_prepared(
    cache_dir: Path, key: str, inputs: dict, raw: RawData, tokenizer: PreTrainedTokenizerBase, tokenized
) -> None:
    """Records what a full preparation produced, so that the next run with the same key can load it."""
    entries = {split: cache.entry_key_of(dataset) for split, dataset in tokenized.items()}
    if None in entries.values():
        return
    identity = tokenizer_identity(tokenizer)
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
    cache_dir = default_cache_dir(data_args)
    inputs = prepared_inputs(model_args, data_args, seed)
    key = content_hash(inputs) if inputs else None
    if key and not data_args.overwrite_cache:
        prepared = load_prepared(cache_dir, key)
        if prepared is not None:
            return prepared
    raw = load_raw_splits(data_args, seed=seed)
    tokenizer = build_tokenizer(raw)
    tokenized = tokenize_splits(raw.splits, tokenizer, data_args, cache_dir)
    if key and hash_files(data_args) == inputs["files"]:
        write_prepared(cache_dir, key, inputs, raw, tokenizer, tokenized)
    return PreparedData(tokenized, raw.label_list, raw.bad_rows, tokenizer=tokenizer)
