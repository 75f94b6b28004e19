"""A vocabulary tokenizer for TextCNN, built from the training texts with the `tokenizers` library.

Character level (the default) suits Chinese, where words are not separated by spaces; word level
splits on whitespace and punctuation. ``[PAD]`` is id 0 and ``[UNK]`` id 1. The result is a
``PreTrainedTokenizerFast``, so ``AutoTokenizer.from_pretrained(best_dir)`` loads it without this package.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Which way of building the tokenizer (part of the prepared-data key: a different build is a different tokenizer).
# 2: characters through a BPE model without merges instead of a regex split and WordLevel; same ids, faster.
BUILD_VERSION = 2
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"


def characters_as_bpe(trained: Tokenizer) -> Tokenizer:
    """The same character vocabulary as a BPE model without merges, which splits each whitespace-separated chunk
    into its characters: the same ids as splitting on ``Regex(".")`` first, in about half the time (a regex match
    per character is what the char-level tokenizer spent most of its time on)."""
    tokenizer = Tokenizer(models.BPE(vocab=trained.get_vocab(), merges=[], unk_token=UNK_TOKEN))
    tokenizer.normalizer = trained.normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = trained.decoder
    return tokenizer


def build_vocab_tokenizer(
    texts: Iterable[str],
    level: str = "char",
    min_frequency: int = 1,
    max_vocab_size: int = 30000,
    lowercase: bool = True,
    max_length: int = 128,
) -> PreTrainedTokenizerFast:
    """Learns a character or word vocabulary from ``texts``, most frequent tokens first.

    Args:
        texts: The training texts.
        level: "char" or "word".
        min_frequency: Tokens seen fewer times become ``[UNK]``.
        max_vocab_size: Size limit, special tokens included.
        lowercase: Lowercase before counting (NFKC normalisation is always applied, which folds
            full-width Latin letters and punctuation into their ASCII forms).
        max_length: Stored as the tokenizer's model_max_length.
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
    trainer = trainers.WordLevelTrainer(
        vocab_size=max_vocab_size, min_frequency=min_frequency, special_tokens=[PAD_TOKEN, UNK_TOKEN]
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if level == "char":
        tokenizer = characters_as_bpe(tokenizer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=max_length,
        model_input_names=["input_ids", "attention_mask"],
    )
