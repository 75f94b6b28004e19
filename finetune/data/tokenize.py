"""Tokenizing the splits into the datasets cache with ``Dataset.map``, under fingerprints from keys.py.

The map function gets Arrow batches and returns Arrow columns: token ids as 32-bit lists, masks as 8-bit lists,
label ids computed from the label column with ``pyarrow.compute``. Each split's entry gets a manifest (see
finetune/cache), and a miss says what changed since the last entry for the same file and split.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import tokenizers
from datasets import ClassLabel, DatasetDict, Features, List, Value
from transformers import PreTrainedTokenizerBase
from transformers.tokenization_utils_base import TruncationStrategy
from transformers.utils import PaddingStrategy

from finetune import cache
from finetune.config import DataArguments
from finetune.data import keys
from finetune.data.splits import LABELS, RawData, release_mapped_pages
from finetune.data.windows import TEXT_INDEX, check_window_stride, first_text_cap, window_owners
from finetune.errors import UserError

logger = logging.getLogger(__name__)

# Model input name -> attribute of a tokenizers.Encoding, and the Arrow type it is stored as.
ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
STORED_TYPES = {"input_ids": "int32", "attention_mask": "int8", "token_type_ids": "int8"}
# Rows per map call, and so per record batch of a tokenized file (the map returns Arrow tables, written as they
# come): few batch headers to read when the file is opened (see splits.RAW_BATCH_ROWS), a few MB per call.
MAP_BATCH_ROWS = 10_000
RELEASE_EVERY = 5  # map calls between releases of the input's memory-mapped pages


def encode(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    names: list[str] | None = None,
) -> dict[str, list[list[int]]]:
    """The model inputs (input_ids, attention_mask, ...) of each text, truncated to max_length, not padded.

    The same as calling the tokenizer with ``truncation=True``; for a fast tokenizer it calls the Rust backend's
    ``encode_batch_fast`` directly, which skips character offsets and the per-text conversion into Python dicts.
    ``names`` picks the inputs returned (default: all the model takes).
    """
    names = names or tokenizer.model_input_names
    encodings = backend_encodings(tokenizer, texts, pairs, max_length, names)
    if encodings is None:
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        return {name: encoded[name] for name in names if name in encoded}
    return {name: [getattr(encoding, ENCODING_FIELDS[name]) for encoding in encodings] for name in names}


def encode_windows(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    stride: int,
    names: list[str] | None = None,
) -> tuple[dict[str, list[list[int]]], np.ndarray]:
    """Every window of max_length tokens of each text, consecutive ones sharing ``stride`` tokens (see
    finetune/data/windows.py), not padded; and for each window the index of its text in ``texts``. With ``pairs``,
    the windows are the second text's, each with the first text (cut to first_text_cap tokens if longer)."""
    names = names or tokenizer.model_input_names
    if pairs is not None and isinstance(getattr(tokenizer, "_tokenizer", None), tokenizers.Tokenizer):
        cap, keep_end = first_text_cap(tokenizer, max_length), tokenizer.truncation_side == "left"
        texts = fit_first_texts(tokenizer._tokenizer, texts, cap, keep_end)
    strategy = TruncationStrategy.ONLY_SECOND if pairs is not None else TruncationStrategy.LONGEST_FIRST
    encodings = backend_encodings(tokenizer, texts, pairs, max_length, names, stride, strategy)
    if encodings is None:
        raise UserError(
            f"long_text: windows needs a fast tokenizer (the Rust tokenizers backend); {type(tokenizer).__name__} "
            "is not one. Use long_text: truncate with this model."
        )
    windows, owners = window_owners(encodings)
    return {name: [getattr(window, ENCODING_FIELDS[name]) for window in windows] for name in names}, owners


def fit_first_texts(backend: tokenizers.Tokenizer, texts: list[str], cap: int, keep_end: bool = False) -> list[str]:
    """The first texts of pairs, each cut at a token boundary to at most ``cap`` tokens (without special tokens), its
    start kept (its end with ``keep_end``: truncation_side left), so that the second text has room in every window;
    the texts that fit are returned as they are."""
    backend.no_truncation()  # backend_encodings sets it again
    backend.no_padding()
    lengths = [len(encoding) for encoding in backend.encode_batch_fast(texts, add_special_tokens=False)]
    cut = list(texts)
    for row in (row for row, length in enumerate(lengths) if length > cap):
        offsets = backend.encode(texts[row], add_special_tokens=False).offsets
        keep = cap
        # Tokenized again, a cut text can take more tokens than it had in the whole (a word split in the middle).
        while keep > 0:
            if len(backend.encode(token_cut(texts[row], offsets, keep, keep_end), add_special_tokens=False)) <= cap:
                break
            keep -= 1
        cut[row] = token_cut(texts[row], offsets, keep, keep_end)
    return cut


def token_cut(text: str, offsets: list[tuple[int, int]], tokens: int, keep_end: bool) -> str:
    """The text of its first ``tokens`` tokens (its last with ``keep_end``), by the tokens' character offsets."""
    if tokens == 0:
        return ""
    return text[offsets[len(offsets) - tokens][0] :] if keep_end else text[: offsets[tokens - 1][1]]


def backend_encodings(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    names: list[str],
    stride: int = 0,
    strategy: TruncationStrategy = TruncationStrategy.LONGEST_FIRST,
) -> list[tokenizers.Encoding] | None:
    """The fast tokenizer's encodings, truncated to max_length (the rest in each one's ``overflowing``, windows
    sharing ``stride`` tokens), not padded; None for a tokenizer without the Rust backend or for inputs that it
    does not hold."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if not isinstance(backend, tokenizers.Tokenizer) or not set(names) <= set(ENCODING_FIELDS):
        return None
    tokenizer.set_truncation_and_padding(
        padding_strategy=PaddingStrategy.DO_NOT_PAD,
        truncation_strategy=strategy,
        max_length=max_length,
        stride=stride,
        pad_to_multiple_of=None,
        padding_side=None,
    )
    if backend.encode_special_tokens != tokenizer.split_special_tokens:
        backend.encode_special_tokens = tokenizer.split_special_tokens
    # encode_batch_fast gives the windows after the first of a pair the first text's token type ids throughout
    # (tokenizers 0.23.3); encode_batch, which also computes offsets, gives the pair's.
    encode = backend.encode_batch if strategy == TruncationStrategy.ONLY_SECOND else backend.encode_batch_fast
    return encode(list(zip(texts, pairs, strict=True)) if pairs is not None else texts)


def list_array(rows: list[list[int]], dtype: str) -> pa.ListArray:
    """Rows of integers as an Arrow list column, built from one flat numpy array."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, rows), dtype=np.int32, count=len(rows)), out=offsets[1:])
    values = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def unpadded_columns(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    stride: int | None = None,
) -> tuple[dict[str, pa.ListArray], np.ndarray | None]:
    """The model inputs of each text as Arrow list columns, not padded: the attention mask is all ones, so it is
    made from the token ids' offsets instead of being read out of every encoding. With a ``stride``, a row per
    window of each text (long_text: windows), and each window's text index; else None for them."""
    names = tokenizer.model_input_names
    unmasked = [name for name in names if name != "attention_mask"]
    if stride is None:
        encoded, owners = encode(tokenizer, texts, pairs, max_length, unmasked), None
    else:
        encoded, owners = encode_windows(tokenizer, texts, pairs, max_length, stride, unmasked)
    columns = {name: list_array(rows, STORED_TYPES[name]) for name, rows in encoded.items()}
    if "attention_mask" in names:
        ids = columns["input_ids"]
        columns["attention_mask"] = pa.ListArray.from_arrays(ids.offsets, pa.array(np.ones(len(ids.values), np.int8)))
    return {name: columns[name] for name in names}, owners


def split_features(
    tokenizer: PreTrainedTokenizerBase, label_list: list, multi_label: bool = False, windows: bool = False
) -> Features:
    """Token columns, and label ids: one a row, or a list of them for multi-label data (multi-hot in the collator);
    with ``windows``, each window's text index too."""
    columns = {name: List(Value(STORED_TYPES[name])) for name in tokenizer.model_input_names}
    labels = ClassLabel(names=[str(label) for label in label_list])
    features = {**columns, LABELS: List(labels) if multi_label else labels}
    return Features({**features, TEXT_INDEX: Value("int64")} if windows else features)


def tokenize_splits(
    raw: RawData,
    tokenizer: PreTrainedTokenizerBase,
    data_args: DataArguments,
    cache_dir: str | Path,
    seed: int = 0,
    files: dict[str, dict] | None = None,
) -> DatasetDict:
    """Tokenizes every split into ``cache_dir``, reusing a split whose fingerprint is already there.

    Logs for each split whether the cache hit, or why it missed (what changed since the last entry for the same
    file and split), and how many times the tokenizer was called. A manifest is written beside each new entry
    and its last-used time updated on a hit (see finetune/cache).

    Args:
        files: Each data file's path and content hash (``keys.hash_files``); hashed here when not given.
    """
    tokenizer.truncation_side = data_args.truncation_side
    text_columns = [data_args.text_column] + ([data_args.text_pair_column] if data_args.text_pair_column else [])
    windows = data_args.long_text == "windows"
    if windows:
        check_window_stride(tokenizer, data_args.max_length, data_args.window_stride, pairs=len(text_columns) > 1)
    stride = data_args.window_stride if windows else None
    features = split_features(tokenizer, raw.label_list, raw.multi_label, windows)
    tokenizer_calls = 0  # counted in this process; worker processes (preprocessing_num_workers) count apart
    if files is None and not data_args.dataset_name:
        files = keys.hash_files(data_args)

    def tokenize(batch: pa.Table, indices: list[int], split: str) -> pa.Table:
        nonlocal tokenizer_calls
        tokenizer_calls += 1
        texts = batch.column(text_columns[0]).to_pylist()
        pairs = batch.column(text_columns[1]).to_pylist() if len(text_columns) > 1 else None
        owners = None
        if data_args.padding == "max_length":
            encoded = tokenizer(texts, pairs, truncation=True, max_length=data_args.max_length, padding="max_length")
            columns = {name: list_array(encoded[name], STORED_TYPES[name]) for name in tokenizer.model_input_names}
        else:
            columns, owners = unpadded_columns(tokenizer, texts, pairs, data_args.max_length, stride)
        labels = raw.label_ids(split, batch.column(raw.label_column))
        if owners is None:
            columns[LABELS] = labels
        else:  # a row per window, with its text's label and index in the split
            columns[LABELS] = labels.take(pa.array(owners))
            columns[TEXT_INDEX] = pa.array(np.asarray(indices, dtype=np.int64)[owners])
        if tokenizer_calls % RELEASE_EVERY == 0 and raw.folder is not None:
            release_mapped_pages(raw.folder)
        return pa.table(columns)

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    identity = keys.tokenizer_identity(tokenizer)
    tokenized = {}
    for split, dataset in raw.splits.items():
        inputs = keys.split_inputs(
            split, data_args, seed, files, raw.label_list, identity, getattr(dataset, "_fingerprint", None)
        )
        fingerprint = keys.content_hash(inputs)
        key = f"{split}-{fingerprint}"
        source = keys.split_source(split, data_args, files)
        readable = keys.describe_inputs(inputs, source, tokenizer)
        hit = bool(cache.arrow_files(cache_dir, key)) and not data_args.overwrite_cache
        if hit:
            logger.info("%s: cache hit %s", split, key)
        elif data_args.overwrite_cache:
            logger.info("%s: cache rebuild %s (overwrite_cache)", split, key)
        else:
            logger.info("%s: cache miss %s: %s", split, key, cache.explain_miss(cache_dir, key, split, readable))
        calls_before = tokenizer_calls
        tokenized[split] = (
            dataset.with_format("arrow")
            .map(
                tokenize,
                batched=True,
                with_indices=True,
                batch_size=MAP_BATCH_ROWS,
                fn_kwargs={"split": split},
                remove_columns=dataset.column_names,
                features=features,
                num_proc=data_args.preprocessing_num_workers,
                writer_batch_size=MAP_BATCH_ROWS,
                cache_file_name=str(cache_dir / f"{cache.ENTRY_PREFIX}{key}.arrow"),
                new_fingerprint=fingerprint,
                load_from_cache_file=not data_args.overwrite_cache,
                desc=f"Tokenizing {split}",
            )
            .with_format(None)
        )
        release_mapped_pages(cache_dir)
        if not (hit and cache.record_use(cache_dir, key, readable["data_file"])):  # new, or without a manifest
            cache.write_manifest(cache_dir, key, split, readable, tokenizer, tokenized[split])
        logger.info(
            "%s: %d rows%s; tokenizer calls in this process: %d",
            split,
            len(dataset),
            f" in {len(tokenized[split])} windows" if windows else "",
            tokenizer_calls - calls_before,
        )
    return DatasetDict(tokenized)
