"""The tokenized-data cache: hits across processes, misses that say why, and `finetune cache list|inspect|clean`."""

import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import REPO, read_jsonl

from finetune.cache import main as cache_main
from finetune.config import DataArguments
from finetune.data import load_raw_splits, tokenize_splits
from finetune.tokenizer import build_vocab_tokenizer
from finetune.train import main as train_main

# The smallest run that goes through the whole training driver.
TINY_RUN = [
    "--embedding_dim", "8",
    "--num_filters", "4",
    "--kernel_sizes", "1", "2",
    "--max_length", "64",
    "--max_steps", "1",
    "--eval_strategy", "no",
    "--save_strategy", "no",
    "--load_best_model_at_end", "false",
    "--disable_tqdm", "true",
]  # fmt: skip


def train_in_new_process(reviews, cache_root: Path, output_dir: Path) -> str:
    command = [sys.executable, "-m", "finetune", "train", *TINY_RUN]
    command += ["--train_file", str(reviews["train"]), "--validation_file", str(reviews["validation"])]
    command += ["--cache_dir", str(cache_root), "--output_dir", str(output_dir)]
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A cache made by two real training runs, in two fresh processes, with the same inputs."""
    from conftest import FIXTURES

    reviews = {split: FIXTURES / f"reviews_{split}.jsonl" for split in ("train", "validation")}
    root = tmp_path_factory.mktemp("trained")
    first = train_in_new_process(reviews, root / "cache", root / "first")
    second = train_in_new_process(reviews, root / "cache", root / "second")
    return root / "cache", first, second


@pytest.fixture
def cache_root(trained, tmp_path) -> Path:
    """A private copy of the trained cache, for tests that change it."""
    copy = tmp_path / "cache"
    shutil.copytree(trained[0], copy, symlinks=True)
    return copy


@pytest.fixture
def cache_log(finetune_log):
    """The messages tokenize_splits logs."""
    return finetune_log


def run_cache(capsys, *argv: str) -> str:
    assert cache_main(list(argv)) == 0
    return capsys.readouterr().out


def files_in(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def manifests(cache_root: Path) -> dict[str, Path]:
    """Manifest path by split (each test cache holds one entry per split)."""
    return {json.loads(path.read_text())["split"]: path for path in (cache_root / "finetune").glob("tokenized-*.json")}


def prepared_indexes(cache_root: Path) -> list[Path]:
    return sorted((cache_root / "finetune").glob("prepared-*.json"))


def tokenizer_calls(log: str, split: str) -> list[int]:
    """The tokenizer call counts that tokenize_splits logged for a split."""
    return [int(count) for count in re.findall(rf"{split}: \d+ rows; tokenizer calls in this process: (\d+)", log)]


def set_last_used(manifest: Path, days_ago: float) -> None:
    value = json.loads(manifest.read_text())
    value["last_used"] = (datetime.now(timezone.utc) - timedelta(days=days_ago)).isoformat(timespec="seconds")
    manifest.write_text(json.dumps(value))


def test_second_process_hits_and_never_calls_the_tokenizer(trained):
    _, first, second = trained
    for split in ("train", "validation"):
        assert f"{split}: cache miss" in first and f"{split}: cache hit" not in first
        assert f"{split}: cache hit" in second and f"{split}: cache miss" not in second
        assert tokenizer_calls(second, split) == [0], second
    assert tokenizer_calls(first, "train") == [1]  # 200 rows, one batch of up to 1000
    # The second run found the prepared data: it neither read the files nor built the vocabulary.
    assert "prepared data: no index" in first and "prepared data: hit prepared-" in second


def tokenize(files: dict, tokenizer, cache_dir: Path, **overrides):
    args = DataArguments(train_file=str(files["train"]), validation_file=str(files["validation"]), **overrides)
    raw = load_raw_splits(args, seed=0)
    tokenizer = tokenizer or build_vocab_tokenizer(raw.splits["train"]["text"])
    return raw, tokenizer, tokenize_splits(raw, tokenizer, args, cache_dir)


def test_content_change_with_the_old_mtime_is_a_miss_and_the_new_rows_are_tokenized(reviews, tmp_path, cache_log):
    files = {split: shutil.copy(reviews[split], tmp_path / reviews[split].name) for split in ("train", "validation")}
    _, tokenizer, _ = tokenize(files, None, tmp_path / "cache")
    train = Path(files["train"])
    rows = read_jsonl(train)
    rows[0]["text"] = rows[0]["text"][::-1]  # same characters, so same size and the same vocabulary
    before = train.stat()
    train.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    os.utime(train, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (train.stat().st_size, train.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    cache_log.clear()
    _, _, tokenized = tokenize(files, tokenizer, tmp_path / "cache")
    miss = next(message for message in cache_log if message.startswith("train: cache"))
    assert "train: cache miss" in miss and f"content of {train.name} changed" in miss, cache_log
    assert any(message.startswith("validation: cache hit") for message in cache_log), cache_log
    expected = unicodedata.normalize("NFKC", rows[0]["text"]).lower()
    assert tokenizer.decode(tokenized["train"][0]["input_ids"]) == expected


def test_each_input_change_is_a_miss_that_names_it(reviews, tmp_path, cache_log):
    files = {split: shutil.copy(reviews[split], tmp_path / reviews[split].name) for split in ("train", "validation")}
    cache_dir = tmp_path / "cache"
    raw, tokenizer, _ = tokenize(files, None, cache_dir, max_length=64)

    def last_message(split: str) -> str:
        return [message for message in cache_log if message.startswith(f"{split}: cache")][-1]

    tokenize(files, tokenizer, cache_dir, max_length=64)
    assert last_message("train").startswith("train: cache hit")

    smaller = build_vocab_tokenizer(raw.splits["train"]["text"], max_vocab_size=20)
    tokenize(files, smaller, cache_dir, max_length=64)
    assert "train: cache miss" in last_message("train") and "tokenizer" in last_message("train")
    assert f"{len(tokenizer)} tokens" in last_message("train") and "20 tokens" in last_message("train")

    tokenize(files, tokenizer, cache_dir, max_length=32)
    assert "max_length 64 -> 32" in last_message("validation")

    # A new label in the training data changes the label map of the untouched validation file.
    with open(files["train"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"text": "一般般", "label": "neutral"}, ensure_ascii=False) + "\n")
    tokenize(files, tokenizer, cache_dir, max_length=32)
    assert "labels [negative, positive] -> [negative, neutral, positive]" in last_message("validation")
    assert "content of reviews_train.jsonl changed" in last_message("train")

    cache_log.clear()
    tokenize(files, tokenizer, cache_dir, max_length=32, overwrite_cache=True)
    assert last_message("train").startswith("train: cache rebuild")
    assert tokenizer_calls("\n".join(cache_log), "train") == [1]


def test_a_hit_updates_last_used(reviews, tmp_path):
    files = {split: reviews[split] for split in ("train", "validation")}
    _, tokenizer, _ = tokenize(files, None, tmp_path / "finetune")
    manifest = manifests(tmp_path)["train"]
    set_last_used(manifest, days_ago=3)
    tokenize(files, tokenizer, tmp_path / "finetune")
    last_used = datetime.fromisoformat(json.loads(manifest.read_text())["last_used"])
    assert datetime.now(timezone.utc) - last_used < timedelta(minutes=5)


def test_list_shows_the_entries_of_real_runs(cache_root, reviews, capsys):
    listing = run_cache(capsys, "list", "--cache_dir", str(cache_root))
    assert "KEY" in listing and "LAST USED" in listing
    assert "reviews_train.jsonl" in listing and "reviews_validation.jsonl" in listing
    assert "total: 2 entries, 1 saved tokenizers, 1 prepared-data indexes, 0 orphans" in listing

    report = json.loads(run_cache(capsys, "list", "--json", "--cache_dir", str(cache_root)))
    entries = {entry["split"]: entry for entry in report["entries"]}
    assert set(entries) == {"train", "validation"}
    assert entries["train"]["rows"] == 200 and entries["validation"]["rows"] == 50
    assert entries["train"]["inputs"]["data_file"] == str(reviews["train"].resolve())
    assert entries["train"]["inputs"]["max_length"] == 64
    assert entries["train"]["inputs"]["labels"] == ["negative", "positive"]
    arrow = cache_root / "finetune" / entries["train"]["files"][0]
    assert entries["train"]["size_bytes"] >= arrow.stat().st_size > 0
    [prepared] = report["prepared"]
    assert prepared["splits"] == {split: entry["key"] for split, entry in entries.items()}
    assert prepared["labels"] == ["negative", "positive"] and not report["orphans"]
    assert report["total_bytes"] == sum(path.stat().st_size for path in cache_root.rglob("*") if path.is_file())


def test_inspect_decodes_the_first_examples(cache_root, reviews, capsys):
    key = json.loads(run_cache(capsys, "list", "--json", "--cache_dir", str(cache_root)))["entries"]
    train_key = next(entry["key"] for entry in key if entry["split"] == "train")
    shown = run_cache(capsys, "inspect", train_key[:10], "--cache_dir", str(cache_root))
    assert f'"key": "{train_key}"' in shown and "input_ids" in shown and "decoded:" in shown
    first = read_jsonl(reviews["train"])[0]
    assert f"label={first['label']}" in shown
    assert unicodedata.normalize("NFKC", first["text"]).lower()[:20] in shown

    shutil.rmtree(cache_root / "finetune" / "tokenizers")
    shown = run_cache(capsys, "inspect", train_key, "--cache_dir", str(cache_root))
    assert "token ids: its tokenizer is not saved" in shown


def test_clean_dry_run_removes_nothing(cache_root, capsys):
    before = files_in(cache_root)
    shown = run_cache(capsys, "clean", "--all", "--dry_run", "--cache_dir", str(cache_root))
    assert shown.count("would remove") == 4  # two entries, the prepared-data index and the tokenizer they share
    assert files_in(cache_root) == before


@pytest.mark.parametrize("days", ["nan", "inf", "-1", "soon"])
def test_clean_older_than_takes_a_number_of_days(cache_root, capsys, days):
    with pytest.raises(SystemExit) as exit_:
        cache_main(["clean", "--older_than", days, "--cache_dir", str(cache_root)])
    assert exit_.value.code == 2 and "expected a number of days" in capsys.readouterr().err


def test_clean_orphans_removes_leftovers_and_entries_whose_file_is_gone(cache_root, capsys, tmp_path):
    directory = cache_root / "finetune"
    (directory / "tmpk3x9_q1f").write_bytes(b"\0" * 1000)  # what datasets leaves when a map is interrupted
    validation = manifests(cache_root)["validation"]
    moved = json.loads(validation.read_text())
    moved["inputs"]["data_file"] = str(tmp_path / "deleted.jsonl")
    moved["data_files"] = [str(tmp_path / "deleted.jsonl")]
    validation.write_text(json.dumps(moved))

    listing = run_cache(capsys, "list", "--cache_dir", str(cache_root))
    assert "tmpk3x9_q1f" in listing and "temporary file of an interrupted run" in listing
    assert "its data file no longer exists" in listing and "2 orphans" in listing

    shown = run_cache(capsys, "clean", "--orphans", "--cache_dir", str(cache_root))
    assert not (directory / "tmpk3x9_q1f").exists() and not validation.exists()
    assert "freed" in shown and "removed tmpk3x9_q1f" in shown
    assert list(manifests(cache_root)) == ["train"]
    assert not prepared_indexes(cache_root)  # it named the removed validation entry


def test_an_entry_still_used_by_another_file_with_the_same_rows_is_not_an_orphan(reviews, tmp_path, capsys):
    # Entries are keyed by content: a run on a copy of the data uses the same entries and records its file, so
    # deleting the file that first made them leaves them in use.
    copies = {}
    for name in ("first", "second"):
        copies[name] = {split: tmp_path / f"{name}-{split}.jsonl" for split in ("train", "validation")}
        for split, path in copies[name].items():
            path.write_bytes(reviews[split].read_bytes())
    cache_root = tmp_path / "cache"
    for name in ("first", "second"):
        files = ["--train_file", str(copies[name]["train"]), "--validation_file", str(copies[name]["validation"])]
        output = ["--cache_dir", str(cache_root), "--output_dir", str(tmp_path / f"run-{name}")]
        assert train_main([*TINY_RUN, *files, *output]) == 0
    train_manifest = json.loads(manifests(cache_root)["train"].read_text())
    assert len(manifests(cache_root)) == 2
    assert train_manifest["data_files"] == [str(copies[name]["train"].resolve()) for name in ("first", "second")]

    for path in copies["first"].values():
        path.unlink()
    run_cache(capsys, "clean", "--orphans", "--cache_dir", str(cache_root))
    assert set(manifests(cache_root)) == {"train", "validation"}  # the second copy still uses them
    for path in copies["second"].values():
        path.unlink()
    assert "its data file no longer exists" in run_cache(capsys, "list", "--cache_dir", str(cache_root))
    run_cache(capsys, "clean", "--orphans", "--cache_dir", str(cache_root))
    assert not manifests(cache_root)


def test_an_index_whose_entry_is_gone_is_an_orphan(cache_root, capsys):
    [index] = prepared_indexes(cache_root)
    for path in (cache_root / "finetune").glob("tokenized-validation-*"):
        path.unlink()
    listing = run_cache(capsys, "list", "--cache_dir", str(cache_root))
    assert f"orphan: {index.name}" in listing and "prepared-data index whose entries" in listing, listing
    assert "0 prepared-data indexes, 1 orphans" in listing
    run_cache(capsys, "clean", "--orphans", "--cache_dir", str(cache_root))
    assert not index.exists() and list(manifests(cache_root)) == ["train"]


def test_clean_older_than_removes_entries_unused_for_that_long(cache_root, capsys):
    entries = manifests(cache_root)
    set_last_used(entries["validation"], days_ago=10)
    set_last_used(entries["train"], days_ago=2)
    run_cache(capsys, "clean", "--older_than", "30", "--cache_dir", str(cache_root))
    assert set(manifests(cache_root)) == {"train", "validation"}
    run_cache(capsys, "clean", "--older_than", "5", "--cache_dir", str(cache_root))
    assert set(manifests(cache_root)) == {"train"}


def test_clean_max_size_removes_least_recently_used_first(cache_root, capsys):
    entries = manifests(cache_root)
    set_last_used(entries["validation"], days_ago=1)
    total = json.loads(run_cache(capsys, "list", "--json", "--cache_dir", str(cache_root)))["total_bytes"]
    shown = run_cache(capsys, "clean", "--max_size", str(total - 1), "--cache_dir", str(cache_root))
    assert set(manifests(cache_root)) == {"train"} and "removed validation-" in shown
    assert (cache_root / "finetune" / "tokenizers").is_dir()  # the train entry still uses it
    run_cache(capsys, "clean", "--max_size", "0B", "--cache_dir", str(cache_root))
    assert files_in(cache_root / "finetune") == ["tokenizers"]


def test_clean_never_removes_anything_outside_the_cache(cache_root, capsys, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.arrow").write_bytes(b"keep me")
    directory = cache_root / "finetune"
    (directory / "tmpescape").symlink_to(outside / "precious.arrow")
    (directory / "tokenized-train-0000000000000000.arrow").symlink_to(outside / "precious.arrow")
    (directory / "tokenizers" / "escape").symlink_to(outside, target_is_directory=True)
    forged = {"key": "train-1111111111111111", "split": "train", "files": [str(outside / "precious.arrow")]}
    (directory / "tokenized-train-1111111111111111.json").write_text(json.dumps(forged))

    shown = run_cache(capsys, "clean", "--all", "--cache_dir", str(cache_root))
    assert (outside / "precious.arrow").read_bytes() == b"keep me"
    assert shown.count("refused") == 3, shown
    assert files_in(outside) == ["precious.arrow"]


def test_clean_needs_an_option_and_a_valid_size(cache_root, capsys):
    from finetune.cli import main as cli_main

    assert cli_main(["cache", "clean", "--cache_dir", str(cache_root)]) == 2
    assert "Say what to remove" in capsys.readouterr().err
    assert cli_main(["cache", "clean", "--max_size", "lots", "--cache_dir", str(cache_root)]) == 2
    assert "500MB" in capsys.readouterr().err


def test_old_hyphenated_clean_flags_still_work(cache_root, capsys):
    before = files_in(cache_root)
    assert cache_main(["clean", "--all", "--dry-run", "--max-size=1GB", "--cache_dir", str(cache_root)]) == 0
    shown = capsys.readouterr()
    assert shown.out.count("would remove") == 4 and files_in(cache_root) == before
    assert "--dry-run is now spelt --dry_run" in shown.err and "--max-size is now spelt --max_size" in shown.err
