"""Output into a pipe whose reader has gone (`finetune cache list | head -3`): the command stops quietly."""

import json
import os
import subprocess
import sys

import pytest
from test_cache import tokenize

from finetune.cli import CLOSED_PIPE_STATUS, run_command


def run_into_closed_pipe(argv: list[str], cwd) -> subprocess.Popen:
    """Starts ``python ARGV`` with stdout a pipe whose reading end is closed before the command writes a byte (its
    imports alone take a second), so its first write meets the closed pipe, as a late write after `head` exits does."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, *argv],
        cwd=cwd,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    os.close(write_end)
    os.close(read_end)
    return process


def test_commands_stop_quietly_when_the_reader_of_their_output_has_gone(reviews, tmp_path):
    files = {split: reviews[split] for split in ("train", "validation")}
    _, tokenizer, _ = tokenize(files, None, tmp_path / "cache", max_length=64)
    for max_length in (32, 16):
        tokenize(files, tokenizer, tmp_path / "cache", max_length=max_length)
    run = tmp_path / "run"
    run.mkdir()
    log_history = [
        {"loss": 0.7, "step": 5, "epoch": 0.5},
        {"eval_loss": 0.6, "eval_accuracy": 0.7, "step": 10, "epoch": 1.0},
    ]
    state = {"global_step": 10, "epoch": 1.0, "best_global_step": 10, "best_metric": 0.6, "log_history": log_history}
    (run / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")

    commands = {  # the `finetune` command, and a subcommand's module run as a script
        "finetune cache list": ["-m", "finetune", "cache", "list", "--cache_dir", str(tmp_path / "cache")],
        "finetune.report": ["-m", "finetune.report", str(run), "--output", str(tmp_path / "curves.png")],
    }
    # Started together: each spends seconds importing torch and transformers.
    processes = {name: run_into_closed_pipe(argv, cwd=tmp_path) for name, argv in commands.items()}
    for name, process in processes.items():
        _, errors = process.communicate(timeout=300)
        assert "Traceback" not in errors and "BrokenPipe" not in errors and "Exception ignored" not in errors, name
        assert process.returncode == CLOSED_PIPE_STATUS, (name, errors)
    assert (tmp_path / "curves.png").is_file(), "the work before the output was done"


def test_a_broken_pipe_that_is_not_the_output_is_an_error():
    def main(argv: list[str]) -> int:
        raise BrokenPipeError("a worker process went away")

    with pytest.raises(BrokenPipeError, match="worker"):
        run_command(main, [])
