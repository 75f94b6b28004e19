"""Reading the cache folder: entries, saved tokenizers, prepared-data indexes and orphans."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from finetune.cache.store import (
    DANGLING,
    ENTRY_PREFIX,
    PREPARED_PREFIX,
    TEMPORARY,
    TOKENIZERS_DIR,
    arrow_files,
    disk_size,
    read_manifest,
    read_prepared,
)
from finetune.errors import UserError


@dataclass
class Entry:
    key: str
    manifest: dict
    paths: list[Path]  # the manifest and the Arrow files, all inside the cache folder
    size: int

    @property
    def data_files(self) -> list[str]:
        """Every data file that used this entry (files with the same bytes share it)."""
        files = self.manifest.get("data_files") or [self.manifest.get("inputs", {}).get("data_file")]
        return [path for path in files if path]

    @property
    def data_file(self) -> str | None:
        """The data file to show: the first that still exists, else the first that used the entry."""
        files = self.data_files
        return next((path for path in files if Path(path).is_file()), files[0] if files else None)

    @property
    def data_file_missing(self) -> bool:
        """Every data file that used the entry is gone (a run on any of them would use it again)."""
        data_sha256 = self.manifest.get("inputs", {}).get("data_sha256")
        return bool(self.data_files and data_sha256 and not any(Path(path).is_file() for path in self.data_files))

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
