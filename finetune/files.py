"""Small file helpers the commands share: JSON written atomically, a file's sha256, an output path checked before
any work is done."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from finetune.errors import UserError


def fsync(path: Path) -> None:
    """Flushes a file (or, on POSIX, a directory entry) to disk, so a marker written after it never lands first."""
    if path.is_dir() and os.name != "posix":
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json_atomically(path: Path, value: dict, durable: bool = False) -> None:
    """Writes JSON to a temporary file, then renames it into place: a reader (another process) never sees half a
    file, and a write cut short (a kill, a full disk) leaves the previous file or none.

    Args:
        durable: Also flush the file and its folder entry to disk before returning.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)
    if durable:
        fsync(path.parent)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def writable_file(path: str | Path, option: str = "--output") -> Path:
    """Checks, before any work is done, that ``path`` can be written as a file: it is not a directory, and its
    folder exists or is created now."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory; name a file inside it instead.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{option} {path}: cannot create the folder {path.parent} ({error.strerror}).") from None
    return path
