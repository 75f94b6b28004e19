"""``finetune report SEARCH_DIR``: a finished search at a glance, read from its search.json.

    finetune report outputs/textcnn/search

The winner and its test scores beside the baseline, the selection over seeds, and the trials ranked by their
objective (a pruned trial by the last value it reported, with the share of training it reached).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from finetune.baseline import comparison
from finetune.errors import UserError
from finetune.report import format_duration
from finetune.search import STUDY_FILE
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


def read_search(directory: Path) -> dict:
    path = directory / SEARCH_FILE
    if not path.is_file():
        raise UserError(
            f"{directory} holds a search that has not finished: {SEARCH_FILE} is written at its end. The same "
            "finetune search command goes on where it stopped."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not a search.json that finetune search wrote: {error}.") from None


def format_params(params: dict) -> str:
    return ", ".join(
        f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}" for name, value in params.items()
    )


def last_value(trial: dict) -> tuple[float | None, str]:
    """The trial's objective (a pruned one's: the last it reported) and how far it trained."""
    if trial.get("value") is not None:
        return trial["value"], "100%"
    reported = list((trial.get("intermediate_values") or {}).items())
    return (reported[-1][1], reported[-1][0]) if reported else (None, "-")


def format_search_summary(directory: Path, search: dict) -> str:
    objective, lower = search["objective"], search["direction"] == "minimize"
    trials = search["trials"]
    states = Counter(trial["state"] for trial in trials)
    seconds = sum(trial.get("seconds") or 0 for trial in trials)
    lines = [
        f"search     {directory} (study {search['study']}): {objective}, {'lower' if lower else 'higher'} is better",
        f"trials     {len(trials)}: {', '.join(f'{count} {state}' for state, count in states.items())}; "
        f"{format_duration(seconds)} of training",
    ]
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

    def rank(trial: dict) -> tuple:
        value, _ = last_value(trial)
        return (trial["state"] != "complete", value is None, (value if lower else -value) if value is not None else 0)

    ranked = sorted(trials, key=rank)
    shown = ranked[:MAX_TRIALS_SHOWN]
    count = f"{len(shown)} of {len(trials)} shown" if len(shown) < len(trials) else "all"
    lines += ["", f"trials (finished first, by {objective}; {count})"]
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
        lines.append(" ".join(cells) + f"  {format_params(trial['params'])}")
    plots = search.get("plots") or {}
    if plots:
        lines += ["", f"plots      {', '.join(plots.values())}"]
    return "\n".join(lines)
