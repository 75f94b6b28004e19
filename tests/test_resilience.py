"""Crashes, corrupt checkpoints, unsafe files, a full disk and determinism: training loses no work and loads
nothing it should not."""

import errno
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file

from finetune.checkpoints import COMPLETE_FILE, checkpoint_problem, mark_complete, resolve_resume
from finetune.config import TrainingArguments
from finetune.errors import UserError
from finetune.train import main as train_main

# Small and quick: 96 training rows in 6 batches per epoch, 2 epochs, a checkpoint every 2 steps.
STEPS_PER_EPOCH = 6
SHORT_RUN = [
    "--max_train_samples", "96",
    "--embedding_dim", "16",
    "--num_filters", "8",
    "--kernel_sizes", "1", "2", "3",
    "--per_device_train_batch_size", "16",
    "--learning_rate", "5e-3",
    "--num_train_epochs", "2",
    "--eval_strategy", "steps",
    "--save_strategy", "steps",
    "--eval_steps", "2",
    "--save_steps", "2",
    "--logging_steps", "1",
    "--train_sampling_strategy", "group_by_length",
]  # fmt: skip

# Runs finetune train, and SIGKILLs it while it saves checkpoint-<step>: after every file of the checkpoint is
# written, before its completion marker is.
KILL_WHILE_SAVING = """
import os, signal, sys
import finetune.train as train_module
import finetune.trainer as trainer_module
from finetune.cli import run_command

kill_at_step = int(sys.argv[1])
mark_complete = trainer_module.mark_complete


def mark_complete_or_die(checkpoint_dir, step):
    if step == kill_at_step:
        os.kill(os.getpid(), signal.SIGKILL)
    mark_complete(checkpoint_dir, step)


trainer_module.mark_complete = mark_complete_or_die
sys.exit(run_command(train_module.main, sys.argv[2:]))
"""


def run_args(reviews, tmp_path, name: str, *extra: str) -> list[str]:
    return [
        "--train_file", str(reviews["train"]),
        "--validation_file", str(reviews["validation"]),
        "--cache_dir", str(tmp_path / "cache"),
        "--output_dir", str(tmp_path / name),
        "--disable_tqdm", "true",
        *SHORT_RUN,
        *extra,
    ]  # fmt: skip


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path)


def assert_same_weights(first: Path, second: Path) -> None:
    first_weights, second_weights = weights(first), weights(second)
    assert first_weights.keys() == second_weights.keys()
    for name, tensor in first_weights.items():
        assert torch.equal(tensor, second_weights[name]), name


def losses(run: Path) -> list[tuple[int, str, float]]:
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    return [(entry["step"], key, entry[key]) for entry in history for key in ("loss", "eval_loss") if key in entry]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A short run, finished: checkpoint-12 (the last) and one older (the best, or checkpoint-10), best/, best.json."""
    from conftest import FIXTURES

    reviews = {split: FIXTURES / f"reviews_{split}.jsonl" for split in ("train", "validation")}
    tmp_path = tmp_path_factory.mktemp("finished")
    assert train_main(run_args(reviews, tmp_path, "run", "--save_total_limit", "2", "--seed", "42")) == 0
    return tmp_path / "run"


@pytest.fixture
def interrupted_run(finished_run, tmp_path) -> Path:
    """A copy of the finished run as a crash would leave it: checkpoints, no best/ and no best.json."""
    import shutil

    run = tmp_path / "interrupted"
    shutil.copytree(finished_run, run)
    shutil.rmtree(run / "best")
    (run / "best.json").unlink()
    return run


def older_checkpoint(run: Path) -> Path:
    """The run's checkpoint before the last one (checkpoint-12)."""
    (older,) = [path for path in run.glob("checkpoint-*") if path.name != "checkpoint-12"]
    return older


def test_every_checkpoint_is_marked_complete_with_its_file_sizes(finished_run):
    checkpoints = sorted(path.name for path in finished_run.glob("checkpoint-*"))
    assert len(checkpoints) == 2 and "checkpoint-12" in checkpoints
    for name in checkpoints:
        marker = json.loads((finished_run / name / COMPLETE_FILE).read_text())
        assert marker["step"] == int(name.split("-")[1])
        assert set(marker["files"]) >= {"model.safetensors", "optimizer.pt", "rng_state.pth", "trainer_state.json"}
        assert checkpoint_problem(finished_run / name) is None


@pytest.fixture
def resume_log():
    """What finetune.checkpoints logs (the command line's log handler does not propagate to pytest's)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("finetune.checkpoints")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("model.safetensors", truncate),
        ("optimizer.pt", truncate),
        ("trainer_state.json", lambda path: path.write_text('{"global_step": 12, "log_history": [')),
    ],
)
def test_a_corrupt_file_fails_explicit_resume_and_auto_falls_back(
    interrupted_run, reviews, tmp_path, capsys, resume_log, name, damage
):
    damage(interrupted_run / "checkpoint-12" / name)
    args = ["train", *run_args(reviews, tmp_path, "interrupted", "--resume_from_checkpoint")]
    from finetune.cli import main as cli_main

    assert cli_main([*args, str(interrupted_run / "checkpoint-12")]) == 2
    err = capsys.readouterr().err
    assert f"Cannot resume from {interrupted_run / 'checkpoint-12'}" in err and name in err and "Traceback" not in err
    assert resolve_resume("auto", interrupted_run) == str(older_checkpoint(interrupted_run))
    assert f"skipping checkpoint-12: {interrupted_run / 'checkpoint-12' / name}" in resume_log.getvalue()


def test_a_corrupt_file_is_named_even_when_the_marker_is_rewritten(interrupted_run):
    """The sizes in the marker catch truncation; opening the files catches damage of the same size."""
    checkpoint = interrupted_run / "checkpoint-12"
    for name in ("model.safetensors", "optimizer.pt"):
        path = checkpoint / name
        original = path.read_bytes()
        path.write_bytes(b"\0" * len(original))
        mark_complete(checkpoint, 12)
        with pytest.raises(UserError, match=rf"{name} (is not a readable safetensors file|cannot be read)"):
            resolve_resume(str(checkpoint), interrupted_run)
        path.write_bytes(original)
        mark_complete(checkpoint, 12)
    assert resolve_resume(str(checkpoint), interrupted_run) == str(checkpoint)


class CreatesAFile:
    """Unpickling this runs os.system, which creates a file: the proof that a pickle was executed."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


@pytest.mark.parametrize("name", ["rng_state.pth", "optimizer.pt"])
def test_a_pickle_payload_in_a_checkpoint_is_refused_unexecuted(interrupted_run, tmp_path, name):
    proof = tmp_path / "payload_ran"
    checkpoint = interrupted_run / "checkpoint-12"
    torch.save({"state": CreatesAFile(proof)}, checkpoint / name)
    mark_complete(checkpoint, 12)  # as if the payload were planted before the marker was written
    with pytest.raises(UserError, match=rf"{name} holds something other than tensors, refused unopened"):
        resolve_resume(str(checkpoint), interrupted_run)
    assert resolve_resume("auto", interrupted_run) == str(older_checkpoint(interrupted_run))
    assert not proof.exists()


def test_pickled_weights_are_not_loaded(interrupted_run):
    checkpoint = interrupted_run / "checkpoint-12"
    torch.save(load_file(checkpoint / "model.safetensors"), checkpoint / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"holds pickled files \(pytorch_model.bin\)"):
        resolve_resume(str(checkpoint), interrupted_run)


def test_trust_remote_code_is_off_by_default():
    from finetune.config import ModelArguments

    assert ModelArguments().trust_remote_code is False


def test_best_checkpoint_that_no_longer_exists(interrupted_run, finished_run, tmp_path):
    import shutil

    from finetune.checkpoints import resolve_model_dir

    checkpoint = interrupted_run / "checkpoint-12"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    state["best_model_checkpoint"] = str(interrupted_run / "checkpoint-6")  # rotated away, or deleted by hand
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    mark_complete(checkpoint, 12)
    with pytest.raises(UserError, match=r"names checkpoint-6 as the best checkpoint, which does not exist"):
        resolve_resume(str(checkpoint), interrupted_run)

    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(finished_run / "best.json", moved)
    with pytest.raises(UserError, match=r"which does not exist, and neither does its checkpoint checkpoint-"):
        resolve_model_dir(moved)


def test_overwrite_keeps_the_earlier_run_when_the_new_one_cannot_start(finished_run, reviews, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = sorted(path.relative_to(run) for path in run.rglob("*"))
    bad_rows = tmp_path / "bad.jsonl"
    bad_rows.write_text('{"text": "好", "label": "positive"}\n{"text": \n', encoding="utf-8")
    for train_file in (tmp_path / "trian.jsonl", bad_rows):  # a typo in the file name; a broken line
        flags = run_args({**reviews, "train": train_file}, tmp_path, "run", "--overwrite_output_dir", "true")
        with pytest.raises(UserError):
            train_main(flags)
        assert sorted(path.relative_to(run) for path in run.rglob("*")) == before


def test_resume_without_checkpoints_starts_fresh(tmp_path, resume_log):
    (tmp_path / "checkpoint-4").mkdir()  # cut short before any file was written
    assert resolve_resume("auto", tmp_path) is None
    assert "skipping checkpoint-4" in resume_log.getvalue() and "training from the start" in resume_log.getvalue()
    with pytest.raises(UserError, match="checkpoint-4 is incomplete"):
        resolve_resume(str(tmp_path / "checkpoint-4"), tmp_path)


def test_resume_accepts_an_interrupted_run_but_not_a_finished_one(interrupted_run, finished_run, reviews):
    from finetune.parsing import parse_args

    base = ["--train_file", str(reviews["train"])]
    assert parse_args([*base, "--output_dir", str(interrupted_run), "--resume"])[2].resume_from_checkpoint == "auto"
    with pytest.raises(UserError, match="already holds a run"):
        parse_args([*base, "--output_dir", str(interrupted_run)])
    with pytest.raises(UserError, match="holds a finished run"):
        parse_args([*base, "--output_dir", str(finished_run), "--resume"])
    with pytest.raises(UserError, match="deletes the checkpoints that resuming needs"):
        parse_args([*base, "--output_dir", str(finished_run), "--resume", "--overwrite_output_dir", "true"])
    assert TrainingArguments(output_dir="x", resume=True).resume_from_checkpoint == "auto"


def test_disk_full_while_saving_keeps_earlier_checkpoints_and_resume_finishes(
    finished_run, reviews, tmp_path, monkeypatch, capsys
):
    from finetune.cli import main as cli_main

    save = torch.save
    optimizer_saves = []

    def save_until_the_disk_is_full(obj, path, *args, **kwargs):
        if str(path).endswith("optimizer.pt"):
            optimizer_saves.append(path)
            if len(optimizer_saves) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    assert cli_main(["train", *run_args(reviews, tmp_path, "run")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device while saving checkpoint-4" in err and "--resume" in err
    assert "Traceback" not in err
    run = tmp_path / "run"
    assert checkpoint_problem(run / "checkpoint-2") is None
    assert not (run / "checkpoint-4" / COMPLETE_FILE).exists() and not (run / "best.json").exists()

    monkeypatch.setattr(torch, "save", save)  # space freed
    assert cli_main(["train", *run_args(reviews, tmp_path, "run", "--resume")]) == 0
    assert f"resume: from {run / 'checkpoint-2'}" in capsys.readouterr().out
    assert json.loads((run / "best.json").read_text()) == json.loads((finished_run / "best.json").read_text())
    assert_same_weights(
        run / "checkpoint-12" / "model.safetensors", finished_run / "checkpoint-12" / "model.safetensors"
    )


def test_out_of_device_memory_exits_2_naming_the_settings_to_lower(reviews, tmp_path, monkeypatch, capsys):
    from finetune.cli import main as cli_main
    from finetune.trainer import ClassifierTrainer

    training_step = ClassifierTrainer.training_step

    def out_of_memory_at_step_5(self, model, inputs, num_items_in_batch=None):
        if self.state.global_step == 4:  # as a device would at a batch larger than the ones before
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
                "1.06 GiB is free. Of the allocated memory 75.2 GiB is allocated by PyTorch."
            )
        return training_step(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(ClassifierTrainer, "training_step", out_of_memory_at_step_5)
    assert cli_main(["train", *run_args(reviews, tmp_path, "run", "--max_length", "96")]) == 2
    err = capsys.readouterr().err
    assert "error: CUDA out of memory. Tried to allocate 2.00 GiB (on cpu; per_device_train_batch_size 16, " in err
    assert "per_device_eval_batch_size 8, max_length 96). Lower them" in err and "Traceback" not in err
    run = tmp_path / "run"
    assert checkpoint_problem(run / "checkpoint-4") is None and not (run / "best.json").exists()


def test_disk_full_while_writing_best_stops_with_a_message_and_resume_writes_it(
    finished_run, reviews, tmp_path, monkeypatch, capsys
):
    import transformers.modeling_utils

    from finetune.cli import main as cli_main

    save_file = transformers.modeling_utils.safe_save_file

    def best_does_not_fit(tensors, filename, *args, **kwargs):
        if Path(filename).parent.name == "best":
            raise OSError(errno.ENOSPC, "No space left on device", str(filename))
        return save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", best_does_not_fit)
    assert cli_main(["train", *run_args(reviews, tmp_path, "run")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device while writing the results and best/" in err and "--resume" in err
    run = tmp_path / "run"
    assert not (run / "best.json").exists()  # the run does not count as finished
    assert checkpoint_problem(run / "checkpoint-12") is None

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", save_file)  # space freed
    assert cli_main(["train", *run_args(reviews, tmp_path, "run", "--resume")]) == 0
    assert json.loads((run / "best.json").read_text()) == json.loads((finished_run / "best.json").read_text())
    assert_same_weights(run / "best" / "model.safetensors", finished_run / "best" / "model.safetensors")


def test_best_json_is_written_last_so_a_run_cut_short_after_best_is_resumed(
    finished_run, reviews, tmp_path, monkeypatch, capsys
):
    import finetune.train
    from finetune.cli import main as cli_main

    def card_does_not_fit(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "README.md")

    write_model_card = finetune.train.write_model_card
    monkeypatch.setattr(finetune.train, "write_model_card", card_does_not_fit)
    assert cli_main(["train", *run_args(reviews, tmp_path, "run")]) == 2
    assert "No space left on device while writing the model card" in capsys.readouterr().err
    run = tmp_path / "run"
    assert (run / "best" / "model.safetensors").is_file() and (run / "eval_results.json").is_file()
    assert not (run / "best.json").exists()  # evaluated, but not finished

    monkeypatch.setattr(finetune.train, "write_model_card", write_model_card)
    assert cli_main(["train", *run_args(reviews, tmp_path, "run", "--resume")]) == 0
    assert json.loads((run / "best.json").read_text()) == json.loads((finished_run / "best.json").read_text())
    assert (run / "best" / "README.md").is_file() and (run / "curves.png").is_file()


@pytest.mark.parametrize(
    "ending",
    [
        ["--max_steps", "10"],
        ["--max_steps", "200", "--learning_rate", "0.05", "--early_stopping_patience", "1"],  # stops early
    ],
)
def test_resuming_from_the_checkpoint_where_the_run_ended_trains_no_more(reviews, tmp_path, ending):
    # Stopped after the last checkpoint was saved: the checkpoints are there, the results and best.json are not.
    steps = ["--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "5", "--save_steps", "5"]
    assert train_main(run_args(reviews, tmp_path, "straight", *steps, *ending)) == 0
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    stopped.mkdir()
    for checkpoint in straight.glob("checkpoint-*"):
        shutil.copytree(checkpoint, stopped / checkpoint.name)
    assert train_main(run_args(reviews, tmp_path, "stopped", *steps, *ending, "--resume")) == 0
    state = json.loads((stopped / "trainer_state.json").read_text())
    assert state["global_step"] == json.loads((straight / "trainer_state.json").read_text())["global_step"]
    assert sorted(path.name for path in stopped.glob("checkpoint-*")) == sorted(
        path.name for path in straight.glob("checkpoint-*")
    )
    assert json.loads((stopped / "best.json").read_text()) == json.loads((straight / "best.json").read_text())


def test_same_seed_same_losses_and_weights_other_seed_other_ones(finished_run, reviews, tmp_path):
    assert train_main(run_args(reviews, tmp_path, "again", "--seed", "42")) == 0
    assert train_main(run_args(reviews, tmp_path, "other", "--seed", "7")) == 0
    again, other = tmp_path / "again", tmp_path / "other"
    assert losses(again) == losses(finished_run)
    assert_same_weights(again / "best" / "model.safetensors", finished_run / "best" / "model.safetensors")
    assert [loss for _, _, loss in losses(other)] != [loss for _, _, loss in losses(finished_run)]
    other_weights = weights(other / "checkpoint-12" / "model.safetensors")
    assert any(
        not torch.equal(tensor, other_weights[name])
        for name, tensor in weights(finished_run / "checkpoint-12" / "model.safetensors").items()
    )


@pytest.mark.slow
def test_killed_while_saving_and_resumed_ends_exactly_like_an_uninterrupted_run(
    finished_run, reviews, tmp_path, capsys
):
    straight = finished_run  # the same arguments, uninterrupted

    kill_step = STEPS_PER_EPOCH + 4  # the second epoch, mid-epoch
    script = tmp_path / "kill_while_saving.py"
    script.write_text(KILL_WHILE_SAVING)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    killed = subprocess.run(
        [sys.executable, str(script), str(kill_step), *run_args(reviews, tmp_path, "resumed")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = tmp_path / "resumed"
    partial = resumed / f"checkpoint-{kill_step}"
    assert (partial / "model.safetensors").is_file() and not (partial / COMPLETE_FILE).exists()
    assert not (resumed / "best.json").exists()

    capsys.readouterr()
    assert train_main(run_args(reviews, tmp_path, "resumed", "--resume")) == 0
    out = capsys.readouterr().out
    assert f"skipping checkpoint-{kill_step}: " in out and f"has no {COMPLETE_FILE}" in out
    assert f"resume: from {resumed / f'checkpoint-{kill_step - 2}'}" in out
    trainer_state = json.loads((resumed / "trainer_state.json").read_text())
    assert trainer_state["global_step"] == json.loads((straight / "trainer_state.json").read_text())["global_step"]
    assert losses(resumed) == losses(straight)  # the history the checkpoint carried, and every step after it
    best, best_straight = (
        json.loads((resumed / "best.json").read_text()),
        json.loads((straight / "best.json").read_text()),
    )
    assert (best["checkpoint"], best["value"]) == (best_straight["checkpoint"], best_straight["value"])
    assert_same_weights(resumed / "best" / "model.safetensors", straight / "best" / "model.safetensors")
    last = f"checkpoint-{2 * STEPS_PER_EPOCH}"
    assert_same_weights(resumed / last / "model.safetensors", straight / last / "model.safetensors")
    assert checkpoint_problem(resumed / last) is None  # written again and marked complete


def test_training_skips_bad_rows_into_a_report_and_reads_bom_crlf_and_long_texts(reviews, tmp_path, capsys):
    from finetune.cli import main as cli_main

    lines = reviews["train"].read_text(encoding="utf-8").splitlines()
    lines[1] = json.dumps({"text": "很长的评论" * 400, "label": json.loads(lines[1])["label"]}, ensure_ascii=False)
    bad = ["not json", '{"text": "", "label": "positive"}', '{"text": "no label"}', '{"text": "typed", "label": 1}']
    train_file = tmp_path / "train.jsonl"
    train_file.write_bytes("\ufeff".encode() + "\r\n".join(lines[:100] + bad + lines[100:]).encode() + b"\r\n")
    args = ["train", *run_args(reviews, tmp_path, "run", "--max_steps", "2", "--max_length", "64")]
    args[args.index(str(reviews["train"]))] = str(train_file)

    assert cli_main(args) == 2
    assert f"{train_file}, line 101: not valid JSON" in capsys.readouterr().err

    assert cli_main([*args, "--bad_rows", "skip"]) == 0
    assert "skipped 4 bad row(s)" in capsys.readouterr().out
    report = [json.loads(line) for line in (tmp_path / "run" / "bad_rows.jsonl").read_text().splitlines()]
    assert [(row["file"], row["line"]) for row in report] == [(str(train_file), line) for line in (101, 102, 103, 104)]
    assert "empty 'text'" in report[1]["reason"] and "no 'label'" in report[2]["reason"]
    assert "mixes types" in report[3]["reason"]
    max_train_samples = int(SHORT_RUN[SHORT_RUN.index("--max_train_samples") + 1])  # the long text is among them
    assert json.loads((tmp_path / "run" / "train_results.json").read_text())["train_samples"] == max_train_samples

    # A second run on the same files loads the prepared data from the cache, and still reports the skipped rows.
    args[args.index(str(tmp_path / "run"))] = str(tmp_path / "warm")
    assert cli_main([*args, "--bad_rows", "skip"]) == 0
    assert "prepared data: hit" in capsys.readouterr().out
    assert (tmp_path / "warm" / "bad_rows.jsonl").read_text() == (tmp_path / "run" / "bad_rows.jsonl").read_text()


def test_a_ctrl_c_that_python_drops_while_the_model_is_built_stops_the_run_at_its_first_step(
    reviews, tmp_path, monkeypatch, capsys
):
    import signal

    import finetune.train as train_module
    from finetune.cli import check_interrupt, run_command

    class PressedDuringCollection:
        def __del__(self):  # a garbage-collection callback: the KeyboardInterrupt raised here is dropped
            signal.raise_signal(signal.SIGINT)

    build_model = train_module.build_model

    def build_model_and_press_ctrl_c(*args, **kwargs):
        PressedDuringCollection()
        return build_model(*args, **kwargs)

    monkeypatch.setattr(train_module, "build_model", build_model_and_press_ctrl_c)
    unraisable = sys.unraisablehook
    # Ctrl-C as in a terminal: a test run started as a background job has SIGINT ignored.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert run_command(train_module.main, run_args(reviews, tmp_path, "run")) == 130
        error = capsys.readouterr().err
        assert "stopped (Ctrl-C)" in error and "Exception ignored" not in error and "Traceback" not in error
        assert not (tmp_path / "run" / "best.json").exists() and not list((tmp_path / "run").glob("checkpoint-*"))
        # Afterwards Ctrl-C and unraisable exceptions are Python's own again, and nothing is left pressed.
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and sys.unraisablehook is unraisable
        check_interrupt()
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_remembered_ctrl_c_ends_with_its_command_where_sigint_is_not_the_commands(monkeypatch):
    """Where SIGINT is ignored (a background job) or handled by another, the command does not take it over, and a
    Ctrl-C remembered during it (as a test records one) still ends with it: it must not stop the next command."""
    import signal

    from finetune.cli import PRESSED, check_interrupt, run_command

    monkeypatch.setattr(signal, "getsignal", lambda number: signal.SIG_IGN)  # as in a shell's background job

    def command(argv):
        PRESSED.append(signal.SIGINT)
        check_interrupt()
        return 0

    assert run_command(command, []) == 130 and PRESSED == []
    check_interrupt()  # nothing left pressed
