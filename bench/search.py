"""finetune search against the shipped config and the TF-IDF baseline, corpus by corpus, on test accuracy.

For each corpus (the demo, and the two tasks of the shopping corpus in ../shared/data, see bench/corpora.py):

1. ``finetune search --config configs/textcnn.yaml --search_space configs/search/textcnn.yaml`` with the stated
   budget (--n_trials, --timeout; --max_epochs caps the space's num_train_epochs and sets the shipped config's, in
   a copy of configs/textcnn.yaml: a --num_train_epochs flag would fix it for every trial),
   the top_k trials over 3 seeds;
2. the winner's three seed runs and the shipped config's three (trial 0 is the config itself, and the selection
   trains it over the same seeds; when its values lie outside the space, it is trained here) scored on the test split
   with `finetune evaluate`;
3. the TF-IDF baseline of the same splits (search.json's, fitted once by the search).

Prints one JSON object: per corpus the budget, seconds, the winner's params, and test accuracy and test loss
(cross-entropy without label smoothing) mean ± std over 3 seeds for the winner and the shipped config, beside the
baseline's accuracy. A --work_dir that holds a search continues it (search_seconds is then the continuation's);
one that already holds --n_trials finished trials is only scored again (search_seconds null). trial_seconds always
sums the trials' own.

    python bench/search.py --corpora demo --n_trials 8 --output bench/results/search.json
    python bench/search.py --tiny     # the fixture, two trials: checks the script, measures nothing
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpora import corpus_dir  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
TINY = ["--embedding_dim", "16", "--num_filters", "8", "--wide_ngram_buckets", "1024", "--max_length", "64"]


def finetune(*arguments: str, log: Path) -> None:
    with log.open("a", encoding="utf-8") as handle:
        subprocess.run(
            [sys.executable, "-m", "finetune", *arguments], stdout=handle, stderr=subprocess.STDOUT, check=True
        )


def test_scores(model_dir: Path, test_file: Path, log: Path) -> dict:
    """Accuracy and loss (cross-entropy without label smoothing) on the test split, from `finetune evaluate`."""
    output = model_dir / "bench_test.json"
    finetune("evaluate", "--model", str(model_dir), "--test_file", str(test_file), "--output", str(output), log=log)
    return json.loads(output.read_text(encoding="utf-8"))["metrics"]


def spread(values: list[float]) -> dict:
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "values": [round(value, 4) for value in values],
    }


def seed_runs(search_dir: Path, trial: int, seeds: list[int], base_seed: int) -> dict[int, Path]:
    trial_dir = search_dir / f"trial-{trial}"
    return {seed: trial_dir if seed == base_seed else trial_dir / f"seed-{seed}" for seed in seeds}


def capped_space(path: Path, max_epochs: int, target: Path) -> Path:
    """The search space with num_train_epochs at most ``max_epochs`` (a trial's value beats the flag)."""
    import yaml

    space = yaml.safe_load(path.read_text(encoding="utf-8"))
    epochs = space.get("num_train_epochs")
    if isinstance(epochs, dict):
        high = min(epochs["high"], max_epochs)
        space["num_train_epochs"] = {**epochs, "high": high} if epochs["low"] < high else [high]
    elif isinstance(epochs, list):
        space["num_train_epochs"] = sorted({min(value, max_epochs) for value in epochs})
    target.write_text(yaml.safe_dump(space, sort_keys=False), encoding="utf-8")
    return target


def capped_config(max_epochs: int, target: Path) -> Path:
    """configs/textcnn.yaml with num_train_epochs ``max_epochs``: the config the search starts from, and the shipped
    config it is compared with."""
    import yaml

    values = yaml.safe_load((REPO / "configs" / "textcnn.yaml").read_text(encoding="utf-8"))
    target.write_text(yaml.safe_dump({**values, "num_train_epochs": max_epochs}, sort_keys=False), encoding="utf-8")
    return target


def run_corpus(name: str, args: argparse.Namespace, work: Path) -> dict:
    folder = FIXTURES if args.tiny else corpus_dir(name)
    files = (
        {split: FIXTURES / f"reviews_{split}.jsonl" for split in ("train", "validation", "test")}
        if args.tiny
        else {split: folder / f"{split}.jsonl" for split in ("train", "validation", "test")}
    )
    data_flags = [item for split, path in files.items() for item in (f"--{split}_file", str(path))]
    data_flags += ["--cache_dir", str(work / "cache")]
    data_flags += TINY if args.tiny else []
    search_dir = work / name / "search"
    log = work / f"{name}.log"
    previous = search_dir / "search.json"  # a finished search in --work_dir is scored again, not run again
    resumed = previous.is_file() and json.loads(previous.read_text(encoding="utf-8"))["n_trials"] >= args.n_trials
    started = time.monotonic()
    space = capped_space(args.space, args.max_epochs, work / "space.yaml")
    config = capped_config(args.max_epochs, work / "textcnn.yaml")
    command = ["search", "--config", str(config), "--search_space", str(space)]
    command += ["--search_dir", str(search_dir), "--n_trials", str(args.n_trials), "--top_k", str(args.top_k)]
    command += ["--selection_seeds", "2"] + (["--timeout", str(args.timeout)] if args.timeout else [])
    finetune(*command, *data_flags, log=log)
    search_seconds = time.monotonic() - started
    document = json.loads((search_dir / "search.json").read_text(encoding="utf-8"))
    seeds = [42, 43, 44]

    winner = seed_runs(search_dir, document["winner"]["trial"], seeds, 42)
    shipped_trial = next((trial for trial in document["trials"] if trial.get("shipped")), None)
    shipped = {}
    if shipped_trial is not None:
        shipped = seed_runs(search_dir, shipped_trial["number"], seeds, 42)
        trained_here = [seed for seed, run in shipped.items() if not (run / "best.json").is_file()]
    else:  # the config's values lie outside the space: train it here
        shipped = {seed: work / name / f"shipped-{seed}" for seed in seeds}
        trained_here = seeds
    for seed in trained_here:
        finetune(
            "train", "--config", str(config), *data_flags, "--seed", str(seed),
            "--output_dir", str(shipped[seed]), "--overwrite_output_dir", "true", "--disable_tqdm", "true",
            "--baseline", "none", log=log,
        )  # fmt: skip
    baseline = document.get("baseline") or {}
    scores = {
        name: [test_scores(run / "best", files["test"], log) for run in runs.values()]
        for name, runs in (("winner", winner), ("shipped", shipped))
    }
    return {
        "corpus": name,
        "rows": {split: sum(1 for _ in path.open(encoding="utf-8")) for split, path in files.items()},
        "budget": {"n_trials": args.n_trials, "timeout": args.timeout, "max_epochs": args.max_epochs},
        "search_seconds": None if resumed else round(search_seconds, 1),
        "trial_seconds": round(sum(trial["seconds"] or 0 for trial in document["trials"]), 1),
        "trials": {
            state: sum(trial["state"] == state for trial in document["trials"]) for state in ("complete", "pruned")
        },
        "winner": {"trial": document["winner"]["trial"], "params": document["winner"]["params"]},
        "test_accuracy": {
            **{name: spread([metrics["accuracy"] for metrics in scores[name]]) for name in scores},
            "baseline": round(baseline.get("test_accuracy", float("nan")), 4),
        },
        "test_loss": {name: spread([metrics["loss"] for metrics in scores[name]]) for name in scores},
        "shipped_seeds_trained_outside_the_search": trained_here,
    }


def main(argv: list[str] | None = None) -> int:
    from common import add_output_argument, write_result

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", nargs="+", default=["demo", "shopping_category", "shopping_sentiment"])
    parser.add_argument("--n_trials", type=int, default=8, help="trials of each search")
    parser.add_argument("--timeout", type=float, help="seconds after which a search starts no more trials")
    parser.add_argument("--max_epochs", type=int, default=6, help="num_train_epochs of every run (the space's cap)")
    parser.add_argument("--top_k", type=int, default=2, help="trials trained again over seeds 43 and 44")
    parser.add_argument("--space", type=Path, default=REPO / "configs" / "search" / "textcnn.yaml")
    parser.add_argument("--work_dir", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--tiny", action="store_true", help="the test fixture and a tiny model: checks the script")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if args.tiny:
        args.corpora, args.n_trials, args.max_epochs, args.top_k = ["fixture"], 2, 1, 1
    with tempfile.TemporaryDirectory(prefix="bench-search-") as temporary:
        work = args.work_dir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        results = [run_corpus(name, args, work) for name in args.corpora]
    write_result({"benchmark": "search", "corpora": results}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
