"""finetune export (ONNX, checked against PyTorch; predict and evaluate on the export) and finetune serve (the HTTP
API, its errors, batching under concurrent clients, the page in a real headless Chromium)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUICK_TEXTCNN, REPO, read_jsonl, sentence_pair_files
from test_multilabel import QUICK, run_flags, topics  # noqa: F401  (topics is a fixture)
from test_predict import TEST_FILE, bert_run, textcnn_run  # noqa: F401  (fixtures)

from finetune.cli import main as cli_main
from finetune.evaluation import main as evaluate_main
from finetune.export import main as export_main
from finetune.onnx_model import MANIFEST_FILE, OnnxClassifier
from finetune.predict import Classifier
from finetune.predict import main as predict_main
from finetune.train import main as train_main

pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def multilabel_run(topics, tmp_path_factory) -> Path:  # noqa: F811
    directory = tmp_path_factory.mktemp("multilabel")
    assert train_main(run_flags(topics, directory) + QUICK + ["--threshold", "tune"]) == 0
    return directory / "run"


def export(run: Path, output: Path, *extra: str) -> dict:
    assert export_main(["--model", str(run), "--output", str(output), *extra]) == 0
    return json.loads((output / MANIFEST_FILE).read_text(encoding="utf-8"))


def test_a_ctrl_c_that_python_dropped_stops_the_export_and_writes_nothing(textcnn_run, tmp_path, monkeypatch, capsys):  # noqa: F811
    import finetune.export as export_module
    from finetune.cli import PRESSED

    export_graph = export_module.export_graph

    def export_and_press_ctrl_c(*args, **kwargs):
        names = export_graph(*args, **kwargs)
        PRESSED.append(2)  # its KeyboardInterrupt dropped while the graph was traced
        return names

    monkeypatch.setattr(export_module, "export_graph", export_and_press_ctrl_c)
    output = tmp_path / "exported"
    assert cli_main(["export", "--model", str(textcnn_run), "--output", str(output)]) == 130
    assert not output.exists() and PRESSED == []
    assert "stopped (Ctrl-C)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def textcnn_export(textcnn_run, tmp_path_factory) -> Path:  # noqa: F811
    output = tmp_path_factory.mktemp("exports") / "textcnn"
    export(textcnn_run, output, "--check_file", str(TEST_FILE))
    return output


def predictions(model: Path, tmp_path: Path, *extra: str, input_file: Path = TEST_FILE) -> list[dict]:
    output = tmp_path / f"{model.name}-{len(list(tmp_path.iterdir()))}.jsonl"
    assert predict_main(["--model", str(model), "--input", str(input_file), "--output", str(output), *extra]) == 0
    return read_jsonl(output)


# Export


@pytest.mark.parametrize("run", ["textcnn_run", "bert_run", "multilabel_run"])
def test_the_onnx_export_gives_pytorchs_logits_and_predict_output(run, request, tmp_path):
    check_file = request.getfixturevalue("topics")["test"] if run == "multilabel_run" else TEST_FILE
    run = request.getfixturevalue(run)
    manifest = export(run, tmp_path / "export", "--check_file", str(check_file))
    for check in manifest["checks"].values():
        assert check["max_abs_logit_difference"] < 1e-4
        assert check["same_labels"] == check["rows"] > 0
    assert Classifier.load(tmp_path / "export").backend == "onnxruntime"

    pytorch = predictions(run, tmp_path, "--top_k", "all", input_file=check_file)
    onnx = predictions(tmp_path / "export", tmp_path, "--top_k", "all", input_file=check_file)
    assert len(onnx) == len(pytorch)
    for ours, theirs in zip(onnx, pytorch, strict=True):
        assert ours.keys() == theirs.keys()
        assert ours.get("label") == theirs.get("label") and ours.get("labels") == theirs.get("labels")
        for label, probability in theirs["probabilities"].items():
            assert ours["probabilities"][label] == pytest.approx(probability, abs=1e-5)


def test_evaluate_on_the_export_reports_pytorchs_scores(textcnn_run, textcnn_export, tmp_path, capsys):  # noqa: F811
    for model, output in ((textcnn_run, "pytorch.json"), (textcnn_export, "onnx.json")):
        assert (
            evaluate_main(["--model", str(model), "--test_file", str(TEST_FILE), "--output", str(tmp_path / output)])
            == 0
        )
    pytorch, onnx = (json.loads((tmp_path / name).read_text()) for name in ("pytorch.json", "onnx.json"))
    assert onnx["confusion_matrix"] == pytorch["confusion_matrix"]
    assert onnx["metrics"]["loss"] == pytest.approx(pytorch["metrics"]["loss"], abs=1e-5)


def test_int8_quantization_shrinks_the_model_and_reports_its_accuracy(bert_run, tmp_path):  # noqa: F811
    fp32 = export(bert_run, tmp_path / "fp32")
    manifest = export(bert_run, tmp_path / "int8", "--quantize", "int8", "--check_file", str(TEST_FILE))
    assert manifest["quantize"] == "int8" and fp32["quantize"] is None
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < (tmp_path / "fp32" / "model.onnx").stat().st_size
    check = manifest["checks"][str(TEST_FILE)]
    assert 0 < check["max_abs_logit_difference"] < 1  # quantized, so not equal, but close
    assert abs(check["accuracy"]["onnxruntime"] - check["accuracy"]["pytorch"]) <= 0.04  # two of the 50 rows
    labels = [row["label"] for row in predictions(tmp_path / "int8", tmp_path)]
    assert len(labels) == 50 and set(labels) <= {"negative", "positive"}


def test_an_export_that_does_not_match_pytorch_is_not_written(textcnn_run, tmp_path, monkeypatch, capsys):  # noqa: F811
    original = OnnxClassifier.__call__

    def off_by_a_little(self, **inputs):
        output = original(self, **inputs)
        output.logits += 1e-3
        return output

    monkeypatch.setattr(OnnxClassifier, "__call__", off_by_a_little)
    assert cli_main(["export", "--model", str(textcnn_run), "--output", str(tmp_path / "export")]) == 2
    assert "differ from PyTorch's by up to 1.00e-03" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()
    assert not list(tmp_path.glob(".export*"))  # no staging folder left behind


def test_export_errors_exit_2_and_keep_what_exists(textcnn_run, textcnn_export, tmp_path, capsys):  # noqa: F811
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")
    cases = [
        (["--model", str(textcnn_run), "--output", str(existing)], "exists; pass --overwrite"),
        (["--model", str(textcnn_export), "--output", str(tmp_path / "again")], "already an ONNX export"),
        (["--model", str(textcnn_run), "--output", str(tmp_path / "x"), "--check_file", "nope.jsonl"], "nope.jsonl"),
    ]
    for argv, message in cases:
        assert cli_main(["export", *argv]) == 2
        assert message in capsys.readouterr().err
    assert (existing / "notes.txt").read_text() == "keep me"


# Serve


@contextmanager
def serving(model: Path, **options):
    """``make_app`` for the model on uvicorn in a thread, on a free loopback port; yields the base URL."""
    import uvicorn

    from finetune.serve import make_app

    classifier = Classifier.load(model, device="cpu")
    app = make_app(classifier, **options)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    app.state.classifier = classifier
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(10)


def call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("backend", ["pytorch", "onnxruntime"])
def test_predict_endpoint_answers_as_the_predict_command(backend, textcnn_run, textcnn_export, tmp_path):  # noqa: F811
    model = textcnn_run if backend == "pytorch" else textcnn_export
    texts = [row["text"] for row in read_jsonl(TEST_FILE)]
    expected = predictions(model, tmp_path, "--top_k", "2")
    with serving(model) as (url, app):
        status, body = call(f"{url}/predict", json.dumps({"texts": texts, "top_k": 2}).encode())
        assert status == 200
        for answer, row in zip(body["predictions"], expected, strict=True):
            assert answer["text"] == row["text"] and answer["label"] == row["label"]
            assert answer["score"] == pytest.approx(row["score"], abs=1e-9)
            assert [item["label"] for item in answer["top_k"]] == [item["label"] for item in row["top_k"]]
        assert call(f"{url}/health") == (
            200,
            {"status": "ok", "model": str(app.state.classifier.model_dir), "backend": backend},
        )
        assert call(f"{url}/labels")[1]["labels"] == ["negative", "positive"]
        assert call(f"{url}/predict", b'{"texts": []}') == (200, {"predictions": []})


def test_bad_requests_get_a_4xx_json_error_and_the_server_goes_on(textcnn_run):  # noqa: F811
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b'["a text"]', 422, "must be a JSON object"),
        (b"{}", 422, 'Missing "texts"'),
        (b'{"texts": "one text"}', 422, "must be a list of strings, got str"),
        (b'{"texts": ["fine", 3]}', 422, '"texts"[1] must be a string, got 3'),
        (b'{"texts": ["a"], "topk": 2}', 422, "Unknown field(s) 'topk'"),
        (b'{"texts": ["a"], "text_pairs": ["b"]}', 422, "Unknown field(s) 'text_pairs'"),  # not a pair model
        (b'{"texts": ["a"], "top_k": -1}', 422, '"top_k"'),
        (b'{"texts": ["a"], "top_k": true}', 422, '"top_k" must be a number or "all"'),
        (json.dumps({"texts": ["a"] * 6}).encode(), 413, "6 texts in one request; the limit is 5"),
        (json.dumps({"texts": ["长" * 400]}).encode(), 413, "the limit is 1000 (--max_body_bytes)"),
        (b"\xff\xfe", 400, "not valid JSON"),
    ]
    with serving(textcnn_run, max_texts=5, max_body_bytes=1000) as (url, _):
        for body, status, message in cases:
            answer = call(f"{url}/predict", body)
            assert answer[0] == status, (body, answer)
            assert message in answer[1]["error"], (body, answer)
        long_text = "好" * 300  # longer than max_length: truncated as in training, not refused
        status, body = call(
            f"{url}/predict", json.dumps({"texts": [long_text], "top_k": "all"}, ensure_ascii=False).encode()
        )
        assert status == 200 and len(body["predictions"]) == 1


def test_a_batch_out_of_device_memory_gets_a_500_and_the_server_goes_on(textcnn_run):  # noqa: F811
    with serving(textcnn_run) as (url, app):
        model = app.state.classifier.model
        forward = model.forward

        def out_of_memory_once(**inputs):  # the device full for one batch
            model.forward = forward
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB. GPU 0 has 0.20 GiB free.")

        model.forward = out_of_memory_once
        status, body = call(f"{url}/predict", b'{"texts": ["a text"]}')
        assert status == 500 and body["error"].startswith(
            "Prediction failed: CUDA out of memory. Tried to allocate 1.00 GiB (on cpu; batch_size 64, max_length "
        )
        assert "Lower --batch_size" in body["error"]
        assert call(f"{url}/predict", b'{"texts": ["a text"]}')[0] == 200


def test_a_sentence_pair_export_answers_text_pairs_as_predict_does(reviews, tmp_path):
    files = sentence_pair_files(reviews, tmp_path)
    flags = [f"--{split}_file={path}" for split, path in files.items()] + QUICK_TEXTCNN
    flags += ["--text_column", "first", "--text_pair_column", "second", "--disable_tqdm", "true"]
    assert train_main(flags + ["--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "run")]) == 0
    export(tmp_path / "run", tmp_path / "export", "--check_file", str(files["test"]))
    expected = predictions(tmp_path / "run", tmp_path, input_file=files["test"])
    rows = read_jsonl(files["test"])
    with serving(tmp_path / "export") as (url, _):
        body = {"texts": [row["first"] for row in rows], "text_pairs": [row["second"] for row in rows]}
        status, answer = call(f"{url}/predict", json.dumps(body).encode())
        assert status == 200
        for served, row in zip(answer["predictions"], expected, strict=True):
            assert (served["first"], served["second"], served["label"]) == (row["first"], row["second"], row["label"])
            assert served["score"] == pytest.approx(row["score"], abs=1e-5)
        assert {row["label"] for row in expected} == {"negative", "positive"}  # the pairs were read, not one class
        missing = call(f"{url}/predict", json.dumps({"texts": ["a"]}).encode())
        assert missing[0] == 422 and "sentence-pair model" in missing[1]["error"]
        uneven = call(f"{url}/predict", json.dumps({"texts": ["a", "b"], "text_pairs": ["c"]}).encode())
        assert uneven[0] == 422 and "2 texts but 1 text_pairs" in uneven[1]["error"]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answers(textcnn_run):  # noqa: F811
    texts = [row["text"] for row in read_jsonl(TEST_FILE)]
    clients, rounds = 8, 5
    answers: dict[int, list] = {}
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        start.wait()
        mine = []
        for round_ in range(rounds):
            chosen = [texts[(number * rounds + round_ + offset) % len(texts)] for offset in range(number % 3 + 1)]
            status, body = call(f"{url}/predict", json.dumps({"texts": chosen}).encode())
            mine.append((status, chosen, [row["text"] for row in body["predictions"]]))
        answers[number] = mine

    with serving(textcnn_run, max_wait_ms=20) as (url, app):
        classifier = app.state.classifier
        sizes = []
        original = classifier.probabilities
        classifier.probabilities = lambda texts, *rest, **options: (
            sizes.append(len(texts)),
            original(texts, *rest, **options),
        )[1]
        threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(answers) == list(range(clients))
    for mine in answers.values():
        for status, sent, received in mine:
            assert status == 200 and received == sent
    assert sum(sizes) == sum(number % 3 + 1 for number in range(clients)) * rounds
    assert max(sizes) > 3  # requests that arrived together went through the model in one call


def test_the_serve_command_serves_an_export_on_loopback(textcnn_export):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "finetune.cli", "serve", "--model", str(textcnn_export), "--port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, body = call(f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.3)
        assert body["backend"] == "onnxruntime"
        status, body = call(f"http://127.0.0.1:{port}/predict", json.dumps({"texts": ["房间很干净"]}).encode())
        assert status == 200 and body["predictions"][0]["label"] in ("negative", "positive")
        spec = call(f"http://127.0.0.1:{port}/openapi.json")[1]
        assert (
            "texts"
            in spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
        )
        # Only loopback by default: the port is not open on the machine's other addresses.
        outside = [address for address in host_addresses() if not address.startswith("127.")]
        for address in outside:
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2).close()
    finally:
        server.terminate()
        server.wait(30)
    assert "serving" in server.stderr.read()


def host_addresses() -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)})
    except OSError:
        return []


def test_a_port_in_use_is_a_clear_error(textcnn_run, capsys):  # noqa: F811
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli_main(["serve", "--model", str(textcnn_run), "--port", str(port)]) == 2
    assert f"Cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_the_page_shows_each_labels_probability_in_chromium(textcnn_run):  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api")
    texts = ["房间很干净，服务也好", "太吵了，再也不来了"]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with serving(textcnn_run) as (url, _), sync_api.sync_playwright() as playwright:
        expected = call(f"{url}/predict", json.dumps({"texts": texts, "top_k": "all"}).encode())[1]["predictions"]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('negative')")
            page.fill("#texts", "\n".join(texts))
            page.click("#classify")
            page.wait_for_selector(".prediction[data-index='1'] .row")
            shown = page.eval_on_selector_all(
                ".prediction",
                """blocks => blocks.map(block => ({
                    text: block.querySelector('.text').textContent,
                    rows: [...block.querySelectorAll('.row')].map(row => ({
                        label: row.dataset.label, probability: Number(row.dataset.probability),
                        width: row.querySelector('.bar').style.width, chosen: row.classList.contains('chosen')}))}))""",
            )
            page.goto(url + "/docs")  # the API page, from files installed with the package, not a CDN
            operation = page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            documented = operation.text_content()
        finally:
            browser.close()
    assert "/predict" in documented
    assert [block["text"] for block in shown] == texts
    for block, prediction in zip(shown, expected, strict=True):
        assert {row["label"] for row in block["rows"]} == set(prediction["probabilities"])
        for row in block["rows"]:
            probability = prediction["probabilities"][row["label"]]
            assert row["probability"] == pytest.approx(probability)
            assert float(row["width"].rstrip("%")) == pytest.approx(probability * 100, abs=0.06)
            assert row["chosen"] == (row["label"] == prediction["label"])
        assert np.all(np.diff([row["probability"] for row in block["rows"]]) <= 0)  # most likely first
