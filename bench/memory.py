"""Peak memory of the demo training run: `finetune train --config configs/textcnn.yaml` as a subprocess.

Reports the peak resident memory of the run as the kernel saw it (ru_maxrss of the finished child process,
which counts everything: Python, torch, tokenization, datasets, evaluation, checkpoints, the best model at the
end) and the throughput callback's own figure from train_results.json. By default the whole run, the config's
6 epochs: memory can grow from epoch to epoch (it did, before the demo config set pad_to_multiple_of), so a
shortened run can understate it. --epochs N shortens it.

    python bench/memory.py
    python bench/memory.py --epochs 2 --config configs/bert.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CONFIGS, REPO, add_output_argument, write_result

TARGET_MB = 2048


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIGS["textcnn"], help="default: configs/textcnn.yaml")
    parser.add_argument("--epochs", type=int, default=0, help="num_train_epochs (default: 0, the config's)")
    add_output_argument(parser)
    args, extra = parser.parse_known_args(argv)

    with tempfile.TemporaryDirectory() as output_dir:
        config = args.config.resolve()
        command = [sys.executable, "-m", "finetune", "train", "--config", str(config), "--output_dir", output_dir]
        command += ["--disable_tqdm", "true", *(["--num_train_epochs", str(args.epochs)] if args.epochs else [])]
        command += extra
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, stdout=sys.stderr, env=dict(os.environ))
        wall = time.perf_counter() - started
        # ru_maxrss of RUSAGE_CHILDREN: the largest peak among finished children, in kB on Linux (bytes on macOS).
        children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak_mb = children_peak / 2**20 if sys.platform == "darwin" else children_peak / 2**10
        results = json.loads((Path(output_dir) / "all_results.json").read_text())

    result = {
        "benchmark": "memory",
        "command": " ".join(["finetune", *(part if part != output_dir else "TMP" for part in command[3:])]),
        "peak_rss_mb": round(peak_mb, 1),
        "callback_train_peak_rss_mb": results.get("train_peak_rss_mb"),
        "target_mb": TARGET_MB,
        "met": peak_mb < TARGET_MB,
        "run_seconds": round(wall, 1),
        "epochs": results.get("epoch"),
        "test_accuracy": round(results["test_accuracy"], 4) if "test_accuracy" in results else None,
    }
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
