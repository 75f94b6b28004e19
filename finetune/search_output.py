"""What a search shows: a line as each trial starts and one as it ends, under a bar over the trials. Each trial's own
output (the data, the model, the Trainer's log lines) goes to its ``train.log``; its warnings still reach the
console, and ``--verbose`` prints all of it there, as ``finetune train`` does."""

from __future__ import annotations

import logging
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("finetune")

TRIAL_LOG = "train.log"
ERROR_ATTR = "error"  # the user attribute (and search.json key) of a trial that failed out of device memory
# A log record's extra for a line about the search as a whole (another process's trial): the console shows it during a
# trial of this process, and that trial's train.log does not take it.
SEARCH_LINE = {"search_line": True}
# The user attribute of a trial made when the study already held its --n_trials: it ends at once, runs nothing, and
# is left out of the lines, search.json and the report.
SURPLUS_ATTR = "surplus"


class SurplusTrial(Exception):
    """Raised in a trial whose process found the study's last trial free at the moment another did (see
    search_processes.is_surplus)."""


def is_search_line(record: logging.LogRecord) -> bool:
    return getattr(record, "search_line", False)


def listed(trials) -> list:
    """The trials a search shows: all but the surplus ones."""
    return [trial for trial in trials if SURPLUS_ATTR not in trial.user_attrs]


def setup_logging() -> None:
    """The "finetune" log on stdout, as finetune train has it (unless a caller set up its own handlers)."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[finetune] %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO)


class TrialWarnings(logging.Filter):
    """What the console passes during a trial: warnings, each text once in the search (every trial reads the same
    data, and the data checks would repeat theirs)."""

    def __init__(self, shown: set[str]):
        super().__init__()
        self.shown = shown

    def filter(self, record: logging.LogRecord) -> bool:
        if is_search_line(record):
            return True
        # Decided once per record: every handler of the logger asks, and the first would mark the text shown.
        if not hasattr(record, "trial_console"):
            record.trial_console = record.levelno >= logging.WARNING and record.getMessage() not in self.shown
            if record.trial_console:
                self.shown.add(record.getMessage())
        return record.trial_console


@contextmanager
def trial_output(output_dir: Path, verbose: bool, shown: set[str]):
    """Inside, the "finetune" log goes to ``output_dir/train.log`` and the logger's other handlers (the console) pass
    new warnings only. Yields the callbacks that send the Trainer's log lines there too."""
    if verbose:
        yield []
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / TRIAL_LOG
    handlers, only_warnings = list(logger.handlers), TrialWarnings(shown)
    with open(path, "w", encoding="utf-8") as stream:
        to_file = logging.StreamHandler(stream)
        to_file.setFormatter(logging.Formatter("%(asctime)s [finetune] %(message)s"))
        to_file.addFilter(lambda record: not is_search_line(record))
        for handler in handlers:
            handler.addFilter(only_warnings)
        logger.addHandler(to_file)
        try:
            yield [log_lines_callback()]
        except Exception as error:
            from optuna import TrialPruned

            if not isinstance(error, TrialPruned):  # pruning is no error; its line comes after the trial
                traceback.print_exception(error, file=stream)
                logger.warning("its output: %s", path)
            raise
        finally:
            logger.removeHandler(to_file)
            for handler in handlers:
                handler.removeFilter(only_warnings)


def log_lines_callback():
    """A callback that logs the Trainer's log lines (loss, learning rate, evaluations) in place of its
    PrinterCallback, which prints them (``replaces_printer``: see train.make_trainer)."""
    from transformers import TrainerCallback

    class LogLines(TrainerCallback):
        replaces_printer = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_local_process_zero and logs:
                shown = {name: f"{value:.4g}" if isinstance(value, float) else value for name, value in logs.items()}
                shown.pop("total_flos", None)
                logger.info("%s", shown)

    return LogLines()


def format_params(params: dict) -> str:
    """A trial's values as the console and the report show them: floats to three significant digits (search.json
    keeps them whole)."""
    return ", ".join(
        f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}" for name, value in params.items()
    )


def after_trial(study, number: int, metric: str, progress) -> None:
    """What follows a trial of this process: its memory given back to the device, and its line."""
    release_device_memory()
    log_trial_end(study, number, metric, progress)


def log_trial_start(number: int, params: dict, output_dir, by: str = "") -> None:
    """One line as a trial starts: its values and its folder; ``by`` names the process running it, if not this one."""
    logger.info(
        "trial %d%s: %s -> %s", number, f" ({by})" if by else "", format_params(params), output_dir, extra=SEARCH_LINE
    )


def log_trial_end(study, number: int, metric: str, progress, by: str = "") -> None:
    """One line for a finished trial: its value (or how far it got when pruned), its time, and the best trial so
    far, which the bar shows too; ``by`` names the process that ran it, if not this one. None for a surplus trial,
    which ran nothing."""
    from optuna.trial import TrialState

    from finetune.search_pruning import share

    trial = next(trial for trial in study.get_trials(deepcopy=False) if trial.number == number)
    if SURPLUS_ATTR in trial.user_attrs:
        return
    seconds = trial.user_attrs.get("seconds")
    if seconds is None and trial.datetime_start and trial.datetime_complete:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    if trial.state == TrialState.COMPLETE:
        outcome = f"{metric} {trial.value:.4f}{took}"
    elif trial.state == TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        outcome = f"pruned at {share(step)} of its schedule, {metric} {trial.intermediate_values[step]:.4f}{took}"
    elif ERROR_ATTR in trial.user_attrs:  # out of memory: the search goes on
        outcome = f"failed{took}: {trial.user_attrs[ERROR_ATTR]}"
    else:
        outcome = f"{trial.state.name.lower()}{took}"
    trial_name = f"trial {number}" + (f" ({by})" if by else "")
    best = best_by(study, trial.datetime_complete)
    if best is None:  # no trial had completed
        logger.info("%s: %s", trial_name, outcome, extra=SEARCH_LINE)
        return
    logger.info(
        "%s: %s; best so far: trial %d, %s %.4f",
        trial_name,
        outcome,
        best.number,
        metric,
        best.value,
        extra=SEARCH_LINE,
    )
    progress.set_postfix_str(f"best {metric} {best.value:.4f} (trial {best.number})", refresh=False)


def best_by(study, moment):
    """The best trial among those complete by ``moment`` (None when none was); other processes' trials are logged
    after they end, and a trial that completed later is no "best so far" for them."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    complete = [trial for trial in complete if moment is None or trial.datetime_complete <= moment]
    if not complete:
        return None
    choose = max if study.direction == StudyDirection.MAXIMIZE else min
    return choose(complete, key=lambda trial: trial.value)


def release_device_memory() -> None:
    """Gives a finished trial's memory back to the device before the next trial, which may need it in other shapes
    (torch's allocator keeps freed blocks cached); after a trial out of memory, its model and optimizer go with its
    exception."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
