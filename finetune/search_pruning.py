"""Optuna's side of a search: its log, its storage, and how it stops trials early.

How a search stops trials early: every evaluation is reported at the share of the trial's own schedule it has
done (in thousandths), and the pruners compare trials at the same share. Imported when a search runs (it loads Optuna
and transformers).

Compared by epoch, trials with different ``num_train_epochs`` are at different points of their learning-rate
schedules: after one epoch a 3-epoch run has spent a third of its decay and a 10-epoch run a tenth, so the short one
looks better and the long one is stopped before it could catch up. Compared by share, trials of any length, batch
size or evaluation interval meet at the same point of their schedules.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
import warnings

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState
from transformers import TrainerCallback

from finetune.errors import OutOfDeviceMemory, UserError
from finetune.search_output import SurplusTrial

SCALE = 1000  # steps are thousandths of the trial's schedule


def quiet_optuna() -> None:
    """Optuna's warnings as one line each, without its experimental-feature warnings (heartbeats and failing stale
    trials, which continuing a search relies on)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.disable_default_handler()
    library = logging.getLogger("optuna")
    if not any(getattr(handler, "finetune", False) for handler in library.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[optuna] %(message)s"))
        handler.addFilter(without_traceback)
        handler.finetune = True
        library.addHandler(handler)


def without_traceback(record: logging.LogRecord) -> bool:
    """A trial's exception goes on to the command, which reports it (a UserError or Ctrl-C in one line, a bug with
    its traceback): Optuna's "Trial N failed" warning keeps its line but not a second traceback, Ctrl-C no line, and
    the "failed with value None" that follows any exception is left out. A trial out of device memory has no line
    here: the search logs it and goes on; nor has a surplus trial, which ran nothing."""
    if record.exc_info and isinstance(record.exc_info[1], (KeyboardInterrupt, OutOfDeviceMemory, SurplusTrial)):
        return False
    if record.getMessage().endswith("failed with value None."):
        return False
    record.exc_info, record.exc_text = None, None
    return True


def schedule_step(global_step: int, max_steps: int) -> int:
    return round(SCALE * global_step / max(max_steps, 1))


def share(step: int) -> str:
    return f"{100 * step / SCALE:g}%"


class ReportToTrial(TrainerCallback):
    """Reports every evaluation's objective to the trial, at the share of training done, and stops the run when the
    pruner says so."""

    def __init__(self, trial, metric: str):
        self.trial = trial
        self.metric = metric
        self.reported: set[int] = set()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        step = schedule_step(state.global_step, state.max_steps)
        # The best model is evaluated again after training, at the last step: that is no new value.
        if not metrics or self.metric not in metrics or step in self.reported:
            return
        self.reported.add(step)
        value = metrics[self.metric]
        self.trial.report(value, step)
        # A run at the end of its schedule has its value: stopping it then would only drop it from the selection.
        if step < SCALE and self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.metric} {value:.4f} at {share(step)} of training")


def retry_callback():
    """Optuna's callback that runs a trial of a dead process again (renamed in Optuna 4.9)."""
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    return (retry or optuna.storages.RetryFailedTrialCallback)(max_retry=2)


def make_storage(url: str, heartbeat_interval: int):
    """The RDB storage, with heartbeats so that the trial of a killed process is found and run again. Workers that
    start together race to create the tables; the losers try again."""
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


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    return {
        "median": SharedScheduleMedianPruner(n_startup_trials=3, n_warmup_steps=SCALE // 4),
        "halving": optuna.pruners.SuccessiveHalvingPruner(),
        "none": optuna.pruners.NopPruner(),
    }[name]


def _best(values, sign: int) -> float:
    values = [sign * value for value in values if not math.isnan(value)]
    return min(values) if values else math.nan


class SharedScheduleMedianPruner(optuna.pruners.BasePruner):
    """Optuna's median rule on shares of the schedule: once ``n_startup_trials`` trials have completed, a trial past
    ``n_warmup_steps`` whose best value so far is worse than the median of the completed trials' best values up to
    the same share is stopped. A completed trial with no evaluation that early does not count."""

    def __init__(self, n_startup_trials: int, n_warmup_steps: int):
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(completed) < self.n_startup_trials:
            return False
        sign = -1 if study.direction == StudyDirection.MAXIMIZE else 1
        own = _best(trial.intermediate_values.values(), sign)
        if math.isnan(own):
            return True
        theirs = [
            _best([value for at, value in other.intermediate_values.items() if at <= step], sign)
            for other in completed
        ]
        theirs = [value for value in theirs if not math.isnan(value)]
        return bool(theirs) and own > statistics.median(theirs)
