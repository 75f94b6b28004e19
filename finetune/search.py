"""Hyperparameter search with Optuna: every trial is a ``finetune train`` run, bad trials stop early, and the winner
is chosen over several seeds, since one run on a small validation split is noisy.

    finetune search --config configs/textcnn.yaml --search_space configs/search/textcnn.yaml --n_trials 20
    finetune search --config configs/textcnn.yaml --n_trials 20 --num_train_epochs 4     # flags go to every trial
    finetune search --config configs/bert.yaml --storage postgresql://user@host/db       # on each other machine:
    finetune search --config configs/bert.yaml --storage postgresql://user@host/db --worker

1. Trials: the study (SQLite in the search folder by default; any Optuna storage URL lets workers on several
   machines join it) samples the search space with TPE. Trial 0 is the config as it is, so the search knows where it
   starts. Each trial trains into ``SEARCH_DIR/trial-N`` without the test split; every evaluation reports the
   objective (the config's ``metric_for_best_model``, eval_loss by default) to the pruner, which stops trials that
   fall behind the median. Checkpoints are removed after a trial; its best/ and results stay.
2. Selection: the ``top_k`` best trials, and trial 0 (the config as it was), are trained again with
   ``selection_seeds`` more seeds; the winner has the best mean over its seeds.
3. The winner: its run is scored once on the test split, ``best.yaml`` holds its config (``finetune train --config
   SEARCH_DIR/best.yaml`` takes it as it is), ``search.json`` every trial, and two plots show the history and which
   parameters mattered.

Stopped (Ctrl-C, SIGKILL, a lost machine), the same command continues: finished trials are kept, a trial whose
process died is run again once its heartbeat is overdue, and finished selection runs are read, not trained again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml

from finetune.errors import UserError
from finetune.files import write_json_atomically

logger = logging.getLogger("finetune")

SEARCH_FILE = "search.json"
BEST_CONFIG_FILE = "best.yaml"
TEST_RESULTS_FILE = "test_results.json"
STUDY_FILE = "study.db"
SPEC_KEYS = {"low", "high", "log", "step"}


@dataclass
class Spec:
    """One parameter's range: ``choices`` (categorical), or ``low``..``high`` (int when both are ints)."""

    choices: list | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    def suggest(self, trial, name: str):
        """The trial's value of this parameter. Lists among the choices (kernel sizes) travel as JSON text."""
        if self.choices is not None:
            choice = trial.suggest_categorical(name, [encode(choice) for choice in self.choices])
            return decode(choice)
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(name, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def holds(self, value) -> bool:
        """Whether ``value`` (the config's own) lies in this space."""
        if self.choices is not None:
            return encode(value) in [encode(choice) for choice in self.choices]
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def cast(self, value):
        """A config's value as this parameter's trials draw it: ``num_train_epochs: 6.0`` is 6 in an int range."""
        integers = self.choices is None and isinstance(self.low, int) and isinstance(self.high, int)
        return int(value) if integers and isinstance(value, float) and value.is_integer() else value

    def extremes(self) -> list:
        return list(self.choices) if self.choices is not None else [self.low, self.high]


def encode(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def decode(value):
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


def load_space(path: str, check_value) -> dict[str, Spec]:
    """Reads a search space: ``name: [choice, ...]`` or ``name: {low: L, high: H, log: true, step: S}``.

    Every name must be an argument of ``finetune train``; every choice and both ends of a range must be values the
    argument takes (``check_value(name, value)`` raises a UserError otherwise); a range must hold more than a point.
    """
    from finetune.parsing import read_yaml

    document = read_yaml(path, "Search space")
    if not isinstance(document, dict) or not document:
        raise UserError(f"Search space {path} must map argument names to choices or ranges.")
    space = {}
    for name, entry in document.items():
        where = f"Search space {path}: {name}"
        if isinstance(entry, list):
            if not entry:
                raise UserError(f"{where}: the list of choices is empty.")
            spec = Spec(choices=entry)
        elif isinstance(entry, dict):
            unknown = sorted(set(entry) - SPEC_KEYS)
            if unknown or not {"low", "high"} <= set(entry):
                raise UserError(
                    f"{where}: a range is {{low: L, high: H}} with optional log and step"
                    + (f"; unknown key(s) {', '.join(unknown)}" if unknown else "")
                    + "."
                )
            low, high = entry["low"], entry["high"]
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (low, high)):
                raise UserError(f"{where}: low and high must be numbers, got {low!r} and {high!r}.")
            if not low < high:
                raise UserError(f"{where}: the range {low}..{high} is empty; low must be below high.")
            if entry.get("log") and low <= 0:
                raise UserError(f"{where}: a log range must start above 0, got low {low}.")
            spec = Spec(low=low, high=high, log=bool(entry.get("log", False)), step=entry.get("step"))
        else:
            raise UserError(f"{where}: give a list of choices or a range {{low: L, high: H}}, not {entry!r}.")
        for value in spec.extremes():
            check_value(name, value)
        space[name] = spec
    return space


def pruning_callback(trial, metric: str, per_epoch: bool):
    """A TrainerCallback that reports every evaluation's objective to the trial and stops the run when the pruner
    says so (by epoch when the run evaluates each epoch, so that trials of other batch sizes compare)."""
    import optuna
    from transformers import TrainerCallback

    class ReportToTrial(TrainerCallback):
        def __init__(self):
            self.reported: set[int] = set()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            step = round(state.epoch) if per_epoch else state.global_step
            # The best model is evaluated again after training, at the last step: that is no new value.
            if not metrics or metric not in metrics or step in self.reported:
                return
            self.reported.add(step)
            trial.report(metrics[metric], step)
            if trial.should_prune():
                unit = "epoch" if per_epoch else "step"
                raise optuna.TrialPruned(f"{metric} {metrics[metric]:.4f} at {unit} {step}")

    return ReportToTrial()


@dataclass
class Search:
    """What every trial shares: the command's arguments and the flags passed on to ``finetune train``."""

    args: argparse.Namespace
    train_flags: list[str]
    search_dir: Path
    metric: str
    greater_is_better: bool
    seed: int
    per_epoch: bool
    baseline: str = "tfidf"  # the config's

    def arguments(self, params: dict, output_dir: Path, seed: int | None = None, test: bool = False) -> tuple:
        """``finetune train``'s three argument groups for a trial: the config, the passed-on flags, the trial's
        parameters, its own output_dir and seed; without the test split unless ``test``."""
        from finetune.parsing import parse_args

        argv = ["--config", self.args.config, *self.train_flags, *param_flags(params)]
        argv += ["--output_dir", str(output_dir), "--overwrite_output_dir", "true"]
        argv += ["--seed", str(self.seed if seed is None else seed), "--disable_tqdm", "true"]
        argv += ["--baseline", "none"]  # fitted once, beside the winner (see finish)
        model_args, data_args, training_args = parse_args(argv)
        if not test:
            data_args.test_file = None
        return model_args, data_args, training_args

    def train(self, params: dict, output_dir: Path, seed: int | None = None, callbacks=()) -> dict:
        from finetune.train import train

        started = time.monotonic()
        try:
            results = train(*self.arguments(params, output_dir, seed), callbacks=callbacks)
        finally:
            if not self.args.keep_checkpoints:
                for checkpoint in output_dir.glob("checkpoint-*"):
                    shutil.rmtree(checkpoint, ignore_errors=True)
        results["search_seconds"] = time.monotonic() - started
        return results


def param_flags(params: dict) -> list[str]:
    flags = []
    for name, value in params.items():
        values = value if isinstance(value, list) else [value]
        flags += [f"--{name}", *(str(item).lower() if isinstance(item, bool) else str(item) for item in values)]
    return flags


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune search",
        description="Search hyperparameters with Optuna: each trial a finetune train run, pruned on the eval metric; "
        "the best trials trained again over more seeds; the winner's config written to SEARCH_DIR/best.yaml. "
        "Other flags (--num_train_epochs 3, ...) are passed on to every trial.",
        epilog="Example: finetune search --config configs/textcnn.yaml --search_space configs/search/textcnn.yaml "
        "--n_trials 20",
    )
    parser.add_argument("--config", required=True, help="the finetune train config every trial starts from")
    parser.add_argument(
        "--search_space",
        help="YAML: name: [choices] or name: {low, high, log, step} for arguments of finetune train (default: "
        "search/MODEL_TYPE.yaml beside the config, e.g. configs/search/textcnn.yaml)",
    )
    parser.add_argument("--n_trials", type=int, default=20, help="trials in the study, all workers together")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds (this process)")
    parser.add_argument("--search_dir", help="where trials and results go (default: OUTPUT_DIR/search)")
    parser.add_argument(
        "--storage",
        help="Optuna storage URL shared by the workers (default: sqlite:///SEARCH_DIR/study.db); e.g. "
        "postgresql://user:password@host/database for workers on several machines",
    )
    parser.add_argument("--study_name", default="finetune-search", help="the study's name in the storage")
    parser.add_argument(
        "--worker",
        action="store_true",
        help="only run trials (on another machine or process, with the same --storage) and leave the selection "
        "and the outputs to the command started without --worker",
    )
    parser.add_argument(
        "--n_jobs",
        type=int,
        default=1,
        help="processes on this machine that run trials at once (one is this command; the others are workers "
        "on the same storage); more than 1 only pays with a device or CPU cores for each",
    )
    parser.add_argument(
        "--pruner", choices=["median", "halving", "none"], default="median", help="how trials stop early"
    )
    parser.add_argument("--top_k", type=int, default=3, help="the best trials to train again with more seeds")
    parser.add_argument("--selection_seeds", type=int, default=2, help="more seeds for each of the top_k trials")
    parser.add_argument("--keep_checkpoints", action="store_true", help="keep every trial's checkpoint-N folders")
    parser.add_argument(
        "--heartbeat_interval",
        type=int,
        default=60,
        help="seconds between a running trial's signs of life in the storage; a trial silent for twice as long is "
        "taken as dead (its process was killed) and run again",
    )
    return parser


def retry_callback():
    """Optuna's callback that runs a trial of a dead process again (renamed in Optuna 4.9)."""
    import optuna

    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    return (retry or optuna.storages.RetryFailedTrialCallback)(max_retry=2)


def make_storage(url: str, heartbeat_interval: int):
    """The RDB storage, with heartbeats so that the trial of a killed process is found and run again. Workers that
    start together race to create the tables; the losers try again."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
                heartbeat_interval=heartbeat_interval,
                grace_period=2 * heartbeat_interval,
                heartbeat_stale_trial_callback=retry_callback(),
            )
        except SQLAlchemyError as error:
            if attempt == 4 or "already exists" not in str(error) and "UNIQUE" not in str(error):
                raise UserError(f"--storage {url}: cannot open it ({error}).") from None
            time.sleep(1 + attempt)
        except (ImportError, ValueError) as error:
            raise UserError(f"--storage {url}: cannot open it ({error}).") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, train_flags = make_parser().parse_known_args(argv)
    if args.n_trials < 1 or args.top_k < 1 or args.selection_seeds < 0 or args.n_jobs < 1:
        raise UserError("--n_trials, --top_k and --n_jobs must be at least 1, --selection_seeds at least 0.")
    if args.heartbeat_interval < 1:
        raise UserError(f"--heartbeat_interval must be at least 1 second, got {args.heartbeat_interval}.")
    search, space = prepare(args, train_flags)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats and failing stale trials are marked experimental in Optuna; they are what continuing relies on.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = args.storage or f"sqlite:///{(search.search_dir / STUDY_FILE).resolve()}"
    search.search_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(search, space, storage, args)
    workers = start_workers(args, argv, storage) if args.n_jobs > 1 and not args.worker else []
    try:
        run_trials(study, search, space, args)
    finally:
        for worker in workers:
            worker.wait()
    if args.worker:
        logger.info("worker: the study holds %d finished trials; the command without --worker selects", args.n_trials)
        return 0
    wait_for_running_trials(study)
    finish(study, search, args)
    return 0


def prepare(args: argparse.Namespace, train_flags: list[str]) -> tuple[Search, dict[str, Spec]]:
    """Checks the config, the passed-on flags and the search space before any trial runs."""
    from finetune.parsing import check_yaml_values, parse_args, parse_namespace
    from finetune.parsing import make_parser as train_parser

    parser = train_parser()
    namespace = parse_namespace(["--config", args.config, *train_flags], parser)
    search_dir = Path(args.search_dir or Path(namespace.output_dir) / "search")
    setup_logging()
    metric = namespace.metric_for_best_model or "eval_loss"
    metric = metric if metric.startswith("eval_") else f"eval_{metric}"
    greater = namespace.greater_is_better if namespace.greater_is_better is not None else metric != "eval_loss"
    search = Search(
        args,
        train_flags,
        search_dir,
        metric,
        greater,
        namespace.seed,
        per_epoch=namespace.eval_strategy == "epoch",
        baseline=namespace.baseline,
    )
    from finetune.config import resolve_model_type

    kind = resolve_model_type(namespace.model_type, namespace.model_name_or_path)
    space_path = (
        args.search_space or Path(args.config).parent / "search" / f"{'textcnn' if kind == 'textcnn' else 'bert'}.yaml"
    )
    if not args.search_space and not Path(space_path).is_file():
        raise UserError(f"No search space: {space_path} does not exist; name one with --search_space.")
    known = {action.dest for action in parser._actions} - {"help", "config"}

    def check_value(name: str, value) -> None:
        where = f"Search space {space_path}: {name}"
        if name not in known:
            raise UserError(f"Search space {space_path}: unknown key {name}. See `finetune train --help`.")
        check_yaml_values({name: value}, parser, str(space_path))
        try:  # the value as a whole run would take it: the argument classes' own checks
            search.arguments({name: value}, search_dir / "trial-check")
        except UserError as error:
            raise UserError(f"{where}: {value!r} is refused: {error}") from None
        except SystemExit:
            raise UserError(f"{where}: {value!r} is not a value finetune train takes.") from None

    space = load_space(str(space_path), check_value)
    if "label_smoothing_factor" in space and metric == "eval_loss":
        raise UserError(
            f"Search space {space_path}: label_smoothing_factor changes eval_loss itself (the smoothed loss is "
            "higher), so trials would not compare; search it with metric_for_best_model eval_accuracy or eval_f1."
        )
    parse_args(["--config", args.config, *train_flags, "--output_dir", str(search_dir / "trial-check")])
    return search, space


def setup_logging() -> None:
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[finetune] %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO)


def open_study(search: Search, space: dict[str, Spec], storage_url: str, args: argparse.Namespace):
    """Creates the study, or loads it to continue; a study made with another space or objective is refused."""
    import optuna

    storage = make_storage(storage_url, args.heartbeat_interval)
    pruner = {
        "median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        "halving": optuna.pruners.SuccessiveHalvingPruner(),
        "none": optuna.pruners.NopPruner(),
    }[args.pruner]
    study = optuna.create_study(
        study_name=args.study_name,
        storage=storage,
        direction="maximize" if search.greater_is_better else "minimize",
        pruner=pruner,
        load_if_exists=True,
    )
    # A fresh study samples from the run's seed. A continued study, or a worker, must not repeat the draws made
    # before it (a seeded sampler starts over): it seeds from the trials there are and its process.
    offset = len(study.trials) + (os.getpid() if args.worker else 0)
    study.sampler = optuna.samplers.TPESampler(seed=search.seed + offset)
    described = {name: vars(spec) for name, spec in space.items()}
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", described)
        study.set_user_attr("metric", search.metric)
    elif recorded != described or study.user_attrs.get("metric") != search.metric:
        raise UserError(
            f"The study {args.study_name} in {storage_url} was made with another search space or objective; "
            "give a new --study_name (or --search_dir) for this one."
        )
    if not args.worker and not study.trials:
        shipped = config_params(args.config, search.train_flags, space)
        if shipped is not None:
            study.enqueue_trial({name: encode(value) for name, value in shipped.items()}, user_attrs={"shipped": True})
    return study


def config_params(config: str, train_flags: list[str], space: dict[str, Spec]) -> dict | None:
    """The config's own values of the searched parameters, or None when one lies outside the space."""
    from finetune.parsing import make_parser as train_parser
    from finetune.parsing import parse_namespace

    namespace = parse_namespace(["--config", config, *train_flags], train_parser())
    values = {name: space[name].cast(getattr(namespace, name)) for name in space}
    return values if all(space[name].holds(value) for name, value in values.items()) else None


def finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def running(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def run_trials(study, search: Search, space: dict[str, Spec], args: argparse.Namespace) -> None:
    """Runs trials one at a time until the study holds n_trials finished ones (counting every worker's)."""
    import optuna
    from tqdm.auto import tqdm

    def objective(trial) -> float:
        params = {name: spec.suggest(trial, name) for name, spec in space.items()}
        output_dir = search.search_dir / f"trial-{trial.number}"
        trial.set_user_attr("output_dir", str(output_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        logger.info("trial %d: %s -> %s", trial.number, params, output_dir)
        callback = pruning_callback(trial, search.metric, search.per_epoch)
        results = search.train(params, output_dir, callbacks=[callback])
        trial.set_user_attr("seconds", round(results["search_seconds"], 1))
        if "eval_accuracy" in results:
            trial.set_user_attr("eval_accuracy", results["eval_accuracy"])
        return results[search.metric]

    started = time.monotonic()
    progress = tqdm(total=args.n_trials, initial=min(len(finished(study)), args.n_trials), desc="trials", unit="trial")
    try:
        while len(finished(study)) < args.n_trials:
            if args.timeout is not None and time.monotonic() - started > args.timeout:
                logger.info("search: --timeout %gs reached; no more trials from this process", args.timeout)
                break
            optuna.storages.fail_stale_trials(study)  # trials of killed processes, retried by the storage's callback
            if len(finished(study)) + len(running(study)) >= args.n_trials:
                time.sleep(min(5, args.heartbeat_interval))  # the last trials run elsewhere
            else:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                    study.optimize(objective, n_trials=1)
            progress.n = min(len(finished(study)), args.n_trials)
            progress.refresh()
    finally:
        progress.close()


def wait_for_running_trials(study) -> None:
    """Waits for other workers' trials, and runs none itself: a dead worker's trial fails after its grace period."""
    import optuna

    while running(study):
        optuna.storages.fail_stale_trials(study)
        if running(study):
            logger.info("search: waiting for %d trial(s) running elsewhere", len(running(study)))
            time.sleep(5)


def start_workers(args: argparse.Namespace, argv: list[str], storage: str) -> list:
    """``n_jobs - 1`` worker processes on this machine, on the same storage."""
    import subprocess

    command = [sys.executable, "-m", "finetune", "search", *argv]
    command += ["--worker", "--storage", storage, "--n_jobs", "1"]
    return [subprocess.Popen(command) for _ in range(args.n_jobs - 1)]


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
            "selection: trial %d, %s over %d seeds: %.4f ± %.4f",
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
        "trials": [describe_trial(trial) for trial in study.trials],
        "selection": selection,
        "winner": {**winner, "output_dir": str(winner_dir), "config": str(best_config)},
        "test": test,
        "baseline": baseline,
        "plots": plot_study(study, search.search_dir),
    }
    write_json_atomically(search.search_dir / SEARCH_FILE, document)
    logger.info(
        "winner: trial %d %s, %s %.4f over %d seeds -> %s",
        winner["trial"],
        winner["params"],
        search.metric,
        winner["mean"],
        len(winner["values"]),
        best_config,
    )
    if test:
        logger.info(
            "winner on the test split: %s", ", ".join(f"{k} {v:.4f}" for k, v in test.items() if k != "samples")
        )
    if baseline and "test_accuracy" in baseline and "test_accuracy" in test:
        logger.info("test accuracy: baseline %.4f, the winner %.4f", baseline["test_accuracy"], test["test_accuracy"])
    return document


def selection_run(search: Search, trial, params: dict, seed: int) -> float:
    """The objective of a top trial trained again with ``seed`` (read back when a stopped search ran it already)."""
    output_dir = search.search_dir / f"trial-{trial.number}" / f"seed-{seed}"
    results_file = output_dir / "all_results.json"
    if (output_dir / "best.json").is_file() and results_file.is_file():
        return json.loads(results_file.read_text(encoding="utf-8"))[search.metric]
    logger.info("selection: trial %d with seed %d -> %s", trial.number, seed, output_dir)
    return search.train(params, output_dir, seed=seed)[search.metric]


def describe_trial(trial) -> dict:
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": {name: decode(value) for name, value in trial.params.items()},
        "value": trial.value,
        "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None,
        "intermediate_values": {str(step): value for step, value in trial.intermediate_values.items()},
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


def score_test(search: Search, params: dict, winner_dir: Path) -> dict:
    """The winner's best model on the test split, once (nothing without a test file)."""
    from finetune.evaluation import main as evaluate_main

    _, data_args, _ = search.arguments(params, search.search_dir / "trial-check", test=True)
    if not data_args.test_file:
        return {}
    output = search.search_dir / TEST_RESULTS_FILE
    evaluate_main(["--model", str(winner_dir), "--test_file", data_args.test_file, "--output", str(output)])
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


if __name__ == "__main__":
    from finetune.cli import run_command

    sys.exit(run_command(main, sys.argv[1:]))
