"""The tokenized-data cache: entries with manifests (store.py), misses explained (explain.py), the folder read
(scan.py) and ``finetune cache list|inspect|clean`` (cli.py)."""

from finetune.cache.cli import main
from finetune.cache.explain import explain_miss
from finetune.cache.scan import CacheState, Entry, scan
from finetune.cache.store import (
    ENTRY_PREFIX,
    PREPARED_PREFIX,
    TOKENIZERS_DIR,
    arrow_files,
    cache_directory,
    entry_key_of,
    manifest_path,
    prepared_path,
    read_manifest,
    read_prepared,
    record_last_use,
    record_use,
    save_tokenizer,
    write_manifest,
    write_prepared,
)

__all__ = [
    "ENTRY_PREFIX",
    "PREPARED_PREFIX",
    "TOKENIZERS_DIR",
    "CacheState",
    "Entry",
    "arrow_files",
    "cache_directory",
    "entry_key_of",
    "explain_miss",
    "main",
    "manifest_path",
    "prepared_path",
    "read_manifest",
    "read_prepared",
    "record_last_use",
    "record_use",
    "save_tokenizer",
    "scan",
    "write_manifest",
    "write_prepared",
]
