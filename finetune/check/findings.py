"""What a check finds in the hashes, labels and lengths of a scan: duplicates, leaks, conflicts, labels, lengths.

Every count is computed over whole arrays with numpy; examples (the first few of each finding, in file order) are
rows, whose file and line the Locator finds once all findings are known.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from finetune.check.scan import Scan

EXAMPLES = 5  # examples shown per finding
LINES_PER_EXAMPLE = 4  # rows named per example
PERCENTILES = (50, 90, 95, 99)
KEEP_WHOLE = 0.95  # the share of texts the suggested max_length keeps whole
IMBALANCE_HINT = 3.0  # a largest / smallest class ratio from which class_weights is suggested


def duplicate_groups(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hashes seen more than once (empty texts aside) and how often each is seen, ordered by first row."""
    values, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    repeated = (counts > 1) & (values != 0)
    order = np.argsort(first[repeated], kind="stable")
    return values[repeated][order], counts[repeated][order]


def rows_of(hashes: np.ndarray, value: int, limit: int = LINES_PER_EXAMPLE) -> list[int]:
    return np.flatnonzero(hashes == value)[:limit].tolist()


def within_split_duplicates(scan: Scan) -> dict:
    """Rows whose text is already in the same split, above its first copy."""
    found = {}
    for split, split_scan in scan.splits.items():
        values, counts = duplicate_groups(split_scan.hashes)
        examples = [
            {"_rows": {split: rows_of(split_scan.hashes, value)}, "copies": int(count)}
            for value, count in zip(values[:EXAMPLES].tolist(), counts[:EXAMPLES].tolist(), strict=True)
        ]
        found[split] = {"rows": int((counts - 1).sum()), "texts": len(values), "examples": examples}
    return found


def cross_split_duplicates(scan: Scan) -> dict:
    """For each pair of splits (train/validation, train/test, validation/test): the rows of the second whose text
    is in the first, a leak that makes the second split's scores read higher than they are."""
    found = {}
    for first, second in combinations(scan.splits, 2):
        earlier, later = scan.splits[first].hashes, scan.splits[second].hashes
        leaked = np.isin(later, earlier) & (later != 0)
        rows = np.flatnonzero(leaked)
        examples, shown = [], set()
        for row in rows.tolist():
            value = int(later[row])
            if value in shown:
                continue
            shown.add(value)
            examples.append({"_rows": {first: rows_of(earlier, value, 2), second: [row]}})
            if len(examples) == EXAMPLES:
                break
        found[f"{first}/{second}"] = {
            "rows": len(rows),
            "texts": len(np.unique(later[rows])),
            "examples": examples,
        }
    return found


def conflicts(scan: Scan) -> dict:
    """Texts given different labels (within a split or across splits), with the rows of each label."""
    names = list(scan.splits)
    hashes = np.concatenate([scan.splits[name].hashes for name in names])
    labels = np.concatenate([scan.splits[name].labels for name in names]).astype(np.int64)
    split_of = np.repeat(np.arange(len(names)), [len(scan.splits[name].hashes) for name in names])
    pairs = np.unique(np.stack([hashes, labels.astype(np.uint64)], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != 0]
    values, counts = np.unique(pairs[:, 0], return_counts=True)
    conflicting = values[counts > 1]
    involved = np.isin(hashes, conflicting)
    examples, shown = [], set()
    for position in np.flatnonzero(involved).tolist():  # the first conflicts in file order, train first
        value = int(hashes[position])
        if value in shown:
            continue
        shown.add(value)
        by_label: dict[int, dict[str, list[int]]] = {}
        for _index, name in enumerate(names):
            split_scan = scan.splits[name]
            for row in np.flatnonzero(split_scan.hashes == value).tolist():
                rows = by_label.setdefault(int(split_scan.labels[row]), {})
                if sum(map(len, rows.values())) < LINES_PER_EXAMPLE:
                    rows.setdefault(name, []).append(row)
        examples.append(
            {"labels": [{"label": label_name(scan, label), "_rows": rows} for label, rows in by_label.items()]}
        )
        if len(examples) == EXAMPLES:
            break
    per_split = {name: int(involved[split_of == index].sum()) for index, name in enumerate(names)}
    return {"texts": len(conflicting), "rows": int(involved.sum()), "rows_per_split": per_split, "examples": examples}


def label_name(scan: Scan, label_id: int):
    key = scan.label_keys[label_id]
    return list(key) if isinstance(key, tuple) else key


def label_counts(scan: Scan, split: str) -> dict:
    """Rows per label (per label of the lists, for multi-label data), as label name -> count."""
    counts = np.bincount(scan.splits[split].labels, minlength=len(scan.label_keys))
    totals: dict = {}
    for label_id, count in enumerate(counts.tolist()):
        if not count:
            continue
        key = scan.label_keys[label_id]
        for label in key if isinstance(key, tuple) else (key,):
            totals[label] = totals.get(label, 0) + count
    return {str(label): totals[label] for label in sorted(totals, key=lambda label: (str(type(label)), label))}


def labels(scan: Scan) -> dict:
    """Counts per split, training labels a split lacks, labels training never has, and the imbalance."""
    counts = {split: label_counts(scan, split) for split in scan.splits}
    training = [str(label) for label in scan.raw.label_list]
    missing = {split: [label for label in training if label not in counts[split]] for split in scan.splits}
    unseen = {split: [label for label in counts[split] if label not in training] for split in scan.splits}
    train_counts = [counts["train"][label] for label in training if label in counts["train"]]
    ratio = max(train_counts) / min(train_counts) if train_counts else 1.0
    result = {
        "counts": counts,
        "missing": {split: values for split, values in missing.items() if values},
        "unseen": {split: values for split, values in unseen.items() if values},
        "imbalance_ratio": round(ratio, 2),
    }
    if ratio >= IMBALANCE_HINT and not scan.raw.multi_label:
        result["hint"] = (
            f"the largest training class has {ratio:.1f}x the rows of the smallest; class_weights: balanced weighs "
            "the loss by inverse class frequency (or give weights by label name)"
        )
    return result


def lengths(scan: Scan, max_length: int, first_text_cap: int | None = None) -> dict:
    """Token length percentiles per split, the share that ``max_length`` cuts, the max_length that keeps 95% of
    the training texts whole, and texts left empty by the tokenizer's normalisation. With ``first_text_cap`` (pairs
    read in windows), the rows whose first text is longer, and so cut to it."""
    per_split = {}
    for split, split_scan in scan.splits.items():
        values = split_scan.lengths
        if not len(values):
            continue
        percentiles = np.percentile(values, PERCENTILES, method="higher")
        per_split[split] = {
            **{f"p{p}": int(v) for p, v in zip(PERCENTILES, percentiles.tolist(), strict=True)},
            "max": int(values.max()),
            "mean": round(float(values.mean()), 1),
            "truncated_rows": int((values > max_length).sum()),
            "truncated": round(float((values > max_length).mean()), 4),
            "empty_rows": int((split_scan.hashes == 0).sum()),
        }
        if first_text_cap is not None and split_scan.first_lengths is not None:
            per_split[split]["first_text_cut_rows"] = int((split_scan.first_lengths > first_text_cap).sum())
    train = scan.splits["train"].lengths
    keep = int(np.quantile(train, KEEP_WHOLE, method="higher")) if len(train) else max_length
    found = {"max_length": max_length, "splits": per_split, "max_length_for_95_percent": keep}
    return found if first_text_cap is None else {**found, "first_text_cap": first_text_cap}


def empty_rows(scan: Scan) -> dict:
    """Rows whose text the tokenizer's normalisation leaves empty, with the first few."""
    found = {}
    for split, split_scan in scan.splits.items():
        rows = np.flatnonzero(split_scan.hashes == 0)
        if len(rows):
            found[split] = {
                "rows": len(rows),
                "examples": [{"_rows": {split: [row]}} for row in rows[:EXAMPLES].tolist()],
            }
    return found
