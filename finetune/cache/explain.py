"""Why a tokenized split missed the cache: what changed since the last entry for the same file and split."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from finetune.cache.store import ENTRY_PREFIX, read_manifest


def nearest_entry(cache_dir: Path, split: str, data_file: str | None, key: str) -> dict | None:
    """The most recently used other entry for the same split of the same data file."""
    candidates = [
        manifest
        for path in cache_dir.glob(f"{ENTRY_PREFIX}{split}-*.json")
        if (manifest := read_manifest(path))
        and manifest["key"] != key
        and data_file in (manifest.get("data_files") or [manifest.get("inputs", {}).get("data_file")])
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
    elif old.get("selection") != new.get("selection"):
        changes.append(f"rows selected from {data_name} changed (max_*_samples, bad_rows or the validation split)")
    if old.get("tokenizer", {}).get("identity") != new["tokenizer"]["identity"]:
        changes.append(f"tokenizer {tokenizer_label(old.get('tokenizer', {}))} -> {tokenizer_label(new['tokenizer'])}")
    for name in (
        "max_length",
        "padding",
        "truncation_side",
        "long_text",
        "window_stride",
        "labels",
        "text_column",
        "text_pair_column",
        "label_column",
    ):
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


def local_time(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromisoformat(timestamp).astimezone().strftime("%Y-%m-%d %H:%M")
