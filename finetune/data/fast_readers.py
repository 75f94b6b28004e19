"""The fast readers: a clean file into Arrow batches without a Python object per row.

pyarrow's csv and json parsers, parquet batches, and vectorised line splitting for txt read a file in bounded
blocks, and ``pyarrow.compute`` checks each block's columns. Any row they cannot judge (broken csv or JSON, invalid
UTF-8, a missing or empty value, a label of another type) raises NeedsRowReader, and the file (or, for jsonl and
txt, that block alone) is read again by the row reader in readers.py, which names each bad row.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from finetune.data.readers import (
    BLOCK_BYTES,
    LABEL_KINDS,
    BadRows,
    Columns,
    arrow_batch,
    first_character,
    label_kind,
    numbered_lines,
    parquet_batches,
    records_from_lines,
    row_problem,
)


class NeedsRowReader(Exception):
    """A fast reader met a row it cannot judge; the file is read again by the row reader."""


class BlockNeedsRowReader(NeedsRowReader):
    """A block of whole lines holds a row the fast reader cannot judge; that block alone can be read row by row."""


def text_blocks(path: Path) -> Iterator[bytes]:
    """The file's bytes in blocks of whole lines (about BLOCK_BYTES each), without a byte-order mark. A line that
    ends in \\r alone is NeedsRowReader: lines are counted by \\n."""
    with open(path, "rb") as handle:
        rest = handle.read(len(codecs.BOM_UTF8)).removeprefix(codecs.BOM_UTF8)
        while True:
            more = handle.read(BLOCK_BYTES)
            block = rest + more
            end = block.rfind(b"\n") + 1 if more else len(block)  # at the end of the file: all that is left
            if more and end == 0:
                rest = block
                continue
            if block.count(b"\r", 0, end) != block.count(b"\r\n", 0, end):
                raise NeedsRowReader("a line that ends in \\r alone")
            if end:
                yield block[:end]
            if not more:
                return
            rest = block[end:]


def checked_table(table: pa.Table, columns: Columns) -> pa.Table:
    """The wanted columns, text as strings and labels as strings, 64-bit integers or lists of strings;
    NeedsRowReader when a value is missing, empty or of another type."""
    result = {}
    for column in columns.wanted:
        if column not in table.column_names:
            raise NeedsRowReader(f"no column {column!r}")
        values = table.column(column)
        if values.null_count:
            raise BlockNeedsRowReader(f"a missing {column!r}")
        if column == columns.label and (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)):
            values = checked_label_lists(values)
        elif pa.types.is_integer(values.type) and column == columns.label:
            values = values.cast(pa.int64())
        elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            values = values.cast(pa.string())
            may_be_empty = column == columns.label and columns.label_may_be_empty
            if len(values) and not may_be_empty and pc.any(pc.equal(pc.utf8_trim_whitespace(values), "")).as_py():
                raise BlockNeedsRowReader(f"an empty {column!r}")
        else:
            raise BlockNeedsRowReader(f"{column!r} of type {values.type}")
        result[column] = values
    return pa.table(result)


def checked_label_lists(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Lists of labels (multi-label data) as lists of strings; an item that is missing, empty or neither a string
    nor an integer is NeedsRowReader. An empty list is a valid label: no label."""
    items = pc.list_flatten(values)
    if items.null_count:
        raise BlockNeedsRowReader("a missing label in a list")
    if pa.types.is_integer(items.type):
        return values.cast(pa.list_(pa.string()))
    if not (pa.types.is_string(items.type) or pa.types.is_large_string(items.type)):
        raise BlockNeedsRowReader(f"label lists of type {values.type}")
    if len(items) and pc.any(pc.equal(pc.utf8_trim_whitespace(items), "")).as_py():
        raise BlockNeedsRowReader("an empty label in a list")
    return values.cast(pa.list_(pa.string()))


def jsonl_block(block: bytes, columns: Columns) -> pa.Table:
    import pyarrow.json as pj

    label_types = [pa.string(), pa.int64(), pa.list_(pa.string()), pa.list_(pa.int64())]
    for label_type in label_types if columns.label else [None]:
        fields = [(column, pa.string()) for column in columns.texts]
        fields += [(columns.label, label_type)] if columns.label else []
        options = pj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")
        try:
            table = pj.read_json(io.BytesIO(block), parse_options=options)
        except (pa.ArrowInvalid, UnicodeDecodeError):
            continue
        return checked_table(table, columns)
    raise BlockNeedsRowReader("a line pyarrow's JSON reader does not take")


def txt_block(block: bytes, columns: Columns) -> pa.Table:
    if len(columns.texts) > 1:
        raise NeedsRowReader("txt files hold one text a line")
    try:
        text = pa.array([block], pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        raise BlockNeedsRowReader("invalid UTF-8") from None
    lines = pc.list_flatten(pc.split_pattern(text, "\n"))
    lines = pc.replace_substring_regex(lines, r"\r$", "")
    lines = lines.filter(pc.not_equal(pc.utf8_trim_whitespace(lines), ""))
    if columns.label is None:
        return checked_table(pa.table({columns.texts[0]: lines}), columns)
    parts = pc.split_pattern(lines, "\t", max_splits=1, reverse=True)
    if len(parts) and pc.any(pc.less(pc.list_value_length(parts), 2)).as_py():
        raise BlockNeedsRowReader("a line without a tab")
    texts, labels = pc.list_element(parts, 0), pc.list_element(parts, 1)
    return checked_table(pa.table({columns.texts[0]: texts, columns.label: labels}), columns)


def line_batches(path: Path, kind: str, columns: Columns, bad_rows: BadRows | None) -> Iterator[pa.Table]:
    """jsonl and txt, a block of whole lines at a time. A block after the first with a row the fast reader cannot
    judge is read row by row on its own (with ``bad_rows``), so that only such blocks become Python objects; a
    problem in the first block (a misnamed column, say) sends the whole file to the row reader."""
    parse = txt_block if kind == "txt" else jsonl_block
    lines_before = 0
    for index, block in enumerate(text_blocks(path)):
        try:
            table = parse(block, columns)
        except BlockNeedsRowReader:
            if index == 0 or bad_rows is None:
                raise
            table = row_block(block, lines_before, path, kind, columns, bad_rows)
        if table is not None:
            yield table
        lines_before += block.count(b"\n")


def row_block(
    block: bytes, lines_before: int, path: Path, kind: str, columns: Columns, bad_rows: BadRows
) -> pa.Table | None:
    """The usable rows of one block, read record by record; each bad row is reported with its line in the file.
    Labels of two types are NeedsRowReader: the whole file's majority decides which are bad."""
    lines = numbered_lines(io.BytesIO(block), path, bad_rows, start=lines_before)
    records = records_from_lines(lines, kind, path, bad_rows, columns.texts[0], columns.label or "label")
    values: dict[str, list] = {column: [] for column in columns.wanted}
    for number, record in records:
        problem = row_problem(record, columns)
        if problem:
            bad_rows.report(path, number, problem)
            continue
        for column in columns.wanted:
            values[column].append(record[column])
    if not values[columns.wanted[0]]:
        return None
    if columns.label:
        kinds = {label_kind(label) for label in values[columns.label]}
        if len(kinds) > 1 or not kinds <= set(LABEL_KINDS):
            raise NeedsRowReader(f"labels of type {', '.join(sorted(kinds))}")
    return arrow_batch(values, columns)


def delimited_batches(path: Path, columns: Columns, delimiter: str) -> Iterator[pa.Table]:
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types={column: pa.string() for column in columns.wanted}, include_columns=columns.wanted
        ),
    )
    for batch in reader:
        yield checked_table(pa.Table.from_batches([batch]), columns)


def parquet_table_batches(path: Path, columns: Columns) -> Iterator[pa.Table]:
    for batch in parquet_batches(path, columns.wanted):
        yield checked_table(pa.Table.from_batches([batch]), columns)


def fast_batches(path: Path, kind: str, columns: Columns, bad_rows: BadRows | None = None) -> Iterator[pa.Table]:
    """The file as Arrow batches of the wanted columns, when every row is usable; else NeedsRowReader. With
    ``bad_rows``, a jsonl or txt block with bad rows after the first is read row by row on its own instead."""
    try:
        if kind in ("csv", "tsv"):
            yield from delimited_batches(path, columns, "," if kind == "csv" else "\t")
        elif kind == "parquet":
            yield from parquet_table_batches(path, columns)
        elif kind in ("txt", "jsonl") or first_character(path) != "[":
            yield from line_batches(path, "txt" if kind == "txt" else "jsonl", columns, bad_rows)
        else:  # one JSON array: decoded object by object
            raise NeedsRowReader("a JSON array")
    except pa.ArrowInvalid as error:  # pyarrow's csv reader: a broken row, invalid UTF-8, a missing column
        raise NeedsRowReader(str(error)) from None
