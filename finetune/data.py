"""Data: local files -> DatasetDict, label maps, splits, tokenization into the datasets cache, the collator.

Files are read here rather than by ``datasets.load_dataset`` so that every error names the file and
line, and so that the rows tokenized are always the file's current content (``load_dataset`` keys local
files by modification time and can serve stale rows). Tokenized splits go to the ``datasets`` cache
under a fingerprint computed from everything that decides their content.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from datasets import ClassLabel, Dataset, DatasetDict
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from finetune import cache
from finetune.config import DataArguments
from finetune.errors import UserError

logger = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".txt": "txt"}
LABELS = "labels"  # column of label ids, the name the models' forward takes
INTEGER = re.compile(r"-?\d+")
BAD_ROWS_FILE = "bad_rows.jsonl"  # in output_dir: the rows left out with bad_rows: skip


def file_format(path: str | Path) -> str:
    """The format of a data file, from its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(FORMATS)}.")
    return FORMATS[suffix]


@dataclass
class BadRows:
    """Rows that cannot be used. With ``mode`` error (the default) the first one is an error naming its file and
    line, followed by ``hint``; with skip, each one is left out and recorded here (file, line, reason)."""

    mode: str = "error"
    rows: list[dict] = field(default_factory=list)
    hint: str = ""

    def report(self, source: str | Path, line: int, reason: str) -> None:
        if self.mode != "skip":
            raise UserError(f"{source}, line {line}: {reason}{self.hint}")
        self.rows.append({"file": str(source), "line": line, "reason": reason})


def write_bad_rows(rows: list[dict], output_dir: str | Path) -> Path:
    """Writes the skipped rows to output_dir/bad_rows.jsonl and logs the first few; returns the report's path."""
    path = Path(output_dir) / BAD_ROWS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    for row in rows[:5]:
        logger.warning("skipped %s, line %d: %s", row["file"], row["line"], row["reason"])
    logger.warning("skipped %d bad row(s) in all (bad_rows: skip); every one is listed in %s", len(rows), path)
    return path


def decode_utf8(path: Path, bad_rows: BadRows | None = None) -> str:
    """The file's text; a byte-order mark is dropped, a line of invalid UTF-8 is a bad row (kept as a blank line,
    so that line numbers stay right)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    bad_rows = bad_rows or BadRows()
    lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(line.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as error:
            bad_rows.report(path, number, f"not valid UTF-8 ({error.reason}). Save the file as UTF-8.")
            lines.append("")
    return "\n".join(lines)


def read_records(path: str | Path, bad_rows: BadRows | None = None) -> list[tuple[int, dict]]:
    """Reads a data file into (line or row number, record) pairs.

    txt files hold one ``text<TAB>label`` example a line and get the keys ``text`` and ``label``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Data file {path} does not exist.")
    kind = file_format(path)
    if kind == "parquet":
        return list(enumerate(read_parquet(path), start=1))
    return parse_records(decode_utf8(path, bad_rows), kind, path, bad_rows)


def parse_records(text: str, kind: str, source: str | Path, bad_rows: BadRows | None = None) -> list[tuple[int, dict]]:
    """Parses the text of a csv, tsv, json, jsonl or txt file; a bad row is reported with ``source`` and its line."""
    bad_rows = bad_rows or BadRows()
    if kind in ("csv", "tsv"):
        return parse_delimited(text, "," if kind == "csv" else "\t", source, bad_rows)
    if kind == "json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{source}, line {error.lineno}: not valid JSON ({error.msg}).") from None
        records = []
        for number, row in enumerate(rows, start=1):
            if isinstance(row, dict):
                records.append((number, row))
            else:
                bad_rows.report(source, number, f"expected a JSON object, found {type(row).__name__}.")
        return records
    records = []
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        if kind == "txt":
            text_part, tab, label = line.rpartition("\t")
            if tab:
                records.append((number, {"text": text_part, "label": label}))
            else:
                bad_rows.report(source, number, "expected text<TAB>label, found no tab.")
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            bad_rows.report(source, number, f"not valid JSON ({error.msg}).")
            continue
        if isinstance(record, dict):
            records.append((number, record))
        else:
            bad_rows.report(source, number, f"expected a JSON object, found {type(record).__name__}.")
    return records


def read_parquet(path: str | Path) -> list[dict]:
    """The rows of a parquet file; a file pyarrow cannot read is the user's to fix."""
    import pyarrow
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pyarrow.ArrowException, OSError) as error:
        raise UserError(f"{path}: not a readable parquet file ({error}).") from None


def split_lines(text: str, keepends: bool = False) -> list[str]:
    """The lines of text, ended by \\n, \\r\\n or \\r. Not ``str.splitlines``, which also ends a line at U+2028,
    U+2029, \\x85, \\x0b, \\x0c and \\x1c-\\x1e: characters a JSON string or a csv field may hold as they are."""
    lines = io.StringIO(text, newline="").readlines()
    return lines if keepends else [line.rstrip("\r\n") for line in lines]


def parse_delimited(text: str, delimiter: str, source: str | Path, bad_rows: BadRows) -> list[tuple[int, dict]]:
    """Rows of a csv or tsv file with a header, numbered by the line they start on. After a bad row (more fields
    than the header, a quote never closed) reading goes on at the line after the one where it starts."""
    lines = split_lines(text, keepends=True)
    header, records, start = None, [], 0
    while start < len(lines):
        reader = csv.reader(lines[start:], delimiter=delimiter, strict=True)
        row_start = start + 1
        try:
            for row in reader:
                number, row_start = row_start, start + reader.line_num + 1
                if not any(value.strip() for value in row):
                    continue
                if header is None:
                    header = row
                elif len(row) > len(header):
                    reason = f"more fields than the header has columns ({', '.join(header)})."
                    bad_rows.report(source, number, reason + " Quote texts that contain the delimiter.")
                else:
                    records.append((number, dict(zip(header[: len(row)], row, strict=True))))  # a short row lacks keys
            break
        except csv.Error as error:
            bad_rows.report(source, row_start, f"{error}; is a quote left open?")
            start = row_start
    return records


def read_texts(path: str, text_columns: Sequence[str], kind: str | None = None) -> list[tuple[int, dict]]:
    """Reads rows to classify (no labels needed) into (line or row number, record) pairs.

    Args:
        path: A data file, or ``-`` for standard input.
        text_columns: The text column, and the text pair column if the model takes pairs; every row needs them.
        kind: The format (csv, tsv, json, jsonl, parquet, txt); by default the file's extension, txt for stdin.
            A txt file holds one text a line, stored under ``text_columns[0]``; blank lines are skipped. When
            every line has a tab it is the training format ``text<TAB>label`` instead, and keeps its label.
    """
    if path == "-":
        source, kind = "<stdin>", kind or "txt"
        if kind == "parquet":
            raise UserError("parquet cannot be read from standard input; pass the file's path.")
        try:
            text = sys.stdin.buffer.read().decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise UserError(f"standard input is not valid UTF-8 ({error.reason}).") from None
    else:
        source = Path(path)
        if not source.is_file():
            raise UserError(f"Input file {source} does not exist.")
        kind = kind or file_format(source)
        if kind == "parquet":
            return check_texts(list(enumerate(read_parquet(source), start=1)), text_columns, source)
        text = decode_utf8(source)
    if kind != "txt":
        records = parse_records(text, kind, source)
    else:
        lines = [(number, line) for number, line in enumerate(split_lines(text), start=1) if line.strip()]
        if all("\t" in line for _, line in lines):  # text<TAB>label, the training format
            records = [
                (number, {text_columns[0]: record["text"], "label": record["label"]})
                for number, record in parse_records(text, kind, source)
            ]
        else:
            records = [(number, {text_columns[0]: line}) for number, line in lines]
    return check_texts(records, text_columns, source)


def check_texts(records: list[tuple[int, dict]], text_columns: Sequence[str], source) -> list[tuple[int, dict]]:
    """Every record has each text column, as a string; the first one lacking it is an error naming the line."""
    for number, record in records:
        for column in text_columns:
            if column not in record:
                raise UserError(
                    f"{source}, line {number}: no {column!r} (found: {', '.join(map(str, record))}). "
                    "Pass --text_column with the name your file uses."
                )
            if record[column] is None:
                raise UserError(f"{source}, line {number}: {column!r} is empty (null); give the row a text.")
            if not isinstance(record[column], str):
                raise UserError(f"{source}, line {number}: {column!r} must be text, found {record[column]!r}.")
    return records


def read_examples(
    path: str | Path, data_args: DataArguments, with_labels: bool = True, bad_rows: BadRows | None = None
) -> dict[str, list]:
    """Reads the text, optional text pair and label columns of a file, checking every row.

    A row that cannot be used is an error naming its line or, with ``bad_rows`` in skip mode, left out and
    recorded there. A file without any usable row, or whose rows all lack a column, is always an error.
    """
    bad_rows = bad_rows or BadRows()
    skipped_before = len(bad_rows.rows)
    records = read_records(path, bad_rows)
    if not records and len(bad_rows.rows) == skipped_before:
        raise UserError(f"Data file {path} holds no examples.")
    wanted = [data_args.text_column] + ([data_args.text_pair_column] if data_args.text_pair_column else [])
    if with_labels:
        wanted.append(data_args.label_column)
    missing = [column for column in wanted if records and not any(column in record for _, record in records)]
    if missing:
        raise UserError(
            f"{path}: no column {', '.join(map(repr, missing))} (found: {', '.join(map(str, records[0][1]))}). "
            "Set text_column / label_column to the names your file uses."
        )
    usable = []
    for number, record in records:
        problem = row_problem(record, wanted, data_args.label_column)
        if problem:
            bad_rows.report(path, number, problem)
        else:
            usable.append((number, record))
    if with_labels:
        usable = drop_mixed_labels(usable, data_args.label_column, path, bad_rows)
    if not usable:
        raise UserError(f"Data file {path} holds no usable examples: every row is bad (see {BAD_ROWS_FILE}).")
    columns = {column: [record[column] for _, record in usable] for column in wanted}
    if with_labels:
        columns[data_args.label_column] = normalize_labels(columns[data_args.label_column], path)
    return columns


def row_problem(record: dict, columns: Sequence[str], label_column: str) -> str | None:
    """What makes a row unusable: a missing or empty column, a text that is not text."""
    for column in columns:
        value = record.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            return f"empty {column!r}." if column in record else f"no {column!r}."
        if column != label_column and not isinstance(value, str):
            return f"{column!r} must be text, found {value!r}."
    return None


def label_kind(label) -> str:
    return "int" if isinstance(label, int) and not isinstance(label, bool) else type(label).__name__


def drop_mixed_labels(
    records: list[tuple[int, dict]], label_column: str, path: str | Path, bad_rows: BadRows
) -> list[tuple[int, dict]]:
    """Labels must be all strings or all integers: a row whose label is of another type than most is bad."""
    kinds = Counter(label_kind(record[label_column]) for _, record in records)
    if len(kinds) < 2:
        return records
    usual = kinds.most_common(1)[0][0]
    kept = []
    for number, record in records:
        label = record[label_column]
        if label_kind(label) == usual:
            kept.append((number, record))
        else:
            reason = (
                f"label {label!r} is {label_kind(label)}, but most labels are {usual}: the label column mixes types"
            )
            bad_rows.report(path, number, reason + "; use all strings or all integers.")
    return kept


def normalize_labels(labels: list, path: str | Path) -> list:
    """Labels are all integers or all strings; integer-looking strings (csv, txt) become integers."""
    if all(isinstance(label, str) for label in labels):
        if all(INTEGER.fullmatch(label.strip()) for label in labels):
            return [int(label) for label in labels]
        return [label.strip() for label in labels]
    if all(isinstance(label, int) and not isinstance(label, bool) for label in labels):
        return labels
    kinds = sorted({type(label).__name__ for label in labels})
    raise UserError(f"{path}: the label column mixes types ({', '.join(kinds)}); use all strings or all integers.")


def content_hash(*parts) -> str:
    """A short, stable hash of JSON-serialisable parts."""
    payload = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:16]


@dataclass
class RawData:
    """The splits as read, with the label list found in the training data."""

    splits: DatasetDict
    label_list: list
    bad_rows: list[dict] = field(default_factory=list)  # rows left out with bad_rows: skip

    @property
    def id2label(self) -> dict[int, str]:
        return {index: str(label) for index, label in enumerate(self.label_list)}

    @property
    def label2id(self) -> dict[str, int]:
        return {str(label): index for index, label in enumerate(self.label_list)}


def load_raw_splits(data_args: DataArguments, seed: int) -> RawData:
    """Reads train / validation / test into a DatasetDict whose label column holds label ids.

    The label list is the sorted set of training labels; a validation or test label outside it is an error.
    Without a validation file, ``validation_split_percentage`` of train is held out (seeded, stratified).
    """
    bad_rows = BadRows(data_args.bad_rows, hint=" (bad_rows: skip leaves such rows out)")
    if data_args.dataset_name:
        columns_by_split = load_hub_columns(data_args)
    else:
        files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
        columns_by_split = {
            split: read_examples(path, data_args, bad_rows=bad_rows) for split, path in files.items() if path
        }

    label_column = data_args.label_column
    label_list = sorted(set(columns_by_split["train"][label_column]))  # sorted for determinism
    if len(label_list) < 2:
        raise UserError(f"Training data has {len(label_list)} distinct label(s); a classifier needs at least 2.")
    label_types = {type(label) for label in label_list}
    label2id = {label: index for index, label in enumerate(label_list)}
    splits = {}
    for split, columns in columns_by_split.items():
        labels = columns.pop(label_column)
        unseen = sorted({label for label in labels if label not in label2id}, key=str)
        if unseen:
            mismatch = " (training labels are of another type)" if {type(x) for x in unseen} - label_types else ""
            raise UserError(
                f"{split} data has label(s) that training data never has: {', '.join(map(repr, unseen))}{mismatch}. "
                f"Training labels: {', '.join(map(repr, label_list))}."
            )
        columns[LABELS] = [label2id[label] for label in labels]
        dataset = Dataset.from_dict(columns)
        splits[split] = dataset.cast_column(LABELS, ClassLabel(names=[str(label) for label in label_list]))

    if "validation" not in splits:
        splits["train"], splits["validation"] = hold_out(splits["train"], data_args.validation_split_percentage, seed)
    for split, limit in (
        ("train", data_args.max_train_samples),
        ("validation", data_args.max_eval_samples),
        ("test", data_args.max_predict_samples),
    ):
        if split in splits and limit is not None:
            splits[split] = splits[split].select(range(min(limit, len(splits[split]))))
    return RawData(DatasetDict(splits), label_list, bad_rows.rows)


def hold_out(train: Dataset, percentage: int, seed: int) -> tuple[Dataset, Dataset]:
    """Splits a validation set off the training data, stratified by label when every class allows it."""
    try:
        parts = train.train_test_split(test_size=percentage / 100, seed=seed, stratify_by_column=LABELS)
    except ValueError:
        logger.warning("Some label has too few examples to stratify the validation split; splitting at random.")
        parts = train.train_test_split(test_size=percentage / 100, seed=seed)
    return parts["train"], parts["test"]


def load_hub_columns(data_args: DataArguments) -> dict[str, dict[str, list]]:
    """Columns of a dataset from ``datasets.load_dataset`` (needs the network unless cached)."""
    try:
        loaded = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    except Exception as error:  # the hub raises many kinds; all mean the same to the user
        raise UserError(f"Could not load dataset {data_args.dataset_name!r}: {error}") from None
    wanted = [data_args.text_column, data_args.label_column]
    wanted += [data_args.text_pair_column] if data_args.text_pair_column else []
    columns_by_split = {}
    for split, name in (("train", "train"), ("validation", "validation"), ("test", "test")):
        if name in loaded:
            dataset = loaded[name]
            missing = [column for column in wanted if column not in dataset.column_names]
            if missing:
                raise UserError(f"Dataset {data_args.dataset_name!r} has no column {', '.join(missing)}.")
            columns_by_split[split] = {column: dataset[column] for column in wanted}
    if "train" not in columns_by_split:
        raise UserError(f"Dataset {data_args.dataset_name!r} has no train split.")
    return columns_by_split


def tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of the tokenizer's full definition: vocabulary, normalisation, special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return content_hash(type(tokenizer).__name__, tokenizer.get_vocab())
    definition = json.loads(backend.to_str())
    # Calling the tokenizer stores its last truncation and padding settings in the backend; they are not
    # part of its identity (max_length and padding enter the fingerprint on their own).
    definition.pop("truncation", None)
    definition.pop("padding", None)
    return content_hash(type(tokenizer).__name__, definition)


def fingerprint_inputs(dataset: Dataset, tokenizer_id: str, data_args: DataArguments) -> dict:
    """Every input that decides a tokenized split's content; their hash is its fingerprint."""
    from finetune import __version__

    return {
        "rows_hash": content_hash(dataset.data.to_pydict()),
        "labels": dataset.features[LABELS].names,
        "tokenizer": tokenizer_id,
        "max_length": data_args.max_length,
        "padding": data_args.padding,
        "truncation_side": data_args.truncation_side,
        "text_column": data_args.text_column,
        "text_pair_column": data_args.text_pair_column,
        "package_version": __version__,
    }


def split_fingerprint(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, data_args: DataArguments) -> str:
    """The fingerprint of a tokenized split: every input that decides its content."""
    return content_hash(fingerprint_inputs(dataset, tokenizer_identity(tokenizer), data_args))


def split_sources(data_args: DataArguments) -> dict[str, str | None]:
    """The data file each split was read from (a held-out validation split comes from the training file)."""
    if data_args.dataset_name:
        name = ":".join(filter(None, ("dataset", data_args.dataset_name, data_args.dataset_config_name)))
        return {"train": name, "validation": name, "test": name}
    return {
        "train": data_args.train_file,
        "validation": data_args.validation_file or data_args.train_file,
        "test": data_args.test_file,
    }


def tokenize_splits(
    raw: DatasetDict, tokenizer: PreTrainedTokenizerBase, data_args: DataArguments, cache_dir: str | Path
) -> DatasetDict:
    """Tokenizes every split into ``cache_dir``, reusing a split whose fingerprint is already there.

    Logs for each split whether the cache hit, or why it missed (what changed since the nearest earlier
    entry for the same file and split), and how many times the tokenizer was called. A manifest is written
    beside each new entry and its last-used time updated on a hit (see finetune/cache.py).
    """
    tokenizer.truncation_side = data_args.truncation_side
    text_columns = [data_args.text_column] + ([data_args.text_pair_column] if data_args.text_pair_column else [])
    padding = "max_length" if data_args.padding == "max_length" else False
    tokenizer_calls = 0  # counted in this process; worker processes (preprocessing_num_workers) count apart

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        nonlocal tokenizer_calls
        tokenizer_calls += 1
        pairs = batch[data_args.text_pair_column] if data_args.text_pair_column else None
        return tokenizer(
            batch[data_args.text_column], pairs, truncation=True, max_length=data_args.max_length, padding=padding
        )

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    identity = tokenizer_identity(tokenizer)
    sources = split_sources(data_args)
    tokenized = {}
    for split, dataset in raw.items():
        inputs = fingerprint_inputs(dataset, identity, data_args)
        fingerprint = content_hash(inputs)
        key = f"{split}-{fingerprint}"
        hit = bool(cache.arrow_files(cache_dir, key)) and not data_args.overwrite_cache
        readable = None if hit else cache.describe_inputs(inputs, sources.get(split), tokenizer)
        if hit:
            logger.info("%s: cache hit %s", split, key)
        elif data_args.overwrite_cache:
            logger.info("%s: cache rebuild %s (overwrite_cache)", split, key)
        else:
            logger.info("%s: cache miss %s: %s", split, key, cache.explain_miss(cache_dir, key, split, readable))
        calls_before = tokenizer_calls
        tokenized[split] = dataset.map(
            tokenize,
            batched=True,
            remove_columns=text_columns,
            num_proc=data_args.preprocessing_num_workers,
            cache_file_name=str(cache_dir / f"tokenized-{key}.arrow"),
            new_fingerprint=fingerprint,
            load_from_cache_file=not data_args.overwrite_cache,
            desc=f"Tokenizing {split}",
        )
        if not (hit and cache.record_use(cache_dir, key)):  # a new entry, or one without a manifest yet
            readable = readable or cache.describe_inputs(inputs, sources.get(split), tokenizer)
            cache.write_manifest(cache_dir, key, split, readable, tokenizer, tokenized[split])
        logger.info(
            "%s: %d rows; tokenizer calls in this process: %d",
            split,
            len(tokenized[split]),
            tokenizer_calls - calls_before,
        )
    return DatasetDict(tokenized)


def default_cache_dir(data_args: DataArguments) -> Path:
    """Where tokenized splits are cached: ``cache_dir`` from the config, else the datasets cache."""
    return cache.cache_directory(data_args.cache_dir)


@dataclass
class ClassificationCollator:
    """Pads each batch to its longest example (or a multiple of ``pad_to_multiple_of``), and to at least
    ``min_length`` tokens, which TextCNN needs: its widest convolution must fit."""

    tokenizer: PreTrainedTokenizerBase
    pad_to_multiple_of: int | None = None
    min_length: int = 0

    def __post_init__(self):
        self.pad = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=self.pad_to_multiple_of)

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = self.pad(features)
        shortfall = self.min_length - batch["input_ids"].shape[1]
        if shortfall > 0:
            fill = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
            for name, value in fill.items():
                if name in batch:
                    batch[name] = torch.nn.functional.pad(batch[name], (0, shortfall), value=value)
        return batch


class ShuffledLengthGroupedSampler(LengthGroupedSampler):
    """Batches of similar lengths, served in random order: each example once per epoch, little padding.

    transformers' LengthGroupedSampler sorts mega-batches of 50 batches by length and serves each one
    from its longest batch to its shortest. Where length goes with the label (long reviews are more
    often positive in the demo corpus), that sweep feeds the optimizer a drifting label mix and
    training goes unstable; shuffling the order of the batches removes the drift and keeps the speed.
    The order depends only on the seed and the epoch (as in accelerate's SeedableRandomSampler), not on
    torch's global generator: every process draws the same order, and a run resumed mid-epoch draws the
    epoch's order again and skips the batches it has done, so it trains on exactly the same batches.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int = 0):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate's dataloader) before each epoch."""
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1  # a new order on the next pass, also when nobody calls set_epoch
        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        batches = [indices[start : start + self.batch_size] for start in range(0, len(indices), self.batch_size)]
        order = torch.randperm(len(batches), generator=generator).tolist()
        return iter([index for position in order for index in batches[position]])
