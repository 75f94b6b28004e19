"""Train, validation and test files into Arrow datasets: the label list, the held-out validation split, row limits.

Each file is written, batch by batch, to an Arrow file in a temporary folder of the cache (see readers.py), which
the tokenized splits replace; nothing holds every row as Python objects. Labels stay as read, strings or integers,
and become label ids while the splits are tokenized (``RawData.label_ids``).
"""

from __future__ import annotations

import ctypes
import logging
import math
import re
import shutil
import sys
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict
from transformers import TrainerCallback

from finetune.config import DataArguments
from finetune.data.fast_readers import NeedsRowReader, fast_batches
from finetune.data.readers import BAD_ROWS_FILE, INTEGER, BadRows, Columns, file_format, row_reader_batches
from finetune.errors import UserError

logger = logging.getLogger(__name__)

LABELS = "labels"  # column of label ids, the name the models' forward takes
SCAN_ROWS = 100_000  # rows per batch when a column is scanned
# Rows per record batch of a raw Arrow file. Opening a file reads every batch's header through the memory map, and
# each read maps the pages around it: 1,000-row batches put a quarter of the file in the resident set.
RAW_BATCH_ROWS = 100_000
RAW_PREFIX = "tmp_raw_"  # the cache's folder of files being prepared; `finetune cache` knows "tmp*" as leftovers


def release_mapped_pages(folder: str | Path) -> None:
    """Drops the pages of memory-mapped files under ``folder`` from this process's resident memory.

    Arrow files are read through memory maps, and every page read stays counted in the resident set until the
    kernel needs the memory: one pass over a 2 GB file adds 2 GB to the peak RSS. The pages stay in the page cache,
    so reading them again costs nothing more than a page fault. Linux only; elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    folder = str(Path(folder).resolve())
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip().startswith(folder):
                start, end = (int(address, 16) for address in parts[0].split("-"))
                madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)  # MADV_DONTNEED


def arrow_batches(dataset: Dataset, columns: list[str], batch_rows: int = SCAN_ROWS) -> Iterator[pa.Table]:
    """The dataset's rows as Arrow tables of a few columns, releasing the pages of the files read as it goes."""
    folders = {str(Path(item["filename"]).parent) for item in dataset.cache_files}
    for batch in dataset.select_columns(columns).with_format("arrow").iter(batch_size=batch_rows):
        yield batch
        for folder in folders:
            release_mapped_pages(folder)


def iter_texts(dataset: Dataset, columns: list[str]) -> Iterator[list[str]]:
    """Batches of the texts of the given columns (one column after the other within each batch)."""
    for batch in arrow_batches(dataset, columns, batch_rows=10_000):
        yield [text for column in columns for text in batch.column(column).to_pylist()]


@dataclass
class RawData:
    """The splits as read, with the label list found in the training data.

    ``splits`` hold the text column(s) and the label column as the files have them; ``label_forms`` says how each
    split's labels read as label values: ``int``, ``integer-text`` (csv or txt integers), ``text`` or ``list``
    (lists of label names). A run is multi-label when the training labels are lists or ``label_separator`` is
    set; its label values are strings, and each row has a list of them (possibly empty).
    """

    splits: DatasetDict
    label_list: list
    bad_rows: list[dict] = field(default_factory=list)  # rows left out with bad_rows: skip
    label_column: str = "label"
    label_forms: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None  # the temporary folder of the raw Arrow files
    multi_label: bool = False
    label_separator: str | None = None
    # Where each split's rows come from: the file, and each row's place among the file's usable rows (None: the
    # split is the whole file, in order). A validation split held out of train, or a split cut by max_*_samples,
    # has the places it kept. Files are None for a dataset from the hub.
    origins: dict[str, tuple[str | None, np.ndarray | None]] = field(default_factory=dict)

    @property
    def id2label(self) -> dict[int, str]:
        return {index: str(label) for index, label in enumerate(self.label_list)}

    @property
    def label2id(self) -> dict[str, int]:
        return {str(label): index for index, label in enumerate(self.label_list)}

    def label_ids(self, split: str, labels: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The label ids of a split's label values, as 64-bit integers (-1 for a label not in the list); for
        multi-label data, a list of them per row."""
        if self.multi_label:
            lists = label_lists(labels, self.label_forms[split], self.label_separator)
            ids = pc.fill_null(pc.index_in(lists.values, value_set=pa.array(self.label_list, pa.string())), -1)
            return pa.ListArray.from_arrays(lists.offsets, ids.cast(pa.int64()))
        values = normalized_labels(labels, self.label_forms[split])
        ids = pc.index_in(values, value_set=pa.array(self.label_list, values.type))
        return pc.fill_null(ids, -1).cast(pa.int64())

    def values(self, split: str, labels: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """A split's label values: one per row, or every item of every row's list for multi-label data."""
        if self.multi_label:
            return label_lists(labels, self.label_forms[split], self.label_separator).values
        return normalized_labels(labels, self.label_forms[split])

    def close(self) -> None:
        """Removes the raw Arrow files (the tokenized splits do not need them)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def normalized_labels(labels: pa.Array | pa.ChunkedArray, form: str) -> pa.Array | pa.ChunkedArray:
    """Labels as label values: integers, or strings without surrounding white space."""
    if form == "int":
        return labels
    trimmed = pc.utf8_trim_whitespace(labels)
    return trimmed.cast(pa.int64()) if form == "integer-text" else trimmed


def label_lists(labels: pa.Array | pa.ChunkedArray, form: str, separator: str | None) -> pa.ListArray:
    """Multi-label values: each row's labels as a list of strings, white space trimmed and empty items dropped.
    Lists stay lists; a string is split on ``separator`` (or is a list of one without it); an integer is a list of
    one. So ``"体育, 财经"``, ``["体育", "财经"]`` and ``""`` (no label) all read as lists."""
    labels = labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels
    if form == "list":
        lists = labels.cast(pa.list_(pa.string()))
        items, rows = pc.list_flatten(lists), pc.list_parent_indices(lists)
    else:
        text = labels.cast(pa.string())
        if separator:
            lists = pc.split_pattern(text, separator)
            items, rows = pc.list_flatten(lists), pc.list_parent_indices(lists)
        else:
            items, rows = text, pa.array(np.arange(len(text)))
    items = pc.utf8_trim_whitespace(items)
    kept = pc.not_equal(items, "")
    counts = np.bincount(rows.filter(kept).to_numpy(), minlength=len(labels))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), items.filter(kept))


def sorted_labels(values: set, multi_label: bool) -> list:
    """The label list: sorted, and for multi-label data (whose labels are strings) integers in numeric order."""
    if multi_label and values and all(re.fullmatch(INTEGER, value) for value in values):
        return sorted(values, key=int)
    return sorted(values)


def write_arrow(batches: Iterator[pa.Table], target: Path, columns: Columns) -> tuple[int, str]:
    """Writes the batches to an Arrow file; returns its rows and the label form (see RawData)."""
    from datasets.arrow_writer import ArrowWriter

    rows, schema, integer_text = 0, None, True
    with ArrowWriter(path=str(target), writer_batch_size=RAW_BATCH_ROWS) as writer:
        for table in batches:
            if schema is None:
                schema = table.schema
            elif table.schema != schema:
                raise NeedsRowReader("labels of another type further on")
            if columns.label and pa.types.is_string(table.schema.field(columns.label).type) and integer_text:
                integer_text = pc.all(pc.match_substring_regex(table.column(columns.label), INTEGER)).as_py()
            writer.write_table(table)
            rows += table.num_rows
        if rows == 0:
            raise NeedsRowReader("no rows")
        writer.finalize()
    if columns.label and pa.types.is_list(schema.field(columns.label).type):
        return rows, "list"
    if not columns.label or pa.types.is_integer(schema.field(columns.label).type):
        return rows, "int"
    return rows, "integer-text" if integer_text else "text"


SAID_ROW_BY_ROW: set[tuple[str, str]] = set()


def read_file(path: str | Path, columns: Columns, bad_rows: BadRows, folder: Path) -> tuple[Dataset, str]:
    """One data file as a memory-mapped Dataset of the wanted columns, and its label form.

    Clean files go through the fast readers; a file with a row they cannot judge is read again row by row, which
    names each bad row (or leaves it out, with bad_rows: skip). A file without any usable row is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Data file {path} does not exist.")
    kind = file_format(path)
    target = Path(tempfile.mkstemp(dir=folder, prefix=f"{path.stem[:40]}-", suffix=".arrow")[1])
    skipped_before = len(bad_rows.rows)
    try:
        rows, form = write_arrow(fast_batches(path, kind, columns, bad_rows), target, columns)
    except NeedsRowReader as reason:
        said = (str(path.resolve()), str(reason))  # once a process: the check and the baseline read the file again
        logger.log(
            logging.DEBUG if said in SAID_ROW_BY_ROW else logging.INFO, "%s: reading row by row (%s)", path, reason
        )
        SAID_ROW_BY_ROW.add(said)
        del bad_rows.rows[skipped_before:]  # blocks read row by row before are read again
        try:
            rows, form = write_arrow(row_reader_batches(path, kind, columns, bad_rows), target, columns)
        except NeedsRowReader:
            if len(bad_rows.rows) > skipped_before:
                raise UserError(
                    f"Data file {path} holds no usable examples: every row is bad (see {BAD_ROWS_FILE})."
                ) from None
            raise UserError(f"Data file {path} holds no examples.") from None
    bad_rows.rows[skipped_before:] = sorted(bad_rows.rows[skipped_before:], key=lambda row: row["line"])
    dataset = Dataset.from_file(str(target))
    release_mapped_pages(folder)
    return dataset, form


def read_examples(
    path: str | Path, data_args: DataArguments, with_labels: bool = True, bad_rows: BadRows | None = None
) -> dict[str, list]:
    """A small file's checked columns as Python lists, labels as label values (for tests and quick looks)."""
    columns = data_columns(data_args, with_labels)
    with tempfile.TemporaryDirectory() as folder:
        dataset, form = read_file(path, columns, bad_rows or BadRows(), Path(folder))
        table = dataset.data.table
        values = {column: table.column(column).to_pylist() for column in columns.texts}
        if columns.label and (form == "list" or columns.label_may_be_empty):
            values[columns.label] = label_lists(
                table.column(columns.label), form, data_args.label_separator
            ).to_pylist()
        elif columns.label:
            values[columns.label] = normalized_labels(table.column(columns.label), form).to_pylist()
        del dataset, table
    return values


def data_columns(data_args: DataArguments, with_labels: bool = True) -> Columns:
    texts = [data_args.text_column] + ([data_args.text_pair_column] if data_args.text_pair_column else [])
    return Columns(texts, data_args.label_column if with_labels else None, bool(data_args.label_separator))


def label_values(raw: RawData, split: str) -> set:
    """The distinct label values of a split."""
    values: set = set()
    for batch in arrow_batches(raw.splits[split], [raw.label_column]):
        values.update(pc.unique(raw.values(split, batch.column(raw.label_column))).to_pylist())
    return values


def label_id_array(raw: RawData, split: str) -> np.ndarray:
    """The label id of every row of a split."""
    parts = [
        raw.label_ids(split, batch.column(raw.label_column)).to_numpy()
        for batch in arrow_batches(raw.splits[split], [raw.label_column])
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def load_raw_splits(
    data_args: DataArguments,
    seed: int,
    cache_dir: str | Path | None = None,
    labels_must_be_seen: bool = True,
    apply_limits: bool = True,
) -> RawData:
    """Reads train / validation / test into Arrow datasets and finds the label list.

    The label list is the sorted set of training labels; a validation or test label outside it is an error
    (unless ``labels_must_be_seen`` is off: finetune check reports them). Without a validation file,
    ``validation_split_percentage`` of train is held out (seeded, stratified). ``apply_limits``: cut the splits to
    max_train_samples, max_eval_samples and max_predict_samples.
    """
    from finetune import cache

    bad_rows = BadRows(data_args.bad_rows, hint=" (bad_rows: skip leaves such rows out)")
    root = cache.cache_directory(cache_dir if cache_dir is not None else data_args.data_cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=RAW_PREFIX, dir=root))
    raw = RawData(
        DatasetDict(),
        [],
        bad_rows.rows,
        label_column=data_args.label_column,
        folder=folder,
        label_separator=data_args.label_separator,
    )
    weakref.finalize(raw, shutil.rmtree, folder, ignore_errors=True)
    columns = data_columns(data_args)
    if data_args.dataset_name:
        read_hub_splits(raw, data_args, columns)
        raw.origins = {split: (None, None) for split in raw.splits}
    else:
        files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
        for split, path in files.items():
            if path:
                raw.splits[split], raw.label_forms[split] = read_file(path, columns, bad_rows, folder)
                raw.origins[split] = (str(path), None)

    raw.multi_label = bool(data_args.label_separator) or raw.label_forms["train"] == "list"
    if not raw.multi_label and "list" in raw.label_forms.values():
        split = next(split for split, form in raw.label_forms.items() if form == "list")
        raise UserError(
            f"{split} labels are lists but training labels are not: give the training data lists of labels too "
            "(a multi-label run), or one label per row everywhere."
        )
    label_list = sorted_labels(label_values(raw, "train"), raw.multi_label)  # sorted for determinism
    if len(label_list) < 2:
        raise UserError(f"Training data has {len(label_list)} distinct label(s); a classifier needs at least 2.")
    raw.label_list = label_list
    for split in raw.splits:
        if split != "train" and labels_must_be_seen:
            check_labels_seen(raw, split)

    if "validation" not in raw.splits:
        raw.label_forms["validation"] = raw.label_forms["train"]
        label_ids = None if raw.multi_label else label_id_array(raw, "train")
        in_validation = held_out_rows(label_ids, len(raw.splits["train"]), data_args.validation_split_percentage, seed)
        train = raw.splits["train"]
        kept, held = np.flatnonzero(~in_validation), np.flatnonzero(in_validation)
        raw.splits["train"], raw.splits["validation"] = train.select(kept), train.select(held)
        source = raw.origins["train"][0]
        raw.origins["train"], raw.origins["validation"] = (source, kept), (source, held)
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
    limits["test"] = data_args.max_predict_samples
    for split, limit in limits.items() if apply_limits else ():
        if split in raw.splits and limit is not None and limit < len(raw.splits[split]):
            raw.splits[split] = raw.splits[split].select(range(limit))
            source, places = raw.origins[split]
            raw.origins[split] = (source, places[:limit] if places is not None else np.arange(limit))
    return raw


def check_labels_seen(raw: RawData, split: str) -> None:
    """A label in validation or test data that training never has is an error that lists them."""
    seen = set(raw.label_list)
    values = label_values(raw, split)
    unseen = sorted(values - seen, key=str)
    if unseen:
        mismatch = (
            " (training labels are of another type)" if {type(x) for x in unseen} - {type(x) for x in seen} else ""
        )
        raise UserError(
            f"{split} data has label(s) that training data never has: {', '.join(map(repr, unseen))}{mismatch}. "
            f"Training labels: {', '.join(map(repr, raw.label_list))}."
        )


def held_out_rows(label_ids: np.ndarray | None, rows: int, percentage: int, seed: int) -> np.ndarray:
    """Which training rows make the validation split (a boolean mask), stratified by label when every class allows
    it: each class gives ``percentage`` of its rows (rounded, at least one). Without ``label_ids`` (multi-label
    data), or when a class has a single row, the rows are drawn at random. Both parts keep the file's order."""
    generator = np.random.default_rng(seed)
    counts = np.bincount(label_ids) if label_ids is not None else None
    if counts is None or (counts[counts > 0] < 2).any():
        if counts is not None:
            logger.warning("Some label has too few examples to stratify the validation split; splitting at random.")
        size = math.ceil(rows * percentage / 100)
        chosen = generator.permutation(rows)[:size]
    else:
        by_label = np.argsort(label_ids, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        chosen = np.concatenate(
            [
                generator.permutation(by_label[starts[label] : starts[label + 1]])[
                    : max(1, round(counts[label] * percentage / 100))
                ]
                for label in np.flatnonzero(counts)
            ]
        )
    in_validation = np.zeros(rows, dtype=bool)
    in_validation[chosen] = True
    return in_validation


def read_hub_splits(raw: RawData, data_args: DataArguments, columns: Columns) -> None:
    """The splits of a dataset from ``datasets.load_dataset`` (needs the network unless cached)."""
    import datasets

    try:
        loaded = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    except Exception as error:  # the hub raises many kinds; all mean the same to the user
        raise UserError(f"Could not load dataset {data_args.dataset_name!r}: {error}") from None
    for split in ("train", "validation", "test"):
        if split in loaded:
            dataset = loaded[split]
            missing = [column for column in columns.wanted if column not in dataset.column_names]
            if missing:
                raise UserError(f"Dataset {data_args.dataset_name!r} has no column {', '.join(missing)}.")
            raw.splits[split] = dataset.select_columns(columns.wanted)
            label_type = dataset.data.schema.field(columns.label).type
            forms = {pa.types.is_integer(label_type): "int", pa.types.is_list(label_type): "list"}
            raw.label_forms[split] = forms.get(True, "text")
    if "train" not in raw.splits:
        raise UserError(f"Dataset {data_args.dataset_name!r} has no train split.")


class ReleaseMappedPages(TrainerCallback):
    """Drops the pages of the memory-mapped datasets from the resident set every ``every`` steps and after each
    evaluation. Each example a batch reads faults in the pages around it (the kernel maps 64 kB around a fault),
    which stay counted in the process's memory: 100 steps of random batches from a 10-million-row split held
    about 1 GB that way. The pages stay in the page cache; reading them again costs a page fault."""

    def __init__(self, folders: set[Path], every: int = 10):
        self.folders, self.every = folders, every

    def release(self) -> None:
        for folder in self.folders:
            release_mapped_pages(folder)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.release()

    def on_evaluate(self, args, state, control, **kwargs):
        self.release()
