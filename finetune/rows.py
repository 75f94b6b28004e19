"""Rows in and out of ``finetune predict`` and ``finetune evaluate``: the texts to classify, read from a file or
standard input and handed over in chunks, the prediction columns made from probabilities (also ``finetune
serve``'s), and the output rows (input columns plus prediction columns) written as jsonl, csv or tsv."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from finetune.data.readers import BadRows, file_format, iter_lines, iter_records, numbered_lines, records_from_lines
from finetune.errors import UserError

CHUNK_ROWS = 16_384  # rows read, classified and written at a time: memory stays flat in the number of rows
OUTPUT_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv"}


def every_line_has_a_tab(path: Path) -> bool:
    """Whether every non-blank line of a txt file holds a tab: then it is the training format text<TAB>label."""
    with open(path, "rb") as handle:
        return all(b"\t" in line for line in handle if line.strip())


def text_records(lines, text_column: str, tabbed: bool | None) -> Iterator[tuple[int, dict]]:
    """One text a line, or text<TAB>label; ``tabbed`` None decides by the first CHUNK_ROWS lines (for stdin)."""
    lines = iter(lines)
    first = []
    if tabbed is None:
        first = [item for item in itertools.islice(lines, CHUNK_ROWS) if item[1].strip()]
        tabbed = bool(first) and all("\t" in line for _, line in first)
    for number, line in itertools.chain(first, lines):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        text, tab, label = line.rpartition("\t")
        yield number, {text_column: text, "label": label} if tabbed and tab else {text_column: line}


def read_texts(path: str, text_columns: list[str], kind: str | None = None) -> Iterator[tuple[int, dict]]:
    """Streams the rows to classify (no labels needed) as (line or row number, record) pairs.

    Args:
        path: A data file, or ``-`` for standard input.
        text_columns: The text column, and the text pair column if the model takes pairs; every row needs them.
        kind: The format (csv, tsv, json, jsonl, parquet, txt); by default the file's extension, txt for stdin.
            A txt file holds one text a line, stored under ``text_columns[0]``; blank lines are skipped. When
            every line has a tab it is the training format ``text<TAB>label`` instead, and keeps its label (on
            standard input, decided by the first lines).
    """
    bad_rows = BadRows()  # predict has no bad_rows: skip; the first bad row is an error
    if path == "-":
        source, kind = "<stdin>", kind or "txt"
        if kind == "parquet":
            raise UserError("parquet cannot be read from standard input; pass the file's path.")
        lines = numbered_lines(sys.stdin.buffer, source, bad_rows)
        records = text_records(lines, text_columns[0], None) if kind == "txt" else None
        records = records or records_from_lines(lines, kind, source, bad_rows, text_columns[0])
    else:
        source = Path(path)
        if not source.is_file():
            raise UserError(f"Input file {source} does not exist.")
        kind = kind or file_format(source)
        if kind == "txt":
            records = text_records(iter_lines(source, bad_rows), text_columns[0], every_line_has_a_tab(source))
        else:
            records = iter_records(source, kind, bad_rows, text_columns[0])
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
        yield number, record


def chunks(records: Iterator[tuple[int, dict]], size: int = CHUNK_ROWS) -> Iterator[list[dict]]:
    """Lists of up to ``size`` records, read by a background thread one chunk ahead of the caller (reading and
    parsing overlap the model's work, which releases the GIL)."""
    ahead: queue.Queue = queue.Queue(maxsize=1)

    def read() -> None:
        try:
            while chunk := [record for _, record in itertools.islice(records, size)]:
                ahead.put(chunk)
            ahead.put(None)
        except BaseException as error:  # handed to the caller, which raises it
            ahead.put(error)

    threading.Thread(target=read, daemon=True, name="finetune-read").start()
    while (chunk := ahead.get()) is not None:
        if isinstance(chunk, BaseException):
            raise chunk
        yield chunk


def merge_rows(records: list[dict], predictions: list[dict], added: list[str]) -> list[dict]:
    """Input rows with the prediction columns after them; an input column of the same name becomes input_<name>
    (input_input_<name> if that is taken too, and so on)."""
    rows = []
    for record, prediction in zip(records, predictions, strict=True):
        row = {}
        for name, value in record.items():
            kept = name
            while kept in added or (kept != name and kept in record):
                kept = f"input_{kept}"
            row[kept] = value
        rows.append({**row, **prediction})
    return rows


def output_format(output: str | None) -> str:
    if output is None or output == "-":
        return "jsonl"
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise UserError(f"--output {output}: unsupported extension {suffix!r}; use .jsonl, .csv or .tsv.")
    return OUTPUT_FORMATS[suffix]


class RowWriter:
    """Writes output rows as they come: jsonl, csv or tsv by the output's extension, stdout (jsonl) without one.

    A file is written under a temporary name and renamed when ``close`` is called after the last row, so that
    an earlier output survives a run that fails. csv cells hold lists as JSON; the csv header holds the columns
    of the first rows written, and a column that appears only later is left out (with a warning).
    """

    def __init__(self, output: str | None):
        self.kind = output_format(output)
        self.target = None if output is None or output == "-" else Path(output)
        self.partial = None if self.target is None else self.target.with_name(f".{self.target.name}.{os.getpid()}.tmp")
        self.stream = sys.stdout if self.partial is None else open(self.partial, "w", encoding="utf-8", newline="")
        self.csv = None
        self.warned = False

    def write(self, rows: list[dict]) -> None:
        if self.kind == "jsonl":
            self.stream.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            return
        if self.csv is None:
            fieldnames = list(dict.fromkeys(name for row in rows for name in row))
            delimiter = "," if self.kind == "csv" else "\t"
            self.csv = csv.DictWriter(self.stream, fieldnames=fieldnames, delimiter=delimiter, extrasaction="ignore")
            self.csv.writeheader()
        for row in rows:
            if not self.warned and not row.keys() <= set(self.csv.fieldnames):
                print(f"warning: columns {sorted(row.keys() - set(self.csv.fieldnames))} appear only after the first "
                      f"rows and are left out of the {self.kind} output; use .jsonl to keep them", file=sys.stderr)  # fmt: skip
                self.warned = True
            self.csv.writerow(
                {
                    name: json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value
                    for name, value in row.items()
                }
            )

    def close(self, complete: bool) -> None:
        """Finishes the output; a file replaces the earlier one only when ``complete``."""
        if self.partial is None:
            self.stream.flush()
            return
        self.stream.close()
        if complete:
            self.partial.replace(self.target)
        else:
            self.partial.unlink(missing_ok=True)


def prediction_columns(
    probabilities: np.ndarray, id2label: dict[int, str], top_k: int = 1, threshold: float | None = None
) -> tuple[list[str], list[dict]]:
    """The columns prediction adds to each row: label and score, or with a multi-label ``threshold`` labels and
    scores (every label over it, most likely first); plus top_k (``top_k`` > 1) or probabilities (0)."""
    names = ["label", "score"] if threshold is None else ["labels", "scores"]
    names += ["probabilities"] if top_k == 0 else ["top_k"] if top_k > 1 else []
    columns = []
    for row in probabilities:
        if threshold is None:
            best = int(row.argmax())
            values = {"label": id2label[best], "score": float(row[best])}
        else:
            chosen = [int(index) for index in np.argsort(-row, kind="stable") if row[index] > threshold]
            values = {
                "labels": [id2label[index] for index in chosen],
                "scores": [float(row[index]) for index in chosen],
            }
        if top_k == 0:
            values["probabilities"] = {id2label[index]: float(p) for index, p in enumerate(row)}
        elif top_k > 1:
            ranked = np.argsort(-row, kind="stable")[:top_k]
            values["top_k"] = [{"label": id2label[int(index)], "score": float(row[index])} for index in ranked]
        columns.append(values)
    return names, columns


def parse_top_k(value: str) -> int:
    if value == "all":
        return 0
    try:
        top_k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {value!r}") from None
    if top_k < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (all) or more, got {top_k}")
    return top_k
