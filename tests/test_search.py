"""finetune search on the small fixture: trials, pruning, selection over seeds, outputs, resuming after SIGKILL,
two workers on one study, and search spaces that are refused."""

import glob
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO

from finetune.cli import main as cli_main
from finetune.parsing import parse_args
from finetune.search import main as search_main
from finetune.search_space import config_params

SPACE = {
    "learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
    "num_filters": [8, 16],
    "kernel_sizes": [[1, 2, 3], [2, 3]],
}


@pytest.fixture
def config(reviews, tmp_path) -> Path:
    """A quick TextCNN config on the fixture whose own values lie in SPACE (so trial 0 is the config itself)."""
    values = {
        "train_file": str(reviews["train"]),
        "validation_file": str(reviews["validation"]),
        "test_file": str(reviews["test"]),
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "run"),
        "embedding_dim": 16,
        "num_filters": 16,
        "kernel_sizes": [1, 2, 3],
        "wide_ngram_buckets": 1024,
        "learning_rate": 5.0e-3,
        "per_device_train_batch_size": 16,
        "num_train_epochs": 2,
        "logging_steps": 5,
    }
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def write_space(directory: Path, space: dict) -> Path:
    path = directory / "space.yaml"
    path.write_text(yaml.safe_dump(space), encoding="utf-8")
    return path


def search_command(config: Path, space: Path, search_dir: Path, *extra: str) -> list[str]:
    return ["--config", str(config), "--search_space", str(space), "--search_dir", str(search_dir), *extra]


def test_search_selects_over_seeds_and_writes_a_config_train_takes(config, tmp_path, capsys):
    search_dir = tmp_path / "search"
    argv = search_command(config, write_space(tmp_path, SPACE), search_dir, "--n_trials", "3", "--top_k", "2")
    console = logging.StreamHandler(io.StringIO())  # a console beside the command's own
    logging.getLogger("finetune").addHandler(console)
    try:
        assert search_main(argv + ["--selection_seeds", "1", "--max_predict_samples", "40"]) == 0
    finally:
        logging.getLogger("finetune").removeHandler(console)

    document = json.loads((search_dir / "search.json").read_text())
    assert document["fixed"] == {}  # no flag sets a key of the space
    trials = document["trials"]
    assert [trial["number"] for trial in trials] == [0, 1, 2]
    assert all(trial["state"] in ("complete", "pruned") and trial["seconds"] > 0 for trial in trials)
    # Reported at the share of each trial's schedule done: the config trains 2 epochs and evaluates after each.
    assert list(trials[0]["intermediate_values"]) == ["50%", "100%"]
    assert trials[0]["shipped"] and trials[0]["params"] == {
        "learning_rate": 5.0e-3,
        "num_filters": 16,
        "kernel_sizes": [1, 2, 3],
    }
    for trial in trials:
        assert set(trial["params"]) == set(SPACE)
        assert 1e-3 <= trial["params"]["learning_rate"] <= 1e-2

    # Selection: the top 2 trials by eval_loss and the config itself (trial 0), each with seed 43 too; the winner
    # has the lowest mean, so it is at least as good as the config on the mean over seeds.
    complete = sorted((t for t in trials if t["state"] == "complete"), key=lambda t: t["value"])
    finalists = [t["number"] for t in complete[:2]]
    selection = document["selection"]
    assert [entry["trial"] for entry in selection] == finalists + ([0] if 0 not in finalists else [])
    for entry in selection:
        seed_run = json.loads((search_dir / f"trial-{entry['trial']}" / "seed-43" / "all_results.json").read_text())
        assert entry["values"]["43"] == seed_run["eval_loss"]
        assert entry["mean"] == pytest.approx((entry["values"]["42"] + entry["values"]["43"]) / 2)
    winner = document["winner"]
    assert winner["mean"] == min(entry["mean"] for entry in selection)

    # The console has a line as each trial and selection run starts and ends; what each prints (the data, the
    # Trainer's log lines) is in its train.log.
    shown, printed = console.stream.getvalue(), capsys.readouterr().out
    assert "'loss':" not in printed and "best checkpoint" not in shown
    for trial in trials:
        outcome = f"eval_loss {trial['value']:.4f}" if trial["state"] == "complete" else "pruned at"
        assert f"trial {trial['number']}: {outcome}" in shown
        log = (search_dir / f"trial-{trial['number']}" / "train.log").read_text(encoding="utf-8")
        assert "'loss':" in log and "'eval_loss':" in log
    for entry in selection:
        assert f"selection: trial {entry['trial']} with seed 43: eval_loss {entry['values']['43']:.4f}" in shown
        assert "best checkpoint" in (search_dir / f"trial-{entry['trial']}" / "seed-43" / "train.log").read_text()

    # The test split is scored once, for the winner; the trials never saw it.
    assert not list(search_dir.glob("trial-*/test_results.json"))
    assert not list(search_dir.glob("trial-*/checkpoint-*"))  # removed after each trial
    assert (Path(winner["output_dir"]) / "best" / "model.safetensors").is_file()
    # --max_predict_samples (passed on, as to finetune train) cuts the test split for the winner and the baseline.
    assert document["test"]["samples"] == 40 and 0.5 < document["test"]["test_accuracy"] <= 1.0
    assert document["baseline"]["test_samples"] == 40  # fitted once, beside the winner
    assert (search_dir / "optimization_history.png").stat().st_size > 0

    # best.yaml: the config with the winner's parameters, as finetune train takes it.
    model_args, data_args, training_args = parse_args(
        ["--config", str(search_dir / "best.yaml"), "--output_dir", str(tmp_path / "final")]
    )
    assert model_args.num_filters == winner["params"]["num_filters"]
    assert model_args.kernel_sizes == winner["params"]["kernel_sizes"]
    assert training_args.learning_rate == winner["params"]["learning_rate"]
    assert model_args.embedding_dim == 16 and data_args.test_file.endswith("reviews_test.jsonl")

    # finetune report on the search folder: the winner, its test score, the selection and every trial.
    capsys.readouterr()
    assert cli_main(["report", str(search_dir)]) == 0
    report = capsys.readouterr().out
    assert f"winner     trial {winner['trial']}" in report and f"eval_loss {winner['mean']:.4f}" in report
    assert f"test       accuracy {document['test']['test_accuracy']:.4f}" in report
    baseline_test, winner_test = document["baseline"]["test_accuracy"], document["test"]["test_accuracy"]
    assert f": test baseline {baseline_test:.4f}, the winner {winner_test:.4f}" in report
    for entry in selection:
        assert f"{entry['trial']:>6} {entry['mean']:>8.4f}" in report
    for trial in trials:  # a pruned trial by the last value it reported, and how far it trained
        reported = list(trial["intermediate_values"].items())
        value, reached = (trial["value"], "100%") if trial["state"] == "complete" else reported[-1][::-1]
        assert f"{trial['number']:>6} {trial['state']:>9} {value:>10.4f} {reached:>8}" in report
    assert cli_main(["evaluate", "--model", str(search_dir), "--test_file", data_args.test_file]) == 2
    assert f"It holds a finetune search, whose winner's run is {winner['output_dir']}." in capsys.readouterr().err
    assert cli_main(["report", str(tmp_path)]) == 2  # the folder above: no run there, and the search named
    assert f"It holds a search: finetune report {search_dir}." in capsys.readouterr().err


def run_search(argv: list[str], log: Path) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "finetune", "search", *argv],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=environment,
            # Ctrl-C as in a terminal: a shell without job control starts background jobs with SIGINT ignored,
            # and a child would inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def search_in_trial_1(argv: list[str], log: Path, search_dir: Path) -> subprocess.Popen:
    """A search started in its own process, once it has begun trial 1 (trial 0 finished)."""
    process = run_search(argv, log)
    deadline = time.monotonic() + 240
    while not (search_dir / "trial-1").is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, log.read_text()[-3000:]
    return process


def read_study(search_dir: Path, storage: str | None = None) -> list:
    import optuna

    storage = storage or f"sqlite:///{search_dir / 'study.db'}"
    return optuna.load_study(study_name="finetune-search", storage=storage).trials


@pytest.fixture
def postgres_url():
    """A PostgreSQL server of Debian's packages started for the test (on a Unix socket in a temporary folder), and
    the storage URL of a database in it; skipped where PostgreSQL or psycopg2 is not installed."""
    initdb = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg2")
    binaries = Path(os.path.realpath(initdb)).parent
    folder = Path(tempfile.mkdtemp(prefix="finetune-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []  # the server refuses root
    if as_postgres:
        shutil.chown(folder, "postgres")
    port = "54329"

    def run(*command: str) -> None:
        subprocess.run([*as_postgres, *command], check=True, capture_output=True, timeout=120)

    run(str(binaries / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres")
    server = ["-D", str(folder / "data"), "-l", str(folder / "server.log")]
    run(str(binaries / "pg_ctl"), *server, "-o", f"-k {folder} -p {port} -c listen_addresses=''", "-w", "start")
    try:
        run(str(binaries / "createdb"), "-h", str(folder), "-p", port, "-U", "postgres", "finetune")
        yield f"postgresql+psycopg2://postgres@/finetune?host={folder}&port={port}"
    finally:
        run(str(binaries / "pg_ctl"), *server, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def stoppable_search(config: Path, tmp_path: Path, *extra: str) -> tuple[list[str], Path, subprocess.Popen]:
    """The command of a 3-trial search without pruning or selection seeds, and its process, started and in trial 1."""
    search_dir = tmp_path / "search"
    argv = search_command(config, write_space(tmp_path, SPACE), search_dir, "--n_trials", "3", "--top_k", "1")
    argv += ["--selection_seeds", "0", "--pruner", "none", *extra]
    return argv, search_dir, search_in_trial_1(argv, tmp_path / "first.log", search_dir)


@pytest.mark.slow
def test_a_killed_search_continues_with_the_same_command(config, tmp_path):
    argv, search_dir, first = stoppable_search(config, tmp_path, "--heartbeat_interval", "1")
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = {trial.number: trial for trial in read_study(search_dir)}
    assert before[0].state.name == "COMPLETE" and before[1].state.name == "RUNNING"

    assert search_main(argv) == 0  # the same command
    after = read_study(search_dir)
    # Trial 0 is kept as it was; the killed trial 1 failed and its parameters were run again as a new trial.
    assert after[0].value == before[0].value and after[0].datetime_complete == before[0].datetime_complete
    assert after[1].state.name == "FAIL"
    retried = [trial for trial in after[2:] if trial.params == before[1].params]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert sum(trial.state.name == "COMPLETE" for trial in after) == 3
    assert (search_dir / "best.yaml").is_file()


def test_ctrl_c_ends_a_search_with_one_line_that_says_how_to_go_on(config, tmp_path, capsys, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("finetune.search.run_trials", interrupted)
    assert cli_main(["search", *search_command(config, write_space(tmp_path, SPACE), tmp_path / "search")]) == 130
    error = capsys.readouterr().err
    assert "stopped (Ctrl-C); the same command continues the search" in error and "Traceback" not in error


@pytest.mark.slow
def test_a_search_stopped_by_ctrl_c_continues_with_the_same_command(config, tmp_path):
    argv, search_dir, first = stoppable_search(config, tmp_path, "--num_train_epochs", "40")
    log_file = tmp_path / "first.log"
    # One Ctrl-C, as trial 1 begins. There Python tends to drop the KeyboardInterrupt, raised in a garbage-collection
    # callback while the model is built; the search raises it again at the next step, without Python's traceback.
    first.send_signal(signal.SIGINT)
    first.wait(timeout=120)
    log = log_file.read_text()
    assert first.returncode == 130, log[-3000:]
    assert "stopped (Ctrl-C); the same command continues" in log
    assert "Traceback" not in log and "Exception ignored" not in log, log[-3000:]
    before = read_study(search_dir)
    assert before[0].state.name == "COMPLETE" and [trial.state.name for trial in before].count("FAIL") == 1

    assert search_main(argv) == 0  # the same command
    after = read_study(search_dir)
    assert after[0].value == before[0].value and sum(trial.state.name == "COMPLETE" for trial in after) == 3
    assert (search_dir / "best.yaml").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(database, config, tmp_path, request):
    search_dir = tmp_path / "search"
    storage = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    argv = search_command(config, write_space(tmp_path, SPACE), search_dir, "--n_trials", "4", "--worker")
    argv += ["--pruner", "none", "--heartbeat_interval", "5", *(["--storage", storage] if storage else [])]
    workers = [run_search(argv, tmp_path / f"worker-{index}.log") for index in range(2)]
    for index, worker in enumerate(workers):
        assert worker.wait(timeout=600) == 0, (tmp_path / f"worker-{index}.log").read_text()[-3000:]

    study = read_study(search_dir, storage)
    # Two workers that each find one trial left at the same moment both make one; the later one steps back at once
    # (a failed trial marked surplus, with nothing drawn), so the study has exactly --n_trials trials that ran.
    surplus = [trial for trial in study if "surplus" in trial.user_attrs]
    assert all(trial.state.name == "FAIL" and trial.params == {} for trial in surplus)
    trials = [trial for trial in study if trial not in surplus]
    count = len(trials)
    assert count == 4 and all(trial.state.name == "COMPLETE" for trial in trials)
    assert sorted(trial.number for trial in trials) == list(range(count))
    # Each trial ran once, by one worker, into its own folder, and both workers ran trials.
    assert sorted(trial.user_attrs["output_dir"] for trial in trials) == sorted(
        str(search_dir / f"trial-{number}") for number in range(count)
    )
    assert all((search_dir / f"trial-{number}" / "best.json").is_file() for number in range(count))
    assert len({trial.user_attrs["worker"] for trial in trials}) == 2
    assert len({json.dumps(trial.params, sort_keys=True) for trial in trials}) == count  # no draw made twice


@pytest.mark.slow
def test_n_jobs_shows_every_trial_on_one_console_and_each_worker_writes_its_own_log(config, tmp_path):
    search_dir = tmp_path / "search"
    argv = search_command(config, write_space(tmp_path, SPACE), search_dir, "--n_trials", "4", "--n_jobs", "2")
    # Trials of some seconds, none pruned: the worker (seconds to start) joins while trials are left.
    argv += ["--pruner", "none", "--num_train_epochs", "30", "--top_k", "1", "--selection_seeds", "0"]
    command = run_search(argv, tmp_path / "console.log")
    assert command.wait(timeout=600) == 0, (tmp_path / "console.log").read_text()[-3000:]
    console = (tmp_path / "console.log").read_text()

    trials = [trial for trial in read_study(search_dir) if "surplus" not in trial.user_attrs]
    assert len(trials) == 4
    by_worker = [trial for trial in trials if trial.user_attrs["worker"] != f"{os.uname().nodename}:{command.pid}"]
    assert by_worker and len(by_worker) < len(trials), [trial.user_attrs["worker"] for trial in trials]
    for trial in trials:  # each trial's start and end on the console; the worker's named
        tag = " (worker-1)" if trial in by_worker else ""
        assert f"trial {trial.number}{tag}: kernel_sizes " in console, console  # the values, then the folder
        assert f"num_filters {trial.params['num_filters']} -> {search_dir / f'trial-{trial.number}'}\n" in console
        assert f"trial {trial.number}{tag}: eval_loss {trial.value:.4f}" in console, console
    # The worker's own output is in its log, not on the console: one data check line there, no second bar.
    worker_log = (search_dir / "worker-1.log").read_text()
    assert "worker: the study holds 4 finished trials" in worker_log and "worker: " not in console
    assert console.count("check: ") == worker_log.count("check: ") == 2, console
    bar = re.compile(r"trials: +\d+%\|")  # none where the output is no terminal
    assert not bar.search(console) and not bar.search(worker_log)


def test_a_worker_that_fails_is_named_with_its_log(tmp_path, finetune_log):
    from finetune.search_processes import Worker

    command = [sys.executable, "-c", "import sys; print('cannot open the storage'); sys.exit(3)"]
    worker = Worker(1, command, dict(os.environ), tmp_path / "worker-1.log")
    assert worker.wait() == 3
    assert f"search: worker-1 exited with status 3; its output: {tmp_path / 'worker-1.log'}" in finetune_log
    assert (tmp_path / "worker-1.log").read_text() == "cannot open the storage\n"
    # Stopped by the Ctrl-C that stops this process too: nothing to say about it.
    finetune_log.clear()
    stopped = Worker(2, [sys.executable, "-c", "import sys; sys.exit(130)"], dict(os.environ), tmp_path / "w2.log")
    assert stopped.wait(interrupted=True) == 130 and finetune_log == []


def test_workers_sample_apart_and_a_fresh_study_from_the_run_seed():
    from finetune.search import sampler_seed

    assert sampler_seed(42, 0, worker=False) == 42 and sampler_seed(42, 5, worker=False) == 47
    # Consecutive pids, one worker opening the study a trial later: seed + trials + pid was 1537 for both.
    assert sampler_seed(42, 1, True, ("host", 1494)) != sampler_seed(42, 0, True, ("host", 1495))
    seeds = {sampler_seed(42, trials, True, (host, pid)) for trials in range(3) for host in "ab" for pid in range(50)}
    assert len(seeds) == 300 and all(0 <= seed < 2**32 for seed in seeds)


def test_a_continued_study_says_what_it_holds_and_warns_when_n_trials_is_below_it(finetune_log):
    import argparse

    import optuna
    from optuna.trial import TrialState, create_trial

    from finetune.search import log_continued

    study = optuna.create_study()
    args = argparse.Namespace(study_name="finetune-search", n_trials=2, worker=False)
    log_continued(study, args)  # a new study: nothing to say
    assert finetune_log == []
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    for value, state in [(0.5, TrialState.COMPLETE), (0.4, TrialState.COMPLETE), (None, TrialState.PRUNED)]:
        study.add_trial(create_trial(params={"x": 0.1}, distributions={"x": distribution}, value=value, state=state))
    log_continued(study, args)
    text = "\n".join(finetune_log)
    assert "continuing study finetune-search: 3 finished trial(s), 0 running; --n_trials 2" in text
    assert "already holds 3 finished trials, more than --n_trials 2: no trial runs" in text
    finetune_log.clear()
    log_continued(study, argparse.Namespace(study_name="finetune-search", n_trials=3, worker=True))
    assert "worker: joining study finetune-search: 3 finished trial(s)" in finetune_log[0]
    assert not any("more than" in message for message in finetune_log)


def test_of_two_trials_made_for_the_last_place_the_later_one_is_surplus(finetune_log):
    import optuna
    from optuna.trial import TrialState, create_trial
    from tqdm import tqdm

    from finetune.search_output import ERROR_ATTR, SURPLUS_ATTR, after_trial, listed
    from finetune.search_processes import is_surplus

    study = optuna.create_study()
    distribution = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for value, state, attrs in [
        (0.5, TrialState.COMPLETE, {}),
        (None, TrialState.PRUNED, {}),
        (None, TrialState.FAIL, {ERROR_ATTR: "out of memory"}),  # counts toward --n_trials
        (None, TrialState.FAIL, {}),  # a killed process's trial: runs again, so it does not count
    ]:
        trial = create_trial(params={"x": 0.1}, distributions=distribution, value=value, state=state, user_attrs=attrs)
        study.add_trial(trial)
    # Two workers found one place left (3 of 4 counted) and each made a trial: numbers 4 and 5, both running.
    first, second = study.ask(), study.ask()
    assert (first.number, second.number) == (4, 5)
    assert not is_surplus(study, first.number, 4) and is_surplus(study, second.number, 4)
    assert not is_surplus(study, second.number, 5)  # with a place for each, neither steps back
    # The surplus trial ends at once: no line, and the search's listings leave it out.
    second.set_user_attr(SURPLUS_ATTR, True)
    study.tell(second, state=TrialState.FAIL)
    after_trial(study, second.number, "eval_loss", tqdm(disable=True))
    assert finetune_log == []
    assert [trial.number for trial in listed(study.trials)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rte": [1e-3]}, "unknown key learning_rte"),
        ({"dropout": {"low": 0.5, "high": 0.5}}, "dropout: the range 0.5..0.5 is empty"),
        ({"num_filters": []}, "num_filters: the list of choices is empty"),
        ({"lr_scheduler_type": ["linear", "sideways"]}, "lr_scheduler_type: 'sideways' is not one of"),
        ({"wide_ngram_buckets": [1, 1024]}, "wide_ngram_buckets: 1 is refused"),
        ({"num_filters": {"low": 8, "hihg": 16}}, "num_filters: a range is {low: L, high: H}"),
        ({"label_smoothing_factor": {"low": 0.0, "high": 0.2}}, "label_smoothing_factor changes eval_loss"),
        ({"seed": [1, 2]}, "seed cannot be searched: the search sets the seeds"),
        ({"output_dir": ["a", "b"]}, "output_dir cannot be searched: the search sets it for every trial"),
        ({"metric_for_best_model": ["eval_loss", "eval_f1"]}, "metric_for_best_model cannot be searched"),
    ],
)
def test_a_bad_search_space_exits_2_naming_the_key(space, message, config, tmp_path, capsys):
    argv = ["search", *search_command(config, write_space(tmp_path, space), tmp_path / "search")]
    assert cli_main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "search" / "study.db").exists()  # refused before any trial


@pytest.mark.parametrize(
    ("metric", "greater"),
    [("eval_loss", False), ("eval_log_loss", False), ("hamming_loss", False), ("eval_f1", True), ("accuracy", True)],
)
def test_the_objective_of_a_loss_is_minimised(metric, greater, config, tmp_path):
    from finetune.search import make_parser, prepare

    argv = search_command(config, write_space(tmp_path, SPACE), tmp_path / "s", "--metric_for_best_model", metric)
    search, _ = prepare(*make_parser().parse_known_args(argv))
    assert search.metric == f"eval_{metric.removeprefix('eval_')}" and search.greater_is_better is greater


def test_label_smoothing_is_searched_on_the_loss_without_it(config, tmp_path):
    search_dir = tmp_path / "search"
    space = write_space(tmp_path, {"label_smoothing_factor": [0.0, 0.3], "learning_rate": [5.0e-3]})
    argv = search_command(config, space, search_dir, "--n_trials", "2", "--pruner", "none", "--top_k", "1")
    argv += ["--selection_seeds", "0", "--metric_for_best_model", "eval_log_loss"]
    assert search_main(argv) == 0
    trials = read_study(search_dir)
    assert sorted(trial.params["label_smoothing_factor"] for trial in trials) == [0.0, 0.3]  # both drawn
    for trial in trials:  # each trial's value: the plain loss of its best checkpoint, the lowest it evaluated
        state = json.loads((search_dir / f"trial-{trial.number}" / "trainer_state.json").read_text())
        plain = [entry["eval_log_loss"] for entry in state["log_history"] if "eval_log_loss" in entry]
        assert trial.value == pytest.approx(min(plain))
    document = json.loads((search_dir / "search.json").read_text())
    assert document["direction"] == "minimize"
    assert document["winner"]["trial"] == min(trials, key=lambda trial: trial.value).number


@pytest.mark.parametrize("name", ["textcnn", "bert"])
def test_the_shipped_search_spaces_pass_the_checks_with_their_configs(name, reviews, tmp_path):
    from finetune.search import make_parser, prepare

    files = [item for split, path in reviews.items() for item in (f"--{split}_file", str(path))]
    args, flags = make_parser().parse_known_args(
        ["--config", str(REPO / "configs" / f"{name}.yaml"), "--search_dir", str(tmp_path / "search"), *files]
    )
    search, space = prepare(args, flags)
    shipped = yaml.safe_load((REPO / "configs" / "search" / f"{name}.yaml").read_text(encoding="utf-8"))
    assert sorted(space) == sorted(shipped) and search.metric == "eval_loss" and not search.greater_is_better
    # Trial 0 is the config as it ships: each of its values lies in the space.
    values = config_params(args.config, flags, space)
    assert {key: value for key, value in values.items() if not space[key].holds(value)} == {}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize(("num_filters", "shipped"), [(16, True), (32, False)])
def test_trial_0_is_the_config_or_the_log_names_the_values_outside_the_space(
    num_filters, shipped, config, tmp_path, caplog
):
    from finetune.search import make_parser, open_study, prepare

    values = yaml.safe_load(config.read_text(encoding="utf-8"))
    config.write_text(yaml.safe_dump({**values, "num_filters": num_filters}), encoding="utf-8")
    args, flags = make_parser().parse_known_args(search_command(config, write_space(tmp_path, SPACE), tmp_path / "s"))
    search, space = prepare(args, flags)
    logging.getLogger("finetune").addHandler(caplog.handler)
    try:
        study = open_study(search, space, f"sqlite:///{tmp_path / 'study.db'}", args)
    finally:
        logging.getLogger("finetune").removeHandler(caplog.handler)
    waiting = [trial for trial in study.trials if trial.user_attrs.get("shipped")]
    if shipped:
        assert (
            len(waiting) == 1
            and waiting[0].params == {}
            and waiting[0].system_attrs["fixed_params"]
            == {"learning_rate": 5.0e-3, "num_filters": 16, "kernel_sizes": "[1, 2, 3]"}
        )
        assert "trial 0 is not the config" not in caplog.text
    else:
        assert waiting == [] and "trial 0 is not the config as it is" in caplog.text
        assert "num_filters 32 lies outside the search space" in caplog.text


def test_a_flag_that_sets_a_key_of_the_space_fixes_it_for_every_trial(config, tmp_path, finetune_log, capsys):
    from finetune.search import make_parser, prepare

    # num_filters 4 lies outside the space: fixed by its flag, the space's choices are neither checked nor drawn.
    extra = ("--num_filters", "4", "--max_length", "32")
    args, flags = make_parser().parse_known_args(
        search_command(config, write_space(tmp_path, SPACE), tmp_path / "s", *extra)
    )
    search, space = prepare(args, flags)
    assert sorted(space) == ["kernel_sizes", "learning_rate"] and search.fixed == {"num_filters": 4}
    assert "search: not searched, the command line sets them for every trial: {'num_filters': 4}" in finetune_log
    model_args, data_args, _ = search.arguments({"learning_rate": 2e-3, "kernel_sizes": [2, 3]}, tmp_path / "trial")
    assert model_args.num_filters == 4 and model_args.kernel_sizes == [2, 3] and data_args.max_length == 32
    # Trial 0 is still the config, on the keys left to search.
    assert config_params(args.config, flags, space) == {"learning_rate": 5.0e-3, "kernel_sizes": [1, 2, 3]}

    space_path = write_space(tmp_path, {"num_filters": [8, 16]})
    argv = ["search", *search_command(config, space_path, tmp_path / "search", "--num_filters", "4")]
    assert cli_main(argv) == 2
    error = capsys.readouterr().err
    assert "the flags --num_filters fix every key of it; nothing is left to search" in error


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_study_continued_with_another_space_is_refused_naming_the_keys(config, tmp_path):
    from finetune.errors import UserError
    from finetune.search import make_parser, open_study, prepare

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = search_command(config, write_space(tmp_path, SPACE), tmp_path / "s")
    first = make_parser().parse_known_args(command)
    open_study(*prepare(*first), storage, first[0])
    again = make_parser().parse_known_args([*command, "--num_filters", "8"])  # a flag takes num_filters out
    with pytest.raises(UserError, match=r"another search space or objective \(its space keys num_filters; a flag"):
        open_study(*prepare(*again), storage, again[0])


def test_a_value_the_config_refuses_is_refused_before_any_trial(config, tmp_path, capsys):
    values = yaml.safe_load(config.read_text(encoding="utf-8"))
    config.write_text(yaml.safe_dump({**values, "padding": "max_length"}), encoding="utf-8")
    space = write_space(tmp_path, {"long_text": ["truncate", "windows"]})
    assert cli_main(["search", *search_command(config, space, tmp_path / "search")]) == 2
    error = capsys.readouterr().err
    assert "long_text: 'windows' is refused" in error and "padding: longest" in error and "Traceback" not in error
    assert not (tmp_path / "search" / "study.db").exists()


def test_without_a_search_space_beside_the_config_the_error_names_the_shipped_one(config, tmp_path, capsys):
    assert cli_main(["search", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert f"No search space: {tmp_path / 'search' / 'textcnn.yaml'} does not exist" in error
    assert f"(the one shipped for this model: {REPO / 'configs' / 'search' / 'textcnn.yaml'})" in error


def test_two_space_keys_refused_together_exit_2_before_any_trial(config, tmp_path, capsys):
    values = yaml.safe_load(config.read_text(encoding="utf-8"))
    config.write_text(yaml.safe_dump({**values, "long_text": "windows", "max_length": 64}), encoding="utf-8")
    space = write_space(tmp_path, {"max_length": [16, 64], "window_stride": [8, 20]})  # each passes alone
    assert cli_main(["search", *search_command(config, space, tmp_path / "search")]) == 2
    error = capsys.readouterr().err
    assert "max_length 16 with window_stride 20 is refused" in error and "Traceback" not in error
    assert not (tmp_path / "search" / "study.db").exists()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": "还行", "label": "neutral"}, "test data has label(s) that training data never has: 'neutral'"),
        ({"text": "", "label": "positive"}, "reviews_test.jsonl, line 3:"),
    ],
)
def test_bad_test_data_exits_2_before_any_trial(row, message, reviews, config, tmp_path, capsys):
    # The trials leave the test split out; it is read at the start all the same, not first after the last trial.
    lines = reviews["test"].read_text(encoding="utf-8").splitlines()
    lines.insert(2, json.dumps(row, ensure_ascii=False))
    (tmp_path / "bad").mkdir()
    test_file = tmp_path / "bad" / "reviews_test.jsonl"
    test_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = search_command(config, write_space(tmp_path, SPACE), tmp_path / "search", "--test_file", str(test_file))
    assert cli_main(["search", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "search" / "study.db").exists() and not (tmp_path / "search" / "trial-0").exists()


def test_a_study_of_an_earlier_finetune_reporting_by_epoch_is_refused(config, tmp_path, capsys):
    import optuna

    from finetune.search import make_parser, prepare

    space_file = write_space(tmp_path, SPACE)
    argv = search_command(config, space_file, tmp_path / "search")
    args, flags = make_parser().parse_known_args(argv)
    search, space = prepare(args, flags)
    # What an earlier finetune left: the same space and objective, no record of how its steps count.
    (tmp_path / "search").mkdir(exist_ok=True)
    earlier = optuna.create_study(
        study_name="finetune-search", storage=f"sqlite:///{tmp_path / 'search' / 'study.db'}"
    )
    earlier.set_user_attr("space", {name: vars(spec) for name, spec in space.items()})
    earlier.set_user_attr("metric", search.metric)
    assert cli_main(["search", *argv]) == 2
    error = capsys.readouterr().err
    assert "by epoch, not by share of the schedule" in error and "--study_name" in error and "Traceback" not in error
    assert not (tmp_path / "search" / "trial-0").exists()


def test_a_trials_output_goes_to_its_log_and_its_warnings_to_the_console_once(tmp_path, caplog):
    from finetune.search_output import trial_output

    logger = logging.getLogger("finetune")
    console = logging.StreamHandler(io.StringIO())
    shown: set[str] = set()
    with caplog.at_level(logging.INFO, logger="finetune"):
        logger.addHandler(console)
        try:
            for number in range(2):
                with trial_output(tmp_path / f"trial-{number}", False, shown) as callbacks:
                    logger.info("data: %d rows", 10 + number)
                    logger.warning("check: 2 duplicate rows")
                    logger.warning("check: %d%% longer than max_length", number)
                assert [callback.replaces_printer for callback in callbacks] == [True]
            with pytest.raises(ValueError), trial_output(tmp_path / "trial-2", False, shown):
                raise ValueError("a bad value")
            logger.info("after the trials")
            with trial_output(tmp_path / "verbose", True, shown) as callbacks:
                logger.info("verbose: printed")
        finally:
            logger.removeHandler(console)
    assert console.stream.getvalue().splitlines() == [
        "check: 2 duplicate rows",
        "check: 0% longer than max_length",
        "check: 1% longer than max_length",
        f"its output: {tmp_path / 'trial-2' / 'train.log'}",
        "after the trials",
        "verbose: printed",
    ]
    assert callbacks == [] and not (tmp_path / "verbose" / "train.log").exists()
    log = (tmp_path / "trial-1" / "train.log").read_text(encoding="utf-8")
    assert "[finetune] data: 11 rows" in log and "check: 2 duplicate rows" in log and "10 rows" not in log


def test_verbose_prints_each_trials_output(config, tmp_path, capsys):
    search_dir = tmp_path / "search"
    argv = search_command(config, write_space(tmp_path, SPACE), search_dir, "--n_trials", "1", "--top_k", "1")
    assert search_main([*argv, "--selection_seeds", "0", "--verbose"]) == 0
    assert "'loss':" in capsys.readouterr().out and not (search_dir / "trial-0" / "train.log").exists()


def test_a_trial_out_of_device_memory_fails_and_the_search_goes_on(config, tmp_path, monkeypatch, capsys):
    from finetune.trainer import ClassifierTrainer

    training_step = ClassifierTrainer.training_step

    def out_of_memory_at_batch_16(self, model, inputs, num_items_in_batch=None):
        if self.args.per_device_train_batch_size == 16:  # as a device too small for that batch would
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has 1.06 GiB free.")
        return training_step(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(ClassifierTrainer, "training_step", out_of_memory_at_batch_16)
    search_dir = tmp_path / "search"
    space = write_space(tmp_path, {**SPACE, "per_device_train_batch_size": [8, 16]})
    console = logging.StreamHandler(io.StringIO())
    logging.getLogger("finetune").addHandler(console)
    try:
        argv = search_command(config, space, search_dir, "--n_trials", "4", "--top_k", "1", "--selection_seeds", "0")
        assert search_main(argv) == 0
    finally:
        logging.getLogger("finetune").removeHandler(console)
    document = json.loads((search_dir / "search.json").read_text())
    trials = document["trials"]
    assert len(trials) == 4  # the failed trials count toward --n_trials
    failed = [trial for trial in trials if trial["params"]["per_device_train_batch_size"] == 16]
    assert trials[0] in failed  # the config's own batch size
    for trial in failed:
        assert trial["state"] == "fail" and "CUDA out of memory. Tried to allocate 2.00 GiB (on cpu;" in trial["error"]
        assert f"trial {trial['number']}: failed in " in console.stream.getvalue()
        log = (search_dir / f"trial-{trial['number']}" / "train.log").read_text(encoding="utf-8")
        assert "torch.OutOfMemoryError: CUDA out of memory" in log  # with its traceback
    assert document["winner"]["params"]["per_device_train_batch_size"] == 8
    capsys.readouterr()
    assert cli_main(["report", str(search_dir)]) == 0
    report = capsys.readouterr().out
    assert "per_device_train_batch_size 16 (CUDA out of memory)" in report and f"{len(failed)} fail" in report
