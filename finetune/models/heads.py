"""Starting from a checkpoint: keep its classification head when it was trained on the same labels, else a new one.

A checkpoint saved by a ``*ForSequenceClassification`` model (any fine-tuned classifier on the hub, or ``best/`` of
an earlier finetune run) carries a head for its own labels. When those label names are exactly the training labels,
the head is kept and its rows are put in finetune's label order (sorted labels); otherwise (other names, another
count, default names such as LABEL_0, or ``new_head``) the encoder is kept and the head is new, with a warning that
names both label lists. A bare encoder (BertModel, MiniLM) always gets a new head, as before.
"""

from __future__ import annotations

import logging
import re

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel

from finetune.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_LABEL = re.compile(r"LABEL_\d+")
# Modules of a TextCNN that belong to the classifier rather than to the text encoder.
TEXTCNN_HEAD = ("classifier.", "wide.")


def has_head(config: PretrainedConfig) -> bool:
    """Whether the checkpoint was saved by a sequence classifier (and so holds a head)."""
    return any(name.endswith("ForSequenceClassification") for name in config.architectures or ())


def head_labels(config: PretrainedConfig) -> list[str] | None:
    """The label names of a checkpoint's head, in output order; None without a head or with default names."""
    if not has_head(config):
        return None
    names = [str(config.id2label[index]) for index in sorted(config.id2label)]
    return None if all(DEFAULT_LABEL.fullmatch(name) for name in names) else names


def is_head(model: PreTrainedModel, name: str) -> bool:
    """Whether a parameter belongs to the classification head rather than to the encoder."""
    if model.config.model_type == "textcnn":
        return name.startswith(TEXTCNN_HEAD)
    return not name.startswith(model.base_model_prefix + ".")


def output_layers(model: PreTrainedModel) -> list[tuple[nn.Module, int]]:
    """The head's layers that have one output per label, with the dimension that counts the labels."""
    count = model.config.num_labels
    layers = []
    for name, module in model.named_modules():
        if not is_head(model, name + "."):
            continue
        if isinstance(module, nn.Linear) and module.out_features == count:
            layers.append((module, 0))
        elif isinstance(module, nn.Embedding) and module.embedding_dim == count:  # TextCNN's n-gram weights
            layers.append((module, 1))
    return layers


def reorder_head(model: PreTrainedModel, order: list[int]) -> bool:
    """Puts the head's outputs in ``order`` (output i becomes the checkpoint's output order[i]); False when the
    head's output layers cannot be found."""
    layers = output_layers(model)
    if not layers:
        return False
    index = torch.tensor(order)
    with torch.no_grad():
        for module, dimension in layers:
            module.weight.copy_(module.weight.index_select(dimension, index))
            if dimension == 0 and getattr(module, "bias", None) is not None:
                module.bias.copy_(module.bias[index])
    return True


def load_classifier(
    path: str,
    label_list: list[str],
    new_head: bool = False,
    cache_dir: str | None = None,
    trust_remote_code: bool = False,
    textcnn: bool = False,
    problem_type: str = "single_label_classification",
    dropout: float | None = None,
) -> PreTrainedModel:
    """A sequence classifier for ``label_list`` (finetune's order) from the checkpoint or encoder at ``path``,
    which must hold a TextCNN when ``textcnn`` is set (model_type textcnn) and another model when it is not.
    ``problem_type`` (single_label_classification or multi_label_classification) picks the loss; a kept head
    takes it too. ``dropout``, when given, replaces every dropout probability of the model's config."""
    id2label = dict(enumerate(label_list))
    label2id = {label: index for index, label in id2label.items()}
    options = {"cache_dir": cache_dir, "trust_remote_code": trust_remote_code}
    try:
        config = with_dropout(AutoConfig.from_pretrained(path, **options), dropout)
        if (config.model_type == "textcnn") != textcnn:
            wanted = "textcnn" if config.model_type == "textcnn" else "pretrained"
            raise UserError(f"{path} holds a {config.model_type} model: set model_type: {wanted} to start from it.")
        old = head_labels(config)
        if old is not None and not new_head and len(set(old)) == len(old) and set(old) == set(label_list):
            model = AutoModelForSequenceClassification.from_pretrained(path, config=config, **options)
            order = [old.index(label) for label in label_list]
            if order == sorted(order) or reorder_head(model, order):
                model.config.id2label, model.config.label2id = id2label, label2id
                model.config.problem_type = problem_type
                model.head_kept = True  # for the model card
                logger.info("kept the classification head of %s: it was trained on the labels %s", path, label_list)
                return model
            logger.warning("%s: the head's output layer was not found, so its rows cannot be reordered", path)
        new_config = AutoConfig.from_pretrained(
            path,
            num_labels=len(label_list),
            id2label=id2label,
            label2id=label2id,
            problem_type=problem_type,
            **options,
        )
        with_dropout(new_config, dropout)
        if not has_head(config):  # a bare encoder: from_pretrained makes the head
            return AutoModelForSequenceClassification.from_pretrained(path, config=new_config, **options)
        warn_new_head(path, config, label_list, new_head)
        source = AutoModelForSequenceClassification.from_pretrained(path, config=config, **options)
    except OSError as error:
        raise UserError(f"Could not load model {path!r}: {error}") from None
    model = AutoModelForSequenceClassification.from_config(new_config, trust_remote_code=trust_remote_code)
    encoder = {name: value for name, value in source.state_dict().items() if not is_head(source, name)}
    missing, unexpected = model.load_state_dict(encoder, strict=False)
    if unexpected or not all(is_head(model, name) for name in missing):
        raise UserError(f"{path}: its encoder's weights do not fit the model it describes ({unexpected or missing}).")
    return model


def with_dropout(config: PretrainedConfig, probability: float | None) -> PretrainedConfig:
    """``config`` with every dropout probability it names set to ``probability`` (unchanged when None): BERT's
    hidden_dropout_prob, attention_probs_dropout_prob and classifier_dropout, DistilBERT's dropout,
    attention_dropout and seq_classif_dropout, and so on."""
    if probability is not None:
        for name, value in list(vars(config).items()):
            if "dropout" in name and (value is None or isinstance(value, float)):
                setattr(config, name, probability)
    return config


def warn_new_head(path: str, config: PretrainedConfig, label_list: list[str], forced: bool) -> None:
    old = head_labels(config)
    if forced:
        reason = "new_head is set"
    elif old is None:
        reason = f"its head's {config.num_labels} outputs have no label names"
    else:
        reason = f"its head was trained on the labels {old}"
    logger.warning("%s: %s; a new classification head is made for the training labels %s", path, reason, label_list)
