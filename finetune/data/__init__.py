"""Data: local files -> Arrow datasets, label maps, splits, tokenization into the datasets cache, the collator.

    fast_readers.py  clean files into Arrow batches (pyarrow's csv and json readers, parquet, txt lines)
    readers.py    the line-numbered row reader and row checks, for files with bad rows
    splits.py     train / validation / test, the label list (lists of labels: multi-label), the validation split
    keys.py       every cache key: the prepared-data key and the fingerprint of a tokenized split
    tokenize.py   Dataset.map into the cache, with a manifest per entry
    prepared.py   a warm run: tokenizer and tokenized splits straight from the cache
    sampler.py    length-grouped batches, lengths from Arrow
    collate.py    dynamic padding, multi-hot labels

Files are read here rather than by ``datasets.load_dataset`` so that every error names the file and line, and
so that the rows tokenized are always the file's current content (``load_dataset`` keys local files by
modification time and can serve stale rows).
"""

from finetune.data.collate import ClassificationCollator
from finetune.data.keys import content_hash, tokenizer_identity
from finetune.data.readers import BAD_ROWS_FILE, FORMATS, BadRows, file_format, iter_records, write_bad_rows
from finetune.data.sampler import ShuffledLengthGroupedSampler, token_lengths
from finetune.data.splits import LABELS, RawData, iter_texts, load_raw_splits, read_examples
from finetune.data.tokenize import encode, tokenize_splits

__all__ = [
    "BAD_ROWS_FILE",
    "FORMATS",
    "LABELS",
    "BadRows",
    "ClassificationCollator",
    "RawData",
    "ShuffledLengthGroupedSampler",
    "content_hash",
    "encode",
    "file_format",
    "iter_records",
    "iter_texts",
    "load_raw_splits",
    "read_examples",
    "token_lengths",
    "tokenize_splits",
    "tokenizer_identity",
    "write_bad_rows",
]
