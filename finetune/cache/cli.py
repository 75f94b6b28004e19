"""`finetune cache`: list, inspect and clean the tokenized-data cache.

    finetune cache list [--json] [--data_cache_dir DIR]
    finetune cache inspect KEY [--data_cache_dir DIR]
    finetune cache clean (--all | --older_than DAYS | --orphans | --max_size 500MB) [--dry_run] [--data_cache_dir DIR]

Each tokenized split is ``tokenized-{split}-{fingerprint}.arrow`` (the ``datasets`` cache file) with
``tokenized-{split}-{fingerprint}.json`` beside it: the fingerprint's inputs in readable form, rows, size,
when it was created and last used. The tokenizer that made it is saved under ``tokenizers/{identity}/`` so
that ``inspect`` can decode examples (and a warm run can load it). ``prepared-{key}.json`` maps the inputs of
a whole run's data preparation to its tokenizer, labels and entries (finetune/data/prepared.py); ``clean`` removes
it with any entry it names, and as an orphan once an entry or its tokenizer is gone. The key of an entry is ``{split}-{fingerprint}``; any unique prefix of
it, or of the fingerprint, names the entry. ``--data_cache_dir`` (or, without it, ``--cache_dir``) means what it means in the training config; the
default is the ``datasets`` cache (``HF_DATASETS_CACHE``), and either way entries live in its ``finetune/``
folder. ``clean`` removes only files it knows as cache files inside that folder, never follows a symlink out
of it, and never removes a file because a manifest names it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from finetune.cache.explain import local_time, tokenizer_label
from finetune.cache.scan import CacheState, Entry, Orphan, find_entry, scan
from finetune.cache.store import SIZE, STALE, TOKENIZERS_DIR, cache_directory
from finetune.errors import UserError

# Formatting


def format_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """``500MB``, ``1.5G``, ``200KiB`` or a number of bytes; k/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024."""
    match = SIZE.match(text)
    if not match:
        raise UserError(f"--max_size {text!r}: give a size such as 500MB, 2GB or 800KiB.")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** " kmgt".index(unit.lower() or " "))


def display_path(path: str | None) -> str:
    """A data file path relative to the working directory when it is inside it."""
    if not path:
        return "-"
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


# Commands


def list_cache(state: CacheState, as_json: bool) -> None:
    if as_json:
        report = {
            "cache_dir": str(state.directory),
            "entries": [
                {**entry.manifest, "size_bytes": entry.size, "data_file_exists": not entry.data_file_missing}
                for entry in state.entries
            ],
            "tokenizers": [{"identity": name, "size_bytes": size} for name, size in state.tokenizers.items()],
            "prepared": [
                {
                    "key": index.key,
                    "splits": index.index["splits"],
                    "tokenizer": index.index["tokenizer"].get("identity"),
                    "labels": index.index.get("labels"),
                    "size_bytes": index.size,
                    "created": index.index.get("created"),
                    "last_used": index.index.get("last_used"),
                }
                for index in state.prepared
            ],
            "orphans": [{"path": str(o.path), "reason": o.reason, "size_bytes": o.size} for o in state.orphans]
            + [{"key": entry.key, "reason": STALE, "size_bytes": entry.size} for entry in state.stale],
            "total_bytes": state.total_size,
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    print(f"cache: {state.directory}")
    if state.entries:
        rows = [["KEY", "FILE", "SPLIT", "TOKENIZER", "MAX_LEN", "ROWS", "SIZE", "LAST USED"]]
        for entry in sorted(state.entries, key=lambda entry: entry.manifest.get("last_used", ""), reverse=True):
            inputs = entry.manifest.get("inputs", {})
            rows.append(
                [
                    entry.key,
                    display_path(entry.data_file) + (" (gone)" if entry.data_file_missing else ""),
                    entry.manifest.get("split", "?"),
                    tokenizer_label(inputs.get("tokenizer", {})),
                    str(inputs.get("max_length", "?")),
                    str(entry.manifest.get("rows", "?")),
                    format_size(entry.size),
                    local_time(entry.manifest.get("last_used")),
                ]
            )
        print(table(rows))
    else:
        print("no entries")
    for index in state.prepared:
        splits = ", ".join(index.index["splits"].values())
        print(f"prepared data: {index.key} -> {splits} (last used {local_time(index.index.get('last_used'))})")
    for orphan in state.orphans:
        print(f"orphan: {orphan.path.name} ({format_size(orphan.size)}): {orphan.reason}")
    for entry in state.stale:
        print(f"orphan: entry {entry.key} ({format_size(entry.size)}): {STALE} ({entry.data_file})")
    print(
        f"total: {len(state.entries)} entries, {len(state.tokenizers)} saved tokenizers, "
        f"{len(state.prepared)} prepared-data indexes, {len(state.orphans) + len(state.stale)} orphans, "
        f"{format_size(state.total_size)}"
    )


def inspect_entry(state: CacheState, key: str) -> None:
    entry = find_entry(state, key)
    print(json.dumps(entry.manifest, indent=2, ensure_ascii=False))
    from datasets import Dataset

    arrow = [path for path in entry.paths if path.suffix == ".arrow"]
    dataset = Dataset.from_file(str(arrow[0]))
    print("\ncolumns:")
    for name, feature in dataset.features.items():
        print(f"  {name}: {feature}")
    tokenizer, why_not = load_saved_tokenizer(state.directory, entry.tokenizer_identity)
    print(f"\nfirst examples of {arrow[0].name}" + (f" (token ids: {why_not})" if why_not else ", decoded:"))
    labels = dataset.features.get("labels")
    for index, row in enumerate(dataset.select(range(min(3, len(dataset))))):
        label = labels.int2str(row["labels"]) if hasattr(labels, "int2str") else row.get("labels")
        ids = row["input_ids"]
        text = tokenizer.decode(ids, skip_special_tokens=True) if tokenizer else str(ids)
        print(f"  [{index}] label={label} tokens={len(ids)}: {text}")


def load_saved_tokenizer(directory: Path, identity: str | None):
    """The tokenizer saved with an entry, or None and the reason it cannot be loaded."""
    folder = directory / TOKENIZERS_DIR / str(identity)
    if not identity or not folder.is_dir():
        return None, f"its tokenizer is not saved in {folder}"
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder), None
    except (OSError, ValueError) as error:
        return None, f"its tokenizer in {folder} does not load ({error})"


def select_for_removal(state: CacheState, args: argparse.Namespace) -> tuple[list[Entry], list[Orphan]]:
    """The entries and orphans that the clean options ask to remove."""
    if args.all:
        return list(state.entries), list(state.orphans)
    entries: list[Entry] = []
    if args.older_than is not None:
        limit = datetime.now(timezone.utc) - timedelta(days=args.older_than)
        entries += [e for e in state.entries if datetime.fromisoformat(e.manifest.get("last_used", "")) < limit]
    orphans = list(state.orphans) if args.orphans else []
    if args.orphans:
        entries += [entry for entry in state.stale if entry not in entries]
    if args.max_size is not None:
        limit = parse_size(args.max_size)
        for entry in sorted(state.entries, key=lambda entry: entry.manifest.get("last_used", "")):
            if state.total_size - freed_by(state, entries, orphans) <= limit:
                break
            if entry not in entries:
                entries.append(entry)
    return entries, orphans


def freed_by(state: CacheState, entries: list[Entry], orphans: list[Orphan]) -> int:
    """Bytes that removing these entries and orphans frees, with the tokenizers and indexes that only they need."""
    kept = {entry.tokenizer_identity for entry in state.entries if entry not in entries}
    tokenizers = sum(size for identity, size in state.tokenizers.items() if identity not in kept)
    indexes = sum(index.size for index in state.dependents(entries))
    return sum(entry.size for entry in entries) + sum(orphan.size for orphan in orphans) + tokenizers + indexes


def remove(directory: Path, path: Path, dry_run: bool) -> bool:
    """Removes one file or folder of the cache; refuses a path that resolves outside it (a symlink out)."""
    root = directory.resolve()
    if not path.resolve().is_relative_to(root) or path.resolve() == root:
        print(f"refused: {path} leads outside {directory}")
        return False
    if not dry_run:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return True


def clean_cache(state: CacheState, args: argparse.Namespace) -> None:
    if not (args.all or args.orphans or args.older_than is not None or args.max_size is not None):
        raise UserError("Say what to remove: --all, --older_than DAYS, --orphans or --max_size SIZE (and --dry_run).")
    entries, orphans = select_for_removal(state, args)
    verb = "would remove" if args.dry_run else "removed"
    freed = 0
    for entry in entries:
        if all([remove(state.directory, path, args.dry_run) for path in entry.paths]):
            freed += entry.size
            print(
                f"{verb} {entry.key} ({format_size(entry.size)}, last used {local_time(entry.manifest.get('last_used'))})"
            )
    for index in state.dependents(entries):
        if remove(state.directory, index.path, args.dry_run):
            freed += index.size
            print(f"{verb} {index.path.name} ({format_size(index.size)}): prepared-data index of removed entries")
    kept = {entry.tokenizer_identity for entry in state.entries if entry not in entries}
    for identity, size in state.tokenizers.items():
        if identity not in kept and remove(state.directory, state.directory / TOKENIZERS_DIR / identity, args.dry_run):
            freed += size
            print(f"{verb} saved tokenizer {identity} ({format_size(size)}), no entry left uses it")
    for orphan in orphans:
        if remove(state.directory, orphan.path, args.dry_run):
            freed += orphan.size
            print(f"{verb} {orphan.path.name} ({format_size(orphan.size)}): {orphan.reason}")
    print(f"{'would free' if args.dry_run else 'freed'} {format_size(freed)} in {state.directory}")


def days(value: str) -> float:
    """--older_than: a number of days from 0 to 36500 (a century)."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 36500:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected a number of days from 0 to 36500; got {value!r}")
    return number


def make_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data_cache_dir",
        help="The data_cache_dir of the training config (default: --cache_dir, else the datasets cache, "
        "HF_DATASETS_CACHE).",
    )
    common.add_argument(
        "--cache_dir", help="The cache_dir of the training config, for a config without data_cache_dir."
    )
    parser = argparse.ArgumentParser(prog="finetune cache", description="Show and clean the tokenized-data cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", parents=[common], help="entries, their inputs and sizes, orphans, totals")
    listing.add_argument("--json", action="store_true", help="print one JSON object with an `entries` list")
    inspecting = commands.add_parser("inspect", parents=[common], help="an entry's manifest, columns and examples")
    inspecting.add_argument("key", help="an entry's key from `finetune cache list`, or a unique prefix of it")
    cleaning = commands.add_parser("clean", parents=[common], help="remove entries and orphans")
    cleaning.add_argument("--all", action="store_true", help="remove every entry, saved tokenizer and orphan")
    cleaning.add_argument("--older_than", type=days, metavar="DAYS", help="remove entries unused for DAYS days")
    cleaning.add_argument("--orphans", action="store_true", help="remove leftovers of interrupted runs, "
                          "entries whose data file is gone and saved tokenizers no entry uses")  # fmt: skip
    cleaning.add_argument("--max_size", metavar="SIZE", help="remove least recently used entries until under SIZE")
    cleaning.add_argument("--dry_run", action="store_true", help="print what would be removed and remove nothing")
    return parser


# The hyphenated flags of earlier versions; every other command spells its flags with underscores.
RENAMED_FLAGS = {"--older-than": "--older_than", "--max-size": "--max_size", "--dry-run": "--dry_run"}


def renamed_flags(argv: list[str]) -> list[str]:
    """``argv`` with the old spellings replaced, and a note on stderr for each."""
    result = []
    for argument in argv:
        flag, equals, value = argument.partition("=")
        if flag in RENAMED_FLAGS:
            print(f"note: {flag} is now spelt {RENAMED_FLAGS[flag]}; the old spelling will go.", file=sys.stderr)
            argument = RENAMED_FLAGS[flag] + equals + value
        result.append(argument)
    return result


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(renamed_flags(sys.argv[1:] if argv is None else list(argv)))
    state = scan(cache_directory(args.data_cache_dir or args.cache_dir))
    if args.command == "list":
        list_cache(state, args.json)
    elif args.command == "inspect":
        inspect_entry(state, args.key)
    else:
        clean_cache(state, args)
    return 0


if __name__ == "__main__":
    from finetune.cli import run_command

    sys.exit(run_command(main, sys.argv[1:]))
