"""A bounded load test of `finetune serve` on loopback, next to offline batched prediction of the same texts.

For each model (TextCNN and MiniLM BERT, trained briefly here unless --textcnn_model / --bert_model name a run or
an export), the real command `finetune serve` runs in its own process. Then, per scenario, CLIENTS concurrent
clients (one keep-alive connection each) send REQUESTS requests of TEXTS texts each, drawn in order from the demo
test split, each client waiting for its answer before it sends the next. Measured: texts/s over the scenario's
wall time, and p50 / p99 of the request latency. Offline: ``Classifier.probabilities`` (what `finetune predict`
runs) on the same texts in this process, batch 64, while the server is idle. Prints JSON with the ratios.

    python bench/serve.py                                          # both models, trained here
    python bench/serve.py --models textcnn --textcnn_model outputs/textcnn --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import CONFIGS, REPO, add_output_argument, median, write_result
from predict import TEST_FILE, train_quickly

from finetune.predict import Classifier
from finetune.rows import read_texts

SCENARIOS = {"one text": 1, "32 texts": 32}
# MiniLM classifies about 20 texts/s on this machine: fewer requests keep its part within minutes.
DEFAULT_REQUESTS = {"textcnn": 200, "bert": 10}


async def client(port: int, bodies: list[bytes], latencies: list[float]) -> None:
    """Sends each body as POST /predict on one keep-alive connection, one at a time, and records the latencies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for body in bodies:
            started = time.perf_counter()
            writer.write(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if b" 200 " not in status:
                raise RuntimeError(f"{status.decode().strip()}: {answer[:200]!r}")
    finally:
        writer.close()


async def load(port: int, texts: list[str], clients: int, requests: int, per_request: int) -> dict:
    """CLIENTS clients x REQUESTS requests of PER_REQUEST texts each; throughput and latency percentiles."""
    latencies: list[float] = []
    bodies = [[] for _ in range(clients)]
    position = 0
    for _ in range(requests):
        for queue in bodies:
            chunk = [texts[(position + offset) % len(texts)] for offset in range(per_request)]
            queue.append(json.dumps({"texts": chunk}, ensure_ascii=False).encode())
            position += per_request
    started = time.perf_counter()
    await asyncio.gather(*(client(port, queue, latencies) for queue in bodies))
    seconds = time.perf_counter() - started
    milliseconds = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests_per_client": requests,
        "texts_per_request": per_request,
        "texts": clients * requests * per_request,
        "seconds": round(seconds, 2),
        "texts_per_second": round(clients * requests * per_request / seconds, 1),
        "requests_per_second": round(clients * requests / seconds, 1),
        "latency_ms": {
            "p50": round(float(np.percentile(milliseconds, 50)), 1),
            "p99": round(float(np.percentile(milliseconds, 99)), 1),
        },
    }


def offline(classifier: Classifier, texts: list[str], count: int, repeats: int = 3) -> float:
    """Texts/s of batched prediction (batch 64) over the first ``count`` texts of the load, median of repeats."""
    chosen = [texts[index % len(texts)] for index in range(count)]
    classifier.probabilities(chosen[:64])
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        classifier.probabilities(chosen, batch_size=64)
        rates.append(count / (time.perf_counter() - started))
    return round(median(rates), 1)


def start_server(model_dir: Path, port: int, max_wait_ms: float) -> subprocess.Popen:
    command = [sys.executable, "-m", "finetune.cli", "serve", "--model", str(model_dir), "--port", str(port)]
    command += ["--device", "cpu", "--max_wait_ms", str(max_wait_ms)]
    server = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"finetune serve exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("finetune serve did not answer /health within 180 s")


def bench_model(model_dir: Path, args, requests: int) -> dict:
    classifier = Classifier.load(model_dir, device="cpu")
    texts = [record[classifier.text_column] for _, record in read_texts(TEST_FILE, [classifier.text_column])]
    result = {"model_dir": str(model_dir), "backend": classifier.backend, "max_wait_ms": args.max_wait_ms}
    server = start_server(model_dir, args.port, args.max_wait_ms)
    try:
        asyncio.run(load(args.port, texts, 2, 5, 1))  # warm up
        for name, per_request in SCENARIOS.items():
            served = asyncio.run(load(args.port, texts, args.clients, requests, per_request))
            served["offline_texts_per_second"] = offline(classifier, texts, served["texts"])
            served["ratio_served_over_offline"] = round(
                served["texts_per_second"] / served["offline_texts_per_second"], 3
            )
            result[name] = served
            print(json.dumps({name: served}), file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["textcnn", "bert"], choices=sorted(CONFIGS))
    parser.add_argument("--textcnn_model", type=Path, help="a TextCNN run or export (default: train one here)")
    parser.add_argument("--bert_model", type=Path, help="a BERT run or export (default: train briefly here)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    parser.add_argument("--requests", type=int, help="requests per client (default: 200 TextCNN, 10 MiniLM)")
    parser.add_argument("--max_wait_ms", type=float, default=0.0, help="the server's --max_wait_ms (default: 0)")
    parser.add_argument("--port", type=int, default=8765)
    add_output_argument(parser)
    args = parser.parse_args(argv)

    result = {"benchmark": "serve", "targets": {"textcnn one text": {"ratio": 0.5, "p99_ms": 100}}}
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            model_dir = getattr(args, f"{model}_model") or train_quickly(model, Path(scratch) / model)
            result[model] = bench_model(model_dir, args, args.requests or DEFAULT_REQUESTS[model])
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
