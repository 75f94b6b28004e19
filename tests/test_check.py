"""finetune check on files with problems planted in them: every count exact, every file and line right."""

import csv
import hashlib
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import QUICK_TEXTCNN, read_jsonl

from finetune.check import main as check_main
from finetune.cli import main as cli_main
from finetune.train import main as train_main

CONFIG = "configs/textcnn.yaml"
LEAKED = 4  # train rows copied into test
CONFLICTS = 3  # train texts written again with the other label
REPEATED = 2  # train rows written twice with the same label
LONG = 5  # texts longer than max_length
MAX_LENGTH = 40
SUBJECTS = "酒店 房间 手机 屏幕 快递 服务 早餐 电池 键盘 书 衣服 鞋子 电影 音乐 餐厅".split()
GOOD = "很好 超赞 满意 值得推荐 不错 喜欢".split()
BAD = "太差 糟糕 失望 不推荐 难用 太烂".split()


def distinct_rows(count: int, seed: int, start: int) -> list[dict]:
    """Reviews that are all different: a numbered subject with a good or a bad word."""
    generator = random.Random(seed)
    rows = []
    for index in range(start, start + count):
        positive = index % 2 == 0
        word = generator.choice(GOOD if positive else BAD)
        rows.append({"text": f"第{index}号{generator.choice(SUBJECTS)}{word}", "label": "pos" if positive else "neg"})
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def csv_lines(rows: list[dict]) -> list[int]:
    """The line each row of a csv file written by write_csv starts on (a text may span lines)."""
    lines, line = [], 2
    for row in rows:
        lines.append(line)
        line += row["text"].count("\n") + 1
    return lines


@pytest.fixture
def planted(tmp_path) -> dict:
    """train.csv, validation.jsonl and test.jsonl with known problems, and where each problem is."""
    train = distinct_rows(120, seed=1, start=0)
    train[10]["text"] = "第10号酒店\n跨两行的评论很好"  # a quoted text over two lines: csv line numbers shift after it
    validation = distinct_rows(30, seed=2, start=1000)
    test = distinct_rows(30, seed=3, start=2000)
    leaked = [20, 35, 50, 65]
    test += [dict(train[row]) for row in leaked]
    conflicted = [30, 31, 32]
    for row in conflicted:
        flipped = "neg" if train[row]["label"] == "pos" else "pos"
        train.append({"text": train[row]["text"], "label": flipped})
    repeated = [40, 41]
    train += [dict(train[row]) for row in repeated]
    long_rows = [100, 101, 102, 103, 104]
    for row in long_rows:
        train[row]["text"] = f"第{row}号" + "房间很干净" * 20
    # Normalisation: full-width letters and upper case read as the same text (NFKC, lowercase).
    validation.append({"text": "ＧＯＯＤ第5号好", "label": "pos"})
    train.append({"text": "good第5号好", "label": "pos"})
    validation.append({"text": "第1001号服务不错", "label": "neutral"})  # a label only validation has
    paths = {
        "train": tmp_path / "train.csv",
        "validation": tmp_path / "validation.jsonl",
        "test": tmp_path / "test.jsonl",
    }
    write_csv(paths["train"], train)
    write_jsonl(paths["validation"], validation)
    write_jsonl(paths["test"], test)
    return {
        "paths": paths,
        "train": train,
        "train_lines": csv_lines(train),
        "leaked": leaked,
        "conflicted": conflicted,
        "repeated": repeated,
        "long_rows": long_rows,
        "test_rows": len(test),
    }


def check_flags(paths: dict, tmp_path: Path) -> list[str]:
    return [
        "--config", CONFIG,
        "--train_file", str(paths["train"]),
        "--validation_file", str(paths["validation"]),
        "--test_file", str(paths["test"]),
        "--cache_dir", str(tmp_path / "cache"),
        "--max_length", str(MAX_LENGTH),
        "--min_frequency", "1",
    ]  # fmt: skip


def run_check(flags: list[str], tmp_path: Path, *more: str) -> tuple[int, dict]:
    output = tmp_path / "report.json"
    status = check_main([*flags, "--output", str(output), *more])
    return status, json.loads(output.read_text(encoding="utf-8"))


def places(example: dict) -> list[tuple[str, int]]:
    return [(Path(place["file"]).name, place["line"]) for place in example["at"]]


def test_planted_problems_are_counted_exactly_with_file_and_line(planted, tmp_path):
    status, report = run_check(check_flags(planted["paths"], tmp_path), tmp_path)
    assert status == 0  # problems found, but not --strict
    lines = planted["train_lines"]
    train_rows = len(planted["train"])
    assert report["rows"] == {"train": train_rows, "validation": 32, "test": planted["test_rows"]}

    leaks = report["duplicates"]["across"]
    assert leaks["train/test"]["rows"] == LEAKED and leaks["train/test"]["texts"] == LEAKED
    assert leaks["train/validation"]["rows"] == 1  # the full-width upper-case copy of a training text
    assert leaks["validation/test"]["rows"] == 0
    first_leak = leaks["train/test"]["examples"][0]
    assert places(first_leak) == [("train.csv", lines[planted["leaked"][0]]), ("test.jsonl", 31)]
    assert first_leak["at"][0]["text"] == planted["train"][planted["leaked"][0]]["text"]
    assert places(leaks["train/validation"]["examples"][0]) == [("train.csv", lines[-1]), ("validation.jsonl", 31)]

    within = report["duplicates"]["within"]
    # Conflicting copies are duplicate texts too; repeated copies carry the same label.
    assert within["train"]["rows"] == CONFLICTS + REPEATED
    assert within["validation"]["rows"] == 0 and within["test"]["rows"] == 0
    repeat = next(example for example in within["train"]["examples"] if example["at"][0]["line"] == lines[40])
    assert places(repeat) == [("train.csv", lines[40]), ("train.csv", lines[120 + CONFLICTS])]

    conflicts = report["conflicts"]
    assert conflicts["texts"] == CONFLICTS and conflicts["rows"] == 2 * CONFLICTS
    example = conflicts["examples"][0]
    by_label = {label["label"]: places(label) for label in example["labels"]}
    original = planted["train"][30]["label"]
    flipped = "neg" if original == "pos" else "pos"
    assert by_label == {original: [("train.csv", lines[30])], flipped: [("train.csv", lines[120])]}

    labels = report["labels"]
    assert labels["unseen"] == {"validation": ["neutral"]}
    assert labels["counts"]["validation"]["neutral"] == 1
    assert labels["counts"]["train"] == {
        label: sum(row["label"] == label for row in planted["train"]) for label in ("neg", "pos")
    }
    assert not labels["missing"]

    lengths = report["lengths"]["splits"]["train"]
    assert lengths["truncated_rows"] == LONG
    assert lengths["truncated"] == round(LONG / train_rows, 4)
    assert lengths["max"] == len(planted["train"][100]["text"])  # a character tokenizer: one token a character
    assert report["lengths"]["splits"]["test"]["truncated_rows"] == 0
    assert any("also in train" in problem for problem in report["problems"])


def test_long_texts_read_in_windows_are_not_called_truncated(planted, tmp_path, capsys):
    _, report = run_check([*check_flags(planted["paths"], tmp_path), "--long_text", "windows"], tmp_path)
    assert report["lengths"]["read_in_windows"] and report["lengths"]["splits"]["train"]["truncated_rows"] == LONG
    shown = capsys.readouterr().err
    assert f"longer than max_length, read in windows ({LONG:,} rows)" in shown and "truncated (" not in shown


def test_exit_codes_strict_and_bad_input(planted, tmp_path, capsys):
    flags = check_flags(planted["paths"], tmp_path)
    assert check_main([*flags, "--strict"]) == 1
    assert "problems: " in capsys.readouterr().err

    clean = {split: tmp_path / f"clean_{split}.jsonl" for split in ("train", "validation", "test")}
    for (_split, path), seed in zip(clean.items(), (1, 2, 3), strict=True):
        write_jsonl(path, distinct_rows(40, seed=seed, start=1000 * seed))
    assert check_main([*check_flags(clean, tmp_path), "--strict"]) == 0
    assert "problems: 0" in capsys.readouterr().err

    missing = {**clean, "test": tmp_path / "nowhere.jsonl"}
    assert cli_main(["check", *check_flags(missing, tmp_path)]) == 2
    assert "nowhere.jsonl does not exist" in capsys.readouterr().err

    broken = tmp_path / "broken.jsonl"
    broken.write_text(clean["test"].read_text(encoding="utf-8") + '{"text": "坏行", "label": \n', encoding="utf-8")
    assert cli_main(["check", *check_flags({**clean, "test": broken}, tmp_path)]) == 2
    assert f"{broken}, line 41: not valid JSON" in capsys.readouterr().err


def test_fix_writes_clean_copies_and_leaves_the_inputs(planted, tmp_path):
    paths = planted["paths"]
    before = {split: hashlib.sha256(path.read_bytes()).hexdigest() for split, path in paths.items()}
    fixed = tmp_path / "fixed"
    run_check(check_flags(paths, tmp_path), tmp_path, "--fix", str(fixed))
    assert {split: hashlib.sha256(path.read_bytes()).hexdigest() for split, path in paths.items()} == before

    removed = json.loads((fixed / "fix.json").read_text(encoding="utf-8"))["removed"]
    lines = planted["train_lines"]
    train_removed = {row["line"]: row["reason"] for row in removed if row["file"].endswith("train.csv")}
    expected = {lines[row]: "text also in test" for row in planted["leaked"]}
    expected |= {lines[row]: "conflicting labels" for row in planted["conflicted"]}
    expected |= {lines[120 + index]: "conflicting labels" for index in range(CONFLICTS)}
    expected |= {lines[120 + CONFLICTS + index]: "duplicate within train" for index in range(REPEATED)}
    expected[lines[-1]] = "text also in validation"
    assert train_removed == expected

    # The copy is the file without those records, byte for byte (the two-line text included).
    kept = [row for index, row in enumerate(planted["train"]) if lines[index] not in expected]
    copy = tmp_path / "expected.csv"
    write_csv(copy, kept)
    assert (fixed / "train.csv").read_bytes() == copy.read_bytes()

    _, report = run_check(["--config", str(fixed / "config.yaml")], tmp_path)
    assert all(leak["rows"] == 0 for leak in report["duplicates"]["across"].values())
    assert all(split["rows"] == 0 for split in report["duplicates"]["within"].values())
    assert report["conflicts"]["texts"] == 0
    assert report["problems"] == ["validation has label(s) training never has: neutral"]  # not fixable by removal


def test_fix_copies_parquet_and_json_arrays(tmp_path):
    train = distinct_rows(60, seed=1, start=0)
    train += [dict(train[5]), dict(train[6])]
    test = distinct_rows(20, seed=2, start=500) + [dict(train[7])]
    paths = {
        "train": tmp_path / "train.parquet",
        "validation": tmp_path / "validation.json",
        "test": tmp_path / "test.json",
    }
    pq.write_table(pa.Table.from_pylist(train), paths["train"], row_group_size=16)
    validation = distinct_rows(20, seed=3, start=900) + [dict(train[8])]
    paths["validation"].write_text(json.dumps(validation, ensure_ascii=False, indent=1), encoding="utf-8")
    paths["test"].write_text(json.dumps(test, ensure_ascii=False), encoding="utf-8")
    run_check(check_flags(paths, tmp_path), tmp_path, "--fix", str(tmp_path / "fixed"))
    left = pq.read_table(tmp_path / "fixed" / "train.parquet").to_pylist()
    assert left == [row for index, row in enumerate(train[:60]) if index not in (7, 8)]
    assert json.loads((tmp_path / "fixed" / "validation.json").read_text(encoding="utf-8")) == validation
    assert json.loads((tmp_path / "fixed" / "test.json").read_text(encoding="utf-8")) == test


def test_label_errors_finds_flipped_labels(reviews, tmp_path):
    rows = read_jsonl(reviews["train"])
    flipped = [3, 17, 44, 90, 133, 171]
    for row in flipped:
        rows[row]["label"] = "negative" if rows[row]["label"] == "positive" else "positive"
    train = tmp_path / "train.jsonl"
    write_jsonl(train, rows)
    paths = {"train": train, "validation": reviews["validation"], "test": reviews["test"]}
    review = tmp_path / "review.csv"
    _, report = run_check(
        check_flags(paths, tmp_path), tmp_path, "--label_errors", "--folds", "3", "--review", str(review)
    )
    errors = report["label_errors"]
    found = {place["line"] for row in errors["top"] for place in row["at"] if place["split"] == "train"}
    assert len(found & {row + 1 for row in flipped}) >= 5  # lines are 1-based
    top = errors["top"][: len(flipped)]
    assert sum(row["at"][0]["line"] - 1 in flipped for row in top) >= 5
    assert all(row["predicted"] != row["label"] for row in top)
    assert errors["cross_validation"]["folds"] == 3
    with open(review, encoding="utf-8") as handle:
        reviewed = list(csv.DictReader(handle))
    assert len(reviewed) == len(errors["top"])
    assert reviewed[0]["line"] == str(top[0]["at"][0]["line"]) and reviewed[0]["text"] == top[0]["at"][0]["text"]


def test_train_checks_first_and_strict_stops_before_training(planted, data_args, tmp_path, capsys):
    paths = planted["paths"]
    clean_validation = tmp_path / "validation_clean.jsonl"
    write_jsonl(clean_validation, distinct_rows(30, seed=2, start=1000))
    flags = [
        *data_args,
        "--train_file", str(paths["train"]),
        "--validation_file", str(clean_validation),
        "--test_file", str(paths["test"]),
        "--max_length", str(MAX_LENGTH),
        *QUICK_TEXTCNN,
        "--num_train_epochs", "1",
        "--baseline", "none",
    ]  # fmt: skip
    assert cli_main(["train", *flags, "--check", "strict"]) == 2
    error = capsys.readouterr().err
    assert f"{LEAKED} test row(s) also in train" in error and f"{CONFLICTS} text(s) with conflicting labels" in error
    assert not (tmp_path / "run" / "best.json").exists()  # stopped before training

    assert train_main([*flags, "--check", "warn"]) == 0
    warned = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[finetune] check:")]
    assert any(f"{LEAKED} test row(s) also in train" in line for line in warned)
    assert any(
        f"{LONG / len(planted['train']):.1%} of training texts longer than max_length" in line for line in warned
    )
    assert (tmp_path / "run" / "best.json").is_file()


def test_check_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_main(["--help"])
    assert exit_info.value.code == 0 and "--label_errors" in capsys.readouterr().out
    assert cli_main(["check", "--config", CONFIG, "--folds", "1"]) == 2


def test_near_duplicates_within_and_across_splits(tmp_path):
    generator = random.Random(7)
    pool = [chr(code) for code in range(0x4E00, 0x4E00 + 300)]

    def review(label: str) -> dict:
        return {"text": "".join(generator.choices(pool, k=30)), "label": label}

    def edited(row: dict) -> dict:  # the last character changed: 26 of 28 character 4-grams shared
        return {"text": row["text"][:-1] + "好", "label": row["label"]}

    train = [review("pos" if index % 2 else "neg") for index in range(60)]
    validation = [review("pos" if index % 2 else "neg") for index in range(20)]
    test = [review("pos" if index % 2 else "neg") for index in range(20)]
    train += [edited(train[3]), edited(train[4]), dict(train[5])]  # two near copies, one exact copy
    test += [edited(train[10]), edited(train[11]), edited(train[12])]
    paths = {split: tmp_path / f"{split}.jsonl" for split in ("train", "validation", "test")}
    for split, rows in (("train", train), ("validation", validation), ("test", test)):
        write_jsonl(paths[split], rows)
    _, report = run_check(check_flags(paths, tmp_path), tmp_path, "--near_duplicates")
    found = report["near_duplicates"]["found"]
    assert {name: value["rows"] for name, value in found.items()} == {
        "train": 2, "train/validation": 0, "train/test": 3, "validation": 0, "validation/test": 0, "test": 0,
    }  # fmt: skip
    assert report["duplicates"]["within"]["train"]["rows"] == 1  # the exact copy, counted there only
    example = found["train/test"]["examples"][0]
    assert sorted(places(example)) == [("test.jsonl", 21), ("train.jsonl", 11)]
    assert example["similarity"] >= 0.8


def test_a_ctrl_c_that_python_dropped_stops_the_check_at_the_next_batch(planted, tmp_path, monkeypatch, capsys):
    import finetune.check.scan as scan
    from finetune.cli import PRESSED

    batches = []
    arrow_batches = scan.arrow_batches

    def press_ctrl_c_during_the_first(*args, **kwargs):
        for batch in arrow_batches(*args, **kwargs):
            batches.append(batch.num_rows)
            PRESSED.append(2)  # its KeyboardInterrupt dropped, as Python drops one in a garbage-collection callback
            yield batch

    monkeypatch.setattr(scan, "arrow_batches", press_ctrl_c_during_the_first)
    output = tmp_path / "report.json"
    assert cli_main(["check", *check_flags(planted["paths"], tmp_path), "--output", str(output)]) == 130
    assert len(batches) == 1 and not output.exists() and PRESSED == []
    assert "stopped (Ctrl-C)" in capsys.readouterr().err
