"""``finetune report SEARCH_DIR``: a search at a glance. A finished one is read from its search.json: the winner
and its test scores beside the baseline, the selection over seeds, and the trials ranked by their objective (a
pruned or running trial by the last value it reported, with the share of training it reached). One still running,
or stopped, is read from its study (SEARCH_DIR/study.db): the trials so far and the best one yet.

    finetune report outputs/textcnn/search
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from finetune.baseline import comparison
from finetune.errors import UserError
from finetune.report import format_duration
from finetune.search import STUDY_FILE
from finetune.search_output import ERROR_ATTR, format_params, listed
from finetune.search_results import SEARCH_FILE

MAX_TRIALS_SHOWN = 10


def is_search_dir(directory: Path) -> bool:
    return (directory / SEARCH_FILE).is_file() or (directory / STUDY_FILE).is_file()


def winner_run(directory: Path) -> str | None:
    """The winner's run folder that the search in ``directory`` names, or None."""
    try:
        return json.loads((directory / SEARCH_FILE).read_text(encoding="utf-8"))["winner"]["output_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def summarize_search(directory: Path) -> str:
    """The report of the search in ``directory``: finished (search.json), or its progress (study.db)."""
    if (directory / SEARCH_FILE).is_file():
        return format_search_summary(directory, read_search(directory))
    if not (directory / STUDY_FILE).is_file():
        raise UserError(
            f"{directory} holds no {SEARCH_FILE} (written at the end of a search) and no {STUDY_FILE} (a search "
            "whose study is in another --storage is reported once it has finished)."
        )
    return "\n\n".join(format_search_progress(directory, study) for study in read_studies(directory))


def read_studies(directory: Path) -> list:
    """The studies in SEARCH_DIR/study.db, read while their search may still write to it."""
    import optuna

    from finetune.search_pruning import quiet_optuna

    quiet_optuna()
    storage = f"sqlite:///{(directory / STUDY_FILE).resolve()}"
    names = optuna.study.get_all_study_names(storage)
    if not names:
        raise UserError(f"{directory / STUDY_FILE} holds no study yet.")
    return [optuna.load_study(study_name=name, storage=storage) for name in names]


def format_search_progress(directory: Path, study) -> str:
    from optuna.study import StudyDirection

    from finetune.search_results import describe_trial

    objective, lower = study.user_attrs.get("metric", "objective"), study.direction == StudyDirection.MINIMIZE
    trials = [describe_trial(trial) for trial in listed(study.trials)]
    lines = header_lines(directory, study.study_name, objective, lower, trials)
    lines[0] += f"; not finished ({SEARCH_FILE} is written at its end; the same command goes on)"
    complete = [trial for trial in trials if trial["state"] == "complete"]
    if complete:
        best = min(complete, key=lambda trial: trial["value"] if lower else -trial["value"])
        lines.append(
            f"best yet   trial {best['number']}{' (the config as it was)' * bool(best.get('shipped'))}: "
            f"{objective} {best['value']:.4f}, one seed (the winner is chosen over seeds at the end)"
        )
        lines.append(f"           {format_params(best['params'])}")
    return "\n".join(lines + trial_lines(trials, objective, lower))


def read_search(directory: Path) -> dict:
    path = directory / SEARCH_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not a search.json that finetune search wrote: {error}.") from None


def last_value(trial: dict) -> tuple[float | None, str]:
    """The trial's objective (a pruned or running one's: the last it reported; Optuna gives a pruned trial that
    value too) and how far it trained."""
    if trial["state"] == "complete":
        return trial["value"], "100%"
    reported = list((trial.get("intermediate_values") or {}).items())
    return (reported[-1][1], reported[-1][0]) if reported else (None, "-")


def header_lines(directory: Path, study: str, objective: str, lower: bool, trials: list[dict]) -> list[str]:
    states = Counter(trial["state"] for trial in trials)
    seconds = sum(trial.get("seconds") or 0 for trial in trials)
    counts = ", ".join(f"{count} {state}" for state, count in states.items())
    return [
        f"search     {directory} (study {study}): {objective}, {'lower' if lower else 'higher'} is better",
        f"trials     {len(trials)}: {counts}; {format_duration(seconds)} of training in finished trials"
        if trials
        else "trials     0 yet",
    ]


def format_search_summary(directory: Path, search: dict) -> str:
    objective, lower = search["objective"], search["direction"] == "minimize"
    trials = search["trials"]
    lines = header_lines(directory, search["study"], objective, lower, trials)
    winner = search["winner"]
    lines.append(
        f"winner     trial {winner['trial']}{' (the config as it was)' * bool(winner.get('shipped'))}: "
        f"{objective} {winner['mean']:.4f} ± {winner['std']:.4f} over {len(winner['values'])} seed(s) "
        f"-> {winner['config']}"
    )
    lines.append(f"           {format_params(winner['params'])}")
    test = {name.removeprefix("test_"): value for name, value in search.get("test", {}).items() if name != "samples"}
    if test:
        shown = ", ".join(f"{name} {value:.4f}" for name, value in test.items())
        lines.append(f"test       {shown} ({search['test'].get('samples', '?')} examples, scored once)")
    baseline = search.get("baseline") or {}
    if baseline:
        compared = comparison(search.get("test", {}), baseline, "test").replace("this model", "the winner")
        lines.append(f"baseline   {baseline['model']}, C {baseline['C']:g}{f': test {compared}' * bool(compared)}")

    lines += ["", f"selection ({objective}, mean over seeds)", f"{'trial':>6} {'mean':>8} {'std':>8}  seeds"]
    for entry in search.get("selection", []):
        marker = "  <- winner" if entry["trial"] == winner["trial"] else ""
        marker += "  (the config as it was)" if entry.get("shipped") else ""
        seeds = " ".join(entry["values"])
        lines.append(f"{entry['trial']:>6} {entry['mean']:>8.4f} {entry['std']:>8.4f}  {seeds}{marker}")
    lines += trial_lines(trials, objective, lower)
    plots = search.get("plots") or {}
    if plots:
        lines += ["", f"plots      {', '.join(plots.values())}"]
    return "\n".join(lines)


def trial_lines(trials: list[dict], objective: str, lower: bool) -> list[str]:
    """The trials, complete ones first by their objective, then the others by the last value they reported."""

    def rank(trial: dict) -> tuple:
        value, _ = last_value(trial)
        return (trial["state"] != "complete", value is None, (value if lower else -value) if value is not None else 0)

    ranked = sorted(trials, key=rank)
    shown = ranked[:MAX_TRIALS_SHOWN]
    count = f"{len(shown)} of {len(trials)} shown" if len(shown) < len(trials) else "all"
    lines = ["", f"trials (complete first, by {objective}; {count})"]
    lines.append(f"{'trial':>6} {'state':>9} {objective:>10} {'trained':>8} {'time':>8}  params")
    for trial in shown:
        value, reached = last_value(trial)
        cells = [
            f"{trial['number']:>6}",
            f"{trial['state']:>9}",
            f"{value:>10.4f}" if value is not None else f"{'-':>10}",
            f"{reached:>8}",
            f"{format_duration(trial['seconds']) if trial.get('seconds') is not None else '-':>8}",
        ]
        failure = f" ({trial[ERROR_ATTR].split('. ')[0]})" if trial.get(ERROR_ATTR) else ""  # out of device memory
        lines.append(" ".join(cells) + f"  {format_params(trial['params'])}{failure}")
    return lines
