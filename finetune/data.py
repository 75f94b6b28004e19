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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from datasets import ClassLabel, Dataset, DatasetDict
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from finetune.config import DataArguments
from finetune.errors import UserError

logger = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".txt": "txt"}
LABELS = "labels"  # column of label ids, the name the models' forward takes
INTEGER = re.compile(r"-?\d+")


def file_format(path: str | Path) -> str:
    """The format of a data file, from its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(FORMATS)}.")
    return FORMATS[suffix]


def decode_utf8(path: Path) -> str:
    """The file's text; a byte-order mark is dropped, invalid UTF-8 is an error naming the line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UserError(f"{path}, line {line}: not valid UTF-8 ({error.reason}). Save the file as UTF-8.") from None


def read_records(path: str | Path) -> list[tuple[int, dict]]:
    """Reads a data file into (line or row number, record) pairs.

    txt files hold one ``text<TAB>label`` example a line and get the keys ``text`` and ``label``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Data file {path} does not exist.")
    kind = file_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(enumerate(pq.read_table(path).to_pylist(), start=1))
    return parse_records(decode_utf8(path), kind, path)


def parse_records(text: str, kind: str, source: str | Path) -> list[tuple[int, dict]]:
    """Parses the text of a csv, tsv, json, jsonl or txt file; errors name ``source`` and the line."""
    if kind in ("csv", "tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="," if kind == "csv" else "\t")
        records = []
        try:
            for record in reader:
                if None in record:
                    raise UserError(
                        f"{source}, line {reader.line_num}: more fields than the header has columns "
                        f"({', '.join(reader.fieldnames)}). Quote texts that contain the delimiter."
                    )
                records.append((reader.line_num, record))
        except csv.Error as error:
            raise UserError(f"{source}, line {reader.line_num}: {error}.") from None
        return records
    if kind == "json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{source}, line {error.lineno}: not valid JSON ({error.msg}).") from None
        return list(enumerate(rows, start=1))
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if kind == "txt":
            text_part, tab, label = line.rpartition("\t")
            if not tab:
                raise UserError(f"{source}, line {number}: expected text<TAB>label, found no tab.")
            records.append((number, {"text": text_part, "label": label}))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{source}, line {number}: not valid JSON ({error.msg}).") from None
        if not isinstance(record, dict):
            raise UserError(f"{source}, line {number}: expected a JSON object, found {type(record).__name__}.")
        records.append((number, record))
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
            import pyarrow.parquet as pq

            return check_texts(list(enumerate(pq.read_table(source).to_pylist(), start=1)), text_columns, source)
        text = decode_utf8(source)
    if kind != "txt":
        records = parse_records(text, kind, source)
    else:
        lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
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
            if column not in record or record[column] is None:
                raise UserError(
                    f"{source}, line {number}: no {column!r} (found: {', '.join(map(str, record))}). "
                    "Pass --text_column with the name your file uses."
                )
            if not isinstance(record[column], str):
                raise UserError(f"{source}, line {number}: {column!r} must be text, found {record[column]!r}.")
    return records


def read_examples(path: str | Path, data_args: DataArguments, with_labels: bool = True) -> dict[str, list]:
    """Reads the text, optional text pair and label columns of a file, checking every row."""
    records = read_records(path)
    if not records:
        raise UserError(f"Data file {path} holds no examples.")
    wanted = [data_args.text_column] + ([data_args.text_pair_column] if data_args.text_pair_column else [])
    if with_labels:
        wanted.append(data_args.label_column)
    first_line, first = records[0]
    missing = [column for column in wanted if column not in first]
    if missing:
        raise UserError(
            f"{path}: no column {', '.join(map(repr, missing))} (found: {', '.join(map(str, first))}). "
            "Set text_column / label_column to the names your file uses."
        )
    columns: dict[str, list] = {column: [] for column in wanted}
    for number, record in records:
        for column in wanted:
            value = record.get(column)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise UserError(f"{path}, line {number}: empty {column!r}.")
            if column != data_args.label_column and not isinstance(value, str):
                raise UserError(f"{path}, line {number}: {column!r} must be text, found {value!r}.")
            columns[column].append(value)
    if with_labels:
        columns[data_args.label_column] = normalize_labels(columns[data_args.label_column], path)
    return columns


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
    if data_args.dataset_name:
        columns_by_split = load_hub_columns(data_args)
    else:
        files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
        columns_by_split = {split: read_examples(path, data_args) for split, path in files.items() if path}

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
    return RawData(DatasetDict(splits), label_list)


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


def split_fingerprint(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, data_args: DataArguments) -> str:
    """The fingerprint of a tokenized split: every input that decides its content."""
    from finetune import __version__

    return content_hash(
        dataset.data.to_pydict(),
        dataset.features[LABELS].names,
        tokenizer_identity(tokenizer),
        data_args.max_length,
        data_args.padding,
        data_args.truncation_side,
        data_args.text_column,
        data_args.text_pair_column,
        __version__,
    )


def tokenize_splits(
    raw: DatasetDict, tokenizer: PreTrainedTokenizerBase, data_args: DataArguments, cache_dir: str | Path
) -> DatasetDict:
    """Tokenizes every split into ``cache_dir``, reusing a split whose fingerprint is already there."""
    tokenizer.truncation_side = data_args.truncation_side
    text_columns = [data_args.text_column] + ([data_args.text_pair_column] if data_args.text_pair_column else [])
    padding = "max_length" if data_args.padding == "max_length" else False

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        pairs = batch[data_args.text_pair_column] if data_args.text_pair_column else None
        return tokenizer(
            batch[data_args.text_column], pairs, truncation=True, max_length=data_args.max_length, padding=padding
        )

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tokenized = {}
    for split, dataset in raw.items():
        fingerprint = split_fingerprint(dataset, tokenizer, data_args)
        cache_file = cache_dir / f"tokenized-{split}-{fingerprint}.arrow"
        hit = cache_file.exists() and not data_args.overwrite_cache
        logger.info("%s split: cache %s (%s)", split, "hit" if hit else "miss", cache_file)
        tokenized[split] = dataset.map(
            tokenize,
            batched=True,
            remove_columns=text_columns,
            num_proc=data_args.preprocessing_num_workers,
            cache_file_name=str(cache_file),
            new_fingerprint=fingerprint,
            load_from_cache_file=not data_args.overwrite_cache,
            desc=f"Tokenizing {split}",
        )
    return DatasetDict(tokenized)


def default_cache_dir(data_args: DataArguments) -> Path:
    """Where tokenized splits are cached: ``cache_dir`` from the config, else the datasets cache."""
    root = Path(data_args.cache_dir) if data_args.cache_dir else Path(datasets.config.HF_DATASETS_CACHE)
    return root / "finetune"


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
