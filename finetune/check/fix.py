"""``finetune check --fix DIR``: cleaned copies of the data files, the inputs left as they are.

Left out of the copies: every row of a text with conflicting labels; a row whose text is in a later split
(train rows also in validation or test, validation rows also in test: the evaluation splits stay whole); and the
second and later copies of a text within a file. Each copy keeps its file's format, columns and every other row
byte for byte (csv, tsv, json lines and txt are copied line by line; parquet and JSON arrays are written again).
``DIR/fix.json`` lists each row left out with its file, line and reason, and ``DIR/config.yaml`` is the config
with the file names pointing at the copies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from finetune.check.scan import Scan
from finetune.data.readers import (
    BadRows,
    file_format,
    first_character,
    json_array_records,
    record_starts,
    usable_record_lines,
)
from finetune.data.splits import data_columns
from finetune.errors import UserError
from finetune.files import write_json_atomically

FIX_REPORT = "fix.json"
FIXED_CONFIG = "config.yaml"
SPLIT_KEYS = {"train": "train_file", "validation": "validation_file", "test": "test_file"}
LINE_PIECES = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def rows_to_drop(scan: Scan) -> dict[str, dict[int, str]]:
    """For each split, the rows to leave out and why."""
    names = list(scan.splits)
    hashes = {name: scan.splits[name].hashes for name in names}
    all_hashes = np.concatenate(list(hashes.values()))
    all_labels = np.concatenate([scan.splits[name].labels for name in names]).astype(np.uint64)
    pairs = np.unique(np.stack([all_hashes, all_labels], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != 0]
    values, counts = np.unique(pairs[:, 0], return_counts=True)
    conflicting = values[counts > 1]
    drops: dict[str, dict[int, str]] = {name: {} for name in names}
    for index, name in enumerate(names):
        split_hashes = hashes[name]
        for row in np.flatnonzero(np.isin(split_hashes, conflicting)).tolist():
            drops[name][row] = "conflicting labels"
        for later in names[index + 1 :]:
            for row in np.flatnonzero(np.isin(split_hashes, hashes[later]) & (split_hashes != 0)).tolist():
                drops[name].setdefault(row, f"text also in {later}")
        _, first = np.unique(split_hashes, return_index=True)
        repeated = np.ones(len(split_hashes), dtype=bool)
        repeated[first] = False
        for row in np.flatnonzero(repeated & (split_hashes != 0)).tolist():
            drops[name].setdefault(row, f"duplicate within {name}")
    return drops


def copy_name(source: str, split: str, taken: set[str]) -> str:
    name = Path(source).name
    if name in taken:
        name = f"{split}-{name}"
    taken.add(name)
    return name


def write_fixed(scan: Scan, data_args, config_values: dict, fix_dir: str | Path) -> dict:
    """Writes the cleaned copies, fix.json and config.yaml into ``fix_dir``; returns fix.json's content."""
    fix_dir = Path(fix_dir)
    drops = rows_to_drop(scan)
    by_file: dict[str, dict[int, str]] = {}
    splits_of: dict[str, list[str]] = {}
    for split, split_drops in drops.items():
        split_scan = scan.splits[split]
        if split_scan.source is None:
            raise UserError("--fix works on data files; a dataset from the hub has none to copy.")
        splits_of.setdefault(split_scan.source, []).append(split)
        rows = np.array(sorted(split_drops), dtype=np.int64)
        for row, place in zip(rows.tolist(), split_scan.file_rows(rows).tolist(), strict=True):
            by_file.setdefault(split_scan.source, {})[place] = split_drops[row]
    fix_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    report = {"files": {}, "removed": []}
    for source, splits in splits_of.items():
        target = fix_dir / copy_name(source, splits[0], taken)
        if target.resolve() == Path(source).resolve():
            raise UserError(f"--fix {fix_dir}: the copy of {source} would replace it; choose another folder.")
        places = by_file.get(source, {})
        lines = place_lines(source, data_args, places)
        copy_without(source, target, set(lines.values()))
        report["files"][source] = {"copy": str(target), "removed": len(places)}
        report["removed"] += [
            {"file": source, "line": lines[place], "reason": places[place]} for place in sorted(places)
        ]
        for split in splits:
            config_values[SPLIT_KEYS[split]] = str(target)
    write_json_atomically(fix_dir / FIX_REPORT, report)
    import yaml

    (fix_dir / FIXED_CONFIG).write_text(yaml.safe_dump(config_values, allow_unicode=True, sort_keys=False), "utf-8")
    return report


def place_lines(source: str, data_args, places: dict[int, str]) -> dict[int, int]:
    """The line of each of a file's usable rows named in ``places``."""
    found: dict[int, int] = {}
    if not places:
        return found
    last = max(places)
    for place, line in enumerate(usable_record_lines(source, file_format(source), data_columns(data_args))):
        if place in places:
            found[place] = line
        if place >= last:
            break
    return found


def numbered_raw_lines(path: Path):
    """The lines of a file as bytes, numbered as the readers number them (ends at \\n, \\r\\n and \\r)."""
    number = 0
    with open(path, "rb") as handle:
        for raw in handle:
            pieces = [raw]
            if b"\r" in raw.rstrip(b"\r\n"):
                try:
                    raw.decode("utf-8")
                    pieces = LINE_PIECES.findall(raw)
                except UnicodeDecodeError:  # the readers count such a line as one
                    pass
            for piece in pieces:
                number += 1
                yield number, piece


def copy_without(source: str, target: Path, lines: set[int]) -> None:
    """Copies a data file, leaving out the records that start on ``lines`` (rows, for parquet and JSON arrays)."""
    kind = file_format(source)
    path = Path(source)
    temporary = target.with_name(f".{target.name}.tmp")
    if kind == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        with pq.ParquetWriter(temporary, parquet.schema_arrow) as writer:
            start = 0
            for batch in parquet.iter_batches():
                numbers = np.arange(start + 1, start + batch.num_rows + 1)
                start += batch.num_rows
                writer.write_batch(batch.filter(~np.isin(numbers, list(lines))))
    elif kind == "json" and first_character(path) == "[":
        with open(temporary, "w", encoding="utf-8") as out:
            out.write("[")
            written = 0
            for number, record in json_array_records(path, BadRows("skip")):
                if number not in lines:
                    out.write(("," if written else "") + "\n" + json.dumps(record, ensure_ascii=False))
                    written += 1
            out.write("\n]\n")
    else:
        starts = record_starts(path, kind)
        following = dict(zip(starts, [*starts[1:], None], strict=True))
        with open(temporary, "wb") as out:
            skip_until = 0  # lines below this number belong to a record left out
            for number, raw in numbered_raw_lines(path):
                if number in lines:
                    end = following.get(number)
                    skip_until = end if end is not None else float("inf")
                if number < skip_until:
                    continue
                out.write(raw)
    temporary.replace(target)
