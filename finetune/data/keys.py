"""Every cache key, built here: what decides a run's prepared data, and what decides one tokenized split.

Two keys, both hashes of JSON documents:
- the prepared-data key (``prepared_inputs``), computed before any file is parsed from the sha256 of each data
  file's bytes (never the modification time), every data argument that decides which rows and labels are read
  and how they are tokenized, the seed where it picks the held-out validation rows, the tokenizer's recipe and
  the package version. A hit loads the tokenizer and the tokenized splits without reading the files.
- the fingerprint of a tokenized split (``split_inputs``): the content hash of its file, which rows of it the
  split holds, the label list, the tokenizer's identity (the hash of its full definition), max_length, padding,
  truncation side, the windows' stride (long_text: windows), the columns and the package version. Files with the same bytes share the entry.
``describe_inputs`` adds what a reader needs (the file's path, the tokenizer's name and size) to a split's inputs
for its manifest; it adds nothing to the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from finetune.config import DataArguments, ModelArguments
from finetune.errors import UserError
from finetune.files import file_sha256

# DataArguments fields that change neither the rows, the labels nor the token ids; every other field is in the
# prepared-data key, so a field added later counts until it is listed here.
NOT_IN_KEY = ("data_cache_dir", "overwrite_cache", "preprocessing_num_workers", "pad_to_multiple_of")
FILE_FIELDS = ("train_file", "validation_file", "test_file")
# Files of a model folder that the tokenizer never reads: hashing them would cost seconds on every run.
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".h5", ".msgpack", ".ot", ".onnx", ".pt", ".pth", ".ckpt", ".gguf"}
TOKENIZERS_DIR = "tokenizers"  # in the cache folder: tokenizers/{identity}/, one saved copy per tokenizer


def content_hash(*parts) -> str:
    """A short, stable hash of JSON-serialisable parts."""
    payload = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:16]


def data_files(data_args: DataArguments) -> dict[str, str]:
    files = {split: getattr(data_args, f"{split}_file") for split in ("train", "validation", "test")}
    return {split: path for split, path in files.items() if path}


def hash_files(data_args: DataArguments) -> dict[str, dict] | None:
    """Each data file's resolved path and content hash; None when one is missing (reading it says so)."""
    hashes = {}
    for split, path in data_files(data_args).items():
        if not Path(path).is_file():
            return None
        hashes[split] = {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}
    return hashes


def tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of the tokenizer's full definition: vocabulary, normalisation, special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return content_hash(type(tokenizer).__name__, tokenizer.get_vocab())
    definition = json.loads(backend.to_str())
    # Calling the tokenizer stores its last truncation and padding settings in the backend; they are not
    # part of its identity (max_length and padding enter the fingerprint on their own).
    definition.pop("truncation", None)
    definition.pop("padding", None)
    return content_hash(type(tokenizer).__name__, definition)


def tokenizer_recipe(model_args: ModelArguments) -> dict | None:
    """What decides the tokenizer before any text is seen; None for a tokenizer that is not in a local folder."""
    from finetune.tokenizer import BUILD_VERSION

    if model_args.model_type == "textcnn" and not model_args.model_name_or_path:
        fields = ("tokenizer_level", "min_frequency", "max_vocab_size", "lowercase")
        recipe = {name: getattr(model_args, name) for name in fields}
        if model_args.pretrained_vocabulary_size:  # the vectors file's first tokens join the vocabulary
            from finetune.embeddings import vectors_vocabulary

            recipe["vectors_vocabulary"] = content_hash(vectors_vocabulary(model_args))
        return {"model_type": "textcnn", **recipe, "build_version": BUILD_VERSION}
    from finetune.models.bert import resolve_model_path

    name = model_args.tokenizer_name or model_args.model_name_or_path
    try:
        folder = Path(resolve_model_path(name))
    except UserError:
        return None
    if not folder.is_dir():
        return None
    files = sorted(path for path in folder.iterdir() if path.is_file() and path.suffix not in WEIGHT_SUFFIXES)
    return {
        "model_type": model_args.model_type,
        "tokenizer": name,
        "folder": str(folder.resolve()),
        "files": {path.name: file_sha256(path) for path in files},
        "extend_vocabulary": model_args.extend_vocabulary,
        "min_frequency": model_args.min_frequency if model_args.extend_vocabulary else None,
        "trust_remote_code": model_args.trust_remote_code,
    }


def prepared_inputs(
    model_args: ModelArguments, data_args: DataArguments, seed: int, files: dict[str, dict] | None
) -> dict | None:
    """Everything that decides the prepared data, known without parsing a file; None when that is impossible."""
    from finetune import __version__

    recipe = tokenizer_recipe(model_args)
    if data_args.dataset_name or files is None or recipe is None:
        return None
    # The files enter through their resolved paths and content hashes.
    arguments = {name: value for name, value in asdict(data_args).items() if name not in NOT_IN_KEY + FILE_FIELDS}
    return {
        "files": files,
        "data_arguments": arguments,
        "split_seed": None if data_args.validation_file else seed,
        "tokenizer_recipe": recipe,
        "package_version": __version__,
    }


def split_source(split: str, data_args: DataArguments, files: dict[str, dict] | None) -> dict:
    """The file a split is read from, by path and content (a held-out validation split comes from train's)."""
    if data_args.dataset_name:
        name = ":".join(filter(None, ("dataset", data_args.dataset_name, data_args.dataset_config_name)))
        return {"path": name, "sha256": None}
    source = "train" if split == "validation" and not data_args.validation_file else split
    return (files or {}).get(source) or {"path": data_files(data_args).get(source), "sha256": None}


def selection(split: str, data_args: DataArguments, seed: int) -> dict:
    """Which rows of its file a split holds."""
    held_out = None
    if split in ("train", "validation") and not data_args.validation_file:
        held_out = {"percentage": data_args.validation_split_percentage, "seed": seed, "part": split}
    limit = {"train": "max_train_samples", "validation": "max_eval_samples", "test": "max_predict_samples"}[split]
    return {
        "held_out": held_out,
        "max_samples": getattr(data_args, limit),
        "bad_rows": data_args.bad_rows,
        "dataset_config_name": data_args.dataset_config_name,
    }


def split_inputs(
    split: str,
    data_args: DataArguments,
    seed: int,
    files: dict[str, dict] | None,
    labels: list,
    tokenizer_id: str,
    dataset_fingerprint: str | None = None,
) -> dict:
    """Every input that decides a tokenized split's content; their hash is its fingerprint."""
    from finetune import __version__

    return {
        "data_sha256": split_source(split, data_args, files)["sha256"] or dataset_fingerprint,
        "selection": selection(split, data_args, seed),
        "labels": [str(label) for label in labels],
        "tokenizer": tokenizer_id,
        "max_length": data_args.max_length,
        "padding": data_args.padding,
        "truncation_side": data_args.truncation_side,
        # Only with windows: the fingerprints of truncated splits stay what they were before windows existed.
        **(
            {"long_text": "windows", "window_stride": data_args.window_stride}
            if data_args.long_text == "windows"
            else {}
        ),
        "text_column": data_args.text_column,
        "text_pair_column": data_args.text_pair_column,
        "label_column": data_args.label_column,
        "package_version": __version__,
    }


def describe_tokenizer(tokenizer: PreTrainedTokenizerBase, identity: str) -> dict:
    """What a reader needs to recognise a tokenizer; the identity hash is what the fingerprint uses."""
    return {
        "identity": identity,
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "name_or_path": getattr(tokenizer, "name_or_path", "") or None,
        "saved_in": f"{TOKENIZERS_DIR}/{identity}",
    }


def describe_inputs(inputs: dict, source: dict, tokenizer: PreTrainedTokenizerBase) -> dict:
    """A split's inputs in readable form, for its manifest: the data file's path added, the tokenizer described."""
    path = source.get("path")
    data_file = str(Path(path).resolve()) if path and Path(path).is_file() else path
    return {"data_file": data_file, **inputs, "tokenizer": describe_tokenizer(tokenizer, inputs["tokenizer"])}
