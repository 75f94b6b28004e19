"""Data files, record by record: the line-numbered row reader, the row checks, and bad rows.

Every file is read in bounded pieces and never whole. The fast readers (fast_readers.py) handle clean files, and
any row they cannot judge sends the file to the row reader here, which parses it in Python, line by line, so that
each bad row is named by file and line, or, with ``bad_rows: skip``, left out and recorded. Only files with a
problem pay for that.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from finetune.errors import UserError

logger = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".txt": "txt"}
BAD_ROWS_FILE = "bad_rows.jsonl"  # in output_dir: the rows left out with bad_rows: skip
BLOCK_BYTES = 16 << 20  # bytes of text parsed at a time
BATCH_ROWS = 10_000  # rows per Arrow batch on the row reader and for parquet
INTEGER = r"^\s*-?[0-9]+\s*$"
LABEL_KINDS = ("str", "int", "list")  # a label: a name, an integer, or (multi-label) a list of them


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


# The row reader: (line number, record) pairs, streamed.


def iter_lines(path: Path, bad_rows: BadRows) -> Iterator[tuple[int, str]]:
    """The numbered lines of a file (see numbered_lines)."""
    with open(path, "rb") as handle:
        yield from numbered_lines(handle, path, bad_rows)


def numbered_lines(
    handle: Iterable[bytes], source: str | Path, bad_rows: BadRows, start: int = 0
) -> Iterator[tuple[int, str]]:
    """The numbered lines of a binary stream, each with its line end. Lines end at \\n, \\r\\n or \\r only (not at
    U+2028 and the other characters ``str.splitlines`` ends lines at); a byte-order mark is dropped; a line of
    invalid UTF-8 is a bad row and read as an empty line, so that the numbers of the lines after it stay right.
    ``start``: the number of lines before the stream (a block of a file)."""
    number = start
    for raw in handle:
        if number == 0:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            number += 1
            bad_rows.report(source, number, f"not valid UTF-8 ({error.reason}). Save the file as UTF-8.")
            yield number, ""
            continue
        for line in io.StringIO(text, newline="").readlines() if "\r" in text.rstrip("\r\n") else [text]:
            number += 1
            yield number, line


def iter_records(
    path: str | Path,
    kind: str,
    bad_rows: BadRows | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> Iterator[tuple[int, dict]]:
    """The records of a file with the line (or row, for parquet and JSON arrays) each starts on.

    txt files hold one ``text<TAB>label`` example a line, and give them the keys ``text_column`` and
    ``label_column``.
    """
    path, bad_rows = Path(path), bad_rows or BadRows()
    if kind == "parquet":
        number = 0
        for batch in parquet_batches(path):
            for record in batch.to_pylist():
                number += 1
                yield number, record
        return
    if kind == "json" and first_character(path) == "[":
        yield from json_array_records(path, bad_rows)
        return
    yield from records_from_lines(iter_lines(path, bad_rows), kind, path, bad_rows, text_column, label_column)


def records_from_lines(
    lines: Iterable[tuple[int, str]],
    kind: str,
    source: str | Path,
    bad_rows: BadRows,
    text_column: str = "text",
    label_column: str = "label",
) -> Iterator[tuple[int, dict]]:
    """The records of a csv, tsv, jsonl or txt (text<TAB>label) stream of numbered lines."""
    path = source
    if kind in ("csv", "tsv"):
        yield from delimited_records(lines, "," if kind == "csv" else "\t", source, bad_rows)
        return
    for number, line in lines:
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if kind == "txt":
            text, tab, label = line.rpartition("\t")
            if tab:
                yield number, {text_column: text, label_column: label}
            else:
                bad_rows.report(path, number, "expected text<TAB>label, found no tab.")
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            bad_rows.report(path, number, f"not valid JSON ({error.msg}).")
            continue
        if isinstance(record, dict):
            yield number, record
        else:
            bad_rows.report(path, number, f"expected a JSON object, found {type(record).__name__}.")


def first_character(path: Path) -> str:
    """The first character of a text file that is not white space (after a byte-order mark), or ''."""
    with open(path, "rb") as handle:
        start = handle.read(4096).removeprefix(codecs.BOM_UTF8).lstrip()
    return start[:1].decode("latin-1")


def parquet_batches(path: Path, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of a parquet file; a file pyarrow cannot read is the user's to fix."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        if columns is not None:
            missing = [column for column in columns if column not in parquet.schema_arrow.names]
            if missing:
                raise UserError(
                    f"{path}: no column {', '.join(map(repr, missing))} (found: {', '.join(parquet.schema_arrow.names)})."
                    " Set text_column / label_column to the names your file uses."
                )
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"{path}: not a readable parquet file ({error}).") from None


def json_array_records(path: Path, bad_rows: BadRows) -> Iterator[tuple[int, dict]]:
    """The objects of a file holding one JSON array, decoded one at a time from a bounded buffer; each is numbered
    by its place in the array."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8-sig") as handle:
        buffer, position, lines_before, at_end, number = "", 0, 0, False, 0

        def refill() -> None:
            nonlocal buffer, position, lines_before, at_end
            lines_before += buffer.count("\n", 0, position)
            more = handle.read(BLOCK_BYTES)
            at_end = not more
            buffer, position = buffer[position:] + more, 0

        def skip_space() -> None:
            nonlocal position
            while True:
                while position < len(buffer) and buffer[position].isspace():
                    position += 1
                if position < len(buffer) or at_end:
                    return
                refill()

        try:
            skip_space()
            if buffer[position : position + 1] != "[":
                raise UserError(f"{path}: a .json file holds JSON lines or one JSON array.")
            position += 1
            while True:
                skip_space()
                if buffer[position : position + 1] == "]":
                    return
                if number and buffer[position : position + 1] == ",":
                    position += 1
                    skip_space()
                try:
                    record, end = decoder.raw_decode(buffer, position)
                except json.JSONDecodeError as error:
                    if not at_end:
                        refill()
                        continue
                    line = lines_before + buffer.count("\n", 0, error.pos) + 1
                    raise UserError(f"{path}, line {line}: not valid JSON ({error.msg}).") from None
                if end == len(buffer) and not at_end:  # a number or literal may go on in the next block
                    refill()
                    continue
                position, number = end, number + 1
                if isinstance(record, dict):
                    yield number, record
                else:
                    bad_rows.report(path, number, f"expected a JSON object, found {type(record).__name__}.")
        except UnicodeDecodeError as error:
            raise UserError(f"{path}: not valid UTF-8 ({error.reason}). Save the file as UTF-8.") from None


def delimited_records(
    lines: Iterable[tuple[int, str]], delimiter: str, source: Path, bad_rows: BadRows
) -> Iterator[tuple[int, dict]]:
    """Rows of a csv or tsv file with a header, numbered by the line they start on. After a bad row (more fields
    than the header, a quote never closed) reading goes on at the line after the one where it starts."""
    upcoming = iter(lines)
    replay: deque[tuple[int, str]] = deque()
    consumed: list[tuple[int, str]] = []  # the lines of the row being read

    def feed() -> Iterator[str]:
        while True:
            item = replay.popleft() if replay else next(upcoming, None)
            if item is None:
                return
            consumed.append(item)
            yield item[1]

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    header = None
    while True:
        consumed.clear()
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if not consumed:
                return
            bad_rows.report(source, consumed[0][0], f"{error}; is a quote left open?")
            replay.extendleft(reversed(consumed[1:]))
            reader = csv.reader(feed(), delimiter=delimiter, strict=True)
            continue
        number = consumed[0][0] if consumed else 0
        if not any(value.strip() for value in row):
            continue
        if header is None:
            header = row
        elif len(row) > len(header):
            reason = f"more fields than the header has columns ({', '.join(header)})."
            bad_rows.report(source, number, reason + " Quote texts that contain the delimiter.")
        else:
            yield number, dict(zip(header[: len(row)], row, strict=True))  # a short row lacks keys


# Checking records and turning them into Arrow


def row_problem(record: dict, columns: Columns) -> str | None:
    """What makes a row unusable: a missing or empty column, a text that is not text, a label list with an item
    that is not a label. An empty label is a valid one (no label) where ``columns.label_may_be_empty``."""
    for column in columns.wanted:
        value = record.get(column)
        empty_allowed = column == columns.label and columns.label_may_be_empty
        if value is None or (isinstance(value, str) and not value.strip() and not empty_allowed):
            return f"empty {column!r}." if column in record else f"no {column!r}."
        if column != columns.label and not isinstance(value, str):
            return f"{column!r} must be text, found {value!r}."
        if column == columns.label and isinstance(value, list):
            wrong = [item for item in value if label_kind(item) not in ("str", "int") or not str(item).strip()]
            if wrong:
                return f"label list {value!r} holds {wrong[0]!r}; its items must be label names or integers."
    return None


def label_kind(label) -> str:
    return "int" if isinstance(label, int) and not isinstance(label, bool) else type(label).__name__


@dataclass
class Columns:
    """Which columns a file must have: the text column(s) and, for labelled data, the label column."""

    texts: list[str]
    label: str | None = None
    label_may_be_empty: bool = False  # multi-label data with a label_separator: an empty label means no label

    @property
    def wanted(self) -> list[str]:
        return self.texts + ([self.label] if self.label else [])


def checked_records(
    path: Path, kind: str, columns: Columns, bad_rows: BadRows, label_kinds: Counter | None = None
) -> Iterator[tuple[int, dict]]:
    """The usable records of a file; each bad one is reported. A file whose first rows all lack a column is an
    error naming the columns it has. With ``label_kinds`` (counts from a first pass over the file), a label of
    another type than most is a bad row."""
    usual = label_kinds.most_common(1)[0][0] if label_kinds else None
    first: list[tuple[int, dict]] = []
    records = iter_records(path, kind, bad_rows, columns.texts[0], columns.label or "label")
    for number, record in records:
        first.append((number, record))
        if len(first) == BATCH_ROWS:
            break
    missing = [column for column in columns.wanted if first and not any(column in record for _, record in first)]
    if missing:
        raise UserError(
            f"{path}: no column {', '.join(map(repr, missing))} (found: {', '.join(map(str, first[0][1]))}). "
            "Set text_column / label_column to the names your file uses."
        )
    for number, record in [*first, *records]:
        problem = row_problem(record, columns)
        if problem:
            bad_rows.report(path, number, problem)
            continue
        if usual is not None:
            label = record[columns.label]
            if label_kind(label) != usual:
                reason = f"label {label!r} is {label_kind(label)}, but most labels are {usual}: the label column mixes types"
                bad_rows.report(path, number, reason + "; use all strings or all integers.")
                continue
        yield number, record


def file_label_kinds(path: Path, kind: str, columns: Columns) -> Counter | None:
    """How many usable rows have each label type (a first pass over the file; bad rows are reported later)."""
    if not columns.label:
        return None
    label_kinds = Counter(
        label_kind(record[columns.label]) for _, record in checked_records(path, kind, columns, BadRows("skip"))
    )
    if label_kinds and label_kinds.most_common(1)[0][0] not in LABEL_KINDS:
        raise UserError(
            f"{path}: labels must be strings, integers or lists of them, found {label_kinds.most_common(1)[0][0]}."
        )
    return label_kinds


def usable_record_lines(path: str | Path, kind: str, columns: Columns) -> Iterator[int]:
    """The line (row, for parquet and JSON arrays) of each usable record of a file, in order: the rows that
    reading the file keeps with bad_rows: skip, so the n-th line given is that of the n-th row of its dataset."""
    path = Path(path)
    label_kinds = file_label_kinds(path, kind, columns)
    for number, _ in checked_records(path, kind, columns, BadRows("skip"), label_kinds):
        yield number


def record_starts(path: str | Path, kind: str) -> list[int]:
    """The first line of every record of a line-based file, bad ones too, in order (for copying records whole)."""
    skipped = BadRows("skip")
    starts = [number for number, _ in iter_records(path, kind, skipped)]
    return sorted(starts + [row["line"] for row in skipped.rows])


def row_reader_batches(path: Path, kind: str, columns: Columns, bad_rows: BadRows) -> Iterator[pa.Table]:
    """Arrow batches of the usable rows, read record by record: the slow reader, which names every bad row."""
    label_kinds = file_label_kinds(path, kind, columns)
    values: dict[str, list] = {column: [] for column in columns.wanted}
    for _, record in checked_records(path, kind, columns, bad_rows, label_kinds):
        for column in columns.wanted:
            values[column].append(record[column])
        if len(values[columns.wanted[0]]) == BATCH_ROWS:
            yield arrow_batch(values, columns)
            values = {column: [] for column in columns.wanted}
    if values[columns.wanted[0]]:
        yield arrow_batch(values, columns)


def arrow_batch(values: dict[str, list], columns: Columns) -> pa.Table:
    """Checked rows as Arrow: texts as strings, labels as strings, 64-bit integers or lists of strings."""
    types = {column: pa.string() for column in columns.texts}
    if columns.label:
        first = values[columns.label][0]
        if isinstance(first, list):
            types[columns.label] = pa.list_(pa.string())
            values = {**values, columns.label: [[str(item) for item in items] for items in values[columns.label]]}
        else:
            types[columns.label] = pa.int64() if isinstance(first, int) else pa.string()
    return pa.table({column: pa.array(values[column], types[column]) for column in columns.wanted})
