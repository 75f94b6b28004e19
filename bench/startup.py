"""How long the light commands take to start: `finetune --help` and `finetune cache list`, each the median of 5 runs
in a fresh process, beside a bare `python -c pass` (the interpreter's own start) and `finetune train --help` (which
imports torch and transformers).

    python bench/startup.py --output bench/results/startup.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "finetune --help": [sys.executable, "-m", "finetune", "--help"],
    "finetune cache list": [sys.executable, "-m", "finetune", "cache", "list"],
    "finetune train --help": [sys.executable, "-m", "finetune", "train", "--help"],
}
TARGET_SECONDS = 1.0
CHECKED = ("finetune --help", "finetune cache list")


def seconds(command: list[str], environment: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=environment, capture_output=True, check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    from common import add_output_argument, write_result

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="startup-") as cache:
        environment = {**os.environ, "HF_DATASETS_CACHE": cache}
        runs = {name: [] for name in COMMANDS}
        for _ in range(args.repeats):  # interleaved, so that a slow moment of the machine hits every command
            for name, command in COMMANDS.items():
                runs[name].append(round(seconds(command, environment), 3))
    medians = {name: round(statistics.median(values), 3) for name, values in runs.items()}
    result = {
        "benchmark": "startup",
        "repeats": args.repeats,
        "median_seconds": medians,
        "runs": runs,
        "check": {
            name: {
                "median_seconds": medians[name],
                "target": f"< {TARGET_SECONDS}",
                "met": medians[name] < TARGET_SECONDS,
            }
            for name in CHECKED
        },
    }
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
