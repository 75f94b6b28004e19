"""Time to accuracy: eval accuracy against training time, for the ways of forming batches, TextCNN and MiniLM.

Every run is one `finetune train` process for one epoch that evaluates every --eval_steps steps; each evaluation
log carries ``training_seconds``, the time spent training so far (evaluations left out, see finetune/throughput.py).

- textcnn: configs/textcnn.yaml on the whole demo training set, evaluated on the first 1,000 validation rows;
- minilm: configs/bert.yaml as in the side-by-side with the transformers example script: the first 2,000
  training rows, the first 500 validation rows, max_length 128, batch 32, learning rate 5e-5,
  extend_vocabulary 0.

Batching variants (--variants): random batches with dynamic padding; group_by_length with groups of 50 batches
(transformers' size) or fewer; with or without length_group_by_label (every batch gets its group's label mix).
grouped_by_label_constant_lr: the same with a constant learning rate after the warmup instead of linear decay;
random_dropout_0 and grouped_by_label_dropout_0: with encoder_dropout 0 instead of the checkpoint's own dropout (0.1
for MiniLM). grouped_by_label_multiple_16: batch lengths rounded up to a multiple of 16, few distinct shapes.
example_script: the settings of transformers' run_classification.py (random batches padded to max_length, no warmup,
no weight decay), the reference the MiniLM targets were set against. With --test, each run's final model is also
scored on the whole test split, rows that no setting was chosen on.
For each model and variant, the curve averaged over the seeds, and `time_to_target`: the training time at which
the mean curve first reaches the mean final accuracy of random batches, as a share of random's mean training time.

--steps_only measures the per-step constant instead: each optimizer (and torch_compile) for a fixed number of
steps without evaluation, every batch padded to max_length so that every step has the same shape; step time is the
median of the throughput callback's windows after the first.

Prints one JSON object (and writes it with --output); --plot_dir gets one PNG per model.

    python bench/time_to_accuracy.py --output bench/results/time_to_accuracy.json --plot_dir docs/images
    python bench/time_to_accuracy.py --models minilm --variants random grouped --seeds 42
    python bench/time_to_accuracy.py --steps_only --output bench/results/step_constant.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml
from common import REPO, add_output_argument, logged_process, write_result

MODELS = {
    "textcnn": {"config": "configs/textcnn.yaml", "eval_steps": 20, "flags": ["--max_eval_samples", "1000"]},
    "minilm": {
        "config": "configs/bert.yaml",
        "eval_steps": 12,
        "flags": [
            "--max_train_samples", "2000", "--max_eval_samples", "500", "--max_length", "128",
            "--per_device_train_batch_size", "32", "--learning_rate", "5e-5", "--extend_vocabulary", "0",
        ],
    },
}  # fmt: skip
GROUPED = ["--train_sampling_strategy", "group_by_length"]
CONSTANT_LR = ["--lr_scheduler_type", "constant_with_warmup"]  # warmup, then no decay
VARIANTS = {
    "random": ["--train_sampling_strategy", "random"],
    "grouped": [*GROUPED, "--length_group_by_label", "false", "--length_group_batches", "50"],
    "grouped_by_label": [*GROUPED, "--length_group_by_label", "true", "--length_group_batches", "50"],
    "grouped_8": [*GROUPED, "--length_group_by_label", "false", "--length_group_batches", "8"],
    "grouped_8_by_label": [*GROUPED, "--length_group_by_label", "true", "--length_group_batches", "8"],
    "grouped_by_label_constant_lr": [
        *GROUPED, "--length_group_by_label", "true", "--length_group_batches", "50", *CONSTANT_LR
    ],
    "random_dropout_0": ["--train_sampling_strategy", "random", "--encoder_dropout", "0"],
    # Lengths rounded up to a multiple of 16: 8 batch shapes instead of up to 128, and a smaller heap
    "grouped_by_label_multiple_16": [
        *GROUPED, "--length_group_by_label", "true", "--length_group_batches", "50", "--pad_to_multiple_of", "16"
    ],
    # The transformers example script's settings: random batches padded to max_length, and TrainingArguments'
    # defaults where configs/bert.yaml sets its own (no warmup, no weight decay).
    "example_script": [
        "--train_sampling_strategy", "random", "--padding", "max_length", "--warmup_steps", "0", "--weight_decay", "0"
    ],
    "grouped_by_label_dropout_0": [
        *GROUPED, "--length_group_by_label", "true", "--length_group_batches", "50", "--encoder_dropout", "0"
    ],
}  # fmt: skip
STEP_SETTINGS = {
    "adamw_torch_fused": ["--optim", "adamw_torch_fused"],  # transformers' default
    "adamw_torch": ["--optim", "adamw_torch"],
    "torch_compile": ["--optim", "adamw_torch_fused", "--torch_compile", "true"],
    # Every run ends with one evaluation of the validation subset; its batch size moves the peak memory.
    "eval_batch_128": ["--per_device_eval_batch_size", "128"],
    "eval_batch_32": ["--per_device_eval_batch_size", "32"],
}
STEPS = {"textcnn": 60, "minilm": 20}
LOGGING_STEPS = {"textcnn": 10, "minilm": 4}


def config_without_early_stopping(model: str, folder: Path) -> Path:
    """The model's shipped config, less early stopping (every run trains its whole epoch)."""
    values = yaml.safe_load((REPO / MODELS[model]["config"]).read_text(encoding="utf-8"))
    values.pop("early_stopping_patience", None)
    path = folder / f"{model}.yaml"
    path.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    return path


def run_training(config: Path, output_dir: Path, flags: list[str]) -> dict:
    """One `finetune train` process; its peak RSS (ru_maxrss from wait4), wall time and result files. A run that
    finished in an earlier call with the same --runs_dir is read back instead of trained again."""
    measured = output_dir / "bench_process.json"
    if not measured.is_file():
        measured.parent.mkdir(parents=True, exist_ok=True)
        measured.write_text(json.dumps(train_process(config, output_dir, flags)))
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return {
        **json.loads(measured.read_text()),
        "results": json.loads((output_dir / "all_results.json").read_text()),
        "log_history": state["log_history"],
        "global_step": state["global_step"],
    }


def train_process(config: Path, output_dir: Path, flags: list[str]) -> dict:
    command = [sys.executable, str(REPO / "finetune" / "train.py"), "--config", str(config)]
    command += ["--output_dir", str(output_dir), "--overwrite_output_dir", "true", "--disable_tqdm", "true"]
    command += ["--test_file", "", "--report_to", "none", *flags]
    return logged_process(command, output_dir.with_suffix(".log"))


def curve(run: dict) -> list[dict]:
    """(step, training seconds, eval accuracy) of each evaluation, the final one included."""
    points = [
        {"step": entry["step"], "seconds": entry["training_seconds"], "accuracy": entry["eval_accuracy"]}
        for entry in run["log_history"]
        if "eval_accuracy" in entry and "training_seconds" in entry
    ]
    final = run["results"]
    if not points or points[-1]["step"] != run["global_step"]:
        points.append(
            {"step": run["global_step"], "seconds": final["training_seconds"], "accuracy": final["eval_accuracy"]}
        )
    return points


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """Point by point over the seeds (every seed evaluates at the same steps)."""
    points = []
    for same_step in zip(*curves, strict=True):
        accuracies = [point["accuracy"] for point in same_step]
        points.append(
            {
                "step": same_step[0]["step"],
                "seconds": round(statistics.mean(point["seconds"] for point in same_step), 2),
                "accuracy": round(statistics.mean(accuracies), 4),
                "accuracy_std": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else 0.0,
            }
        )
    return points


def first_time_at(points: list[dict], accuracy: float) -> float | None:
    return next((point["seconds"] for point in points if point["accuracy"] >= accuracy), None)


def accuracy_runs(args: argparse.Namespace, folder: Path) -> dict:
    result = {}
    for model in args.models:
        config = config_without_early_stopping(model, folder)
        spec = MODELS[model]
        flags = [*spec["flags"], "--num_train_epochs", "1", "--eval_strategy", "steps"]
        if args.test:  # after train_process's --test_file "", so this one counts
            flags += ["--test_file", yaml.safe_load(config.read_text(encoding="utf-8"))["test_file"]]
        flags += [
            "--eval_steps",
            str(spec["eval_steps"]),
            "--save_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
        ]
        variants = {}
        for variant in args.variants:
            runs = []
            for seed in args.seeds:
                output_dir = folder / f"{model}-{variant}-{seed}"
                run = run_training(config, output_dir, [*flags, *VARIANTS[variant], "--seed", str(seed)])
                points = curve(run)
                runs.append({"seed": seed, "peak_rss_mb": run["peak_rss_mb"], "wall_seconds": run["wall_seconds"]})
                runs[-1].update(
                    final_accuracy=points[-1]["accuracy"],
                    training_seconds=points[-1]["seconds"],
                    samples_per_second=run["results"]["train_throughput_samples_per_second"],
                    curve=points,
                )
                if args.test:
                    runs[-1]["test_accuracy"] = run["results"]["test_accuracy"]
                print(
                    json.dumps({model: variant, **{k: v for k, v in runs[-1].items() if k != "curve"}}),
                    file=sys.stderr,
                )
            finals = [run["final_accuracy"] for run in runs]
            variants[variant] = {
                "final_accuracy_mean": round(statistics.mean(finals), 4),
                "final_accuracy_std": round(statistics.stdev(finals), 4) if len(finals) > 1 else 0.0,
                "training_seconds_mean": round(statistics.mean(run["training_seconds"] for run in runs), 2),
                "peak_rss_mb_max": max(run["peak_rss_mb"] for run in runs),
                "mean_curve": mean_curve([run["curve"] for run in runs]),
                "runs": runs,
            }
            if args.test:
                tests = [run["test_accuracy"] for run in runs]
                variants[variant]["test_accuracy_mean"] = round(statistics.mean(tests), 4)
                variants[variant]["test_accuracy_std"] = round(statistics.stdev(tests), 4) if len(tests) > 1 else 0.0
        if "random" in variants:
            target, seconds = variants["random"]["final_accuracy_mean"], variants["random"]["training_seconds_mean"]
            for summary in variants.values():
                reached = first_time_at(summary["mean_curve"], target)
                summary["time_to_target"] = None if reached is None else round(reached / seconds, 3)
        result[model] = {"eval_steps": spec["eval_steps"], "flags": flags, "variants": variants}
    return result


def step_runs(args: argparse.Namespace, folder: Path) -> dict:
    result = {}
    for model in args.models:
        config = config_without_early_stopping(model, folder)
        flags = [
            *MODELS[model]["flags"],
            "--max_steps",
            str(STEPS[model]),
            "--logging_steps",
            str(LOGGING_STEPS[model]),
        ]
        flags += ["--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"]
        flags += ["--padding", "max_length", "--train_sampling_strategy", "random"]  # every step the same shape
        settings = {}
        for setting in args.step_settings:
            try:
                run = run_training(config, folder / f"{model}-{setting}", [*flags, *STEP_SETTINGS[setting]])
            except SystemExit as failure:  # torch_compile without a working compiler, for one: say so, go on
                settings[setting] = {"error": str(failure)[-1500:]}
                continue
            windows = [entry["step_seconds"] for entry in run["log_history"] if "step_seconds" in entry][1:]
            settings[setting] = {
                "step_seconds_median": round(statistics.median(windows), 4),
                "wall_seconds": run["wall_seconds"],
                "peak_rss_mb": run["peak_rss_mb"],
            }
            print(json.dumps({model: setting, **settings[setting]}), file=sys.stderr)
        base = settings.get("adamw_torch_fused")
        for summary in settings.values():
            if base and "step_seconds_median" in summary:
                summary["relative_to_default"] = round(summary["step_seconds_median"] / base["step_seconds_median"], 3)
        result[model] = {"steps": STEPS[model], "settings": settings}
    return result


def plot(result: dict, plot_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    for model, summary in result["models"].items():
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for variant, values in summary["variants"].items():
            points = values["mean_curve"]
            axes.plot([p["seconds"] for p in points], [p["accuracy"] for p in points], marker="o", ms=3, label=variant)
        axes.set_xlabel("training seconds (evaluation left out)")
        axes.set_ylabel(f"eval accuracy, mean of {len(result['seeds'])} seeds")
        axes.set_title(f"{model}: one epoch, eval every {summary['eval_steps']} steps")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(plot_dir / f"time_to_accuracy_{model}.png", dpi=110)
        plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--steps_only", action="store_true", help="measure the per-step constant instead")
    parser.add_argument("--test", action="store_true", help="also score each run's final model on the test split")
    parser.add_argument("--step_settings", nargs="+", default=list(STEP_SETTINGS), choices=list(STEP_SETTINGS))
    add_output_argument(parser)
    parser.add_argument("--plot_dir", type=Path, help="write time_to_accuracy_MODEL.png here")
    parser.add_argument(
        "--runs_dir",
        type=Path,
        help="keep the runs here (default: a temporary folder); runs that "
        "finished there before are read back, so an interrupted benchmark goes on where it stopped",
    )
    args = parser.parse_args(argv)

    result = {"benchmark": "step_constant" if args.steps_only else "time_to_accuracy", "seeds": args.seeds}
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.runs_dir or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        result["models"] = step_runs(args, folder) if args.steps_only else accuracy_runs(args, folder)
    write_result(result, args.output, indent=1)
    if args.plot_dir and not args.steps_only:
        plot(result, args.plot_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
