"""Long texts read whole (``long_text: windows``): each text split into overlapping windows of max_length tokens.
For text pairs, the second text is read in windows, each with the first text (cut to half a window if longer).

A fast tokenizer (the TextCNN's vocabulary tokenizer is one too) cuts a text at max_length and hands the rest
back as overflowing encodings, each starting ``window_stride`` tokens before the previous one ended and each with
the model's special tokens. Training uses every window as an example with its text's label; evaluation, predict
and serve put a text's windows back together by averaging their logits (multi-label: taking each label's
maximum, so that a label found in one part of a document counts), one result per text.
"""

from __future__ import annotations

import functools

import numpy as np
import tokenizers
from transformers import PreTrainedTokenizerBase

from finetune.data.sampler import column_array
from finetune.errors import UserError

TEXT_INDEX = "text_index"  # the column of a windowed split naming each window's text (its row in the split)
REDUCTIONS = ("mean", "max")


def default_window_stride(max_length: int) -> int:
    """The window_stride when none is given: consecutive windows share a quarter of max_length."""
    return max_length // 4


def first_text_cap(tokenizer: PreTrainedTokenizerBase, max_length: int) -> int:
    """Tokens of the first text of a pair that every window keeps (the second text is read in windows): half of
    max_length less the special tokens. A longer first text is cut to it (see finetune.data.encode_windows)."""
    return (max_length - tokenizer.num_special_tokens_to_add(pair=True)) // 2


def check_window_stride(
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    stride: int,
    name: str = "window_stride",
    pairs: bool = False,
):
    """Exits with a named error when windows of ``max_length`` tokens cannot share ``stride`` of them: a window
    holds max_length less the model's special tokens ([CLS] and [SEP] for BERT) of the text, and for text pairs
    less the first text too (at most first_text_cap). Also exits where the installed tokenizers would drop windows
    (check_overflow)."""
    check_overflow()
    specials = tokenizer.num_special_tokens_to_add(pair=pairs)
    room = max_length - specials - (first_text_cap(tokenizer, max_length) if pairs else 0)
    if not 0 <= stride < room:
        held = f"max_length {max_length}" + (f" less {specials} special token(s)" if specials else "")
        held += ", half of the rest kept for the first text of a pair" if pairs else ""
        raise UserError(
            f"{name} {stride} must be at least 0 and smaller than the text tokens a window holds: {room} ({held}). "
            f"Use a smaller {name} (e.g. {room // 4}) or a larger max_length."
        )


@functools.cache
def overflow_works() -> bool:
    """Whether this tokenizers release hands back every window past max_length. Releases 0.23.1 and 0.23.2 stop
    tokenizing at max_length and return none or only some of them (huggingface/tokenizers#2091), which would leave
    the rest of each long text unread. Probed on a word-level tokenizer of 50 words in windows of 10."""
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    words = [str(number) for number in range(50)]
    probe = tokenizers.Tokenizer(WordLevel({word: index for index, word in enumerate(words)}, unk_token="0"))
    probe.pre_tokenizer = Whitespace()
    probe.enable_truncation(max_length=10, stride=2)
    encoding = probe.encode_batch_fast([" ".join(words)])[0]
    return bool(encoding.overflowing) and encoding.overflowing[-1].ids[-1] == len(words) - 1


def check_overflow() -> None:
    """Exits with a clear error where the installed tokenizers would drop windows (see overflow_works)."""
    if not overflow_works():
        raise UserError(
            f"long_text: windows: tokenizers {tokenizers.__version__} drops the windows of a text past its first "
            "max_length tokens (huggingface/tokenizers#2091), so most of every long text would go unread. Install "
            "a release that keeps them: pip install 'tokenizers>=0.23.3' (or use long_text: truncate)."
        )


def window_owners(encodings: list) -> tuple[list, np.ndarray]:
    """Every window of the encodings (each one followed by its overflowing parts), and the text each belongs to."""
    windows, counts = [], np.empty(len(encodings), dtype=np.int64)
    for index, encoding in enumerate(encodings):
        windows.append(encoding)
        windows.extend(encoding.overflowing)
        counts[index] = 1 + len(encoding.overflowing)
    return windows, np.repeat(np.arange(len(encodings)), counts)


def reduction(multi_label: bool) -> str:
    return "max" if multi_label else "mean"


class TextLogits:
    """Window logits gathered into one row per text: their mean, or with ``reduce`` max their maximum."""

    def __init__(self, texts: int, num_labels: int, reduce: str = "mean"):
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.reduce = reduce
        self.values = np.full((texts, num_labels), -np.inf if reduce == "max" else 0.0)
        self.counts = np.zeros(texts, dtype=np.int64)

    def add(self, texts: np.ndarray, logits: np.ndarray) -> None:
        """Adds the logits of windows, row i belonging to text ``texts[i]``."""
        if self.reduce == "max":
            np.maximum.at(self.values, texts, logits)
        else:
            np.add.at(self.values, texts, logits)
        np.add.at(self.counts, texts, 1)

    def result(self) -> np.ndarray:
        if (self.counts == 0).any():
            raise ValueError(f"{int((self.counts == 0).sum())} text(s) got no window")
        return self.values if self.reduce == "max" else self.values / self.counts[:, None]


def texts_of_windows(
    logits: np.ndarray, labels: np.ndarray | None, text_index: np.ndarray, reduce: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The logits of each text (in the order of its first window) from its windows', and its label (every window
    carries its text's)."""
    order, first, owners = np.unique(text_index, return_index=True, return_inverse=True)
    gathered = TextLogits(len(order), logits.shape[-1], reduce)
    gathered.add(owners.reshape(-1), logits)
    by_appearance = np.argsort(first, kind="stable")
    return gathered.result()[by_appearance], None if labels is None else labels[first[by_appearance]]


def sample_counts(dataset, split: str) -> dict[str, int]:
    """``{split}_samples``: the texts a tokenized split holds; for windows of texts also ``{split}_windows``."""
    if TEXT_INDEX not in dataset.column_names:
        return {f"{split}_samples": len(dataset)}
    return {f"{split}_samples": len(np.unique(column_array(dataset, TEXT_INDEX))), f"{split}_windows": len(dataset)}
