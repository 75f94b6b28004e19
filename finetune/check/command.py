"""The `finetune check` command, its report, and the short check at the start of `finetune train`.

    finetune check --config CONFIG [--output report.json] [--strict] [--label_errors] [--fix DIR] [--key value ...]

Exit status: 0 when the check ran (problems or not), 1 when it found problems and ``--strict`` was given, 2 for bad
input (a missing file, an unknown column, a bad row with bad_rows: error), with the file and line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from finetune.errors import UserError

logger = logging.getLogger("finetune")

TEXT_SHOWN = 60  # characters of a text in the report on stderr


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune check",
        description="Find what is wrong with the data before training on it: duplicates and leaks between splits "
        "(after the tokenizer's normalisation), texts with conflicting labels, label counts, token lengths against "
        "max_length, and (--label_errors) likely label errors. Reads the files a finetune train config names; other "
        "flags (--train_file data.csv, --max_length 256, ...) override the config as they do for finetune train.",
        epilog="Exit status: 0 checked, 1 problems found with --strict, 2 bad input.",
    )
    parser.add_argument("--config", required=True, help="a finetune train config (its data and tokenizer keys)")
    parser.add_argument("--output", help="write the full report here as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any problem is found")
    parser.add_argument(
        "--label_errors",
        action="store_true",
        help="also find likely label errors: k-fold out-of-fold probabilities of the TF-IDF baseline, ranked by "
        "cleanlab",
    )
    parser.add_argument("--folds", type=int, default=5, help="folds of the cross-validation for --label_errors")
    parser.add_argument("--top", type=int, default=100, help="likely label errors kept in the report and --review")
    parser.add_argument(
        "--review",
        help="--label_errors: write the top rows here as CSV for review (default: label_issues.csv "
        "beside --output, if given)",
    )
    parser.add_argument(
        "--near_duplicates",
        type=float,
        nargs="?",
        const=0.8,
        metavar="SIMILARITY",
        help="also find near-duplicates: texts whose character 4-grams overlap this much (estimated Jaccard "
        "similarity, MinHash; 0.8 when no value is given), within and across splits",
    )
    parser.add_argument(
        "--fix",
        metavar="DIR",
        help="write cleaned copies of the data files into DIR (conflicts, cross-split duplicates from the earlier "
        "split, repeated copies), with fix.json (what was left out, by file and line) and config.yaml",
    )
    return parser


def read_arguments(config: str, train_flags: list[str]):
    """The run's ModelArguments and DataArguments, and the training values a check uses, as finetune train reads
    them (without the checks that concern training, such as an output_dir that holds a run)."""
    from finetune.config import DataArguments, ModelArguments
    from finetune.parsing import make_parser as train_parser
    from finetune.parsing import parse_namespace

    namespace = parse_namespace(["--config", config, *train_flags], train_parser())
    values = vars(namespace)

    def build(argument_class):
        return argument_class(**{f.name: values[f.name] for f in dataclasses.fields(argument_class) if f.init})

    return build(ModelArguments), build(DataArguments), namespace


def load_tokenizer(model_args, data_args, raw):
    from finetune.build import build_tokenizer

    return build_tokenizer(model_args, data_args, raw)


def text_columns(data_args) -> list[str]:
    return [data_args.text_column] + ([data_args.text_pair_column] if data_args.text_pair_column else [])


def char_level(model_args) -> bool:
    return not model_args.model_name_or_path and model_args.tokenizer_level == "char"


def run_findings(scan, max_length: int, first_text_cap: int | None = None) -> dict:
    from finetune.check import findings

    return {
        "duplicates": {
            "within": findings.within_split_duplicates(scan),
            "across": findings.cross_split_duplicates(scan),
        },
        "conflicts": findings.conflicts(scan),
        "labels": findings.labels(scan),
        "lengths": findings.lengths(scan, max_length, first_text_cap),
        "empty": findings.empty_rows(scan),
    }


def windows_first_text_cap(tokenizer, data_args) -> int | None:
    """The tokens a first text of a pair keeps when pairs are read in windows (a longer one is cut); else None."""
    if data_args.long_text != "windows" or not data_args.text_pair_column:
        return None
    from finetune.data.windows import first_text_cap

    return first_text_cap(tokenizer, data_args.max_length)


def problems(report: dict) -> list[str]:
    """One line per problem found: what makes --strict (and check: strict) fail."""
    found = []
    if report.get("bad_rows", {}).get("rows"):
        found.append(f"{report['bad_rows']['rows']} bad row(s) (left out with bad_rows: skip)")
    for pair, leak in report["duplicates"]["across"].items():
        if leak["rows"]:
            first, second = pair.split("/")
            found.append(f"{leak['rows']} {second} row(s) also in {first} ({leak['texts']} text(s))")
    for split, duplicates in report["duplicates"]["within"].items():
        if duplicates["rows"]:
            found.append(f"{duplicates['rows']} duplicate row(s) in {split} ({duplicates['texts']} text(s) repeated)")
    if report["conflicts"]["texts"]:
        conflicts = report["conflicts"]
        found.append(f"{conflicts['texts']} text(s) with conflicting labels ({conflicts['rows']} rows)")
    for split, labels in report["labels"]["unseen"].items():
        found.append(f"{split} has label(s) training never has: {', '.join(map(str, labels))}")
    for split, empty in report["empty"].items():
        found.append(f"{empty['rows']} {split} text(s) empty after the tokenizer's normalisation")
    return found


def locate(report: dict, scan, data_args) -> None:
    """Replaces every ``{"_rows": {split: [row, ...]}}`` of the report's examples by ``"at": [{split, file, line,
    text}, ...]``, reading each file once."""
    from finetune.check.scan import Locator

    holders = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if "_rows" in node:
                holders.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(report)
    wanted: dict[str, set[int]] = {}
    for holder in holders:
        for split, rows in holder["_rows"].items():
            wanted.setdefault(split, set()).update(rows)
    lines = Locator(scan, data_args).lines({split: sorted(rows) for split, rows in wanted.items()})
    texts = {
        (split, row): text
        for split, rows in wanted.items()
        for row, text in zip(sorted(rows), scan.texts(split, sorted(rows)), strict=True)
    }
    for holder in holders:
        rows = holder.pop("_rows")
        holder["at"] = [
            {"split": split, **lines[(split, row)], "text": texts[(split, row)]}
            for split, rows in rows.items()
            for row in rows
        ]


def build_report(model_args, data_args, namespace, args=None) -> tuple[dict, object]:
    """Reads the splits, scans them and returns the report (and the scan, for --fix)."""
    from finetune.check.scan import scan_splits
    from finetune.data.splits import load_raw_splits

    started = time.monotonic()
    raw = load_raw_splits(data_args, seed=namespace.seed, labels_must_be_seen=False, apply_limits=False)
    tokenizer = load_tokenizer(model_args, data_args, raw)
    scan = scan_splits(raw, tokenizer, text_columns(data_args), char_level(model_args))
    report = {
        "files": {split: source for split, (source, _) in raw.origins.items()},
        "rows": {split: len(dataset) for split, dataset in raw.splits.items()},
        "multi_label": raw.multi_label,
        **run_findings(scan, data_args.max_length, windows_first_text_cap(tokenizer, data_args)),
    }
    report["lengths"]["read_in_windows"] = data_args.long_text == "windows"  # then nothing is truncated
    if raw.bad_rows:
        report["bad_rows"] = {"rows": len(raw.bad_rows), "examples": raw.bad_rows[:5]}
    if args is not None and args.near_duplicates is not None:
        from finetune.check.near import near_duplicates

        report["near_duplicates"] = near_duplicates(scan, tokenizer, char_level(model_args), args.near_duplicates)
    if args is not None and args.label_errors:
        from finetune.check.label_errors import find_label_errors

        report["label_errors"] = find_label_errors(
            scan,
            None if model_args.model_name_or_path else model_args.tokenizer_level,
            model_args.lowercase,
            namespace.seed,
            namespace.baseline_max_train_samples,
            args.folds,
            args.top,
        )
    locate(report, scan, data_args)
    report["problems"] = problems(report)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report, scan


def where(place: dict) -> str:
    return f"{place['file']}:{place['line']}" if place["file"] else f"{place['split']} row {place['line']}"


def shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TEXT_SHOWN else text[: TEXT_SHOWN - 1] + "…"


def render(report: dict) -> list[str]:
    """The report as lines for the terminal."""
    lines = [
        "rows: "
        + ", ".join(f"{split} {rows:,}" for split, rows in report["rows"].items())
        + "; files: "
        + ", ".join(f"{split} {source}" for split, source in report["files"].items() if source)
    ]
    if "bad_rows" in report:
        lines.append(f"bad rows: {report['bad_rows']['rows']} (bad_rows: skip leaves them out)")
        lines += [f"  {row['file']}:{row['line']}: {row['reason']}" for row in report["bad_rows"]["examples"]]
    lines.append("duplicates after the tokenizer's normalisation:")
    for pair, leak in report["duplicates"]["across"].items():
        first, second = pair.split("/")
        lines.append(f"  {second} rows also in {first}: {leak['rows']} ({leak['texts']} texts)")
        lines += [
            f"    {shown(example['at'][-1]['text'])!r}: " + ", ".join(map(where, example["at"]))
            for example in leak["examples"]
        ]
    for split, duplicates in report["duplicates"]["within"].items():
        lines.append(f"  within {split}: {duplicates['rows']} rows repeat {duplicates['texts']} texts")
        lines += [
            f"    {shown(example['at'][0]['text'])!r} x{example['copies']}: " + ", ".join(map(where, example["at"]))
            for example in duplicates["examples"]
        ]
    conflicts = report["conflicts"]
    lines.append(f"conflicting labels: {conflicts['texts']} texts ({conflicts['rows']} rows)")
    for example in conflicts["examples"]:
        text = next(place["text"] for label in example["labels"] for place in label["at"])
        lines.append(
            f"    {shown(text)!r}: "
            + "; ".join(f"{label['label']} at " + ", ".join(map(where, label["at"])) for label in example["labels"])
        )
    labels = report["labels"]
    lines.append("labels:")
    for split, counts in labels["counts"].items():
        lines.append(f"  {split}: " + ", ".join(f"{label} {count:,}" for label, count in counts.items()))
    for split, missing in labels["missing"].items():
        lines.append(f"  {split} lacks training label(s): {', '.join(missing)}")
    for split, unseen in labels["unseen"].items():
        lines.append(f"  {split} has label(s) training never has: {', '.join(unseen)}")
    lines.append(f"  imbalance (largest / smallest training class): {labels['imbalance_ratio']}")
    if "hint" in labels:
        lines.append(f"  hint: {labels['hint']}")
    lengths = report["lengths"]
    lines.append(f"token lengths (max_length {lengths['max_length']}):")
    longer = "longer than max_length, read in windows" if lengths.get("read_in_windows") else "truncated"
    for split, values in lengths["splits"].items():
        lines.append(
            f"  {split}: median {values['p50']}, p90 {values['p90']}, p95 {values['p95']}, p99 {values['p99']}, max "
            f"{values['max']}; {values['truncated']:.1%} {longer} ({values['truncated_rows']:,} rows)"
            + first_texts_cut(lengths, split, "rows")
        )
    lines.append(f"  max_length {lengths['max_length_for_95_percent']} keeps 95% of the training texts whole")
    for split, empty in report["empty"].items():
        lines.append(
            f"  empty after normalisation in {split}: {empty['rows']}: "
            + ", ".join(where(example["at"][0]) for example in empty["examples"])
        )
    if "near_duplicates" in report:
        near = report["near_duplicates"]
        lines.append(f"near-duplicates (similarity >= {near['threshold']}, {near['method']}):")
        for name, found in near["found"].items():
            first, _, second = name.partition("/")
            title = f"{second} rows near a {first} text" if second else f"within {first}"
            lines.append(f"  {title}: {found['rows']}")
            lines += [
                f"    {example['similarity']:.2f} {shown(example['at'][-1]['text'])!r}: "
                + ", ".join(map(where, example["at"]))
                for example in found["examples"]
            ]
    if "label_errors" in report:
        errors = report["label_errors"]
        cv = errors["cross_validation"]
        lines.append(
            f"likely label errors: {errors['flagged']} rows flagged ({cv['folds']}-fold cross-validation of the "
            f"baseline on {cv['rows']:,} rows: accuracy {cv['accuracy_mean']:.4f} ± {cv['accuracy_std']:.4f})"
        )
        for row in errors["top"][:10]:
            lines.append(
                f"    {where(row['at'][0])}: {shown(row['at'][0]['text'])!r} labelled {row['label']}, "
                f"predicted {row['predicted']} ({row['predicted_probability']:.2f})"
            )
    found = report["problems"]
    lines.append(f"problems: {len(found)}" + "".join(f"\n  - {problem}" for problem in found))
    return lines


def write_review(path: Path, report: dict) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "line", "split", "label", "predicted", "predicted_probability", "quality", "text"])
        for row in report["label_errors"]["top"]:
            place = row["at"][0]
            writer.writerow(
                [
                    place["file"],
                    place["line"],
                    place["split"],
                    row["label"],
                    row["predicted"],
                    row["predicted_probability"],
                    row["quality"],
                    place["text"],
                ]
            )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, train_flags = make_parser().parse_known_args(argv)
    if args.folds < 2 or args.top < 1:
        raise UserError(f"--folds must be at least 2 and --top at least 1; got {args.folds} and {args.top}.")
    if args.near_duplicates is not None and not 0 < args.near_duplicates <= 1:
        raise UserError(f"--near_duplicates takes a similarity between 0 and 1, got {args.near_duplicates}.")
    logging.basicConfig(level=logging.INFO, format="[finetune] %(message)s", stream=sys.stderr)
    model_args, data_args, namespace = read_arguments(args.config, train_flags)
    report, scan = build_report(model_args, data_args, namespace, args)
    if args.review or (args.label_errors and args.output):
        review = Path(args.review) if args.review else Path(args.output).with_name("label_issues.csv")
        if "label_errors" in report:
            write_review(review, report)
            report["label_errors"]["review"] = str(review)
    if args.fix:
        from finetune.check.fix import write_fixed
        from finetune.parsing import given_flags, read_yaml
        from finetune.parsing import make_parser as train_parser

        values = {**(read_yaml(args.config, "Config file") or {}), **given_flags(train_flags, train_parser())}
        report["fix"] = write_fixed(scan, data_args, values, args.fix)
        report["fix"]["folder"] = args.fix
    scan.raw.close()
    print("\n".join(render(report)), file=sys.stderr)
    if "label_errors" in report and "review" in report["label_errors"]:
        print(f"label errors to review: {report['label_errors']['review']}", file=sys.stderr)
    if args.fix:
        print(
            f"cleaned copies in {args.fix} ({sum(f['removed'] for f in report['fix']['files'].values())} rows left "
            f"out, each listed in {args.fix}/fix.json); train on them with --config {args.fix}/config.yaml",
            file=sys.stderr,
        )
    if args.output:
        from finetune.files import write_json_atomically

        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(Path(args.output), json_ready(report))
    return 1 if args.strict and report["problems"] else 0


def first_texts_cut(lengths: dict, split: str, rows: str) -> str:
    """ "; the first text cut to 60 tokens in 12 rows" for pairs in windows whose first text is longer; else ""."""
    cut = lengths["splits"].get(split, {}).get("first_text_cut_rows")
    return f"; the first text cut to {lengths['first_text_cap']} tokens in {cut:,} {rows}" if cut else ""


def json_ready(report: dict) -> dict:
    return json.loads(json.dumps(report, default=str, ensure_ascii=False))


def quick_check(model_args, data_args, training_args, tokenizer) -> list[str]:
    """The short check at the start of finetune train: duplicates, leaks and conflicting labels in a few log
    lines (check: warn), or an error before training when any is found (check: strict). Returns the problems."""
    from finetune.check.scan import scan_splits
    from finetune.data.splits import load_raw_splits

    started = time.monotonic()
    raw = load_raw_splits(data_args, seed=training_args.seed)
    try:
        scan = scan_splits(raw, tokenizer, text_columns(data_args), char_level(model_args))
        report = run_findings(scan, data_args.max_length, windows_first_text_cap(tokenizer, data_args))
    finally:
        raw.close()
    if raw.bad_rows:
        report["bad_rows"] = {"rows": len(raw.bad_rows)}
    found = problems(report)
    train_lengths = report["lengths"]["splits"]["train"]
    summary = f"{train_lengths['truncated']:.1%} of training texts longer than max_length {data_args.max_length} " + (
        f"(read in windows{first_texts_cut(report['lengths'], 'train', 'training rows')})"
        if data_args.long_text == "windows"
        else f"({report['lengths']['max_length_for_95_percent']} keeps 95% whole; long_text: windows reads all)"
    )
    if not found:
        logger.info(
            "check: no duplicates, leaks or conflicting labels; %s (%.1f s)", summary, time.monotonic() - started
        )
        return found
    if training_args.check == "strict":
        raise UserError(
            "check: strict: the data has problems:\n  - "
            + "\n  - ".join(found)
            + "\nfinetune check --config CONFIG shows each with its file and line (and --fix DIR writes cleaned copies)."
        )
    logger.warning("check: %s; %s", "; ".join(found), summary)
    logger.warning("check: finetune check --config CONFIG shows each with its file and line")
    return found
