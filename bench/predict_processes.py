"""Predict across processes: memory and speed of `accelerate launch -m finetune.predict` against the number of rows.

Trains a TextCNN on the demo for one epoch, writes files of --rows rows cycled from the demo's training reviews
(each text made unique by its row number, as bench/scale.py does), and classifies each with one process
(`python -m finetune predict`) and with --processes CPU processes (`accelerate launch --multi_gpu --num_processes N
-m finetune.predict --device cpu`). For each run: wall seconds, rows per second, the peak RSS of the largest
process (ru_maxrss through os.wait4, which covers the launcher's children) and the peak of the processes' summed
PSS (sampled from /proc), and whether the outputs of one and several processes are the same bytes. Memory that
stays flat from the smallest file to the largest is the point; on a 2-core machine two processes cannot be faster
than one, each running torch on one core.

    python bench/predict_processes.py --output bench/results/predict_processes.json
    python bench/predict_processes.py --rows 20000 80000 --processes 2
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import OFFLINE, REPO, add_output_argument, write_result
from scale import TreeMemory, source_rows, write_rows


def log(message: str) -> None:
    print(f"[predict_processes {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measured(command: list[str], threads: int) -> dict:
    environment = dict(os.environ, **OFFLINE, OMP_NUM_THREADS=str(threads))
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    memory = TreeMemory(process.pid)
    memory.start()
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    memory.stopped.set()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{stderr.decode()[-3000:]}")
    return {
        "wall_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb_largest_process": round(usage.ru_maxrss / 1024, 1),
        "peak_pss_mb_all_processes": round(memory.peak_kb / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", type=int, default=[40_000, 160_000])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--work_dir", type=Path, default=REPO / "outputs" / "bench-predict-processes")
    add_output_argument(parser)
    args = parser.parse_args(argv)

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    model = work / "textcnn"
    log("training a TextCNN on the demo, 1 epoch")
    train = [sys.executable, "-m", "finetune", "train", "--config", "configs/textcnn.yaml", "--output_dir", str(model)]
    train += [
        "--overwrite_output_dir",
        "true",
        "--num_train_epochs",
        "1",
        "--disable_tqdm",
        "true",
        "--baseline",
        "none",
    ]
    subprocess.run(train, cwd=REPO, check=True, env=dict(os.environ, **OFFLINE), stdout=subprocess.DEVNULL)

    source = source_rows(REPO / "data" / "chinese_sentiment" / "train.jsonl")
    sizes = {}
    for rows in args.rows:
        data = work / f"rows-{rows}.jsonl"
        write_rows(data, rows, source)
        runs = {}
        for processes in (1, args.processes):
            output = work / f"rows-{rows}-processes-{processes}.jsonl"
            predict = ["--model", str(model), "--input", str(data), "--output", str(output), "--device", "cpu"]
            if processes == 1:
                command = [sys.executable, "-m", "finetune", "predict", *predict]
                threads = os.cpu_count() or 1
            else:
                launcher = ["--multi_gpu", "--num_processes", str(processes), "--main_process_port", str(free_port())]
                command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "-m", "finetune.predict"]
                command += predict
                threads = max((os.cpu_count() or 1) // processes, 1)
            log(f"{rows} rows, {processes} process(es), {threads} torch thread(s) each")
            result = measured(command, threads)
            result["rows_per_second"] = round(rows / result["wall_seconds"], 1)
            result["torch_threads_per_process"] = threads
            runs[str(processes)] = result
        outputs = [work / f"rows-{rows}-processes-{processes}.jsonl" for processes in (1, args.processes)]
        sizes[str(rows)] = {"runs": runs, "same_output": outputs[0].read_bytes() == outputs[1].read_bytes()}
        for path in [data, *outputs]:
            path.unlink()
    smallest, largest = str(min(args.rows)), str(max(args.rows))
    several = str(args.processes)
    growth = {
        name: round(sizes[largest]["runs"][several][name] - sizes[smallest]["runs"][several][name], 1)
        for name in ("peak_rss_mb_largest_process", "peak_pss_mb_all_processes")
    }
    write_result(
        {
            "benchmark": "predict_processes",
            "model": "TextCNN, configs/textcnn.yaml, 1 epoch on the demo",
            "processes": args.processes,
            "rows": sizes,
            f"growth_{smallest}_to_{largest}_rows_with_{several}_processes_mb": growth,
        },
        args.output,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
