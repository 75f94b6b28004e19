"""One pass over each split: a hash of every text as the tokenizer sees it, its label and its length in tokens.

Texts are not kept: duplicates, leaks and conflicts are found among 64-bit hashes (numpy arrays of 16 bytes a row,
labels and lengths included), and only the few rows a report shows are read again, by row number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

from finetune.cli import check_interrupt
from finetune.data.readers import file_format, usable_record_lines
from finetune.data.splits import RawData, arrow_batches, data_columns, label_lists, normalized_labels

BATCH_ROWS = 10_000
PAIR_SEPARATOR = "\x1e"  # between the two texts of a sentence pair in a text's key


@dataclass
class SplitScan:
    """What a check needs of one split, a row at a time, in the split's order.

    ``hashes``: the text after the tokenizer's normalisation and pre-tokenization (0 for a text that is left
    empty); ``labels``: an id into ``Scan.label_keys``; ``lengths``: tokens, special tokens included, without
    truncation.
    """

    name: str
    hashes: np.ndarray  # uint64
    labels: np.ndarray  # int32
    lengths: np.ndarray  # int32
    source: str | None  # the file the rows come from
    places: np.ndarray | None  # each row's place among the file's usable rows (None: the whole file in order)
    first_lengths: np.ndarray | None = None  # of a sentence pair, the first text's tokens (no special tokens)

    def file_rows(self, rows: np.ndarray) -> np.ndarray:
        """The places in the file of some of the split's rows."""
        return rows if self.places is None else self.places[rows]


@dataclass
class Scan:
    splits: dict[str, SplitScan]
    label_keys: list  # a label (or, multi-label, a tuple of labels) for each label id
    raw: RawData
    text_columns: list[str]

    def texts(self, split: str, rows: list[int]) -> list[str]:
        """The texts of a few rows (a sentence pair as its two texts joined by ' | ')."""
        dataset = self.raw.splits[split].select(rows)
        parts = [dataset[column] for column in self.text_columns]
        return [" | ".join(texts) for texts in zip(*parts, strict=True)]


def text_key_function(tokenizer, char_level: bool) -> Callable[[str], str]:
    """A text as the tokenizer reads it: normalised (Unicode forms, case, accents, as the tokenizer does) and cut
    into pre-tokens, joined by single spaces (or by nothing for a character tokenizer, which drops white space)."""
    backend = tokenizer.backend_tokenizer
    normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    separator = "" if char_level else " "

    def key(text: str) -> str:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        if pre_tokenizer is None:
            return separator.join(text.split())
        return separator.join(piece for piece, _ in pre_tokenizer.pre_tokenize_str(text))

    return key


def text_hash(key: str) -> int:
    """64 bits of BLAKE2b (stable across processes, unlike ``hash``); 0 is kept for an empty text."""
    if not key:
        return 0
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little") or 1


def untruncated_encoder(tokenizer) -> Tokenizer:
    """A copy of the tokenizer's Rust backend that neither truncates nor pads."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def row_labels(raw: RawData, split: str, column: pa.ChunkedArray) -> list:
    """A split's label of each row of a batch: the label value, or for multi-label data a sorted tuple of them."""
    if raw.multi_label:
        return [
            tuple(sorted(items))
            for items in label_lists(column, raw.label_forms[split], raw.label_separator).to_pylist()
        ]
    return normalized_labels(column, raw.label_forms[split]).to_pylist()


def scan_splits(raw: RawData, tokenizer, text_columns: list[str], char_level: bool) -> Scan:
    """Reads every split once, batch by batch (see SplitScan)."""
    key_of = text_key_function(tokenizer, char_level)
    encoder = untruncated_encoder(tokenizer)
    label_ids: dict = {}
    splits = {}
    for split, dataset in raw.splits.items():
        hashes, labels, lengths, first_lengths = [], [], [], []
        for batch in arrow_batches(dataset, [*text_columns, raw.label_column], BATCH_ROWS):
            check_interrupt()  # a Ctrl-C that Python dropped (finetune.cli.remembered_interrupts)
            texts = batch.column(text_columns[0]).to_pylist()
            pairs = batch.column(text_columns[1]).to_pylist() if len(text_columns) > 1 else None
            if pairs is None:
                keys = [key_of(text) for text in texts]
                encodings = encoder.encode_batch_fast(texts)
            else:
                keys = [
                    f"{key_of(text)}{PAIR_SEPARATOR}{key_of(pair)}" for text, pair in zip(texts, pairs, strict=True)
                ]
                keys = [key if key != PAIR_SEPARATOR else "" for key in keys]
                encodings = encoder.encode_batch_fast(list(zip(texts, pairs, strict=True)))
                firsts = encoder.encode_batch_fast(texts, add_special_tokens=False)
                first_lengths.append(np.fromiter((len(first.ids) for first in firsts), np.int32, count=len(keys)))
            hashes.append(np.fromiter(map(text_hash, keys), dtype=np.uint64, count=len(keys)))
            lengths.append(np.fromiter((len(encoding.ids) for encoding in encodings), np.int32, count=len(keys)))
            values = row_labels(raw, split, batch.column(raw.label_column))
            labels.append(np.fromiter((label_ids.setdefault(v, len(label_ids)) for v in values), np.int32, len(keys)))
        source, places = raw.origins.get(split, (None, None))
        splits[split] = SplitScan(
            split,
            concatenate(hashes, np.uint64),
            concatenate(labels, np.int32),
            concatenate(lengths, np.int32),
            source,
            places,
            concatenate(first_lengths, np.int32) if len(text_columns) > 1 else None,
        )
    return Scan(splits, list(label_ids), raw, text_columns)


def concatenate(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


class Locator:
    """File and line of rows, found by reading a file again up to the last row asked for. Each file is read once
    per call of ``lines`` (the rows of every finding are asked for together)."""

    def __init__(self, scan: Scan, data_args):
        self.scan = scan
        self.columns = data_columns(data_args)

    def lines(self, wanted: dict[str, np.ndarray]) -> dict[tuple[str, int], dict]:
        """``{(split, row): {"file": ..., "line": ...}}`` for the rows of each split in ``wanted``."""
        by_file: dict[str | None, dict[int, list[tuple[str, int]]]] = {}
        for split, rows in wanted.items():
            split_scan = self.scan.splits[split]
            rows = np.asarray(rows, dtype=np.int64)
            for row, place in zip(rows.tolist(), split_scan.file_rows(rows).tolist(), strict=True):
                by_file.setdefault(split_scan.source, {}).setdefault(place, []).append((split, row))
        found = {}
        for source, places in by_file.items():
            if source is None:  # a hub dataset: rows are numbered within the split
                for requests in places.values():
                    for split, row in requests:
                        found[(split, row)] = {"file": None, "split": split, "line": row + 1}
                continue
            last = max(places)
            for place, line in enumerate(usable_record_lines(source, file_format(source), self.columns)):
                for split, row in places.get(place, ()):
                    found[(split, row)] = {"file": source, "line": line}
                if place >= last:
                    break
        return found
