"""Score a trained model on a labelled file: accuracy, macro and weighted F1 / precision / recall, a per-class
report and a confusion matrix, printed as tables and written to JSON (the confusion matrix also to PNG). A
multi-label model gets micro and macro F1 / precision / recall, subset accuracy, Hamming loss and a per-label
report, at the threshold saved with it.

    finetune evaluate --model outputs/textcnn --test_file data/chinese_sentiment/test.jsonl
    finetune evaluate --model outputs/textcnn/checkpoint-120 --test_file test.csv --output results/test.json

Labels are matched by name through the model's ``label2id``; a label the model does not know is an error.
By default the results go to MODEL/evaluation/<test file stem>.json and <stem>_confusion_matrix.png.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from finetune.checkpoints import EVALUATION_DIR
from finetune.data.readers import BadRows, Columns, checked_records, file_format
from finetune.errors import UserError
from finetune.files import writable_file, write_json_atomically
from finetune.fonts import font_families_for
from finetune.metrics import add_counts, multilabel_counts, scores_from_confusion_matrix, scores_from_multilabel_counts
from finetune.predict import Classifier, add_model_arguments
from finetune.rows import chunks
from finetune.shards import Shards

SKIPPED_LISTED = 100  # bad rows named in the results file; the count covers all of them
AVERAGES = ("accuracy", "f1", "precision", "recall", "f1_weighted", "precision_weighted", "recall_weighted")


def evaluate_confusion_matrix(matrix: np.ndarray, label_names: list[str]) -> dict:
    """Scores from a confusion matrix (rows true labels, columns predicted ones), as counted over the file.

    Returns:
        ``metrics`` (accuracy; f1, precision, recall as macro averages over the labels that occur; their
        ``_weighted`` averages), ``per_class`` (precision, recall, f1, support by label name) and
        ``confusion_matrix`` (``labels`` and ``matrix``).
    """
    scores = scores_from_confusion_matrix(matrix)
    per_class = per_label(scores["per_class"], label_names)
    return {
        "metrics": {name: scores[name] for name in AVERAGES},
        "per_class": per_class,
        "confusion_matrix": {"labels": label_names, "matrix": matrix.tolist()},
    }


def per_label(arrays: dict, names: list[str]) -> dict[str, dict]:
    """The ``per_class`` arrays of the metrics module (precision, recall, f1, support) by label name."""
    return {
        name: {
            "precision": float(arrays["precision"][i]),
            "recall": float(arrays["recall"][i]),
            "f1": float(arrays["f1"][i]),
            "support": int(arrays["support"][i]),
        }
        for i, name in enumerate(names)
    }


def display_width(text: str) -> int:
    """Columns a text takes in a terminal: two for wide characters (Chinese labels), one for the others."""
    return sum(2 if unicodedata.east_asian_width(character) in "WF" else 1 for character in text)


def pad(text: str, width: int, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` terminal columns, on the left with ``right`` (right-aligned)."""
    spaces = " " * max(0, width - display_width(text))
    return spaces + text if right else text + spaces


def score_table(results: dict, averages: tuple[tuple[str, str], ...], extra: list[str] = ()) -> list[str]:
    """Per-label rows (precision, recall, f1, support), a blank line, ``extra`` rows, then one row per
    ``(name, suffix)`` of ``averages`` from the metrics ``precision<suffix>``, ``recall<suffix>``, ``f1<suffix>``."""
    metrics, per_class = results["metrics"], results["per_class"]
    width = max(12, *(display_width(label) for label in per_class))
    total = sum(scores["support"] for scores in per_class.values())
    lines = [f"{'':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}"]
    for label, scores in per_class.items():
        lines.append(
            f"{pad(label, width)} {scores['precision']:>9.4f} {scores['recall']:>9.4f} {scores['f1']:>9.4f} "
            f"{scores['support']:>9}"
        )
    lines += ["", *(f"{name:<{width}} {'':>9} {'':>9} {metrics[name]:>9.4f} {total:>9}" for name in extra)]
    for name, suffix in averages:
        lines.append(
            f"{name:<{width}} {metrics['precision' + suffix]:>9.4f} {metrics['recall' + suffix]:>9.4f} "
            f"{metrics['f1' + suffix]:>9.4f} {total:>9}"
        )
    return lines


def format_report(results: dict) -> str:
    """The per-class report and the confusion matrix as plain-text tables."""
    labels = results["confusion_matrix"]["labels"]
    width = max(12, *(display_width(label) for label in labels))
    lines = score_table(results, (("macro avg", ""), ("weighted avg", "_weighted")), extra=["accuracy"])
    cell = max(7, *(display_width(label) for label in labels))
    lines += ["", "confusion matrix (rows: true label, columns: predicted label)"]
    lines.append(f"{'':<{width}} " + " ".join(pad(label, cell, right=True) for label in labels))
    for label, row in zip(labels, results["confusion_matrix"]["matrix"], strict=True):
        lines.append(f"{pad(label, width)} " + " ".join(f"{count:>{cell}}" for count in row))
    return "\n".join(lines)


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path, title: str = "") -> Path:
    """Saves the confusion matrix as a PNG heat map with the counts written in the cells."""
    figure = confusion_matrix_figure(matrix, labels, title or "confusion matrix", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def confusion_matrix_figure(matrix: list[list[int]], labels: list[str], title: str, path: Path):
    """The heat map as a matplotlib Figure. Labels in a script the default font lacks (Chinese, say) are drawn in an
    installed font that has them; where none has, the axes show label ids (the order of ``labels``) rather than
    empty boxes, and a warning says so and which font would show the names."""
    import matplotlib
    from matplotlib.figure import Figure

    families = font_families_for([*labels, title])
    if families is None:
        missing = [label for label in labels if font_families_for([label]) is None]
        if missing:
            print(
                f"warning: no installed font draws the labels {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''}: {path} shows label ids, in the order of the JSON's "
                "confusion_matrix.labels. A font with these characters shows the names "
                "(Debian, Ubuntu: apt install fonts-noto-cjk).",
                file=sys.stderr,
            )
            labels = [str(index) for index in range(len(labels))]
        if font_families_for([title]) is None:
            title = "confusion matrix"
        # Labels each drawable by some font but not all by one (two scripts): matplotlib's default, with its warnings
        families = font_families_for([*labels, title]) or list(matplotlib.rcParams["font.family"])
    counts = np.asarray(matrix)
    size = min(4 + 0.5 * len(labels), 16)
    with matplotlib.rc_context({"font.family": families}):  # a text's font is fixed when the text is made
        figure = Figure(figsize=(size, size * 0.85), layout="constrained")
        axes = figure.add_subplot()
        image = axes.imshow(counts, cmap="Blues")
        figure.colorbar(image, ax=axes, shrink=0.8)
        axes.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0, ha="right")
        axes.set_yticks(range(len(labels)), labels)
        axes.set_xlabel("predicted label")
        axes.set_ylabel("true label")
        axes.set_title(title)
        threshold = counts.max() / 2 if counts.size else 0
        for (row, column), count in np.ndenumerate(counts):
            color = "white" if count > threshold else "black"
            axes.text(column, row, str(count), ha="center", va="center", color=color)
    return figure


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune evaluate",
        description="Score a trained model on a labelled file: accuracy, macro and weighted F1, precision and "
        "recall, a per-class report and a confusion matrix.",
        epilog="Example: finetune evaluate --model outputs/textcnn --test_file data/chinese_sentiment/test.jsonl",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--test_file", required=True, help="labelled data: csv, tsv, json, jsonl, parquet or txt (text<TAB>label)"
    )
    parser.add_argument("--label_column", help="column holding the label (default: the run's, else 'label')")
    parser.add_argument(
        "--max_samples", type=int, help="score the file's first N examples only (as max_predict_samples in training)"
    )
    parser.add_argument(
        "--bad_rows",
        choices=("error", "skip"),
        default="error",
        help="a row without text or label: an error naming its line (default), or skip: left out and counted",
    )
    parser.add_argument(
        "--output",
        help="JSON file for the results (default: MODEL/evaluation/<test file stem>.json); the confusion matrix "
        "PNG goes next to it",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be positive, got {args.batch_size}.")
    if args.max_samples is not None and args.max_samples < 1:
        raise UserError(f"--max_samples must be positive, got {args.max_samples}.")
    if args.output:
        writable_file(args.output)  # before the model is loaded and the texts classified
    shards = Shards(args.device)  # under accelerate launch: this process's share of the chunks (finetune/shards.py)
    classifier = Classifier.load(
        args.model, args.device or shards.device, args.max_length, args.long_text, args.window_stride
    )
    text_column = args.text_column or classifier.text_column
    pair_column = args.text_pair_column or classifier.text_pair_column
    columns = Columns(
        [text_column] + ([pair_column] if pair_column else []),
        args.label_column or classifier.label_column,
        label_may_be_empty=classifier.multi_label and bool(classifier.label_separator),
    )
    label_names = [classifier.id2label[index] for index in range(len(classifier.id2label))]
    path = Path(args.test_file)
    if not path.is_file():
        raise UserError(f"Data file {path} does not exist.")
    score = score_multi_label if classifier.multi_label else score_single_label
    bad_rows = BadRows(args.bad_rows, hint=" (--bad_rows skip leaves such rows out)")
    records = checked_records(path, file_format(path), columns, bad_rows)
    if args.max_samples is not None:
        records = itertools.islice(records, args.max_samples)
    results, count = score(classifier, records, columns, args, shards)
    shards.close()
    if not count:
        raise UserError(f"Data file {path} holds no examples.")
    if not shards.is_main:
        return 0

    test_name = Path(args.test_file).name
    output = Path(args.output) if args.output else Path(args.model) / EVALUATION_DIR / f"{Path(test_name).stem}.json"
    document = {"model": str(classifier.model_dir), "test_file": str(args.test_file), "samples": count, **results}
    if bad_rows.rows:
        document["skipped_rows"] = len(bad_rows.rows)
        document["skipped_first"] = bad_rows.rows[:SKIPPED_LISTED]
        first = bad_rows.rows[0]
        print(
            f"skipped {len(bad_rows.rows)} bad row(s) of {path} (--bad_rows skip), the first at line {first['line']}: "
            f"{first['reason']}; skipped_first in the results lists up to {SKIPPED_LISTED}",
            file=sys.stderr,
        )
    if not classifier.multi_label:
        png = output.with_name(f"{output.stem}_confusion_matrix.png")
        matrix = results["confusion_matrix"]["matrix"]
        document["confusion_matrix_png"] = str(
            plot_confusion_matrix(matrix, label_names, png, f"{test_name} ({count})")
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(output, document)

    metrics = results["metrics"]
    print(f"{args.test_file}: {count} examples, model {classifier.model_dir}")
    if classifier.multi_label:
        print(
            f"micro-F1 {metrics['f1_micro']:.4f}  macro-F1 {metrics['f1']:.4f}  subset accuracy "
            f"{metrics['subset_accuracy']:.4f}  Hamming loss {metrics['hamming_loss']:.4f}  loss {metrics['loss']:.4f}  "
            f"(threshold {metrics['threshold']:.4g})\n"
        )
        print(format_multi_label_report(results))
    else:
        print(
            f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['f1']:.4f}  weighted-F1 "
            f"{metrics['f1_weighted']:.4f}  loss {metrics['loss']:.4f}\n"
        )
        print(format_report(results))
    print(
        f"\nwrote {output}"
        + (f" and {document['confusion_matrix_png']}" if "confusion_matrix_png" in document else "")
    )
    return 0


def check_known(labels: set[str], label2id: dict[str, int], test_file: str) -> None:
    unknown = sorted(labels - set(label2id))
    if unknown:
        raise UserError(
            f"{test_file}: label(s) the model does not know: {', '.join(map(repr, unknown))}. "
            f"The model's labels: {', '.join(map(repr, label2id))}."
        )


def texts_of(chunk: list[dict], columns: Columns) -> tuple[list[str], list[str] | None]:
    pairs = [record[columns.texts[1]] for record in chunk] if len(columns.texts) > 1 else None
    return [record[columns.texts[0]] for record in chunk], pairs


def my_chunks(records, shards: Shards, check) -> Iterator[tuple[list[dict], int]]:
    """This process's chunks of the records (every chunk when it runs alone), each with the count of rows read so
    far by all processes. ``check`` sees every chunk in every process, so that a bad label stops them all."""
    for group, mine in shards.rounds(chunks(iter(records))):
        for chunk in group:
            check(chunk)
        yield mine, sum(map(len, group))


def score_single_label(classifier: Classifier, records, columns: Columns, args, shards: Shards) -> tuple[dict, int]:
    """Counted chunk by chunk: the confusion matrix and the summed loss, never a list of every row; summed over
    the processes at the end."""
    label2id = classifier.label2id
    label_names = [classifier.id2label[index] for index in range(len(label2id))]
    matrix = np.zeros((len(label_names), len(label_names)), dtype=np.int64)
    loss_sum, count = 0.0, 0

    def labels_of(chunk: list[dict]) -> list[str]:
        return [str(record[columns.label]).strip() for record in chunk]

    def check(chunk: list[dict]) -> None:
        check_known(set(labels_of(chunk)), label2id, args.test_file)

    for chunk, read in my_chunks(records, shards, check):
        count += read
        if chunk is None:
            continue
        probabilities = classifier.probabilities(*texts_of(chunk, columns), args.batch_size, progress=shards.is_main)
        references = np.array([label2id[label] for label in labels_of(chunk)])
        np.add.at(matrix, (references, probabilities.argmax(axis=1)), 1)
        true_class = probabilities[np.arange(len(references)), references]
        loss_sum += float(-np.log(np.clip(true_class, 1e-12, None)).sum())
    gathered = shards.gather((matrix, loss_sum))
    if gathered is None:
        return {}, count
    matrix, loss_sum = sum(part[0] for part in gathered), sum(part[1] for part in gathered)
    results = evaluate_confusion_matrix(matrix, label_names)
    results["metrics"]["loss"] = loss_sum / max(count, 1)
    return results, count


def record_labels(value, separator: str | None) -> list[str]:
    """A multi-label row's labels: a list as it is, a string split on the run's label_separator (or a list of
    one without it); white space trimmed, empty items dropped, as training reads them."""
    items = value if isinstance(value, list) else str(value).split(separator) if separator else [value]
    return [str(item).strip() for item in items if str(item).strip()]


def score_multi_label(classifier: Classifier, records, columns: Columns, args, shards: Shards) -> tuple[dict, int]:
    """Multi-label scores at the model's threshold, from counts summed chunk by chunk (and over the processes),
    and the mean binary cross-entropy over labels."""
    label2id, threshold = classifier.label2id, classifier.threshold
    counts, loss_sum, count = None, 0.0, 0

    def label_sets_of(chunk: list[dict]) -> list[list[str]]:
        return [record_labels(record[columns.label], classifier.label_separator) for record in chunk]

    def check(chunk: list[dict]) -> None:
        check_known({label for labels in label_sets_of(chunk) for label in labels}, label2id, args.test_file)

    for chunk, read in my_chunks(records, shards, check):
        count += read
        if chunk is None:
            continue
        references = np.zeros((len(chunk), len(label2id)), dtype=bool)
        for row, labels in enumerate(label_sets_of(chunk)):
            references[row, [label2id[label] for label in labels]] = True
        probabilities = classifier.probabilities(*texts_of(chunk, columns), args.batch_size, progress=shards.is_main)
        counts = add_counts(counts, multilabel_counts(probabilities > threshold, references))
        likelihood = np.clip(np.where(references, probabilities, 1 - probabilities), 1e-12, None)
        loss_sum += float(-np.log(likelihood).mean(axis=1).sum())
    gathered = shards.gather((counts, loss_sum))
    if gathered is None or not count:
        return {}, count
    counts = None
    for part_counts, _ in gathered:
        counts = counts if part_counts is None else add_counts(counts, part_counts)
    loss_sum = sum(part[1] for part in gathered)
    scores = scores_from_multilabel_counts(counts)
    per_class = scores.pop("per_class")
    names = [classifier.id2label[index] for index in range(len(label2id))]
    return {
        "metrics": {**scores, "loss": loss_sum / count, "threshold": threshold},
        "per_class": per_label(per_class, names),
    }, count


def format_multi_label_report(results: dict) -> str:
    """The per-label report (support: rows that carry the label) with micro and macro averages."""
    return "\n".join(score_table(results, (("micro avg", "_micro"), ("macro avg", ""))))


if __name__ == "__main__":
    from finetune.cli import run_command

    sys.exit(run_command(main, sys.argv[1:]))
