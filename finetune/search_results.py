"""The end of finetune search: the finalists trained again over more seeds, the winner scored on the test split
and written as best.yaml, every trial in search.json, and the plots of the study."""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from finetune.baseline import comparison
from finetune.errors import UserError
from finetune.files import write_json_atomically
from finetune.search_output import format_params, listed
from finetune.search_space import decode

if TYPE_CHECKING:
    from finetune.search import Search

logger = logging.getLogger("finetune")

SEARCH_FILE = "search.json"
BEST_CONFIG_FILE = "best.yaml"
TEST_RESULTS_FILE = "test_results.json"


def finish(study, search: Search, args: argparse.Namespace) -> dict:
    """Selection over seeds, the winner's test score, best.yaml, search.json and the plots."""
    from optuna.trial import TrialState

    complete = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    if not complete:
        raise UserError("No trial finished: every one was pruned or failed; see the log and search.json.")
    ranked = sorted(complete, key=lambda trial: trial.value, reverse=search.greater_is_better)
    finalists = ranked[: args.top_k]
    # The config as it was (trial 0) runs over the same seeds as the finalists: a winner must beat it on the mean,
    # not on one lucky seed.
    finalists += [trial for trial in ranked[args.top_k :] if trial.user_attrs.get("shipped")]
    selection = []
    for trial in finalists:
        params = {name: decode(value) for name, value in trial.params.items()}
        values = {search.seed: trial.value}
        for offset in range(1, args.selection_seeds + 1):
            seed = search.seed + offset
            values[seed] = selection_run(search, trial, params, seed)
        selection.append(
            {
                "trial": trial.number,
                "params": params,
                "values": {str(seed): value for seed, value in values.items()},
                "mean": statistics.fmean(values.values()),
                "std": statistics.stdev(values.values()) if len(values) > 1 else 0.0,
                "shipped": bool(trial.user_attrs.get("shipped")),
            }
        )
        logger.info(
            "selection: trial %d, %s over %d seed(s): %.4f ± %.4f",
            trial.number,
            search.metric,
            len(values),
            selection[-1]["mean"],
            selection[-1]["std"],
        )
    winner = sorted(selection, key=lambda entry: entry["mean"], reverse=search.greater_is_better)[0]
    winner_dir = search.search_dir / f"trial-{winner['trial']}"
    best_config = write_best_config(search, winner["params"])
    test = score_test(search, winner["params"], winner_dir)
    baseline = fit_baseline_once(search, winner["params"])
    document = {
        "study": args.study_name,
        "objective": search.metric,
        "direction": "maximize" if search.greater_is_better else "minimize",
        "n_trials": args.n_trials,
        "fixed": search.fixed,
        "trials": [describe_trial(trial) for trial in listed(study.trials)],
        "selection": selection,
        "winner": {**winner, "output_dir": str(winner_dir), "config": str(best_config)},
        "test": test,
        "baseline": baseline,
        "plots": plot_study(study, search.search_dir),
    }
    write_json_atomically(search.search_dir / SEARCH_FILE, document)
    logger.info(
        "winner: trial %d (%s), %s %.4f over %d seed(s) -> %s",
        winner["trial"],
        format_params(winner["params"]),
        search.metric,
        winner["mean"],
        len(winner["values"]),
        best_config,
    )
    if test:
        logger.info(
            "winner on the test split: %s", ", ".join(f"{k} {v:.4f}" for k, v in test.items() if k != "samples")
        )
    if compared := comparison(test, baseline, "test"):  # accuracy, or subset accuracy for multi-label data
        logger.info("against the baseline: test: %s", compared.replace("this model", "the winner"))
    return document


def selection_run(search: Search, trial, params: dict, seed: int) -> float:
    """The objective of a top trial trained again with ``seed`` (read back when a stopped search ran it already)."""
    output_dir = search.search_dir / f"trial-{trial.number}" / f"seed-{seed}"
    results_file = output_dir / "all_results.json"
    if (output_dir / "best.json").is_file() and results_file.is_file():
        return json.loads(results_file.read_text(encoding="utf-8"))[search.metric]
    logger.info("selection: trial %d with seed %d -> %s", trial.number, seed, output_dir)
    results = search.train(params, output_dir, seed=seed)
    logger.info(
        "selection: trial %d with seed %d: %s %.4f in %.0f s",
        trial.number,
        seed,
        search.metric,
        results[search.metric],
        results["search_seconds"],
    )
    return results[search.metric]


def describe_trial(trial) -> dict:
    from finetune.search_pruning import share

    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": {name: decode(value) for name, value in trial.params.items()},
        "value": trial.value,
        "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None,
        "intermediate_values": {share(step): value for step, value in trial.intermediate_values.items()},
        **{name: value for name, value in trial.user_attrs.items()},
    }


def write_best_config(search: Search, params: dict) -> Path:
    """The config file with the flags passed on and the winner's parameters: what ``finetune train --config``
    takes to train the winner again."""
    from finetune.parsing import config_values, given_flags
    from finetune.parsing import make_parser as train_parser

    parser = train_parser()
    _, values = config_values(["--config", search.args.config], parser)
    values = {**values, **given_flags(search.train_flags, parser), **params}
    path = search.search_dir / BEST_CONFIG_FILE
    header = (
        f"# The winner of `finetune search --config {search.args.config}` ({search.metric}, mean over seeds; see "
        f"{SEARCH_FILE}).\n# finetune train --config {path}\n"
    )
    path.write_text(header + yaml.safe_dump(plain(values), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def plain(values: dict) -> dict:
    """Values YAML writes as plain scalars and lists (no Python tags)."""
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


def check_test_split(search: Search) -> None:
    """Reads the splits with the test file before any trial, as finetune train would: a bad row or a label that
    training never has is an error now, not after the last trial (the trials leave the test split out)."""
    from finetune.data import load_raw_splits

    _, data_args, training_args = search.arguments({}, search.search_dir / "trial-check", test=True)
    if data_args.test_file:
        load_raw_splits(data_args, seed=training_args.seed).close()


def score_test(search: Search, params: dict, winner_dir: Path) -> dict:
    """The winner's best model on the test split, once (nothing without a test file)."""
    from finetune.evaluation import main as evaluate_main

    _, data_args, _ = search.arguments(params, search.search_dir / "trial-check", test=True)
    if not data_args.test_file:
        return {}
    output = search.search_dir / TEST_RESULTS_FILE
    # The test split as finetune train reads it (and as the baseline beside it is scored): its limit, its bad rows.
    limit = ["--max_samples", str(data_args.max_predict_samples)] if data_args.max_predict_samples else []
    command = ["--model", str(winner_dir), "--test_file", data_args.test_file, "--bad_rows", data_args.bad_rows]
    evaluate_main([*command, *limit, "--output", str(output)])
    document = json.loads(output.read_text(encoding="utf-8"))
    metrics = document["metrics"]
    shown = [name for name in ("accuracy", "f1", "f1_micro", "subset_accuracy", "loss") if name in metrics]
    return {**{f"test_{name}": metrics[name] for name in shown}, "samples": document["samples"]}


def fit_baseline_once(search: Search, params: dict) -> dict | None:
    """The TF-IDF baseline on the search's splits, test included (the trials skip it: their data is the same)."""
    from finetune.train import run_baseline

    model_args, data_args, training_args = search.arguments(params, search.search_dir / "trial-check", test=True)
    training_args.baseline = search.baseline
    return run_baseline(model_args, data_args, training_args)


def plot_study(study, search_dir: Path) -> dict[str, str]:
    """optimization_history.png and param_importances.png (the latter needs two finished trials that differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.visualization import matplotlib as plots

    written = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        for name, plot in (
            ("optimization_history", plots.plot_optimization_history),
            ("param_importances", plots.plot_param_importances),
        ):
            completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if name == "param_importances" and len(completed) < 2:  # Optuna would draw them all equal
                logger.info("search: no %s plot (%d completed trial: too few to compare)", name, len(completed))
                continue
            try:
                axes = plot(study)
            except (ValueError, RuntimeError) as error:  # too few trials for importances
                logger.info("search: no %s plot (%s)", name, error)
                continue
            figure = axes.figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            path = search_dir / f"{name}.png"
            figure.savefig(path, dpi=100)
            written[name] = str(path)
            matplotlib.pyplot.close(figure)
    return written
