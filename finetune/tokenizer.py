"""A vocabulary tokenizer for TextCNN, built from the training texts with the `tokenizers` library.

Character level (the default) suits Chinese, where words are not separated by spaces; word level
splits on whitespace and punctuation. ``[PAD]`` is id 0 and ``[UNK]`` id 1. The result is a
``PreTrainedTokenizerFast``, so ``AutoTokenizer.from_pretrained(best_dir)`` loads it without this package.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

# Which way of building the tokenizer (part of the prepared-data key: a different build is a different tokenizer).
# 2: characters through a BPE model without merges instead of a regex split and WordLevel; same ids, faster.
BUILD_VERSION = 2
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
# Rust's char::is_whitespace (Unicode White_Space), where WhitespaceSplit cuts: these are never tokens.
WHITESPACE = [
    *range(0x9, 0xE),
    0x20,
    0x85,
    0xA0,
    0x1680,
    *range(0x2000, 0x200B),
    0x2028,
    0x2029,
    0x202F,
    0x205F,
    0x3000,
]
CODE_POINTS = 0x110000


def characters_as_bpe(trained: Tokenizer) -> Tokenizer:
    """The same character vocabulary as a BPE model without merges, which splits each whitespace-separated chunk
    into its characters: the same ids as splitting on ``Regex(".")`` first, in about half the time (a regex match
    per character is what the char-level tokenizer spent most of its time on)."""
    tokenizer = Tokenizer(models.BPE(vocab=trained.get_vocab(), merges=[], unk_token=UNK_TOKEN))
    tokenizer.normalizer = trained.normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = trained.decoder
    return tokenizer


def text_batches(texts: Iterable[str] | Iterable[list[str]], size: int = 10_000) -> Iterator[list[str]]:
    """Lists of texts, from an iterable of texts or of lists of texts."""
    batch: list[str] = []
    for item in texts:
        if isinstance(item, str):
            batch.append(item)
            if len(batch) == size:
                yield batch
                batch = []
        else:
            yield list(item)
    if batch:
        yield batch


def character_vocabulary(
    batches: Iterable[list[str]], normalizer, min_frequency: int, max_vocab_size: int
) -> dict[str, int]:
    """The character vocabulary that tokenizers' WordLevelTrainer learns after WhitespaceSplit and a split into
    characters (most frequent first, ties in code point order, special tokens first), counted with numpy: one
    normalizer call and one bincount per batch instead of a regex match per character."""
    counts = np.zeros(CODE_POINTS, dtype=np.int64)
    for batch in batches:
        # "\n" between texts: a separator that composes with nothing under NFKC and is white space.
        text = normalizer.normalize_str("\n".join(batch)) if normalizer else "\n".join(batch)
        counts += np.bincount(
            np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32), minlength=CODE_POINTS
        )
    counts[WHITESPACE] = 0
    characters = np.flatnonzero(counts >= max(min_frequency, 1))
    ranked = characters[np.lexsort((characters, -counts[characters]))]
    vocabulary = {PAD_TOKEN: 0, UNK_TOKEN: 1}
    for code in ranked[: max(max_vocab_size - len(vocabulary), 0)]:
        vocabulary[chr(code)] = len(vocabulary)
    return vocabulary


def build_vocab_tokenizer(
    texts: Iterable[str] | Iterable[list[str]],
    level: str = "char",
    min_frequency: int = 1,
    max_vocab_size: int = 30000,
    lowercase: bool = True,
    max_length: int = 128,
    extra_tokens: Iterable[str] = (),
) -> PreTrainedTokenizerFast:
    """Learns a character or word vocabulary from ``texts``, most frequent tokens first.

    Args:
        texts: The training texts, one by one or in lists (batches of a dataset).
        level: "char" or "word".
        min_frequency: Tokens seen fewer times become ``[UNK]``.
        max_vocab_size: Size limit, special tokens included.
        lowercase: Lowercase before counting (NFKC normalisation is always applied, which folds
            full-width Latin letters and punctuation into their ASCII forms).
        max_length: Stored as the tokenizer's model_max_length.
        extra_tokens: Tokens added after those of the texts while the vocabulary is below max_vocab_size (the
            first tokens of a pretrained vectors file, so that tokens never seen in training get a vector).
    """
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    if level == "char":
        # Whitespace carries no meaning in Chinese text: drop it, then make every character a token.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
        )
        tokenizer.decoder = decoders.Fuse()
    elif level == "word":
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    else:
        raise ValueError(f"level must be 'char' or 'word', got {level!r}")
    if level == "char":
        vocabulary = character_vocabulary(text_batches(texts), tokenizer.normalizer, min_frequency, max_vocab_size)
    else:
        trainer = trainers.WordLevelTrainer(
            vocab_size=max_vocab_size, min_frequency=min_frequency, special_tokens=[PAD_TOKEN, UNK_TOKEN]
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        vocabulary = tokenizer.get_vocab()
    learned = len(vocabulary)
    for token in extra_tokens:
        if len(vocabulary) >= max_vocab_size:
            break
        vocabulary.setdefault(token, len(vocabulary))
    if extra_tokens:
        logger.info(
            "vocabulary: %d tokens from the texts, %d more from the vectors file", learned, len(vocabulary) - learned
        )
    tokenizer.model = models.WordLevel(vocab=vocabulary, unk_token=UNK_TOKEN)
    if level == "char":
        tokenizer = characters_as_bpe(tokenizer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=max_length,
        model_input_names=["input_ids", "attention_mask"],
    )
