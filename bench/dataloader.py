"""Data loading workers: the demo TextCNN through finetune's Trainer with dataloader_num_workers 0, 1 and 2.

The same run as bench/overhead.py's Trainer path (configs/textcnn.yaml, a fixed number of steps, no evaluation),
once per worker count, alternating in one process. Workers take batching and padding off the training
process; on a CPU they also compete with training for the cores. Prints JSON: samples/s (wall time) of each.

    python bench/dataloader.py --threads 1
    python bench/dataloader.py --workers 0 2 4 --persistent_workers
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import add_output_argument, add_threads_argument, fixed_steps, median, prepare, set_threads, write_result
from overhead import train_finetune


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default: 0 1 2)")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per run (default: 150)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each worker count (default: 2)")
    parser.add_argument("--persistent_workers", action="store_true", help="keep workers between epochs")
    add_threads_argument(parser)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)

    with tempfile.TemporaryDirectory() as output_dir:
        prepared = prepare("textcnn", Path(output_dir), fixed_steps(args.steps))
        batch_size = prepared.training_args.per_device_train_batch_size
        per_second: dict[int, list[float]] = {workers: [] for workers in args.workers}
        for repeat in range(args.repeats):
            for workers in args.workers if repeat % 2 == 0 else reversed(args.workers):
                prepared.training_args.dataloader_num_workers = workers
                prepared.training_args.dataloader_persistent_workers = args.persistent_workers and workers > 0
                seconds, _ = train_finetune(prepared, args.steps)
                per_second[workers].append(round(args.steps * batch_size / seconds["wall"], 1))

    result = {
        "benchmark": "dataloader",
        "model": "textcnn (configs/textcnn.yaml)",
        "steps": args.steps,
        "persistent_workers": args.persistent_workers,
        "samples_per_second": {str(workers): values for workers, values in per_second.items()},
        "median_samples_per_second": {str(workers): median(values) for workers, values in per_second.items()},
    }
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
