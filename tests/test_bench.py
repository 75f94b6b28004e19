"""The GPU benchmark's tiny CPU mode runs and reports every figure, so the script does not rot between GPU runs; every
result the docs quote says when, where and with which libraries it was measured."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO


def test_gpu_benchmark_tiny_mode_runs_on_cpu(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--tiny"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    assert result["device"] == "cpu" and result["precision"] == "fp32"
    eager = result["eager"]
    for name in (
        "samples_per_second",
        "tokens_per_second",
        "step_seconds",
        "achieved_flops_per_second",
        "peak_rss_mb",
    ):
        assert eager[name] > 0, name
    # Both are rounded in the JSON (samples/s to 0.01, tokens/s to 0.1): equal up to that rounding, which matters
    # on a busy machine where a tiny step runs at about one sample a second.
    rounding = 0.005 * result["seq_len"] + 0.05
    assert eager["tokens_per_second"] == pytest.approx(eager["samples_per_second"] * result["seq_len"], abs=rounding)
    assert eager["timed_steps"] == 4
    assert eager["mfu"] is None  # no peak FLOPs for a CPU unless --peak_flops is given


@pytest.mark.parametrize("path", sorted((REPO / "bench" / "results").glob("*.json")), ids=lambda path: path.name)
def test_every_result_file_records_date_machine_and_versions(path):
    result = json.loads(path.read_text(encoding="utf-8"))
    assert result["date"] and result["machine"]["python"] and result["machine"]["cpu_count"]
    versions = result["versions"]
    for library in ("torch", "transformers", "datasets", "accelerate", "tokenizers", "pyarrow", "commit"):
        assert versions[library], f"{path.name} does not record {library}'s version"


@pytest.mark.slow
def test_search_benchmark_tiny_mode_scores_the_winner_and_the_shipped_config(tmp_path):
    def bench_search() -> dict:
        completed = subprocess.run(
            [sys.executable, str(REPO / "bench" / "search.py"), "--tiny", "--work_dir", str(tmp_path)],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        return json.loads(completed.stdout)["corpora"][0]

    corpus = bench_search()
    assert corpus["trials"]["complete"] + corpus["trials"]["pruned"] == 2
    for name in ("winner", "shipped"):
        accuracy = corpus["test_accuracy"][name]
        assert len(accuracy["values"]) == 3 and all(0 < value <= 1 for value in accuracy["values"])
        losses = corpus["test_loss"][name]["values"]
        assert len(losses) == 3 and all(loss > 0 for loss in losses)
    assert corpus["search_seconds"] > 0 and corpus["trial_seconds"] > 0
    assert 0.5 < corpus["test_accuracy"]["baseline"] <= 1
    again = bench_search()  # the finished search in --work_dir is scored again, not searched again
    assert again["search_seconds"] is None and again["trial_seconds"] == corpus["trial_seconds"]
    assert again["test_accuracy"] == corpus["test_accuracy"] and again["test_loss"] == corpus["test_loss"]


def test_short_text_task_cuts_reviews_before_looking_for_duplicates_and_contradictions(tmp_path):
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location("corpora", REPO / "bench" / "corpora.py")
    corpora = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpora)
    rows = [
        ("书籍", "1", "这本书的内容非常丰富，值得一读再读，推荐给大家"),
        ("书籍", "0", "这本书的内容非常丰富，值得一读再读，可惜印刷差"),  # the same first 16 characters: a duplicate
        ("酒店", "1", "\ufeff 房间干净，服务周到，早餐也不错，下次还来"),
        ("平板", "1", "很好用"),
        ("手机", "1", "很好用"),  # the same text under another category: a duplicate, and contradictory
        *[("衣服", "1", f"质量不错，尺码标准，第{index}次买了") for index in range(20)],
    ]
    source = tmp_path / "shopping.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("shopping.csv", "cat,label,review\n" + "".join(f"{c},{s},{t}\n" for c, s, t in rows))
    summary = corpora.prepare_task("shopping_category_short", tmp_path / "out", source=source)
    texts = [
        json.loads(line)["text"]
        for split in corpora.SPLITS
        for line in (tmp_path / "out" / "shopping_category_short" / f"{split}.jsonl").read_text().splitlines()
    ]
    assert summary["duplicates_dropped"] == 2 and summary["contradictory_dropped"] == 1
    assert len(texts) == len(set(texts)) == summary["kept"] == len(rows) - 3
    assert max(len(text) for text in texts) == 16 and "房间干净，服务周到，早餐也不错，" in texts
    assert "很好用" not in texts
