"""The configuration reference, docs/configuration.md, written from the help texts of the arguments.

    python -m finetune.docs            # write docs/configuration.md
    python -m finetune.docs --check    # exit 1 when docs/configuration.md is not what this would write

The help texts are written once, where the arguments are defined: the dataclasses of finetune/config.py
(``finetune train``) and finetune/pretrain.py (``finetune pretrain``), and the argparse parsers of the other
commands. This module imports them at run time, so a new field appears in the reference the next time it runs;
tests/test_docs.py fails while the committed file is stale.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

from transformers import TrainingArguments as HfTrainingArguments

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
COMMAND = "python -m finetune.docs"
TRAINING_ARGUMENTS_DOCS = (
    "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"
)


# Cells


def cell(text: str) -> str:
    """Text for a Markdown table cell: on one line, its pipes escaped and `<` kept from opening an HTML tag."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def yaml_value(value: object) -> str:
    """A default as it is written in a YAML config."""
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, tuple)):
        return "`[" + ", ".join(str(item) for item in value) + "]`"
    return f"`{value}`"


def type_text(annotation: object) -> str:
    if annotation is type(None):
        return "None"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " | ".join(type_text(member) for member in typing.get_args(annotation))
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")  # list[int]


def type_name(annotation: object) -> str:
    """A field's type for the table; a Literal as its choices."""
    if typing.get_origin(annotation) is typing.Literal:
        return " or ".join(f"`{choice}`" for choice in typing.get_args(annotation))
    return f"`{type_text(annotation)}`".replace("|", "\\|")


# Dataclasses (finetune train, finetune pretrain)


def field_default(field: dataclasses.Field) -> object:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def field_help(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def dataclass_table(argument_class: type) -> list[str]:
    lines = ["| name | type | default | help |", "|---|---|---|---|"]
    hints = typing.get_type_hints(argument_class)  # not field.type, which HfArgumentParser overwrites
    for field in dataclasses.fields(argument_class):
        default = "required" if field_default(field) is dataclasses.MISSING else yaml_value(field_default(field))
        lines.append(f"| `{field.name}` | {type_name(hints[field.name])} | {default} | {cell(field_help(field))} |")
    return lines


def training_table(training_class: type) -> list[str]:
    """The fields finetune's TrainingArguments adds to transformers' or declares again (another default or help)."""
    upstream = {field.name: field for field in dataclasses.fields(HfTrainingArguments)}
    lines = ["| name | type | default | transformers' default | help |", "|---|---|---|---|---|"]
    hints = typing.get_type_hints(training_class)  # not field.type, which HfArgumentParser overwrites
    for field in dataclasses.fields(training_class):
        original = upstream.get(field.name)
        if original is not None and (field_default(field), field_help(field)) == (
            field_default(original),
            field_help(original),
        ):
            continue
        before = "added by finetune" if original is None else yaml_value(field_default(original))
        lines.append(
            f"| `{field.name}` | {type_name(hints[field.name])} | {yaml_value(field_default(field))} | {before} "
            f"| {cell(field_help(field))} |"
        )
    return lines


def class_section(title: str, argument_class: type) -> list[str]:
    summary = (argument_class.__doc__ or "").strip().splitlines()[0]
    return [f"### {title} (`{argument_class.__name__}`)", "", summary, "", *dataclass_table(argument_class), ""]


# argparse parsers (finetune predict, evaluate, report, export, serve, cache)


def parser_table(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    lines = ["| option | default | help |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            name = "`" + ", ".join(action.option_strings) + (f" {action.metavar}`" if action.metavar else "`")
        else:
            name = f"`{action.metavar or action.dest.upper()}`"
        if action.required or not action.option_strings:
            default = "required"
        elif isinstance(action, argparse._StoreTrueAction):
            default = "off"
        else:
            default = "" if action.default is None else f"`{action.default}`"
        help_text = formatter._expand_help(action) if action.help else ""
        if action.choices and not isinstance(action.choices, dict):
            help_text += " (" + ", ".join(str(choice) for choice in action.choices) + ")"
        lines.append(f"| {name} | {default} | {cell(help_text)} |")
    return lines


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_section(title: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## {title}", "", parser.description or "", ""]
    children = subcommands(parser)
    if not children:
        return lines + [*parser_table(parser), ""]
    for name, child in children.items():
        lines += [f"### {title} {name}", "", *parser_table(child), ""]
    return lines


# The page


def render() -> str:
    """The text of docs/configuration.md."""
    from finetune.cache.cli import make_parser as cache_parser
    from finetune.check.command import make_parser as check_parser
    from finetune.config import DataArguments, ModelArguments, TrainingArguments
    from finetune.evaluation import make_parser as evaluate_parser
    from finetune.export import make_parser as export_parser
    from finetune.parsing import ALIASES, TEXT_COLUMNS_ALIAS
    from finetune.predict import make_parser as predict_parser
    from finetune.pretrain import PretrainArguments
    from finetune.report import make_parser as report_parser
    from finetune.search import make_parser as search_parser
    from finetune.serve import make_parser as serve_parser

    lines = [
        "# Configuration reference",
        "",
        f"Written by `{COMMAND}` from the help texts in the code; do not edit it by hand. After changing an "
        f"argument, run `{COMMAND}` again (a test fails while this file is stale).",
        "",
        "## finetune train",
        "",
        "`finetune train --config FILE [--key value ...]`, or `python finetune/train.py` with the same arguments. "
        "Every name below is a YAML key of the file given with `--config` and a command-line flag (`--name value`; "
        "a list takes several values, `--kernel_sizes 2 3 4`). Precedence: the default, then the YAML file, then "
        "the flags. A YAML key that is no argument is an error naming it; YAML values get the checks of flags (choices, "
        "list items), and `null` is allowed only where the type admits None. `finetune train --help` prints the same "
        "help texts.",
        "",
        "Aliases, read as the argument they stand for (in the YAML file and as flags): "
        + ", ".join(f"`{alias}` for `{name}`" for alias, name in ALIASES.items())
        + f", and `{TEXT_COLUMNS_ALIAS}` (`a` or `a,b`) for `text_column` (and `text_pair_column`). "
        "The first three are transformers' `run_classification.py` names; `model_cache_dir` is this package's "
        "earlier name for `cache_dir`.",
        "",
        *class_section("Model", ModelArguments),
        *class_section("Data", DataArguments),
        f"### Training (`{TrainingArguments.__name__}`)",
        "",
        "Every field of transformers' [`TrainingArguments`](" + TRAINING_ARGUMENTS_DOCS + ") is an argument "
        "(`learning_rate`, `num_train_epochs`, `per_device_train_batch_size`, `seed`, `bf16`, ...). These are the "
        "ones finetune adds, or declares again with its own default or help:",
        "",
        *training_table(TrainingArguments),
        "",
        "## finetune pretrain",
        "",
        "`finetune pretrain --config FILE [--key value ...]`: these arguments and the training arguments above, "
        "with the same defaults.",
        "",
        *class_section("Pretraining", PretrainArguments),
        *command_section("finetune predict", predict_parser()),
        *command_section("finetune evaluate", evaluate_parser()),
        *command_section("finetune report", report_parser()),
        *command_section("finetune search", search_parser()),
        *command_section("finetune check", check_parser()),
        *command_section("finetune export", export_parser()),
        *command_section("finetune serve", serve_parser()),
        *command_section("finetune cache", cache_parser()),
    ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REFERENCE, help="where to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
        if current != text:
            print(f"{args.output} is stale: run `{COMMAND}`.", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
