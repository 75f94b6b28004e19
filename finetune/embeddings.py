"""Pretrained static vectors for TextCNN's embeddings: word2vec/fastText text files, or .npy with a vocabulary file.

Text format: one token and its numbers per line, separated by spaces, optionally after a ``count dim`` header line,
optionally gzipped (``.gz``). ``.npy``: a 2-D array whose row i is the vector of line i of ``NAME.vocab`` (or
``NAME.vocab.txt``) beside it. Such files run to gigabytes: they are read line by line, and only the vectors of
the model's vocabulary are kept (a float array of vocabulary size by dimension), never the whole file.

File tokens are matched after the tokenizer's own normalisation (NFKC, lowercase), the first (most frequent, as
these files are sorted) winning when several normalise alike.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset

from finetune.errors import UserError

logger = logging.getLogger(__name__)

VOCABULARY_SUFFIXES = (".vocab", ".vocab.txt")
UNKNOWN_WARNING = 0.2  # the share of [UNK] training tokens from which a run warns


def open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="strict", newline="\n")
    return path.open(encoding="utf-8", errors="strict", newline="\n")


def vocabulary_file(path: Path) -> Path:
    for suffix in VOCABULARY_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    names = " or ".join(path.with_suffix(suffix).name for suffix in VOCABULARY_SUFFIXES)
    raise UserError(f"{path}: a .npy file of vectors needs its tokens, one per line, in {names} beside it.")


class Vectors:
    """A vectors file, read lazily: its dimension, its tokens in order, and the vectors of chosen tokens."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"pretrained_embeddings: {self.path} does not exist.")
        self.is_npy = self.path.suffix == ".npy"
        if self.is_npy:
            self.array = np.load(self.path, mmap_mode="r", allow_pickle=False)
            if self.array.ndim != 2:
                raise UserError(f"{self.path}: expected a 2-D array of vectors, got shape {self.array.shape}.")
            self.dimension = int(self.array.shape[1])
        else:
            self.dimension = self.text_dimension()

    def text_dimension(self) -> int:
        with open_text(self.path) as file:
            first = file.readline().rstrip("\n").split(" ")
            if len(first) == 2 and all(part.isdigit() for part in first):  # the `count dim` header
                return int(first[1])
            if len(first) < 2:
                raise UserError(f"{self.path}, line 1: expected a token and its numbers separated by spaces.")
            return len(first) - 1 - (first[-1] == "")  # some writers end each line with a space

    def lines(self) -> Iterator[tuple[int, str, str]]:
        """(line number, token, the rest of the line) of every vector, the header skipped."""
        if self.is_npy:
            with vocabulary_file(self.path).open(encoding="utf-8") as file:
                for index, line in enumerate(file):
                    yield index, line.rstrip("\r\n"), ""
            return
        with open_text(self.path) as file:
            try:
                for number, line in enumerate(file, start=1):
                    token, _, rest = line.rstrip("\n").partition(" ")
                    if number == 1 and token.isdigit() and rest.strip().isdigit():
                        continue
                    yield number, token, rest
            except UnicodeDecodeError as error:
                raise UserError(f"{self.path}: not UTF-8 text ({error}); is it a binary word2vec file?") from None

    def tokens(self) -> Iterator[str]:
        return (token for _, token, _ in self.lines())

    def vector(self, number: int, rest: str) -> np.ndarray:
        if self.is_npy:
            return np.asarray(self.array[number], dtype=np.float32)
        values = np.array(rest.split(), dtype=np.float32)
        if len(values) != self.dimension:
            raise UserError(
                f"{self.path}, line {number}: {len(values)} numbers where the file's vectors have {self.dimension}."
            )
        return values

    def lookup(self, vocabulary: dict[str, int], normalize: Callable[[str], str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of the vocabulary's tokens found in the file and their vectors, one pass over the file."""
        ids, vectors, found = [], [], set()
        for number, token, rest in self.lines():
            key = normalize(token)
            index = vocabulary.get(key)
            if index is None or key in found:
                continue
            found.add(key)
            ids.append(index)
            vectors.append(self.vector(number, rest))
            if len(found) == len(vocabulary):
                break
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dimension), dtype=np.float32)
        return np.array(ids, dtype=np.int64), np.stack(vectors)


def usable_tokens(vectors: Vectors, tokenizer, limit: int) -> list[str]:
    """The first ``limit`` distinct tokens of the file (normalised) that the tokenizer keeps whole."""
    backend = tokenizer.backend_tokenizer
    tokens: list[str] = []
    seen: set[str] = set()
    for token in vectors.tokens():
        if len(tokens) >= limit:
            break
        key = normalized(backend, token)
        if not key or key in seen:
            continue
        pieces = backend.pre_tokenizer.pre_tokenize_str(key) if backend.pre_tokenizer else [(key, None)]
        if len(pieces) == 1 and pieces[0][0] == key:
            seen.add(key)
            tokens.append(key)
    return tokens


def vectors_vocabulary(model_args) -> list[str]:
    """pretrained_vocabulary_size: the vectors file's first tokens that the TextCNN tokenizer keeps whole."""
    if not (model_args.pretrained_embeddings and model_args.pretrained_vocabulary_size):
        return []
    from finetune.tokenizer import build_vocab_tokenizer

    skeleton = build_vocab_tokenizer([], level=model_args.tokenizer_level, lowercase=model_args.lowercase)
    return usable_tokens(Vectors(model_args.pretrained_embeddings), skeleton, model_args.pretrained_vocabulary_size)


def normalized(backend, token: str) -> str:
    return backend.normalizer.normalize_str(token) if backend.normalizer else token


def token_counts(dataset: Dataset, vocab_size: int) -> np.ndarray:
    """How often each token id occurs in a tokenized split, counted chunk by chunk on the Arrow column."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for chunk in dataset.data.column("input_ids").chunks:
        counts += np.bincount(pc.list_flatten(chunk).to_numpy(), minlength=vocab_size)[:vocab_size]
    return counts


def load_pretrained_embeddings(model, tokenizer, path: str, train: Dataset, freeze: bool) -> None:
    """Copies the file's vectors into the model's embeddings, logs the coverage, and freezes them if asked."""
    vectors = Vectors(path)
    embeddings = model.get_input_embeddings()
    backend = tokenizer.backend_tokenizer
    vocabulary = {token: index for token, index in tokenizer.get_vocab().items() if index != tokenizer.pad_token_id}
    ids, values = vectors.lookup(vocabulary, lambda token: normalized(backend, token))
    with torch.no_grad():
        embeddings.weight[torch.from_numpy(ids)] = torch.from_numpy(values).to(embeddings.weight.dtype)
    counts = token_counts(train, embeddings.num_embeddings)
    counts[tokenizer.pad_token_id] = 0
    covered = counts[ids].sum() if len(ids) else 0
    logger.info(
        "pretrained_embeddings %s: vectors for %d of %d vocabulary tokens, covering %.1f%% of the %d training "
        "tokens (occurrences)%s",
        path,
        len(ids),
        len(vocabulary),
        100 * covered / max(counts.sum(), 1),
        counts.sum(),
        "; embeddings frozen" if freeze else "",
    )
    embeddings.weight.requires_grad_(not freeze)


def log_unknown_tokens(splits: dict[str, Dataset], tokenizer, model_args) -> None:
    """How many tokens of the training and validation texts the vocabulary reads as [UNK]; a warning saying what to
    change when they are many. A vocabulary built from the training texts covers them (but for rare tokens): the
    validation share tells how much of unseen text it reads."""
    if tokenizer.unk_token_id is None:  # byte-level tokenizers (GPT-2, Llama, ...) read every text
        return
    shares = {}
    for split in ("train", "validation"):
        if split in splits:
            counts = token_counts(splits[split], len(tokenizer))
            if tokenizer.pad_token_id not in (None, tokenizer.unk_token_id):  # padding: max_length stores it
                counts[tokenizer.pad_token_id] = 0
            shares[split] = (int(counts[tokenizer.unk_token_id]), int(counts.sum()))
    checkpoint = model_args.model_name_or_path
    logger.info(
        "vocabulary %s: %s tokens; read as [UNK]: %s",
        f"of {checkpoint}" if checkpoint else "built from the training texts",
        f"{len(tokenizer):,}",
        ", ".join(
            f"{unknown:,} of {total:,} {split} tokens ({percent(unknown, total)})"
            for split, (unknown, total) in shares.items()
        ),
    )
    worst = max(shares, key=lambda split: shares[split][0] / max(shares[split][1], 1))
    unknown, total = shares[worst]
    if unknown >= UNKNOWN_WARNING * max(total, 1):
        logger.warning(
            "%s of the %s tokens are [UNK], which the model cannot tell apart: %s",
            percent(unknown, total),
            worst,
            unknown_hint(model_args, worst),
        )


def percent(part: int, whole: int) -> str:
    return f"{100 * part / max(whole, 1):.1f}%"


def unknown_hint(model_args, split: str) -> str:
    if model_args.model_type == "pretrained":
        if model_args.extend_vocabulary:
            return "a larger extend_vocabulary, or a lower min_frequency, adds more of them as new tokens."
        return "extend_vocabulary: N adds the N most frequent of them as new tokens (docs/pretrained.md)."
    if model_args.model_name_or_path:
        return "the checkpoint's vocabulary is kept; a TextCNN without model_name_or_path builds one from these texts."
    unit = "words" if model_args.tokenizer_level == "word" else "characters"
    if split == "train":
        remedy = f"a lower min_frequency or a larger max_vocab_size keeps more {unit}."
    else:
        remedy = (
            f"they are {unit} that the training texts lack, or have fewer than min_frequency times: more training "
            f"texts, a lower min_frequency, or pretrained_embeddings with pretrained_vocabulary_size (docs/pretrained.md)."
        )
    if model_args.tokenizer_level == "word":
        return (
            "tokenizer_level word splits texts at spaces and punctuation; for text written without spaces (Chinese, "
            f"Japanese), tokenizer_level: char; else {remedy}"
        )
    return remedy
