"""The processes of a search: the trials that count, the workers ``--n_jobs`` starts on this machine, and the lines
a process shows of the trials other processes run.

Workers that ``--n_jobs`` starts write their output to ``SEARCH_DIR/worker-K.log``, so that one console shows one
bar. Every process shows every trial of the study, whichever process runs it: a thread reads the study every few
seconds, logs the start and end of the trials run elsewhere (by those workers, or by workers on other machines) and
moves the bar."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from finetune.cli import INTERRUPTED_STATUS
from finetune.search_output import ERROR_ATTR, SEARCH_LINE, log_trial_end, log_trial_start
from finetune.search_space import decode

logger = logging.getLogger("finetune")

WORKER_ATTR = "worker"  # the user attribute naming the process that runs a trial: host:pid
OUTPUT_ATTR = "output_dir"  # set once the trial has drawn its values
POLL_SECONDS = 5.0


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def finished(study) -> list:
    """The trials that count toward --n_trials: complete, pruned, and failed out of device memory (the trial of a
    killed process fails too, but runs again as a new trial)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return [trial for trial in trials if trial.state != TrialState.FAIL or ERROR_ATTR in trial.user_attrs]


def running(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def is_surplus(study, number: int, n_trials: int) -> bool:
    """Whether the trials numbered below ``number`` that run or count toward --n_trials make it up already. Two
    processes that each find one trial left at the same moment both make one; the one whose trial came later (a
    higher number: created after the other, which is then running or finished) steps back, so that a study ends
    with exactly --n_trials trials."""
    counted = {trial.number for trial in [*finished(study), *running(study)]}
    return sum(1 for other in counted if other < number) >= n_trials


def wait_for_running_trials(study) -> None:
    """Waits for other workers' trials, and runs none itself: a dead worker's trial fails after its grace period."""
    import optuna

    said = None
    while running(study):
        optuna.storages.fail_stale_trials(study)
        waiting = len(running(study))
        if waiting and waiting != said:
            logger.info("search: waiting for %d trial(s) running elsewhere", waiting, extra=SEARCH_LINE)
            said = waiting
        time.sleep(POLL_SECONDS if waiting else 0)


class Worker:
    """A worker process on this machine, its output in its own log file."""

    def __init__(self, index: int, command: list[str], environment: dict, log_path: Path):
        self.name, self.log_path = f"worker-{index}", log_path
        with open(log_path, "w", encoding="utf-8") as stream:
            self.process = subprocess.Popen(command, env=environment, stdout=stream, stderr=subprocess.STDOUT)

    @property
    def process_name(self) -> str:
        return f"{socket.gethostname()}:{self.process.pid}"

    def wait(self, interrupted: bool = False) -> int:
        """Waits for the worker's end; one that failed is named with its log (not one stopped by the same Ctrl-C
        as this process, when ``interrupted``)."""
        status = self.process.wait()
        if status != 0 and not (interrupted and status == INTERRUPTED_STATUS):
            logger.warning("search: %s exited with status %d; its output: %s", self.name, status, self.log_path)
        return status


def start_workers(args: argparse.Namespace, argv: list[str], storage: str, search_dir: Path) -> list[Worker]:
    """``n_jobs - 1`` worker processes on this machine, on the same storage, each writing to its
    ``worker-K.log``; the CPU cores shared among all ``n_jobs`` (each torch process would otherwise take them all,
    and together they run slower than one)."""
    import torch

    environment = dict(os.environ)
    if "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // args.n_jobs)
        environment["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
        logger.info("search: %d processes run trials, %d CPU thread(s) each", args.n_jobs, threads)
    command = [sys.executable, "-m", "finetune", "search", *argv]
    command += ["--worker", "--storage", storage, "--n_jobs", "1"]
    workers = [
        Worker(index, command, environment, search_dir / f"worker-{index}.log") for index in range(1, args.n_jobs)
    ]
    logger.info("search: the workers' output goes to %s", ", ".join(str(worker.log_path) for worker in workers))
    return workers


class OtherTrials:
    """Inside, a thread logs the trials of the study that other processes run (a line as each starts, one as it
    ends, named by their worker) and keeps the bar at the number of finished trials."""

    def __init__(self, study, metric: str, progress, n_trials: int, names: dict[str, str]):
        self.study, self.metric, self.progress, self.n_trials = study, metric, progress, n_trials
        self.names = names  # host:pid -> the name this process gave its worker
        self.me = this_process()
        trials = study.get_trials(deepcopy=False)
        self.started = {trial.number for trial in trials if OUTPUT_ATTR in trial.user_attrs}  # not announced again
        self.ended = {trial.number for trial in trials if trial.state.is_finished()}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, name="finetune-other-trials", daemon=True)

    def __enter__(self) -> OtherTrials:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(timeout=2 * POLL_SECONDS)
        if not self.thread.is_alive():
            self.look()  # the trials that ended since the thread's last look

    def watch(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            self.look()

    def name_of(self, trial) -> str:
        by = trial.user_attrs[WORKER_ATTR]
        return self.names.get(by, by)

    def look(self) -> None:
        try:
            trials = self.study.get_trials(deepcopy=False)
            others = [trial for trial in trials if trial.user_attrs.get(WORKER_ATTR, self.me) != self.me]
            for trial in others:
                if trial.number not in self.started and OUTPUT_ATTR in trial.user_attrs:
                    self.started.add(trial.number)
                    params = {key: decode(value) for key, value in trial.params.items()}
                    log_trial_start(trial.number, params, trial.user_attrs[OUTPUT_ATTR], by=self.name_of(trial))
            ended = [trial for trial in others if trial.state.is_finished() and trial.number not in self.ended]
            for trial in sorted(
                ended, key=lambda trial: trial.datetime_complete.timestamp() if trial.datetime_complete else 0
            ):
                self.ended.add(trial.number)
                log_trial_end(self.study, trial.number, self.metric, self.progress, by=self.name_of(trial))
            self.progress.n = min(len(finished(self.study)), self.n_trials)
            self.progress.refresh()
        except Exception as error:  # a storage that does not answer now may answer at the next look
            logger.debug("search: reading the study for other processes' trials failed: %s", error)
