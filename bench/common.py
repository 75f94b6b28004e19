"""What the speed benchmarks share: a demo config turned into arguments, tokenized splits and a fresh model.

Everything goes through finetune's own functions (parse_args, load_raw_splits, build_tokenizer, tokenize_splits,
build_model), so the benchmarks measure the code `finetune train` runs.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `python bench/x.py` from a clone, without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import DatasetDict  # noqa: E402
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed  # noqa: E402

from finetune.build import build_model, build_tokenizer  # noqa: E402
from finetune.config import DataArguments, ModelArguments, TrainingArguments  # noqa: E402
from finetune.data.prepared import PreparedData, prepare_data  # noqa: E402
from finetune.parsing import parse_args  # noqa: E402

# The libraries whose versions a result records.
LIBRARIES = (
    "torch", "transformers", "datasets", "accelerate", "evaluate", "tokenizers", "pyarrow", "numpy", "finetune"
)  # fmt: skip
CONFIGS = {"textcnn": REPO / "configs" / "textcnn.yaml", "bert": REPO / "configs" / "bert.yaml"}


@dataclass
class Prepared:
    """A demo config's arguments, its data read and tokenized, and the tokenizer."""

    model_args: ModelArguments
    data_args: DataArguments
    training_args: TrainingArguments
    raw: PreparedData
    tokenizer: PreTrainedTokenizerBase
    tokenized: DatasetDict

    def new_model(self) -> PreTrainedModel:
        """A freshly initialised model, the same weights on every call (seeded)."""
        set_seed(self.training_args.seed)
        return build_model(self.model_args, self.tokenizer, self.raw)


def prepare(model: str, output_dir: Path, overrides: list[str] = ()) -> Prepared:
    """Parses configs/<model>.yaml with ``overrides`` (command-line flags), reads and tokenizes its data."""
    argv = ["--config", str(CONFIGS[model]), "--output_dir", str(output_dir), "--overwrite_output_dir", "true"]
    argv += ["--disable_tqdm", "true", *overrides]
    model_args, data_args, training_args = parse_args(argv)
    for name in ("train_file", "validation_file", "test_file"):  # the configs' paths are relative to the repository
        if getattr(data_args, name):
            setattr(data_args, name, str(REPO / getattr(data_args, name)))
    if not Path(data_args.train_file).is_file():
        sys.exit(f"{data_args.train_file} is missing: run `./run.sh prepare` (or data/chinese_sentiment/prepare.py).")
    data = prepare_data(model_args, data_args, training_args.seed, partial(build_tokenizer, model_args, data_args))
    return Prepared(model_args, data_args, training_args, data, data.tokenizer, data.splits)


def fixed_steps(steps: int) -> list[str]:
    """Flags for a timed run: exactly ``steps`` optimizer steps, no evaluation, no checkpoints, no reporting."""
    return ["--max_steps", str(steps), "--eval_strategy", "no", "--save_strategy", "no"] + [
        "--load_best_model_at_end",
        "false",
        "--report_to",
        "none",
    ]


def add_threads_argument(parser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's choice). On a CPU shared with other work, 1 gives steadier numbers: "
        "threads that wait for each other on busy cores slow every step down several times.",
    )


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def machine() -> dict:
    """Where the numbers were measured."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "platform": platform.platform(),
    }


def versions() -> dict:
    """The installed versions of LIBRARIES, and the git commit of the checkout (with "+dirty" for local changes)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True)
        found["commit"] = commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        found["commit"] = None
    return found


def write_result(result: dict, output: Path | None = None, indent: int = 2) -> None:
    """Prints a benchmark's result as JSON on stdout and, with ``output`` (bench/results/NAME.json for a result the
    docs quote), writes it there too, with when, where and with which libraries it was measured: ``date``,
    ``machine`` (unless the result has its own) and ``versions``."""
    result = {
        **result,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": result.get("machine") or machine(),
        "versions": versions(),
    }
    text = json.dumps(result, indent=indent, ensure_ascii=False)
    print(text)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n", encoding="utf-8")


def add_output_argument(parser) -> None:
    parser.add_argument("--output", type=Path, help="also write the JSON here, e.g. bench/results/NAME.json")


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def logged_process(command: list[str], log_path: Path) -> dict:
    """Runs ``command`` in the repository, offline, its output into ``log_path``; its wall seconds and peak RSS
    (ru_maxrss from wait4: the process and the children it waited for). A failure exits with the log's tail."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, **OFFLINE), stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise SystemExit(f"{' '.join(map(str, command))} failed ({log_path}):\n{tail}")
    peak = usage.ru_maxrss / 2**20 if sys.platform == "darwin" else usage.ru_maxrss / 2**10  # kB on Linux
    return {"wall_seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak, 1)}
