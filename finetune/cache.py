"""The tokenized-data cache: a manifest beside every entry, hit/miss explained, and `finetune cache`.

    finetune cache list [--json] [--cache_dir DIR]
    finetune cache inspect KEY [--cache_dir DIR]
    finetune cache clean (--all | --older-than DAYS | --orphans | --max-size 500MB) [--dry-run] [--cache_dir DIR]

Each tokenized split is ``tokenized-{split}-{fingerprint}.arrow`` (the ``datasets`` cache file) with
``tokenized-{split}-{fingerprint}.json`` beside it: the fingerprint's inputs in readable form, rows, size,
when it was created and last used. The tokenizer that made it is saved under ``tokenizers/{identity}/`` so
that ``inspect`` can decode examples (and a warm run can load it). ``prepared-{key}.json`` maps the inputs of
a whole run's data preparation to its tokenizer, labels and entries (finetune/prepared.py); ``clean`` removes
it with any entry it names, and as an orphan once an entry or its tokenizer is gone. The key of an entry is ``{split}-{fingerprint}``; any unique prefix of
it, or of the fingerprint, names the entry. ``--cache_dir`` means what it means in the training config; the
default is the ``datasets`` cache (``HF_DATASETS_CACHE``), and either way entries live in its ``finetune/``
folder. ``clean`` removes only files it knows as cache files inside that folder, never follows a symlink out
of it, and never removes a file because a manifest names it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from finetune.checkpoints import write_json_atomically
from finetune.errors import UserError
from finetune.model_card import file_sha256

ENTRY_PREFIX = "tokenized-"
PREPARED_PREFIX = "prepared-"
TOKENIZERS_DIR = "tokenizers"
# datasets writes a map's output to tempfile.NamedTemporaryFile(dir=cache_dir) (prefix "tmp") and renames it
# when done; our own manifests are written to "*.tmp" and renamed. Either left behind means an interrupted run.
TEMPORARY = re.compile(r"^tmp\w+$|\.tmp$")
STALE = "its data file no longer exists"
DANGLING = "prepared-data index whose entries or tokenizer are gone"
SHARD = re.compile(r"_\d{5}_of_\d{5}$")  # the suffix datasets gives each process's file when num_proc > 1
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def cache_directory(cache_dir: str | Path | None = None) -> Path:
    """Where tokenized splits live: ``cache_dir`` (as in the training config) else the datasets cache, plus finetune/."""
    if cache_dir:
        return Path(cache_dir) / "finetune"
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "finetune"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def manifest_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{ENTRY_PREFIX}{key}.json"


def arrow_files(cache_dir: Path, key: str) -> list[Path]:
    """The Arrow files of an entry: one, or one per process when it was tokenized with num_proc > 1."""
    return sorted(cache_dir.glob(f"{ENTRY_PREFIX}{key}*.arrow"))


def read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "key" in manifest else None


def disk_size(path: Path) -> int:
    """Bytes on disk of a file or folder; a symlink counts as itself, never as what it points to."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(item.lstat().st_size for item in path.rglob("*") if item.is_symlink() or item.is_file())


def entry_key_of(dataset) -> str | None:
    """The key of the cache entry a tokenized split was loaded from or written to; None when it has no file."""
    files = getattr(dataset, "cache_files", None)
    if not files:
        return None
    name = Path(files[0]["filename"]).name
    if not (name.startswith(ENTRY_PREFIX) and name.endswith(".arrow")):
        return None
    return SHARD.sub("", name.removeprefix(ENTRY_PREFIX).removesuffix(".arrow"))


# Writing and reading manifests during tokenization


def describe_tokenizer(tokenizer, identity: str) -> dict:
    """What a reader needs to recognise a tokenizer; the identity hash is what the fingerprint uses."""
    return {
        "identity": identity,
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "name_or_path": getattr(tokenizer, "name_or_path", "") or None,
        "saved_in": f"{TOKENIZERS_DIR}/{identity}",
    }


def describe_inputs(inputs: dict, source: str | None, tokenizer) -> dict:
    """The fingerprint's inputs in readable form, with the data file and its content hash added."""
    readable = {"data_file": None, "data_sha256": None}
    if source and Path(source).is_file():
        readable = {"data_file": str(Path(source).resolve()), "data_sha256": file_sha256(source)}
    elif source:
        readable = {"data_file": source, "data_sha256": None}
    return {**readable, **inputs, "tokenizer": describe_tokenizer(tokenizer, inputs["tokenizer"])}


def save_tokenizer(cache_dir: Path, tokenizer, identity: str) -> None:
    """Keeps a copy of the tokenizer so that `cache inspect` can decode; one per identity, shared by entries."""
    target = cache_dir / TOKENIZERS_DIR / identity
    if target.is_dir():
        return
    temporary = target.with_name(f"{identity}.{os.getpid()}.tmp")
    tokenizer.save_pretrained(temporary)
    try:
        temporary.rename(target)
    except OSError:  # another process saved the same tokenizer first
        shutil.rmtree(temporary, ignore_errors=True)


def write_manifest(cache_dir: Path, key: str, split: str, readable_inputs: dict, tokenizer, dataset) -> None:
    """Records a new entry after its Arrow files are written."""
    save_tokenizer(cache_dir, tokenizer, readable_inputs["tokenizer"]["identity"])
    files = arrow_files(cache_dir, key)
    timestamp = now()
    manifest = {
        "key": key,
        "split": split,
        "fingerprint": key.removeprefix(f"{split}-"),
        "inputs": readable_inputs,
        "rows": len(dataset),
        "columns": {name: str(feature) for name, feature in dataset.features.items()},
        "files": [path.name for path in files],
        "size_bytes": sum(path.stat().st_size for path in files),
        "created": timestamp,
        "last_used": timestamp,
    }
    write_json_atomically(manifest_path(cache_dir, key), manifest)


def record_use(cache_dir: Path, key: str) -> bool:
    """Updates an entry's last-used time on a hit; False when it has no readable manifest."""
    return record_last_use(manifest_path(cache_dir, key))


def record_last_use(path: Path) -> bool:
    """Sets the last-used time of a manifest or prepared-data index; False when it is missing or unreadable."""
    manifest = read_manifest(path)
    if manifest is None:
        return False
    manifest["last_used"] = now()
    write_json_atomically(path, manifest)
    return True


def prepared_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{PREPARED_PREFIX}{key}.json"


def read_prepared(path: Path) -> dict | None:
    """A prepared-data index (see finetune/prepared.py), or None when it is missing or not one."""
    index = read_manifest(path)
    return index if index is not None and isinstance(index.get("splits"), dict) and "tokenizer" in index else None


def write_prepared(
    cache_dir: Path,
    key: str,
    inputs: dict,
    tokenizer: dict,
    labels: list,
    entries: dict[str, str],
    bad_rows: list[dict] = (),
) -> None:
    """Maps a prepared-data key to the saved tokenizer, the label list, the entry key of each split and the rows
    that bad_rows: skip left out (so that a run which loads the index reports them too)."""
    timestamp = now()
    index = {
        "key": key,
        "inputs": inputs,
        "tokenizer": tokenizer,
        "labels": labels,
        "splits": entries,
        "bad_rows": list(bad_rows),
        "created": timestamp,
        "last_used": timestamp,
    }
    write_json_atomically(prepared_path(cache_dir, key), index)


def nearest_entry(cache_dir: Path, split: str, data_file: str | None, key: str) -> dict | None:
    """The most recently used other entry for the same split of the same data file."""
    candidates = [
        manifest
        for path in cache_dir.glob(f"{ENTRY_PREFIX}{split}-*.json")
        if (manifest := read_manifest(path))
        and manifest["key"] != key
        and manifest.get("inputs", {}).get("data_file") == data_file
    ]
    return max(candidates, key=lambda manifest: manifest.get("last_used", ""), default=None)


def short(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def tokenizer_label(tokenizer: dict) -> str:
    """E.g. ``all-MiniLM-L6-v2 30522 tokens (3fa2c1)``, or the class name when it has no name."""
    name = Path(tokenizer.get("name_or_path") or "").name or tokenizer.get("class", "tokenizer")
    return f"{name} {tokenizer.get('vocab_size')} tokens ({tokenizer.get('identity', '')[:6]})"


def explain_changes(old: dict, new: dict) -> list[str]:
    """What differs between two entries' readable inputs, e.g. ``max_length 128 -> 256``."""
    changes = []
    data_name = Path(new.get("data_file") or "data").name
    if old.get("data_sha256") != new.get("data_sha256"):
        changes.append(
            f"content of {data_name} changed (sha256 {str(old.get('data_sha256'))[:8]} -> "
            f"{str(new.get('data_sha256'))[:8]})"
        )
    elif old.get("rows_hash") != new.get("rows_hash"):
        changes.append(f"rows selected from {data_name} changed (max_*_samples or the validation split)")
    if old.get("tokenizer", {}).get("identity") != new["tokenizer"]["identity"]:
        changes.append(f"tokenizer {tokenizer_label(old.get('tokenizer', {}))} -> {tokenizer_label(new['tokenizer'])}")
    for name in ("max_length", "padding", "truncation_side", "labels", "text_column", "text_pair_column"):
        if old.get(name) != new.get(name):
            changes.append(f"{name} {short(old.get(name))} -> {short(new.get(name))}")
    if old.get("package_version") != new.get("package_version"):
        changes.append(f"finetune version {old.get('package_version')} -> {new.get('package_version')}")
    return changes


def explain_miss(cache_dir: Path, key: str, split: str, readable_inputs: dict) -> str:
    """Why a split is not in the cache, compared with the nearest earlier entry for the same file and split."""
    data_file = readable_inputs.get("data_file")
    earlier = nearest_entry(cache_dir, split, data_file, key)
    if earlier is None:
        return f"no earlier entry for the {split} split of {data_file or 'this data'}"
    changes = explain_changes(earlier["inputs"], readable_inputs)
    since = f" (vs {earlier['key']}, last used {local_time(earlier.get('last_used'))})"
    return "; ".join(changes or ["an input the manifest does not show changed"]) + since


# Scanning the cache folder


@dataclass
class Entry:
    key: str
    manifest: dict
    paths: list[Path]  # the manifest and the Arrow files, all inside the cache folder
    size: int

    @property
    def data_file(self) -> str | None:
        return self.manifest.get("inputs", {}).get("data_file")

    @property
    def data_file_missing(self) -> bool:
        data_sha256 = self.manifest.get("inputs", {}).get("data_sha256")
        return bool(self.data_file and data_sha256 and not Path(self.data_file).is_file())

    @property
    def tokenizer_identity(self) -> str | None:
        return self.manifest.get("inputs", {}).get("tokenizer", {}).get("identity")


@dataclass
class Orphan:
    path: Path
    reason: str
    size: int


@dataclass
class PreparedIndex:
    """A prepared-data index whose entries and tokenizer are all in the cache."""

    path: Path
    index: dict
    size: int

    @property
    def key(self) -> str:
        return self.index["key"]

    @property
    def entry_keys(self) -> set[str]:
        return set(self.index["splits"].values())


@dataclass
class CacheState:
    directory: Path
    entries: list[Entry] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    tokenizers: dict[str, int] = field(default_factory=dict)  # identity -> bytes, those entries use
    prepared: list[PreparedIndex] = field(default_factory=list)

    @property
    def stale(self) -> list[Entry]:
        """Entries whose data file no longer exists: nothing will use them again."""
        return [entry for entry in self.entries if entry.data_file_missing]

    @property
    def total_size(self) -> int:
        entries = sum(entry.size for entry in self.entries) + sum(index.size for index in self.prepared)
        return entries + sum(self.tokenizers.values()) + sum(orphan.size for orphan in self.orphans)

    def dependents(self, entries: list[Entry]) -> list[PreparedIndex]:
        """The prepared-data indexes that name one of these entries: without it they are of no use."""
        keys = {entry.key for entry in entries}
        return [index for index in self.prepared if index.entry_keys & keys]


def scan(directory: Path) -> CacheState:
    """Reads the cache folder: entries (a manifest and its Arrow files) and orphans.

    Orphans are temporary files of interrupted runs, Arrow files without a manifest, manifests without
    Arrow files, saved tokenizers no entry uses and prepared-data indexes whose entries or tokenizer are
    gone (entries whose data file is gone are ``stale``). Files
    whose names the cache never uses are left out: they are not ours to list or remove.
    """
    state = CacheState(directory)
    if not directory.is_dir():
        return state
    claimed: set[Path] = set()
    for path in sorted(directory.glob(f"{ENTRY_PREFIX}*.json")):
        manifest = read_manifest(path)
        if manifest is None or path.name != f"{ENTRY_PREFIX}{manifest['key']}.json":
            state.orphans.append(Orphan(path, "unreadable manifest", disk_size(path)))
            continue
        files = arrow_files(directory, manifest["key"])
        if not files:
            state.orphans.append(Orphan(path, "manifest without its Arrow file", disk_size(path)))
            continue
        claimed.update(files)
        state.entries.append(
            Entry(manifest["key"], manifest, [path, *files], sum(disk_size(item) for item in [path, *files]))
        )
    for path in sorted(directory.iterdir()):
        if path.name.startswith(ENTRY_PREFIX) and path.suffix == ".arrow" and path not in claimed:
            state.orphans.append(Orphan(path, "Arrow file without a manifest", disk_size(path)))
        elif TEMPORARY.search(path.name):
            state.orphans.append(Orphan(path, "temporary file of an interrupted run", disk_size(path)))
    used = {entry.tokenizer_identity for entry in state.entries}
    tokenizers = directory / TOKENIZERS_DIR
    for path in sorted(tokenizers.iterdir()) if tokenizers.is_dir() else []:
        if path.name in used and path.is_dir() and not path.is_symlink():
            state.tokenizers[path.name] = disk_size(path)
        elif TEMPORARY.search(path.name):
            state.orphans.append(Orphan(path, "temporary file of an interrupted run", disk_size(path)))
        else:
            state.orphans.append(Orphan(path, "saved tokenizer no entry uses", disk_size(path)))
    keys = {entry.key for entry in state.entries}
    for path in sorted(directory.glob(f"{PREPARED_PREFIX}*.json")):
        index = read_prepared(path)
        if index is None or path.name != f"{PREPARED_PREFIX}{index['key']}.json":
            state.orphans.append(Orphan(path, "unreadable prepared-data index", disk_size(path)))
        elif set(index["splits"].values()) <= keys and index["tokenizer"].get("identity") in state.tokenizers:
            state.prepared.append(PreparedIndex(path, index, disk_size(path)))
        else:
            state.orphans.append(Orphan(path, DANGLING, disk_size(path)))
    return state


def find_entry(state: CacheState, key: str) -> Entry:
    """The entry whose key, or fingerprint, starts with ``key``."""
    matches = [entry for entry in state.entries if entry.key.startswith(key) or entry.key.split("-", 1)[1] == key]
    matches = matches or [entry for entry in state.entries if entry.key.split("-", 1)[1].startswith(key)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"No cache entry {key!r} in {state.directory}. `finetune cache list` shows the keys.")
    raise UserError(f"{key!r} matches {len(matches)} entries ({', '.join(e.key for e in matches)}); give more of it.")


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
        raise UserError(f"--max-size {text!r}: give a size such as 500MB, 2GB or 800KiB.")
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


def local_time(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromisoformat(timestamp).astimezone().strftime("%Y-%m-%d %H:%M")


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
        raise UserError("Say what to remove: --all, --older-than DAYS, --orphans or --max-size SIZE (and --dry-run).")
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
    """--older-than: a number of days from 0 to 36500 (a century)."""
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
        "--cache_dir", help="The cache_dir of the training config (default: the datasets cache, HF_DATASETS_CACHE)."
    )
    parser = argparse.ArgumentParser(prog="finetune cache", description="Show and clean the tokenized-data cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", parents=[common], help="entries, their inputs and sizes, orphans, totals")
    listing.add_argument("--json", action="store_true", help="print one JSON object with an `entries` list")
    inspecting = commands.add_parser("inspect", parents=[common], help="an entry's manifest, columns and examples")
    inspecting.add_argument("key", help="an entry's key from `finetune cache list`, or a unique prefix of it")
    cleaning = commands.add_parser("clean", parents=[common], help="remove entries and orphans")
    cleaning.add_argument("--all", action="store_true", help="remove every entry, saved tokenizer and orphan")
    cleaning.add_argument("--older-than", type=days, metavar="DAYS", help="remove entries unused for DAYS days")
    cleaning.add_argument("--orphans", action="store_true", help="remove leftovers of interrupted runs, "
                          "entries whose data file is gone and saved tokenizers no entry uses")  # fmt: skip
    cleaning.add_argument("--max-size", metavar="SIZE", help="remove least recently used entries until under SIZE")
    cleaning.add_argument("--dry-run", action="store_true", help="print what would be removed and remove nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(sys.argv[1:] if argv is None else argv)
    state = scan(cache_directory(args.cache_dir))
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
