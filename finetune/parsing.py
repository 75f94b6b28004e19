"""Parsing the run arguments: a YAML file, command-line overrides, and the checks that need no data.

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
from pathlib import Path

import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from finetune.config import ARGUMENT_CLASSES, EVAL_METRICS, MULTI_LABEL_EVAL_METRICS, TrainingArguments
from finetune.errors import UserError


def make_parser(
    classes: tuple = ARGUMENT_CLASSES,
    prog: str = "finetune train",
    description: str = "Train a text classifier and keep the best checkpoint by eval loss.",
) -> HfArgumentParser:
    """The parser shared by ``finetune train`` and ``python finetune/train.py`` (and, with its own classes, by
    ``finetune pretrain``)."""
    parser = HfArgumentParser(classes, prog=prog, description=description)
    parser.add_argument("--config", help="YAML file with any of the arguments below; flags given here override it.")
    return parser


def read_yaml(path: str, kind: str):
    """A YAML file's content ({} when empty); a missing file or bad YAML is a UserError that starts with ``kind``."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{kind} {path} does not exist.")
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UserError(f"{kind} {path} is not valid YAML: {error}") from None


# Names run_classification.py (transformers' examples) gives arguments that are named otherwise here, and names of
# earlier versions; each is read as the argument it stands for, in a YAML config and as a flag.
ALIASES = {"max_seq_length": "max_length", "label_column_name": "label_column", "model_cache_dir": "cache_dir"}
DEPRECATED = {"model_cache_dir"}
TEXT_COLUMNS_ALIAS = "text_column_names"  # "sentence1,sentence2": the text column, then the pair column


NOTED: set[str] = set()  # deprecated names already noted in this process


def note_deprecated(name: str) -> None:
    if name not in NOTED:
        NOTED.add(name)
        print(f"note: {name} is now {ALIASES[name]}; the old name will go.", file=sys.stderr)


def text_column_names(value, where: str) -> dict:
    """run_classification's comma-separated text columns as text_column and text_pair_column."""
    names = [name.strip() for name in (value if isinstance(value, list) else str(value).split(",")) if name.strip()]
    if not 1 <= len(names) <= 2:
        raise UserError(
            f"{where}: text_column_names takes one column or two (a sentence pair), got {value!r}; "
            "join more columns into one before training."
        )
    return {"text_column": names[0], **({"text_pair_column": names[1]} if len(names) == 2 else {})}


def resolve_aliases(values: dict, where: str) -> dict:
    """A config's values with the alias keys replaced by the arguments' own names."""
    resolved = {}
    for key, value in values.items():
        if key == TEXT_COLUMNS_ALIAS:
            resolved.update(text_column_names(value, where))
        elif key in ALIASES:
            if key in DEPRECATED:
                note_deprecated(key)
            resolved[ALIASES[key]] = value
        else:
            resolved[key] = value
    return resolved


def resolve_alias_flags(argv: list[str]) -> list[str]:
    """Command-line flags with the alias names replaced (``--max_seq_length 64``, ``--text_column_names a,b``)."""
    result, arguments = [], iter(argv)
    for argument in arguments:
        flag, equals, value = argument.partition("=")
        name = flag.removeprefix("--")
        if not flag.startswith("--") or name not in (*ALIASES, TEXT_COLUMNS_ALIAS):
            result.append(argument)
            continue
        if name == TEXT_COLUMNS_ALIAS:
            value = value if equals else next(arguments, "")
            for key, column in text_column_names(value, f"--{name}").items():
                result += [f"--{key}", column]
            continue
        if name in DEPRECATED:
            note_deprecated(name)
        result.append(f"--{ALIASES[name]}{equals}{value}")
    return result


def load_yaml_config(path: str, known_keys: set[str]) -> dict:
    """Reads a YAML config and refuses keys that no argument has."""
    values = read_yaml(path, "Config file")
    if not isinstance(values, dict):
        raise UserError(f"Config file {path} must be a mapping of argument names to values.")
    values = resolve_aliases(values, f"Config file {path}")
    unknown = sorted(set(values) - known_keys)
    if unknown:
        raise UserError(
            f"Config file {path}: unknown key(s) {', '.join(unknown)}. "
            "See `finetune train --help` for the arguments there are."
        )
    return values


def nullable_fields(classes=ARGUMENT_CLASSES) -> set[str]:
    """The arguments whose type admits None, the only ones a YAML ``null`` may set."""
    names = set()
    for argument_class in classes:
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
    nullable = nullable_fields(getattr(parser, "dataclass_types", ARGUMENT_CLASSES))
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


def config_values(argv: list[str], parser: HfArgumentParser) -> tuple[str | None, dict]:
    """The ``--config`` file named in ``argv`` and its checked values (none without one)."""
    config_parser = argparse.ArgumentParser(add_help=False)
    config_parser.add_argument("--config")
    config_path = config_parser.parse_known_args(argv)[0].config
    if not config_path:
        return None, {}
    known_keys = {action.dest for action in parser._actions} - {"help", "config"}
    return config_path, check_yaml_values(load_yaml_config(config_path, known_keys), parser, config_path)


def parse_namespace(argv: list[str], parser: HfArgumentParser) -> argparse.Namespace:
    """The values of every argument: defaults, then the YAML config, then the flags; not yet checked by the
    dataclasses."""
    argv = resolve_alias_flags(argv)
    config_path, values = config_values(argv, parser)
    if config_path:
        parser.set_defaults(**values)
    namespace = parser.parse_args(argv)
    if getattr(namespace, "cache_dir", None) and hasattr(namespace, "data_cache_dir") and not namespace.data_cache_dir:
        namespace.data_cache_dir = namespace.cache_dir  # one folder for everything cached, as cache_dir used to be
    return namespace


def given_flags(argv: list[str], parser: HfArgumentParser) -> dict:
    """The arguments that ``argv``'s flags set, with their parsed values (nothing from defaults or a config)."""
    defaults = {action.dest: action.default for action in parser._actions}
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        namespace, _ = parser.parse_known_args(resolve_alias_flags(argv))
    finally:
        for action in parser._actions:
            action.default = defaults[action.dest]
    return {name: value for name, value in vars(namespace).items() if name not in ("config", "help")}


def parse_args(argv: list[str] | None = None, parser: HfArgumentParser | None = None) -> tuple:
    """Parses the YAML config and command-line flags into the argument dataclasses (by default ``finetune
    train``'s three: ModelArguments, DataArguments, TrainingArguments).

    GPU selection happens here, between parsing and building TrainingArguments, because building it
    initialises the device and CUDA_VISIBLE_DEVICES must be set before that.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = parser or make_parser()
    namespace = parse_namespace(argv, parser)

    select_gpus(namespace.gpus, namespace.use_cpu)

    arguments = []
    for argument_class in parser.dataclass_types:
        values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(argument_class) if f.init}
        try:
            arguments.append(argument_class(**values))
        except ValueError as error:  # TrainingArguments validates itself with ValueError
            raise UserError(f"Invalid training arguments: {error}") from None
    preflight(arguments[-1])
    return tuple(arguments)


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
    known = dict.fromkeys(EVAL_METRICS + MULTI_LABEL_EVAL_METRICS)
    if metric is not None and metric.removeprefix("eval_") not in known:
        raise UserError(
            f"metric_for_best_model {metric!r} is not produced by evaluation; choose one of "
            + ", ".join(f"eval_{name}" for name in known)
            + "."
        )
    if training_args.load_best_model_at_end and training_args.eval_strategy == "no":
        raise UserError("load_best_model_at_end needs evaluation: set eval_strategy to steps or epoch.")
    if training_args.push_to_hub and os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise UserError("push_to_hub needs the network, but HF_HUB_OFFLINE is set; unset one of them.")
    if training_args.early_stopping_patience is not None and training_args.eval_strategy == "no":
        raise UserError("early_stopping_patience needs evaluation: set eval_strategy to steps or epoch.")
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
