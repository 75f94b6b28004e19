"""Hyperparameter search with Optuna: every trial is a ``finetune train`` run, bad trials stop early, and the winner
is chosen over several seeds, since one run on a small validation split is noisy.

    finetune search --config configs/textcnn.yaml --search_space configs/search/textcnn.yaml --n_trials 20
    finetune search --config configs/textcnn.yaml --n_trials 20 --num_train_epochs 4     # 4 epochs in every trial
    finetune search --config configs/bert.yaml --storage postgresql://user@host/db       # on each other machine:
    finetune search --config configs/bert.yaml --storage postgresql://user@host/db --worker

1. Trials: the study (SQLite in the search folder by default; any Optuna storage URL lets workers on several
   machines join it) samples the search space with TPE. Trial 0 is the config as it is, so the search knows where it
   starts. Each trial trains into ``SEARCH_DIR/trial-N`` without the test split; every evaluation reports the
   objective (the config's ``metric_for_best_model``, eval_loss by default) to the pruner, which stops trials that
   fall behind the median of the completed ones at the same share of their schedules (see search_pruning).
   Checkpoints are removed after a trial; its best/ and results stay.
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
import hashlib
import logging
import os
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from finetune.cli import check_interrupt
from finetune.errors import OutOfDeviceMemory, UserError
from finetune.search_output import (
    ERROR_ATTR,
    SURPLUS_ATTR,
    TRIAL_LOG,
    SurplusTrial,
    after_trial,
    log_trial_start,
    setup_logging,
    trial_output,
)
from finetune.search_processes import (
    OUTPUT_ATTR,
    WORKER_ATTR,
    OtherTrials,
    finished,
    is_surplus,
    running,
    start_workers,
    this_process,
    wait_for_running_trials,
)
from finetune.search_results import check_test_split, finish
from finetune.search_space import (
    NOT_SEARCHED,
    Spec,
    check_pairs,
    config_params,
    encode,
    load_space,
    param_flags,
    without_fixed,
)

logger = logging.getLogger("finetune")

STUDY_FILE = "study.db"
INTERRUPTED_HINT = "; the same command continues the search (finished trials are kept)"
STEPS = "thousandths of the schedule"  # what a trial's reported steps count (search_pruning)


@dataclass
class Search:
    """What every trial shares: the command's arguments and the flags passed on to ``finetune train``."""

    args: argparse.Namespace
    train_flags: list[str]
    search_dir: Path
    metric: str
    greater_is_better: bool
    seed: int
    baseline: str = "tfidf"  # the config's
    fixed: dict = field(default_factory=dict)  # keys of the space that a passed-on flag sets: not searched
    shown_warnings: set[str] = field(default_factory=set)  # a trial's warnings reach the console once

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
            with trial_output(output_dir, self.args.verbose, self.shown_warnings) as log_lines:
                results = train(*self.arguments(params, output_dir, seed), callbacks=[*callbacks, *log_lines])
        finally:
            if not self.args.keep_checkpoints:
                for checkpoint in output_dir.glob("checkpoint-*"):
                    shutil.rmtree(checkpoint, ignore_errors=True)
        results["search_seconds"] = time.monotonic() - started
        return results


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune search",
        description="Search hyperparameters with Optuna: each trial a finetune train run, pruned on the eval metric; "
        "the best trials trained again over more seeds; the winner's config written to SEARCH_DIR/best.yaml. "
        "Other flags (--num_train_epochs 3, ...) are passed on to every trial, and a key of the search space that a "
        "flag sets is not searched.",
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
        "on the same storage, their output in SEARCH_DIR/worker-K.log); more than 1 only pays with a device or CPU "
        "cores for each",
    )
    parser.add_argument(
        "--pruner", choices=["median", "halving", "none"], default="median", help="how trials stop early"
    )
    parser.add_argument("--top_k", type=int, default=3, help="the best trials to train again with more seeds")
    parser.add_argument("--selection_seeds", type=int, default=2, help="more seeds for each of the top_k trials")
    parser.add_argument("--keep_checkpoints", action="store_true", help="keep every trial's checkpoint-N folders")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"print each trial's whole output (as finetune train prints it) instead of writing it to its {TRIAL_LOG}",
    )
    parser.add_argument(
        "--heartbeat_interval",
        type=int,
        default=60,
        help="seconds between a running trial's signs of life in the storage; a trial silent for twice as long is "
        "taken as dead (its process was killed) and run again",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, train_flags = make_parser().parse_known_args(argv)
    if args.n_trials < 1 or args.top_k < 1 or args.selection_seeds < 0 or args.n_jobs < 1:
        raise UserError("--n_trials, --top_k and --n_jobs must be at least 1, --selection_seeds at least 0.")
    if args.heartbeat_interval < 1:
        raise UserError(f"--heartbeat_interval must be at least 1 second, got {args.heartbeat_interval}.")
    search, space = prepare(args, train_flags)
    if not args.worker:  # the worker runs trials only; the command without --worker scores the test split
        check_test_split(search)
    from finetune.search_pruning import quiet_optuna

    quiet_optuna()
    storage = args.storage or f"sqlite:///{(search.search_dir / STUDY_FILE).resolve()}"
    search.search_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(search, space, storage, args)
    log_continued(study, args)
    workers = start_workers(args, argv, storage, search.search_dir) if args.n_jobs > 1 and not args.worker else []
    try:
        run_trials(study, search, space, args, workers)
    finally:
        for worker in workers:  # a Ctrl-C reaches the workers too
            worker.wait(interrupted=isinstance(sys.exc_info()[1], KeyboardInterrupt))
    if args.worker:
        logger.info("worker: the study holds %d finished trials; the command without --worker selects", args.n_trials)
        return 0
    finish(study, search, args)
    return 0


def prepare(args: argparse.Namespace, train_flags: list[str]) -> tuple[Search, dict[str, Spec]]:
    """Checks the config, the passed-on flags and the search space before any trial runs."""
    from finetune.parsing import check_yaml_values, given_flags, parse_args, parse_namespace
    from finetune.parsing import make_parser as train_parser

    parser = train_parser()
    given = given_flags(train_flags, train_parser())  # a fresh parser: this one takes the config as its defaults
    namespace = parse_namespace(["--config", args.config, *train_flags], parser)
    search_dir = Path(args.search_dir or Path(namespace.output_dir) / "search")
    setup_logging()
    metric = namespace.metric_for_best_model or "eval_loss"
    metric = metric if metric.startswith("eval_") else f"eval_{metric}"
    # As transformers has it: lower is better for a loss (eval_loss, eval_log_loss, eval_hamming_loss).
    greater = namespace.greater_is_better if namespace.greater_is_better is not None else not metric.endswith("loss")
    search = Search(
        args,
        train_flags,
        search_dir,
        metric,
        greater,
        namespace.seed,
        baseline=namespace.baseline,
    )
    if namespace.seeds:
        logger.info(
            "search: the config's seeds %s are for finetune train (and best.yaml): each trial trains once, with seed "
            "%d, and the top_k trials again with --selection_seeds more",
            namespace.seeds,
            namespace.seed,
        )
    from finetune.config import resolve_model_type

    kind = resolve_model_type(namespace.model_type, namespace.model_name_or_path)
    space_path = (
        args.search_space or Path(args.config).parent / "search" / f"{'textcnn' if kind == 'textcnn' else 'bert'}.yaml"
    )
    if not args.search_space and not Path(space_path).is_file():
        shipped = Path(__file__).resolve().parent.parent / "configs" / "search" / Path(space_path).name
        hint = f" (the one shipped for this model: {shipped})" if shipped.is_file() else ""
        raise UserError(f"No search space: {space_path} does not exist; name one with --search_space{hint}.")
    known = {action.dest for action in parser._actions} - {"help", "config"}

    def check_value(name: str, value) -> None:
        where = f"Search space {space_path}: {name}"
        if name not in known:
            raise UserError(f"Search space {space_path}: unknown key {name}. See `finetune train --help`.")
        if name in NOT_SEARCHED:
            raise UserError(f"{where} cannot be searched: {NOT_SEARCHED[name]}.")
        if name in given:  # fixed by its flag (without_fixed): the space's values are never tried
            return
        check_yaml_values({name: value}, parser, str(space_path))
        try:  # the value as a whole run would take it: the argument classes' own checks
            search.arguments({name: value}, search_dir / "trial-check")
        except UserError as error:
            raise UserError(f"{where}: {value!r} is refused: {error}") from None
        except SystemExit:
            raise UserError(f"{where}: {value!r} is not a value finetune train takes.") from None

    space, search.fixed = without_fixed(load_space(str(space_path), check_value), given, str(space_path))
    if search.fixed:
        logger.info("search: not searched, the command line sets them for every trial: %s", search.fixed)
    check_pairs(str(space_path), space, lambda values: search.arguments(values, search_dir / "trial-check"))
    if "label_smoothing_factor" in space and metric == "eval_loss":
        raise UserError(
            f"Search space {space_path}: label_smoothing_factor changes eval_loss itself (the smoothed loss is "
            "higher), so trials would not compare; search it with metric_for_best_model eval_log_loss (the loss "
            "without smoothing), eval_accuracy or eval_f1."
        )
    parse_args(["--config", args.config, *train_flags, "--output_dir", str(search_dir / "trial-check")])
    return search, space


def open_study(search: Search, space: dict[str, Spec], storage_url: str, args: argparse.Namespace):
    """Creates the study, or loads it to continue; a study made with another space or objective is refused."""
    import optuna

    from finetune.search_pruning import make_pruner, make_storage

    storage = make_storage(storage_url, args.heartbeat_interval)
    study = optuna.create_study(
        study_name=args.study_name,
        storage=storage,
        direction="maximize" if search.greater_is_better else "minimize",
        pruner=make_pruner(args.pruner),
        load_if_exists=True,
    )
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(search.seed, len(study.trials), args.worker))
    described = {name: vars(spec) for name, spec in space.items()}
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", described)
        study.set_user_attr("metric", search.metric)
        study.set_user_attr("steps", STEPS)
    elif recorded != described or study.user_attrs.get("metric") != search.metric:
        keys = set(recorded) | set(described)
        changed = sorted(name for name in keys if recorded.get(name) != described.get(name))
        differs = f"space keys {', '.join(changed)}" if changed else f"objective {study.user_attrs.get('metric')}"
        raise UserError(
            f"The study {args.study_name} in {storage_url} was made with another search space or objective (its "
            f"{differs}; a flag that sets a key of the space takes it out); run the command that started it, or "
            "give a new --study_name (or --search_dir) for this one."
        )
    elif study.user_attrs.get("steps") != STEPS:
        # Its trials reported by epoch: the pruner would compare epochs with shares of the schedule.
        raise UserError(
            f"The study {args.study_name} in {storage_url} was made by an earlier finetune, whose trials report "
            "their evaluations by epoch, not by share of the schedule; give a new --study_name (or --search_dir)."
        )
    if not args.worker and not study.trials:
        shipped = config_params(args.config, search.train_flags, space)
        outside = {name: value for name, value in shipped.items() if not space[name].holds(value)}
        if not outside:
            study.enqueue_trial({name: encode(value) for name, value in shipped.items()}, user_attrs={"shipped": True})
        else:
            logger.warning(
                "search: trial 0 is not the config as it is, and the winner will not be compared with it: its %s "
                "outside the search space. Set the config's value to one of the space's, or widen the space.",
                ", ".join(f"{name} {value!r}{' (unset)' if value is None else ''}" for name, value in outside.items())
                + (" lies" if len(outside) == 1 else " lie"),
            )
    return study


def log_continued(study, args: argparse.Namespace) -> None:
    """Says what a continued study holds; with more finished trials than --n_trials none are run, and all are kept."""
    done, running_now = len(finished(study)), len(running(study))
    if not done and not running_now:
        return
    logger.info(
        "%s study %s: %d finished trial(s), %d running; --n_trials %d",
        "worker: joining" if args.worker else "search: continuing",
        args.study_name,
        done,
        running_now,
        args.n_trials,
    )
    if done > args.n_trials:
        logger.warning(
            "search: the study already holds %d finished trials, more than --n_trials %d: no trial runs, and the "
            "selection is among all %d. For a separate, smaller search give a new --study_name (or --search_dir).",
            done,
            args.n_trials,
            done,
        )


def sampler_seed(seed: int, trials: int, worker: bool, process: tuple[str, int] | None = None) -> int:
    """The seed of a process's sampler. A fresh study samples from the run's seed, so its trials repeat. A continued
    study must not repeat the draws made before it (a seeded sampler starts over): seed + the trials there are.
    Workers draw at once, so each mixes in its machine and process: a plain sum of seed, trials and pid gave two
    workers with consecutive pids, one of them started a trial later, the same seed, and so the same trials."""
    if not worker:
        return seed + trials
    host, pid = process or (socket.gethostname(), os.getpid())
    digest = hashlib.sha256(f"{seed}/{trials}/{host}/{pid}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def run_trials(study, search: Search, space: dict[str, Spec], args: argparse.Namespace, workers=()) -> None:
    """Runs trials one at a time until the study holds n_trials finished ones (counting every worker's), showing
    the other processes' trials too; the command without --worker then waits for those still running."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from finetune.search_pruning import ReportToTrial

    def objective(trial) -> float:
        ran.append(trial.number)
        if is_surplus(study, trial.number, args.n_trials):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise SurplusTrial(f"trial {trial.number}: the study holds its --n_trials {args.n_trials} already")
        params = {name: spec.suggest(trial, name) for name, spec in space.items()}
        output_dir = search.search_dir / f"trial-{trial.number}"
        trial.set_user_attr(WORKER_ATTR, this_process())
        trial.set_user_attr(OUTPUT_ATTR, str(output_dir))  # last: other processes announce the trial once it is set
        log_trial_start(trial.number, params, output_dir)
        callback = ReportToTrial(trial, search.metric)
        try:
            results = search.train(params, output_dir, callbacks=[callback])
        except OutOfDeviceMemory as error:  # the trial fails (see optimize's catch); smaller settings may fit
            trial.set_user_attr(ERROR_ATTR, str(error))
            raise
        trial.set_user_attr("seconds", round(results["search_seconds"], 1))
        if "eval_accuracy" in results:
            trial.set_user_attr("eval_accuracy", results["eval_accuracy"])
        return results[search.metric]

    ran: list[int] = []  # the numbers of this process's trials
    if not args.verbose:
        logger.info("search: each trial's output goes to its %s; --verbose prints it here", TRIAL_LOG)
    initial = min(len(finished(study)), args.n_trials)
    # No bar where the output is no terminal (a worker's log file); the log's lines are written above it.
    progress = tqdm(total=args.n_trials, initial=initial, desc="trials", unit="trial", disable=None)
    names = {worker.process_name: worker.name for worker in workers}
    libraries = [logging.getLogger("transformers")]  # its warnings too
    with progress, logging_redirect_tqdm(loggers=[logger, *libraries], tqdm_class=tqdm):
        with OtherTrials(study, search.metric, progress, args.n_trials, names):
            run_until(study, objective, search, args, progress, ran)
            if not args.worker:
                wait_for_running_trials(study)


def run_until(study, objective, search: Search, args: argparse.Namespace, progress, ran: list[int]) -> None:
    """The loop of run_trials: a trial at a time while the study needs more than are finished and running."""
    import optuna

    started = time.monotonic()
    while len(finished(study)) < args.n_trials:
        check_interrupt()  # a Ctrl-C that Python dropped during the last trial
        if args.timeout is not None and time.monotonic() - started > args.timeout:
            logger.info("search: --timeout %gs reached; no more trials from this process", args.timeout)
            break
        optuna.storages.fail_stale_trials(study)  # trials of killed processes, retried by the storage's callback
        if len(finished(study)) + len(running(study)) >= args.n_trials:
            time.sleep(min(5, args.heartbeat_interval))  # the last trials run elsewhere
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, n_trials=1, catch=(OutOfDeviceMemory, SurplusTrial))
            after_trial(study, ran[-1], search.metric, progress)
        progress.n = min(len(finished(study)), args.n_trials)
        progress.refresh()


if __name__ == "__main__":
    from finetune.cli import run_command

    sys.exit(run_command(main, sys.argv[1:]))
