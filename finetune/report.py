"""A run at a glance: train loss, eval loss and eval metrics against steps from trainer_state.json, with the
best checkpoint marked, saved as OUTPUT_DIR/curves.png, and a one-screen text summary.

    finetune report outputs/textcnn
    finetune report outputs/textcnn --output textcnn-curves.png
    finetune report outputs/textcnn/checkpoint-120     # the run up to that step: outputs/textcnn/curves-checkpoint-120.png
    finetune report outputs/textcnn/search             # a finetune search: the winner, the selection, the trials

Training writes curves.png at the end of every run; this command redraws it and prints the summary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from finetune.baseline import BASELINE_FILE, SPLIT_NAMES, comparison
from finetune.checkpoints import (
    BEST_FILE,
    CHECKPOINT_NAME,
    TRAINER_STATE_FILE,
    TRAINING_ARGS_FILE,
    read_arguments,
    read_best,
    run_arguments,
)
from finetune.errors import UserError
from finetune.files import writable_file
from finetune.fonts import font_families_for

CURVES_FILE = "curves.png"
# Logged by every evaluation but not a quality of the model.
EVAL_BOOKKEEPING = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
MAX_TABLE_ROWS = 15


@dataclass
class RunHistory:
    """What a run logged, read from its trainer_state.json (and best.json and all_results.json when present)."""

    output_dir: Path
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)  # the eval log entries, with step and epoch
    best_step: int | None = None
    best_checkpoint: str | None = None
    best_metric: str | None = None
    best_value: float | None = None
    global_step: int = 0
    epoch: float = 0.0
    totals: dict = field(default_factory=dict)  # train_runtime, train_samples_per_second, train_loss, ...
    test_results: dict = field(default_factory=dict)
    eval_results: dict = field(default_factory=dict)  # the best model's, evaluated again after training
    baseline: dict = field(default_factory=dict)  # baseline_results.json

    @property
    def metric_names(self) -> list[str]:
        """The eval metrics logged besides the loss, in the order they first appear."""
        names = (name for entry in self.evaluations for name in entry if name.startswith("eval_"))
        return [name for name in dict.fromkeys(names) if name != "eval_loss" and name not in EVAL_BOOKKEEPING]


def read_history(output_dir: str | Path) -> RunHistory:
    """Reads a run's log history; the best step comes from best.json, else from the Trainer's state."""
    output_dir = Path(output_dir)
    state_path = output_dir / TRAINER_STATE_FILE
    if not state_path.is_file():
        seeds = sorted(path.name for path in output_dir.glob("seed-*"))
        hint = f" It holds the runs {', '.join(seeds)}: report on one of them." if seeds else ""
        if (output_dir / "search").is_dir():
            hint += f" It holds a search: finetune report {output_dir / 'search'}."
        raise UserError(f"{output_dir} has no {TRAINER_STATE_FILE}; is it the output_dir of a finished run?{hint}")
    state = json.loads(state_path.read_text(encoding="utf-8"))
    history = RunHistory(output_dir, global_step=state.get("global_step", 0), epoch=state.get("epoch") or 0.0)
    for entry in state.get("log_history", []):
        if "train_runtime" in entry:
            # Evaluations logged after training (the best model, evaluated again) belong to no step of it.
            history.totals = entry
            break
        if "loss" in entry:
            history.train_loss.append((entry["step"], entry["loss"]))
        if "eval_loss" in entry:
            history.evaluations.append(entry)

    if (output_dir / BEST_FILE).is_file():
        best = read_best(output_dir)
        history.best_step, history.best_checkpoint = best.get("step"), best.get("checkpoint")
        history.best_metric, history.best_value = best.get("metric"), best.get("value")
    elif state.get("best_global_step") is not None:
        history.best_step = state["best_global_step"]
        history.best_checkpoint = Path(state.get("best_model_checkpoint") or "").name or None
        history.best_metric, history.best_value = best_metric_name(output_dir), state.get("best_metric")
    results_path = output_dir / "all_results.json"
    if results_path.is_file():
        results = json.loads(results_path.read_text(encoding="utf-8"))
        history.test_results = {name: value for name, value in results.items() if name.startswith("test_")}
        history.eval_results = {name: value for name, value in results.items() if name.startswith("eval_")}
    if (output_dir / BASELINE_FILE).is_file():
        history.baseline = json.loads((output_dir / BASELINE_FILE).read_text(encoding="utf-8"))
    return history


def best_metric_name(directory: Path) -> str | None:
    """The metric that chose the best checkpoint of a folder without best.json (a checkpoint-N): the
    ``metric_for_best_model`` of the arguments saved with it, with the ``eval_`` prefix the Trainer adds."""
    arguments = read_arguments(directory / TRAINING_ARGS_FILE) or run_arguments(directory).get("training", {})
    name = arguments.get("metric_for_best_model")
    return name if not name or name.startswith("eval_") else f"eval_{name}"


def default_plot_path(directory: Path) -> Path:
    """curves.png in a run's output_dir. For a checkpoint-N, curves-checkpoint-N.png beside it in the run's
    output_dir: a checkpoint holds what resuming needs, the Trainer deletes it when it keeps only the last few,
    and the run's own curves.png shows the whole run."""
    if CHECKPOINT_NAME.fullmatch(directory.name):
        return directory.parent / f"curves-{directory.name}.png"
    return directory / CURVES_FILE


def plot_curves(history: RunHistory, path: str | Path | None = None) -> Path:
    """Draws the loss curves (left) and eval metrics (right) against steps, the best step marked, into a PNG.

    Returns:
        The PNG's path: ``path``, or the default of :func:`default_plot_path`.
    """
    import matplotlib

    path = Path(path) if path else default_plot_path(history.output_dir)
    title = f"{history.output_dir.name}: {history.global_step} steps, {history.epoch:g} epochs"
    # A run directory named in Chinese, say: a font that has its characters where one is installed.
    with matplotlib.rc_context({"font.family": font_families_for([title]) or matplotlib.rcParams["font.family"]}):
        figure = curves_figure(history, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A PNG records the best step in its metadata; jpg, tiff, webp and others take no metadata at all.
    metadata = {"Description": f"best step {history.best_step}"} if path.suffix.lower() == ".png" else None
    figure.savefig(path, dpi=110, metadata=metadata)
    return path


def curves_figure(history: RunHistory, title: str):
    from matplotlib.figure import Figure  # the object API draws without a GUI backend or global state

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    loss_axes, metric_axes = figure.subplots(1, 2)
    if history.train_loss:
        steps, losses = zip(*history.train_loss, strict=True)
        loss_axes.plot(steps, losses, label="train loss", color="tab:blue", alpha=0.8)
    eval_steps = [entry["step"] for entry in history.evaluations]
    if history.evaluations:
        eval_losses = [entry["eval_loss"] for entry in history.evaluations]
        loss_axes.plot(eval_steps, eval_losses, "o-", label="eval loss", color="tab:orange")
    for name in history.metric_names:
        points = [(entry["step"], entry[name]) for entry in history.evaluations if name in entry]
        metric_axes.plot(*zip(*points, strict=True), "o-", label=name.removeprefix("eval_"))

    if history.best_step is not None:
        label = f"best: step {history.best_step}"
        if history.best_metric and history.best_value is not None:
            label += f" ({history.best_metric} {history.best_value:.4f})"
        for axes in (loss_axes, metric_axes):
            axes.axvline(history.best_step, color="black", linestyle="--", linewidth=1.2, alpha=0.7, label=label)
        at_best = [entry for entry in history.evaluations if entry["step"] == history.best_step]
        if at_best:
            loss_axes.plot(history.best_step, at_best[0]["eval_loss"], "*", color="black", markersize=14)

    loss_axes.set_title("loss")
    metric_axes.set_title("eval metrics")
    if not history.metric_names:
        metric_axes.text(0.5, 0.5, "no evaluations logged", ha="center", va="center", transform=metric_axes.transAxes)
    for axes in (loss_axes, metric_axes):
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    figure.suptitle(title)
    return figure


def format_duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


def format_summary(history: RunHistory) -> str:
    """The run on one screen: best checkpoint, time and speed, test results and a table of the evaluations."""
    totals = history.totals
    lines = [f"run        {history.output_dir}"]
    if history.best_step is not None:
        best = f"{history.best_checkpoint or 'final model'} at step {history.best_step}"
        if history.best_value is not None:
            best += f": {history.best_metric or 'best metric'} {history.best_value:.4f}"
        lines.append(f"best       {best}")
    lines.append(f"trained    {history.global_step} steps, {history.epoch:g} epochs")
    if "train_runtime" in totals:
        lines.append(
            f"time       {format_duration(totals['train_runtime'])} "
            f"({totals.get('train_samples_per_second', 0):.1f} samples/s, "
            f"{totals.get('train_steps_per_second', 0):.2f} steps/s); mean train loss {totals.get('train_loss', 0):.4f}"
        )
    else:
        lines.append("time       unknown: no train_runtime logged (a checkpoint, or a run that did not finish)")
    if history.test_results:
        shown = [
            f"{name.removeprefix('test_')} {value:.4f}"
            for name, value in history.test_results.items()
            if name in ("test_accuracy", "test_f1", "test_loss")
        ]
        lines.append(f"test       {', '.join(shown)} ({history.test_results.get('test_samples', '?')} examples)")
    if history.baseline:
        results = {**history.eval_results, **history.test_results}
        compared = [
            f"{name} {text}" for split, name in SPLIT_NAMES if (text := comparison(results, history.baseline, split))
        ]
        lines.append(f"baseline   {history.baseline['model']}, C {history.baseline['C']:g}: {'; '.join(compared)}")

    if history.evaluations:
        rows = history.evaluations
        if len(rows) > MAX_TABLE_ROWS:
            keep = {round(i * (len(rows) - 1) / (MAX_TABLE_ROWS - 2)) for i in range(MAX_TABLE_ROWS - 1)}
            keep |= {index for index, entry in enumerate(rows) if entry["step"] == history.best_step}
            lines += ["", f"evaluations ({len(keep)} of {len(rows)} shown)"]
            rows = [entry for index, entry in enumerate(rows) if index in keep]
        else:
            lines += ["", "evaluations"]
        names = ["eval_loss", *history.metric_names]
        headers = ["step", "epoch", "train loss", "eval loss", *(name.removeprefix("eval_") for name in names[1:])]
        lines.append(" ".join(f"{header:>10}" for header in headers))
        for entry in rows:
            # The train loss column shows the last one logged up to this evaluation.
            train_losses = [loss for step, loss in history.train_loss if step <= entry["step"]]
            cells = [
                str(entry["step"]),
                f"{entry.get('epoch', 0):.2f}",
                f"{train_losses[-1]:.4f}" if train_losses else "-",
            ]
            cells += [f"{entry[name]:.4f}" if name in entry else "" for name in names]
            marker = "  <- best" if entry["step"] == history.best_step else ""
            lines.append(" ".join(f"{cell:>10}" for cell in cells) + marker)
    return "\n".join(lines)


def check_plot_file(output: str) -> Path:
    """--output as matplotlib will write it: a name without an extension gets .png; others must be one it writes."""
    from matplotlib.figure import Figure

    path = writable_file(output)
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    formats = {name for name in Figure().canvas.get_supported_filetypes() if name != "pgf"}  # pgf needs LaTeX
    if path.suffix[1:].lower() not in formats:
        raise UserError(
            f"--output {output}: matplotlib cannot write {path.suffix!r} files; use one of {', '.join(sorted(formats))}."
        )
    return path


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune report",
        description="Plot a run's train loss, eval loss and eval metrics against steps (best checkpoint marked) "
        "and print a summary of the run; for the folder of a finetune search, print a summary of the search.",
        epilog="Example: finetune report outputs/textcnn",
    )
    parser.add_argument(
        "output_dir",
        help="output_dir of a run (it holds trainer_state.json), a checkpoint-N, or the folder of a finetune search",
    )
    parser.add_argument(
        "--output",
        help="where to save the plot (default: OUTPUT_DIR/curves.png; for RUN/checkpoint-N, RUN/curves-checkpoint-N.png)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from finetune.search_report import is_search_dir, summarize_search

    directory = Path(args.output_dir)
    if is_search_dir(directory) and not (directory / TRAINER_STATE_FILE).is_file():
        if args.output:
            raise UserError(f"--output is for a run's curves; the plots of the search in {directory} are beside it.")
        print(summarize_search(directory))
        return 0
    history = read_history(args.output_dir)
    path = plot_curves(history, check_plot_file(args.output) if args.output else None)
    print(format_summary(history))
    print(f"\ncurves     {path}")
    return 0


if __name__ == "__main__":
    from finetune.cli import run_command

    sys.exit(run_command(main, sys.argv[1:]))
