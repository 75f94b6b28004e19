"""Finding a loadable model: a run's best checkpoint (through best.json), best/, checkpoint-N, or any
``save_pretrained`` directory. ``--model`` of ``finetune predict`` and ``finetune evaluate`` goes through here.

    finetune predict --model outputs/textcnn --input reviews.txt          # the run's best checkpoint
    finetune predict --model outputs/textcnn/checkpoint-120 --input reviews.txt

Also which checkpoints are complete (a marker written last) and which one a resumed run starts from.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from finetune.errors import UserError
from finetune.files import fsync, write_json_atomically

logger = logging.getLogger(__name__)

BEST_DIR = "best"
BEST_FILE = "best.json"
ARGS_FILE = "finetune_args.json"
TRAINING_ARGS_FILE = "training_args.json"  # the TrainingArguments as JSON, saved in every checkpoint
EVALUATION_DIR = "evaluation"  # where finetune evaluate writes its results inside a run

CONFIG_FILE = "config.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "model.onnx",  # a finetune export directory
)
# A fast tokenizer's tokenizer.json, or one of the vocabulary files a tokenizer is built from.
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


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
        missing.append("tokenizer (tokenizer.json, or a vocabulary such as vocab.txt)")
    return missing


def check_model_dir(directory: Path) -> Path:
    missing = missing_model_files(directory)
    if missing:
        raise UserError(f"{directory} is incomplete: no {', no '.join(missing)}.")
    return directory


def link_best_to_output_dir(output_dir: Path) -> list[str]:
    """Puts every file of best/ at the top of output_dir too, as the Trainer's ``save_model`` after
    ``load_best_model_at_end`` would, so that ``from_pretrained(output_dir)`` and ``pipeline(model=output_dir)``
    load the best model. The files are hard links (the weights are not stored twice), or copies where the file
    system has none. Returns the names linked."""
    best_dir = output_dir / BEST_DIR
    names = sorted(path.name for path in best_dir.iterdir() if path.is_file())
    for name in names:
        target = output_dir / name
        target.unlink(missing_ok=True)
        try:
            os.link(best_dir / name, target)
        except OSError:
            shutil.copy2(best_dir / name, target)
    return names


def push_best(output_dir: Path, training_args) -> str:
    """Uploads best/ (weights, tokenizer, model card, textcnn.py) to the Hub repository ``hub_model_id`` (default:
    output_dir's name), creating it when needed; returns the repository's name. The Trainer's own pushing of
    checkpoints is off: the best model is what a run publishes."""
    from huggingface_hub import HfApi

    repository = training_args.hub_model_id or output_dir.resolve().name
    api = HfApi(token=training_args.hub_token)
    try:
        api.create_repo(repository, private=training_args.hub_private_repo, exist_ok=True)
        api.upload_folder(
            repo_id=repository, folder_path=output_dir / BEST_DIR, commit_message="finetune: the best checkpoint"
        )
    except Exception as error:  # the hub raises many kinds; the run itself is saved either way
        raise UserError(
            f"push_to_hub: uploading {output_dir / BEST_DIR} to {repository} failed ({error}). The run is saved; "
            f"upload it later with: huggingface-cli upload {repository} {output_dir / BEST_DIR}"
        ) from None
    return repository


def unlink_best_from_output_dir(output_dir: Path) -> None:
    """Removes the files link_best_to_output_dir put at the top of output_dir (those of best/ by name)."""
    best_dir = output_dir / BEST_DIR
    if best_dir.is_dir():
        for path in best_dir.iterdir():
            if path.is_file() and (output_dir / path.name).is_file():
                (output_dir / path.name).unlink()


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
            checkpoint = directory / best["checkpoint"] if best.get("checkpoint") else None
            hint = ""
            if checkpoint and checkpoint.is_dir():
                hint = f"; pass --model {checkpoint} to use that checkpoint"
            elif checkpoint:
                hint = f", and neither does its checkpoint {checkpoint.name}; train again or pass a checkpoint-N"
            raise UserError(f"{directory / BEST_FILE} points to {best_dir}, which does not exist{hint}.")
        return check_model_dir(best_dir)
    if (directory / CONFIG_FILE).is_file():
        return check_model_dir(directory)
    found = sorted(path.name for pattern in ("checkpoint-*", "seed-*", BEST_DIR) for path in directory.glob(pattern))
    hint = f" It holds {', '.join(found)}: pass one of them." if found else ""
    from finetune.search_report import winner_run  # here: it imports this module

    if winner := winner_run(directory):  # finetune search's folder: the winner's run is one of its trials
        hint += f" It holds a finetune search, whose winner's run is {winner}."
    raise UserError(f"{directory} has no {BEST_FILE} and no {CONFIG_FILE}, so it is neither a run nor a model.{hint}")


def run_arguments(model_dir: Path) -> dict:
    """The arguments of the run that trained the model in ``model_dir`` (finetune_args.json), or {} if unknown.

    best/ holds them; a checkpoint-N folder of the same run finds them in its sibling best/.
    """
    candidates = [model_dir]
    if model_dir.name.startswith("checkpoint-"):
        candidates.append(model_dir.parent / BEST_DIR)
    for directory in candidates:
        arguments = read_arguments(directory / ARGS_FILE)
        if arguments is not None:
            return arguments
    return {}


def read_arguments(path: Path) -> dict | None:
    """A run's arguments saved as JSON (finetune_args.json, training_args.json), or None if there is no such file."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is damaged ({error}); copy it again from the run, or delete it.") from None


# Complete checkpoints. The Trainer writes a checkpoint file by file; a crash or a full disk can leave one half
# written, and the Trainer would resume from it. A checkpoint counts as complete only when its marker exists:
# written last, atomically, it records the size of every file, so a file truncated later is noticed too.

COMPLETE_FILE = "checkpoint_complete.json"
TRAINER_STATE_FILE = "trainer_state.json"
AUTO_RESUME = "auto"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def mark_complete(checkpoint_dir: Path, step: int) -> None:
    """Writes the completion marker into a checkpoint whose every file is written: call it last."""
    files = {}
    for path in sorted(checkpoint_dir.rglob("*")):
        if path.is_file() and path.name != COMPLETE_FILE:
            fsync(path)
            files[path.relative_to(checkpoint_dir).as_posix()] = path.stat().st_size
    write_json_atomically(checkpoint_dir / COMPLETE_FILE, {"step": step, "files": files}, durable=True)


def disk_full(error: Exception) -> bool:
    """Whether saving failed for lack of space: ENOSPC, or torch's zip writer reporting a failed write."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    return "file write failed" in str(error)


@contextmanager
def stop_when_disk_full(doing: str, checkpoints: str):
    """Turns a write that failed for lack of space into a message that says what is intact and what to do.

    Args:
        doing: What was being written, e.g. "saving checkpoint-8 in outputs/run".
        checkpoints: Which checkpoints are intact, after "The checkpoints ", e.g. "before it".
    """
    try:
        yield
    except (OSError, RuntimeError) as error:
        if not disk_full(error):
            raise
        raise UserError(
            f"No space left on device while {doing}. The checkpoints {checkpoints} are intact; free some space (or "
            "lower save_total_limit) and run again with --resume to continue from the last complete one."
        ) from error


def checkpoint_problem(checkpoint_dir: Path) -> str | None:
    """Why a checkpoint cannot be resumed from, naming the file; None when it is complete and readable."""
    marker = checkpoint_dir / COMPLETE_FILE
    if not marker.is_file():
        return f"{checkpoint_dir} is incomplete: it has no {COMPLETE_FILE}, so saving it never finished"
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        return f"{marker} is not a valid completion marker"
    for name, size in files.items():
        path = checkpoint_dir / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != size:
            return f"{path} has {path.stat().st_size} bytes but had {size} when saved: it is truncated or was changed"
    return content_problem(checkpoint_dir)


def content_problem(checkpoint_dir: Path) -> str | None:
    """Opens what resuming will load: trainer_state.json, the safetensors weights, the torch files (weights
    only: a pickle that would build any other object is refused, never run)."""
    import torch
    from safetensors import safe_open
    from transformers.trainer_pt_utils import safe_globals

    state_file = checkpoint_dir / TRAINER_STATE_FILE
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"{state_file} is not valid JSON ({error})"
    best = state.get("best_model_checkpoint")
    if best and not (checkpoint_dir.parent / Path(best).name).is_dir():
        return f"{state_file} names {Path(best).name} as the best checkpoint, which does not exist"
    pickles = sorted(path.name for path in checkpoint_dir.glob("*.bin"))
    if pickles:
        return f"{checkpoint_dir} holds pickled files ({', '.join(pickles)}); only safetensors weights are loaded"
    weights = sorted(checkpoint_dir.glob("*.safetensors"))
    if not weights:
        return f"{checkpoint_dir} has no model.safetensors"
    for path in weights:
        try:
            with safe_open(path, framework="pt") as opened:
                opened.keys()
        except Exception as error:  # safetensors raises its own error types for a bad header
            return f"{path} is not a readable safetensors file ({error})"
    for path in sorted([*checkpoint_dir.glob("*.pt"), *checkpoint_dir.glob("*.pth")]):
        try:
            with safe_globals():
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError as error:
            first_line = str(error).strip().splitlines()[0]
            return f"{path} holds something other than tensors, refused unopened (weights_only): {first_line}"
        except Exception as error:  # a truncated zip archive, a file that is no torch file
            return f"{path} cannot be read ({error})"
    return None


def checkpoints_newest_first(output_dir: Path) -> list[Path]:
    """The checkpoint-N folders of a run, highest step first."""
    found = [
        path for path in output_dir.glob("checkpoint-*") if path.is_dir() and CHECKPOINT_NAME.fullmatch(path.name)
    ]
    return sorted(found, key=lambda path: int(CHECKPOINT_NAME.fullmatch(path.name).group(1)), reverse=True)


def find_resume_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete, readable checkpoint; newer ones that are not are skipped with a warning."""
    for checkpoint in checkpoints_newest_first(output_dir):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint
        logger.warning("skipping %s: %s", checkpoint.name, problem)
    return None


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str | Path) -> str | None:
    """The checkpoint to resume from, for ``resume_from_checkpoint``: None, ``auto`` or a checkpoint folder.

    Raises:
        UserError: An explicitly named checkpoint is missing, incomplete or holds a bad file (named).
    """
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == AUTO_RESUME:
        checkpoint = find_resume_checkpoint(Path(output_dir))
        if checkpoint is None:
            logger.info("resume: no complete checkpoint in %s; training from the start.", output_dir)
            return None
        logger.info("resume: from %s", checkpoint)
        return str(checkpoint)
    checkpoint = Path(resume_from_checkpoint)
    if not checkpoint.is_dir():
        raise UserError(f"resume_from_checkpoint {checkpoint} is not a directory.")
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise UserError(
            f"Cannot resume from {checkpoint}: {problem}. Resume from an older checkpoint, or pass "
            f"--resume to pick the newest complete one."
        )
    return str(checkpoint)
