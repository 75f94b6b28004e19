"""Cache entries on disk: where the cache is, manifests, the saved tokenizers and the prepared-data indexes.

Each tokenized split is ``tokenized-{split}-{fingerprint}.arrow`` (the ``datasets`` cache file, or one file per
process with preprocessing_num_workers) with ``tokenized-{split}-{fingerprint}.json`` beside it: the fingerprint's
inputs in readable form (finetune/data/keys.py), the data files that used it, rows, size, when it was created and
last used. The tokenizer that made it is saved under ``tokenizers/{identity}/`` so that ``inspect`` can decode
examples (and a warm run can load it). ``prepared-{key}.json`` maps the inputs of a whole run's data preparation
to its tokenizer, labels and entries (finetune/data/prepared.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from finetune.files import write_json_atomically

ENTRY_PREFIX = "tokenized-"
PREPARED_PREFIX = "prepared-"
TOKENIZERS_DIR = "tokenizers"  # the same folder as finetune.data.keys.TOKENIZERS_DIR
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
        "data_files": [readable_inputs["data_file"]] if readable_inputs.get("data_file") else [],
        "rows": len(dataset),
        "columns": {name: str(feature) for name, feature in dataset.features.items()},
        "files": [path.name for path in files],
        "size_bytes": sum(path.stat().st_size for path in files),
        "created": timestamp,
        "last_used": timestamp,
    }
    write_json_atomically(manifest_path(cache_dir, key), manifest)


def record_use(cache_dir: Path, key: str, data_file: str | None = None) -> bool:
    """Updates an entry's last-used time on a hit, and adds the data file that used it to its ``data_files`` (files
    with the same bytes share an entry); False when it has no readable manifest."""
    return record_last_use(manifest_path(cache_dir, key), data_file)


def record_last_use(path: Path, data_file: str | None = None) -> bool:
    """Sets the last-used time of a manifest or prepared-data index; False when it is missing or unreadable."""
    manifest = read_manifest(path)
    if manifest is None:
        return False
    manifest["last_used"] = now()
    if data_file and "inputs" in manifest and "splits" not in manifest:
        users = manifest.get("data_files") or [manifest["inputs"].get("data_file")]
        manifest["data_files"] = list(dict.fromkeys([*filter(None, users), str(Path(data_file).resolve())]))
    write_json_atomically(path, manifest)
    return True


def prepared_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{PREPARED_PREFIX}{key}.json"


def read_prepared(path: Path) -> dict | None:
    """A prepared-data index (see finetune/data/prepared.py), or None when it is missing or not one."""
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
