"""The real `accelerate launch`: CPU DDP with two processes, the mis-launch guard, two 'machines' over loopback."""

import json
import math
import os
import socket
import subprocess
import sys

import pytest
from conftest import QUICK_TEXTCNN, REPO, read_jsonl
from test_multilabel import topics  # noqa: F401  (a fixture)
from test_vocabulary import tiny_bert_without

from finetune.rows import CHUNK_ROWS
from finetune.train import main as train_main

TRAIN_SCRIPT = str(REPO / "finetune" / "train.py")
PRETRAIN_SCRIPT = str(REPO / "finetune" / "pretrain.py")
# 200 training rows in batches of 20: 10 steps an epoch for one process, 5 for each of two.
QUICK = QUICK_TEXTCNN + ["--per_device_train_batch_size", "20"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    launcher_flags: list[str], script_args: list[str], cwd, script: str = TRAIN_SCRIPT, **popen
) -> subprocess.Popen:
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher_flags, script, *script_args]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


def global_step(run) -> int:
    return json.loads((run / "trainer_state.json").read_text())["global_step"]


def assert_one_ddp_run(run, single_process_steps: int, log: str) -> None:
    # Two processes each see half of every epoch: half the optimizer steps of one process.
    assert global_step(run) * 2 == single_process_steps, log
    assert (run / "best" / "model.safetensors").is_file()
    best = json.loads((run / "best.json").read_text())
    assert (run / best["checkpoint"]).is_dir()
    assert json.loads((run / "all_results.json").read_text())["test_accuracy"] > 0.6
    # Only the main process tokenized; the other one loaded its result from the cache (needs --disable_tqdm false).
    assert log.count("Tokenizing train: 100%") == 1, log


@pytest.fixture
def single_process_steps(data_args, tmp_path) -> int:
    args = [a.replace(str(tmp_path / "run"), str(tmp_path / "single")) for a in data_args]
    assert train_main(args + QUICK + ["--use_cpu", "true"]) == 0
    return global_step(tmp_path / "single")


def test_cpu_ddp_two_processes(data_args, tmp_path, single_process_steps):
    args = [a.replace(str(tmp_path / "cache"), str(tmp_path / "ddp-cache")) for a in data_args]
    # With the progress bars shown: each process that tokenizes shows one (non-main processes log warnings only).
    args += ["--disable_tqdm", "false"]
    process = launch(
        ["--multi_gpu", "--num_processes", "2", "--main_process_port", str(free_port())],
        args + QUICK + ["--use_cpu", "true"],
        cwd=tmp_path,
    )
    log, _ = process.communicate(timeout=600)
    assert process.returncode == 0, log
    assert_one_ddp_run(tmp_path / "run", single_process_steps, log)
    # The Trainer gathers each batch's token count over the processes: two halves make the one process's total.
    tokens = [
        json.loads((tmp_path / name / "train_results.json").read_text())["train_tokens"] for name in ("single", "run")
    ]
    assert tokens[0] == tokens[1] > 0


def test_pretrain_under_cpu_ddp(reviews, tmp_path):
    encoder = tiny_bert_without(reviews, tmp_path / "bert")
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(row["text"] + "\n" for row in read_jsonl(reviews["train"])), encoding="utf-8")
    run = tmp_path / "run"
    flags = ["--model_name_or_path", str(encoder), "--train_file", str(texts), "--validation_split_percentage", "10"]
    flags += [
        "--max_length",
        "32",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "10",
        "--use_cpu",
        "true",
    ]
    flags += ["--output_dir", str(run), "--cache_dir", str(tmp_path / "cache"), "--disable_tqdm", "true"]
    ports = ["--main_process_port", str(free_port())]
    process = launch(["--multi_gpu", "--num_processes", "2", *ports], flags, cwd=tmp_path, script=PRETRAIN_SCRIPT)
    log, _ = process.communicate(timeout=600)
    assert process.returncode == 0, log
    # 180 training texts (10% of 200 held out) in batches of 10 on each of two processes: 9 steps.
    assert global_step(run) == 9, log
    assert (run / "best" / "model.safetensors").is_file()
    assert math.isfinite(json.loads((run / "eval_results.json").read_text())["eval_loss"])


def test_launch_without_use_cpu_on_a_machine_without_gpu_stops(data_args, tmp_path):
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has GPUs, so the launch is a real multi-GPU run")
    process = launch(
        ["--multi_gpu", "--num_processes", "2", "--main_process_port", str(free_port())],
        data_args + QUICK,
        cwd=tmp_path,
    )
    log, _ = process.communicate(timeout=600)
    assert process.returncode != 0
    assert "training is not distributed" in log and "--use_cpu true" in log
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_machines_over_loopback(data_args, tmp_path, single_process_steps):
    port = str(free_port())
    args = [a.replace(str(tmp_path / "cache"), str(tmp_path / "multi-node-cache")) for a in data_args]
    processes = [
        launch(
            [
                "--multi_gpu",
                "--num_machines", "2",
                "--machine_rank", str(rank),
                "--num_processes", "2",
                "--main_process_ip", "127.0.0.1",
                "--main_process_port", port,
            ],
            args + QUICK + ["--use_cpu", "true"],
            cwd=tmp_path,
        )
        for rank in (0, 1)
    ]  # fmt: skip
    logs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], logs
    # Both "machines" share this disk and cache folder, so each node's main process tokenizing is seen
    # as one miss and one hit; the run itself must be one DDP run written once.
    assert global_step(tmp_path / "run") * 2 == single_process_steps
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def launch_module(flags: list[str], cwd, threads: str = "1") -> subprocess.CompletedProcess:
    """``python -m finetune ...`` as accelerate launch starts it (flags: launcher flags, -m, module, its args)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", *flags]
    environment = dict(os.environ, OMP_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


def test_predict_and_evaluate_across_two_cpu_processes(data_args, reviews, tmp_path):
    assert train_main(data_args + QUICK + ["--num_train_epochs", "1"]) == 0
    # Three chunks (CHUNK_ROWS each but the last): two rounds of two processes, the second with one chunk.
    rows = [dict(row, text=f"{row['text']}{index}") for index, row in enumerate(read_jsonl(reviews["test"]) * 700)]
    assert 2 * CHUNK_ROWS < len(rows) < 3 * CHUNK_ROWS
    source = tmp_path / "many.jsonl"
    source.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    model = str(tmp_path / "run")
    port = ["--main_process_port", str(free_port())]

    def run(processes: int, *command: str) -> str:
        launcher = ["--num_processes", str(processes), *(["--multi_gpu", *port] if processes > 1 else []), "-m"]
        result = launch_module([*launcher, "finetune", *command, "--device", "cpu"], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    predict = ["predict", "--model", model, "--input", str(source), "--top_k", "all"]
    one = run(1, *predict, "--output", str(tmp_path / "one.jsonl"))
    two = run(2, *predict, "--output", str(tmp_path / "two.jsonl"))
    assert "by 2 processes" in two and "by 2 processes" not in one
    # Row for row the same output: same texts in the same order, and the same probabilities to the last bit.
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert len(read_jsonl(tmp_path / "two.jsonl")) == len(rows)

    evaluate = ["evaluate", "--model", model, "--test_file", str(source)]
    run(1, *evaluate, "--output", str(tmp_path / "one.json"))
    run(2, *evaluate, "--output", str(tmp_path / "two.json"))
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert two["samples"] == one["samples"] == len(rows)
    assert two["confusion_matrix"] == one["confusion_matrix"]
    assert two["metrics"] == pytest.approx(one["metrics"], rel=1e-12)


def test_standard_input_is_refused_under_several_processes(data_args, tmp_path):
    assert train_main(data_args + QUICK + ["--num_train_epochs", "1"]) == 0
    launcher = ["--multi_gpu", "--num_processes", "2", "--main_process_port", str(free_port()), "-m", "finetune"]
    result = launch_module([*launcher, "predict", "--model", str(tmp_path / "run"), "--input", "-"], tmp_path)
    assert result.returncode != 0
    assert "Standard input is read by one process only" in result.stdout + result.stderr


def test_multi_label_evaluate_across_two_cpu_processes(topics, tmp_path):  # noqa: F811
    from test_multilabel import QUICK as MULTI_LABEL_QUICK
    from test_multilabel import run_flags

    assert train_main(run_flags(topics, tmp_path) + MULTI_LABEL_QUICK + ["--num_train_epochs", "1"]) == 0
    rows = read_jsonl(topics["test"]) * (CHUNK_ROWS // 60 + 1)  # two chunks: one for each process
    source = tmp_path / "many.jsonl"
    source.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    evaluate = [
        "finetune",
        "evaluate",
        "--model",
        str(tmp_path / "run"),
        "--test_file",
        str(source),
        "--device",
        "cpu",
    ]
    one = launch_module(["--num_processes", "1", "-m", *evaluate, "--output", str(tmp_path / "one.json")], tmp_path)
    launcher = ["--multi_gpu", "--num_processes", "2", "--main_process_port", str(free_port()), "-m"]
    two = launch_module([*launcher, *evaluate, "--output", str(tmp_path / "two.json")], tmp_path)
    assert one.returncode == two.returncode == 0, two.stdout + two.stderr
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert two["samples"] == one["samples"] == len(rows)
    assert two["per_class"] == one["per_class"]
    assert two["metrics"] == pytest.approx(one["metrics"], rel=1e-12)
