"""Finding a loadable model: a run's best checkpoint (through best.json), best/, checkpoint-N, or any
``save_pretrained`` directory. ``--model`` of ``finetune predict`` and ``finetune evaluate`` goes through here.

    finetune predict --model outputs/textcnn --input reviews.txt          # the run's best checkpoint
    finetune predict --model outputs/textcnn/checkpoint-120 --input reviews.txt
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune.errors import UserError

BEST_DIR = "best"
BEST_FILE = "best.json"
ARGS_FILE = "finetune_args.json"
EVALUATION_DIR = "evaluation"  # where finetune evaluate writes its results inside a run

CONFIG_FILE = "config.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


def read_best(output_dir: str | Path) -> dict:
    """The run's best.json: which checkpoint was best, at which step, by which metric, and where best/ is."""
    path = Path(output_dir) / BEST_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{output_dir} has no {BEST_FILE}; is it the output_dir of a finished run?") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error.msg}); the run may have been interrupted.") from None


def missing_model_files(directory: Path) -> list[str]:
    """What a directory lacks to be loaded by AutoModelForSequenceClassification and AutoTokenizer."""
    missing = []
    if not (directory / CONFIG_FILE).is_file():
        missing.append(CONFIG_FILE)
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        missing.append("model weights (model.safetensors)")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json or tokenizer_config.json)")
    return missing


def check_model_dir(directory: Path) -> Path:
    missing = missing_model_files(directory)
    if missing:
        raise UserError(f"{directory} is incomplete: no {', no '.join(missing)}.")
    return directory


def resolve_model_dir(path: str | Path) -> Path:
    """The directory to load a model from, for what a user passes as ``--model``.

    Args:
        path: A run's output_dir (its best checkpoint, named by best.json), a best/ folder, a checkpoint-N
            folder, or any directory written by ``save_pretrained`` (with the tokenizer saved next to it).

    Raises:
        UserError: The path does not exist, or lacks what loading needs; the message names what is missing.
    """
    directory = Path(path)
    if not directory.exists():
        raise UserError(f"Model directory {directory} does not exist.")
    if not directory.is_dir():
        raise UserError(f"--model {directory} is a file; pass a run's output_dir or a model directory.")
    if (directory / BEST_FILE).is_file():
        best = read_best(directory)
        best_dir = directory / best.get("best_dir", BEST_DIR)
        if not best_dir.is_dir():
            hint = (
                f"; pass --model {directory / best['checkpoint']} to use that checkpoint"
                if best.get("checkpoint")
                else ""
            )
            raise UserError(f"{directory / BEST_FILE} points to {best_dir}, which does not exist{hint}.")
        return check_model_dir(best_dir)
    if (directory / CONFIG_FILE).is_file():
        return check_model_dir(directory)
    found = sorted(path.name for pattern in ("checkpoint-*", "seed-*", BEST_DIR) for path in directory.glob(pattern))
    hint = f" It holds {', '.join(found)}: pass one of them." if found else ""
    raise UserError(f"{directory} has no {BEST_FILE} and no {CONFIG_FILE}, so it is neither a run nor a model.{hint}")


def run_arguments(model_dir: Path) -> dict:
    """The arguments of the run that trained the model in ``model_dir`` (finetune_args.json), or {} if unknown.

    best/ holds them; a checkpoint-N folder of the same run finds them in its sibling best/.
    """
    candidates = [model_dir]
    if model_dir.name.startswith("checkpoint-"):
        candidates.append(model_dir.parent / BEST_DIR)
    for directory in candidates:
        path = directory / ARGS_FILE
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return {}
