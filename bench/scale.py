"""Scale benchmark: how wall time and peak memory grow with the number of training rows.

For each N (default 100,000 and 1,000,000; --10m adds 10,000,000) it writes N rows of jsonl cycled from
data/chinese_sentiment/train.jsonl, each text made unique by its row number (hex, after a space), and runs each
of these as a fresh subprocess, every one with its own empty cache folder unless noted:

- train_cold: `finetune train --config configs/textcnn.yaml --train_file BIG --max_steps STEPS` with evaluation
  and a checkpoint at STEPS (validation and test stay the demo's);
- train_cold_workers2: the same with --preprocessing_num_workers 2 (when --workers is 1 and --compare_workers is
  on, the default up to 1M rows);
- train_warm: train_cold's command again on train_cold's cache (every split a hit) into another output folder,
  with hash_seconds (sha256 of BIG in this process, 1 MiB reads). Every training run reports
  seconds_to_first_step (process start to its `first training step` log line, null without one) and
  first_step_logged_seconds (the figure that line gives);
- datasets_baseline (and _workers2): plain `datasets.load_dataset("json")` and a batched `Dataset.map` of
  train_cold's tokenizer (max_length 256), with load_seconds and map_seconds measured inside that process;
- predict: `finetune predict --model OUT --input BIG --output FILE` on train_cold's run; rows_per_second from
  its `... rows/s` log line, else N / wall (startup included; rows_per_second_from says which); and once,
  predict_10k on the first 10,000 rows of the same generator, which each N's throughput is compared with;
- imports, once: a fresh interpreter importing the libraries any Trainer-based command needs (torch, datasets,
  transformers' Trainer and Auto classes), and one importing finetune.train, 3 times each; the warm start's check
  also gives what is left of it beyond the libraries' imports.

Memory: peak_rss_mb is ru_maxrss from os.wait4 on the child, which Linux reports as the largest peak of the child
and of every descendant it waited for (preprocessing workers, dataloader workers): the largest single process,
not their sum. peak_tree_pss_mb is the proportional set size (a page shared by n processes counts 1/n in each)
summed over the child and its live descendants, sampled every 0.2 s: what the process tree holds together, which
can miss a peak shorter than a sample.

Prints one JSON object (progress goes to stderr); `checks` compares the measurements with the targets. A failed
command leaves its returncode and output_tail in the JSON and the benchmark goes on.

    python bench/scale.py
    python bench/scale.py --rows 2000 5000 --steps 3
    python bench/scale.py --10m --output bench/results/scale.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import operator
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "data" / "chinese_sentiment" / "train.jsonl"
CONFIG = "configs/textcnn.yaml"
MAX_LENGTH = 256  # configs/textcnn.yaml's max_length: the baseline tokenizes the same way
BLOCK_ROWS = 200_000  # rows joined into one write while generating
PREDICT_BASE_ROWS = 10_000
FIRST_STEP = "first training step"
LOGGED_SECONDS = re.compile(r"(\d+(?:\.\d+)?) s\b")  # "first training step, 4.2 s after the arguments were read"
ROWS_PER_SECOND = re.compile(r"([\d][\d,]*(?:\.\d+)?)\s*rows/s")
RESULT_PREFIX = "SCALE_RESULT "
TAIL_CHARS = 2000
SAMPLE_SECONDS = 0.2
ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

# Targets. The first three are set numbers; the two speed ratios ask only that the package be no slower than plain
# datasets and that two workers be no slower than one.
RSS_GROWTH_MB = 300
WARM_START_SECONDS = 5.0
PREDICT_THROUGHPUT_RATIO = 0.9
COLD_OVER_BASELINE = 1.0
WORKERS2_OVER_WORKERS1 = 1.0

# What any Trainer-based command imports before its own code runs, against what `finetune train` imports: the
# part of the warm start that finetune's code cannot remove.
IMPORTS = {
    "libraries": "import torch, datasets, transformers; "
    "from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments",
    "finetune_train": "import finetune.train",
}
IMPORT_REPEATS = 3

BASELINE_SCRIPT = f"""
import json, sys, time
import finetune  # registers the textcnn model type with the Auto classes
import datasets
from transformers import AutoTokenizer

data_file, tokenizer_dir, cache_dir, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
datasets.disable_progress_bars()
tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
start = time.perf_counter()
dataset = datasets.load_dataset("json", data_files=data_file, split="train", cache_dir=cache_dir)
loaded = time.perf_counter()

def tokenize(batch):
    return tokenizer(batch["text"], truncation=True, max_length={MAX_LENGTH})

dataset = dataset.map(tokenize, batched=True, num_proc=workers if workers > 1 else None)
mapped = time.perf_counter()
result = {{"load_seconds": loaded - start, "map_seconds": mapped - loaded, "rows": len(dataset)}}
print({RESULT_PREFIX!r} + json.dumps(result), flush=True)
"""


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Data


def source_rows(path: Path) -> list[tuple[str, str]]:
    """Each source row as the text of its jsonl line before and after the row number that makes it unique."""
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                text = json.dumps(row["text"], ensure_ascii=False)[:-1]  # without the closing quote
                label = json.dumps(row["label"], ensure_ascii=False)
                rows.append(('{"text": ' + text + " ", '", "label": ' + label + "}\n"))
    return rows


def write_rows(path: Path, count: int, source: list[tuple[str, str]]) -> None:
    """Writes ``count`` rows cycled over ``source``, row i's text ending in " {i:x}", in blocks of BLOCK_ROWS."""
    size = len(source)
    with path.open("w", encoding="utf-8") as out:
        for start in range(0, count, BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, count)
            out.write("".join(f"{source[i % size][0]}{i:x}{source[i % size][1]}" for i in range(start, stop)))


def sha256_seconds(path: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while block := data.read(2**20):
            digest.update(block)
    return time.perf_counter() - start


# Running a measured subprocess


def pss_kb(pid: int) -> int:
    """Proportional set size: resident memory with each page shared by n processes counted 1/n in each."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0  # a process that has ended and not been waited for yet


def tree_pss_kb(root: int) -> int:
    """Proportional set size of ``root`` and all its live descendants, summed, in kB."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            total += pss_kb(pid)
        except (OSError, ValueError):
            pass  # the process ended meanwhile
    return total


class TreeMemory(threading.Thread):
    """Samples tree_pss_kb of a process until stopped; ``peak_kb`` is the largest sample."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.stopped = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_SECONDS):
            self.peak_kb = max(self.peak_kb, tree_pss_kb(self.pid))


def run_measured(command: list[str], log_file: Path, environment: dict[str, str], verbose: bool) -> dict:
    """Runs ``command`` in the repository; wall seconds, peak RSS, exit code and what its output announced."""
    env = dict(os.environ, **ENVIRONMENT, **environment, PYTHONUNBUFFERED="1")  # lines arrive when written
    tail: deque[str] = deque(maxlen=200)
    first_step, first_step_line, rows_line = None, None, None
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    sampler = TreeMemory(process.pid)
    sampler.start()
    try:
        with log_file.open("w", encoding="utf-8") as saved:
            for line in process.stdout:
                if first_step is None and FIRST_STEP in line:
                    first_step, first_step_line = time.perf_counter() - start, line
                if "rows/s" in line:
                    rows_line = line
                tail.append(line)
                saved.write(line)
                if verbose:
                    sys.stderr.write(line)
    except BaseException:  # interrupted or terminated: leave no training running behind
        process.kill()
        raise
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    sampler.stopped.set()
    sampler.join()
    result = {
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # kB on Linux
        "peak_tree_pss_mb": round(sampler.peak_kb / 1024, 1),
        "returncode": process.returncode,
        "_first_step": first_step,
        "_first_step_line": first_step_line,
        "_rows_line": rows_line,
        "_output": "".join(tail),
    }
    if process.returncode != 0:
        result["output_tail"] = result["_output"][-TAIL_CHARS:]
    return result


def public(result: dict) -> dict:
    """The result without the fields kept for parsing (named with a leading underscore)."""
    return {key: value for key, value in result.items() if not key.startswith("_")}


def guarded(name: str, measure: Callable[[], dict]) -> dict:
    """One measurement; a bench-side error is recorded instead of ending the whole benchmark."""
    log(f"{name} ...")
    try:
        result = measure()
    except Exception as error:  # one failed measurement must not lose the others
        log(f"{name}: bench error {error!r}")
        return {"error": repr(error)}
    log(f"{name}: {json.dumps({k: v for k, v in result.items() if k != 'output_tail'})}")
    return result


# Commands


def finetune_command() -> list[str]:
    script = Path(sys.executable).parent / "finetune"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "finetune.cli"]


def train_command(train_file: Path, cache_dir: Path, output_dir: Path, steps: int, workers: int) -> list[str]:
    flags = {
        "--config": CONFIG,
        "--train_file": train_file,
        "--max_steps": steps,
        "--eval_strategy": "steps",
        "--save_strategy": "steps",
        "--eval_steps": steps,
        "--save_steps": steps,
        "--cache_dir": cache_dir,
        "--output_dir": output_dir,
        "--overwrite_output_dir": "true",
        "--preprocessing_num_workers": workers,
        "--disable_tqdm": "true",
    }
    return finetune_command() + ["train"] + [str(part) for pair in flags.items() for part in pair]


def predict_command(model_dir: Path, input_file: Path, output_file: Path) -> list[str]:
    arguments = ["predict", "--model", model_dir, "--input", input_file, "--output", output_file]
    return finetune_command() + [str(argument) for argument in arguments]


def baseline_command(train_file: Path, tokenizer_dir: Path, cache_dir: Path, workers: int) -> list[str]:
    return [sys.executable, "-c", BASELINE_SCRIPT, str(train_file), str(tokenizer_dir), str(cache_dir), str(workers)]


def command_templates(steps: int, workers: int) -> dict[str, str]:
    """The commands as run, with placeholders for the paths."""
    big, cache, out, launcher = Path("BIG.jsonl"), Path("CACHE"), Path("OUT"), len(finetune_command())
    return {
        "train": " ".join(["finetune", *train_command(big, cache, out, steps, workers)[launcher:]]),
        "predict": " ".join(["finetune", *predict_command(out, big, Path("PRED.jsonl"))[launcher:]]),
        "datasets_baseline": "python -c BASELINE_SCRIPT BIG.jsonl OUT/best FRESH_CACHE WORKERS (see bench/scale.py)",
    }


# Measurements


class Bench:
    """The measurements of one benchmark run, in its work folder."""

    def __init__(self, args: argparse.Namespace, work_dir: Path) -> None:
        self.args, self.work_dir = args, work_dir
        self.source = source_rows(SOURCE)
        self.predict_10k: dict | None = None
        (work_dir / "logs").mkdir()

    def train(self, train_file: Path, cache_dir: Path, output_dir: Path, workers: int, name: str) -> dict:
        command = train_command(train_file, cache_dir, output_dir, self.args.steps, workers)
        environment = {"HF_DATASETS_CACHE": str(cache_dir / "datasets")}  # anything datasets caches stays here
        result = run_measured(command, self.log_file(name), environment, self.args.verbose)
        result["seconds_to_first_step"] = none_or_round(result["_first_step"])
        logged = LOGGED_SECONDS.findall(result["_first_step_line"] or "")
        result["first_step_logged_seconds"] = float(logged[0]) if logged else None  # the package's own figure
        return public(result)

    def baseline(self, train_file: Path, tokenizer_dir: Path, cache_dir: Path, workers: int, name: str) -> dict:
        if not (tokenizer_dir / "tokenizer.json").is_file():
            return {"skipped": f"{tokenizer_dir} holds no tokenizer: train_cold failed"}
        command = baseline_command(train_file, tokenizer_dir, cache_dir, workers)
        result = run_measured(command, self.log_file(name), {"HF_DATASETS_CACHE": str(cache_dir)}, self.args.verbose)
        inner = [line for line in result["_output"].splitlines() if line.startswith(RESULT_PREFIX)]
        if inner:
            timings = json.loads(inner[-1][len(RESULT_PREFIX) :])
            result["load_seconds"] = round(timings["load_seconds"], 3)
            result["map_seconds"] = round(timings["map_seconds"], 3)
            result["rows"] = timings["rows"]
        return public(result)

    def predict(self, model_dir: Path, input_file: Path, rows: int, name: str) -> dict:
        if not (model_dir / "best").is_dir():
            return {"skipped": f"{model_dir} holds no best model: train_cold failed"}
        output_file = input_file.with_name(input_file.stem + "-predictions.jsonl")
        environment = {"HF_DATASETS_CACHE": str(input_file.parent / f"{name}-datasets")}
        result = run_measured(
            predict_command(model_dir, input_file, output_file), self.log_file(name), environment, self.args.verbose
        )
        if result["returncode"] == 0:  # a failed run has no throughput
            logged = ROWS_PER_SECOND.findall(result["_rows_line"] or "")
            wall = round(rows / result["seconds"], 1)
            result["rows_per_second"] = float(logged[-1].replace(",", "")) if logged else wall
            result["rows_per_second_from"] = "log" if logged else "wall"
        output_file.unlink(missing_ok=True)
        return public(result)

    def imports(self) -> dict:
        """Median wall seconds of a fresh interpreter doing each of IMPORTS, IMPORT_REPEATS times, alternating."""
        seconds: dict[str, list[float]] = {name: [] for name in IMPORTS}
        for repeat in range(IMPORT_REPEATS):
            for name, statement in IMPORTS.items():
                result = run_measured(
                    [sys.executable, "-c", statement], self.log_file(f"imports-{name}-{repeat}"), {}, False
                )
                if result["returncode"] != 0:
                    raise RuntimeError(f"{statement!r} failed: {result['_output'][-TAIL_CHARS:]}")
                seconds[name].append(result["seconds"])
        return {
            name: {
                "median_seconds": round(statistics.median(values), 3),
                "seconds": values,
                "statement": IMPORTS[name],
            }
            for name, values in seconds.items()
        }

    def log_file(self, name: str) -> Path:
        return self.work_dir / "logs" / f"{name}.log"

    def measure_predict_10k(self, model_dir: Path) -> None:
        """predict on the generator's first 10,000 rows, once, with the first model that trained."""
        input_file = self.work_dir / f"rows-{PREDICT_BASE_ROWS}.jsonl"
        write_rows(input_file, PREDICT_BASE_ROWS, self.source)
        result = guarded("predict_10k", lambda: self.predict(model_dir, input_file, PREDICT_BASE_ROWS, "predict_10k"))
        if "skipped" not in result:
            self.predict_10k = {"rows": PREDICT_BASE_ROWS, "model": str(model_dir.relative_to(self.work_dir))}
            self.predict_10k.update(result)

    def measure_rows(self, rows: int) -> dict:
        """Every measurement of one size, in a folder of its own (removed afterwards unless --keep)."""
        folder = self.work_dir / f"rows-{rows}"
        folder.mkdir()
        big = folder / "train.jsonl"
        log(f"{rows} rows: writing {big}")
        start = time.perf_counter()
        write_rows(big, rows, self.source)
        report = {"rows": rows, "file_mb": round(big.stat().st_size / 2**20, 1)}
        report["generate_seconds"] = round(time.perf_counter() - start, 3)
        compare = self.compare_workers(rows)
        report.update(self.measure_training(big, folder, f"{rows}-", compare))
        report.update(self.measure_baselines(big, folder, f"{rows}-", compare))
        report["predict"] = self.measure_predict(big, folder, rows)
        if not self.args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        return report

    def measure_training(self, big: Path, folder: Path, prefix: str, compare: bool) -> dict:
        """train_cold, train_warm on its cache, and train_cold_workers2 when comparing workers."""
        report, workers, cold = {}, self.args.workers, folder / "cold"
        report["train_cold"] = guarded(
            prefix + "train_cold", lambda: self.train(big, cold / "cache", cold / "output", workers, prefix + "cold")
        )
        hash_seconds = sha256_seconds(big)
        report["train_warm"] = guarded(
            prefix + "train_warm",
            lambda: self.train(big, cold / "cache", folder / "warm" / "output", workers, prefix + "warm"),
        )
        report["train_warm"]["hash_seconds"] = round(hash_seconds, 3)
        if compare:
            cold2 = folder / "cold-workers2"
            report["train_cold_workers2"] = guarded(
                prefix + "train_cold_workers2",
                lambda: self.train(big, cold2 / "cache", cold2 / "output", 2, prefix + "cold-workers2"),
            )
        return report

    def measure_baselines(self, big: Path, folder: Path, prefix: str, compare: bool) -> dict:
        """datasets_baseline with train_cold's tokenizer, and datasets_baseline_workers2 when comparing workers."""
        report, workers, tokenizer_dir = {}, self.args.workers, folder / "cold" / "output" / "best"
        report["datasets_baseline"] = guarded(
            prefix + "datasets_baseline",
            lambda: self.baseline(big, tokenizer_dir, folder / "baseline", workers, prefix + "baseline"),
        )
        if compare:
            report["datasets_baseline_workers2"] = guarded(
                prefix + "datasets_baseline_workers2",
                lambda: self.baseline(big, tokenizer_dir, folder / "baseline-workers2", 2, prefix + "baseline2"),
            )
        return report

    def measure_predict(self, big: Path, folder: Path, rows: int) -> dict:
        """predict with train_cold's run (predict_10k first, the first time), and its throughput over predict_10k's."""
        model_dir = folder / "cold" / "output"
        if self.predict_10k is None:
            self.measure_predict_10k(model_dir)
        result = guarded(f"{rows}-predict", lambda: self.predict(model_dir, big, rows, f"{rows}-predict"))
        base = (self.predict_10k or {}).get("rows_per_second")
        if base and result.get("rows_per_second"):
            result["throughput_over_10k"] = round(result["rows_per_second"] / base, 3)
        return result

    def compare_workers(self, rows: int) -> bool:
        if self.args.workers != 1:
            return False
        return rows <= 1_000_000 if self.args.compare_workers is None else self.args.compare_workers


def none_or_round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# Checks


COMPARISONS = {"<": operator.lt, "<=": operator.le, ">=": operator.ge}


def check(value: float | None, comparison: str, target: float, **details) -> dict:
    """A measured value against its target; ``passed`` is None when the value could not be measured."""
    value = none_or_round(value)
    passed = None if value is None else COMPARISONS[comparison](value, target)
    return {"value": value, "target": f"{comparison} {target}", "passed": passed, **details}


def field(runs: dict, rows: str, measurement: str, name: str) -> float | None:
    return runs[rows].get(measurement, {}).get(name)


def preparation_seconds(run: dict) -> tuple[float | None, str]:
    """A cold run's time to its first training step; its whole wall time when it never logged that step."""
    if run.get("seconds_to_first_step") is not None:
        return run["seconds_to_first_step"], "seconds_to_first_step"
    return run.get("seconds"), "seconds (no first-step line: includes training, evaluation and saving)"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def rss_growth_checks(runs: dict) -> dict:
    sizes = sorted(runs, key=int)
    checks = {}
    for measurement in ("train_cold", "train_warm", "predict"):
        low, high = (field(runs, size, measurement, "peak_rss_mb") for size in (sizes[0], sizes[-1]))
        growth = None if len(sizes) < 2 or low is None or high is None else high - low
        details = {"from_rows": int(sizes[0]), "to_rows": int(sizes[-1]), "from_mb": low, "to_mb": high}
        checks[f"{measurement}_rss_growth_mb"] = check(growth, "<=", RSS_GROWTH_MB, **details)
    return checks


def speed_checks(runs: dict, predict_10k: dict | None, imports: dict) -> dict:
    """Per-size ratios; each check judges the largest size and lists every size under ``by_rows``. The warm start
    also lists what is left of it once the libraries' own imports (measured in the same run) are taken out."""
    names = ("cold", "workers", "warm", "warm_logged", "warm_beyond_libraries", "predict")
    values: dict[str, dict[str, float | None]] = {name: {} for name in names}
    for size, run in runs.items():  # in increasing size: ``basis`` ends as the largest size's
        cold, basis = preparation_seconds(run.get("train_cold", {}))
        values["cold"][size] = ratio(cold, run.get("datasets_baseline", {}).get("seconds"))
        cold2, _ = preparation_seconds(run.get("train_cold_workers2", {}))
        values["workers"][size] = ratio(cold2, cold) if "train_cold_workers2" in run else None
        warm = run.get("train_warm", {})
        first_step = warm.get("seconds_to_first_step")
        values["warm"][size] = None if first_step is None else first_step - warm["hash_seconds"]
        values["warm_logged"][size] = warm.get("first_step_logged_seconds")  # from the arguments read, no imports
        library = imports.get("libraries", {}).get("median_seconds")
        values["warm_beyond_libraries"][size] = (
            None if library is None or first_step is None else (first_step - warm["hash_seconds"] - library)
        )
        values["predict"][size] = run.get("predict", {}).get("throughput_over_10k")
    largest = max(runs, key=int)
    by_rows = {name: {size: none_or_round(value) for size, value in sizes.items()} for name, sizes in values.items()}
    base = (predict_10k or {}).get("rows_per_second")
    return {
        "cold_preparation_over_baseline": check(
            values["cold"][largest], "<=", COLD_OVER_BASELINE, by_rows=by_rows["cold"], cold_basis=basis
        ),
        "cold_workers2_over_workers1": check(
            values["workers"][largest], "<=", WORKERS2_OVER_WORKERS1, by_rows=by_rows["workers"], cold_basis=basis
        ),
        "warm_first_step_minus_hash_seconds": check(
            values["warm"][largest],
            "<",
            WARM_START_SECONDS,
            by_rows=by_rows["warm"],
            logged=by_rows["warm_logged"],
            beyond_library_imports=by_rows["warm_beyond_libraries"],
        ),
        "predict_throughput_over_10k": check(
            values["predict"][largest], ">=", PREDICT_THROUGHPUT_RATIO, by_rows=by_rows["predict"], base=base
        ),
    }


# Main


def machine() -> dict:
    """Where the numbers were measured: bench/common.py's machine(), plus memory."""
    import common

    meminfo = Path("/proc/meminfo").read_text().splitlines()
    kilobytes = {line.split(":")[0]: int(line.split()[1]) for line in meminfo if line.split()[1].isdigit()}
    return {
        **common.machine(),
        "memory_total_mb": round(kilobytes.get("MemTotal", 0) / 1024),
        "memory_available_mb": round(kilobytes.get("MemAvailable", 0) / 1024),
    }


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="row counts to measure")
    parser.add_argument("--10m", dest="ten_million", action="store_true", help="also measure 10,000,000 rows")
    parser.add_argument("--steps", type=int, default=20, help="max_steps of each training run (default: 20)")
    parser.add_argument("--workers", type=int, default=1, help="preprocessing_num_workers (default: 1)")
    parser.add_argument(
        "--compare_workers",
        action=argparse.BooleanOptionalAction,
        help="with --workers 1, also run cold preparation and the baseline with 2 workers (default: up to 1M rows)",
    )
    parser.add_argument("--work_dir", type=Path, help="folder for the generated files (default: a new one in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files, caches, runs and logs")
    parser.add_argument("--output", type=Path, help="also write the JSON to this file")
    parser.add_argument("--verbose", action="store_true", help="echo the subprocesses' output to stderr")
    args = parser.parse_args(argv)
    args.rows = sorted(set(args.rows + ([10_000_000] if args.ten_million else [])))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))  # so that the cleanup runs
    if not SOURCE.is_file():
        sys.exit(f"{SOURCE.relative_to(REPO)} is missing: run `./run.sh prepare` first.")
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="finetune-scale-", dir=args.work_dir))
    log(f"work folder {work_dir}")
    try:
        bench = Bench(args, work_dir)
        imports = guarded("imports", bench.imports)
        runs = {str(rows): bench.measure_rows(rows) for rows in args.rows}
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    report = {
        "benchmark": "scale",
        "machine": machine(),
        "steps": args.steps,
        "workers": args.workers,
        "memory": "peak_rss_mb: ru_maxrss of the child from os.wait4, the largest single process among it and the "
        f"descendants it waited for; peak_tree_pss_mb: PSS summed over the tree, sampled every {SAMPLE_SECONDS} s",
        "commands": command_templates(args.steps, args.workers),
        "work_dir": str(work_dir) if args.keep else None,
        "runs": runs,
        "predict_10k": bench.predict_10k,
        "imports": imports,
        "checks": {**rss_growth_checks(runs), **speed_checks(runs, bench.predict_10k, imports)},
    }
    import common  # here, as in machine(): the parent process stays light while it measures

    common.write_result(report, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
