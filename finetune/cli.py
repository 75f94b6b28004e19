"""The `finetune` command: one subcommand per module, each a ``main(argv)`` that tests call in-process.

finetune train --config configs/textcnn.yaml [--key value ...]
finetune --help
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from finetune.errors import UserError

# subcommand -> (module with main(argv), one-line description)
SUBCOMMANDS = {
    "train": ("finetune.train", "train a classifier and keep the best checkpoint by eval loss"),
    "pretrain": ("finetune.pretrain", "continue masked-language-model pretraining of an encoder on your texts"),
    "predict": ("finetune.predict", "classify the texts of a file or stdin with a trained model"),
    "evaluate": ("finetune.evaluation", "metrics, per-class report and confusion matrix on a labelled file"),
    "cache": ("finetune.cache.cli", "list, inspect and clean the tokenized-data cache"),
    "report": ("finetune.report", "plot a run's loss and metric curves and summarise it"),
}


def run_command(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """Runs a subcommand's main: a UserError is printed without a traceback and exits 2."""
    try:
        return main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def writable_file(path: str | Path, option: str = "--output") -> Path:
    """Checks, before any work is done, that ``path`` can be written as a file: it is not a directory, and its
    folder exists or is created now."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory; name a file inside it instead.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{option} {path}: cannot create the folder {path.parent} ({error.strerror}).") from None
    return path


def usage() -> str:
    lines = ["usage: finetune <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {description}" for name, (_, description) in SUBCOMMANDS.items()]
    lines += ["", "`finetune <command> --help` lists a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[command][0])
    return run_command(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
