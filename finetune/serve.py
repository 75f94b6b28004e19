"""Answer prediction requests over HTTP, with a page to try the model: ``finetune serve``.

    finetune serve --model outputs/textcnn                   # http://127.0.0.1:8000
    finetune serve --model exported/textcnn --port 8080      # a finetune export, run by ONNX Runtime
    curl -s localhost:8000/predict -d '{"texts": ["房间很干净，服务也好", "太吵了"], "top_k": 2}'

- ``POST /predict`` with ``{"texts": [...], "top_k": N or "all"}`` (``text_pairs`` too for a sentence-pair model)
  returns ``{"predictions": [...]}``: one row per text, in order, with the fields ``finetune predict`` writes.
- ``GET /labels``, ``GET /health``; ``GET /docs`` and ``/openapi.json`` describe the API; ``GET /`` is a page that
  classifies the texts typed into it and shows each label's probability as a bar.

FastAPI on uvicorn: the most used ASGI stack in Python, maintained, with the OpenAPI description built in, and
uvicorn's C HTTP parser (httptools) and event loop (uvloop) keep a request's own cost well under a millisecond.
Requests that arrive together are classified together: one worker takes every text waiting (up to
``--batch_size``, waiting at most ``--max_wait_ms`` for more) into one call of the model, in a thread, while the
event loop goes on accepting requests. Bad requests get a 4xx JSON ``{"error": ...}`` and the server goes on.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request) at run time.
import argparse
import asyncio
import ipaddress
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np

from finetune.errors import UserError
from finetune.predict import Classifier
from finetune.rows import merge_rows, parse_top_k, prediction_columns

MAX_TEXTS = 1024
MAX_BODY_BYTES = 4_000_000

PREDICT_SCHEMA = {
    "type": "object",
    "required": ["texts"],
    "properties": {
        "texts": {"type": "array", "items": {"type": "string"}, "description": "the texts to classify"},
        "text_pairs": {
            "type": "array",
            "items": {"type": "string"},
            "description": "a sentence-pair model's second texts, one per text",
        },
        "top_k": {
            "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "enum": ["all"]}],
            "default": 1,
            "description": "N adds the N most likely labels (top_k); 'all' or 0 every label's probability",
        },
    },
    "example": {"texts": ["房间很干净，服务也好", "太吵了，不会再来"], "top_k": 1},
}


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class Batcher:
    """Collects the texts of requests that arrive together and classifies them in one call, in one thread."""

    def __init__(self, classifier: Classifier, batch_size: int, max_wait: float):
        self.classifier, self.batch_size, self.max_wait = classifier, batch_size, max_wait
        self.queue: asyncio.Queue | None = None
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finetune-model")

    async def probabilities(self, texts: list[str], pairs: list[str] | None) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, pairs, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self.queue.get()]
            count = len(waiting[0][0])
            deadline = loop.time() + self.max_wait
            while count < self.batch_size:
                try:
                    if self.queue.empty() and loop.time() < deadline:
                        item = await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                    else:
                        item = self.queue.get_nowait()
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                waiting.append(item)
                count += len(item[0])
            texts = [text for item in waiting for text in item[0]]
            pairs = [pair for item in waiting for pair in item[1]] if waiting[0][1] is not None else None
            try:
                probabilities = await loop.run_in_executor(
                    self.thread, self.classifier.probabilities, texts, pairs, self.batch_size
                )
            except Exception as error:  # the requests in this batch fail with a 500; the server goes on
                for _, _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for item_texts, _, future in waiting:
                if not future.done():  # a client that went away leaves a cancelled future
                    future.set_result(probabilities[start : start + len(item_texts)])
                start += len(item_texts)


def string_list(body: dict, name: str) -> list[str]:
    value = body[name]
    if not isinstance(value, list):
        raise BadRequest(f'"{name}" must be a list of strings, got {type(value).__name__}.')
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise BadRequest(f'"{name}"[{index}] must be a string, got {json.dumps(item, ensure_ascii=False)[:50]}.')
    return value


def parse_request(raw: bytes, classifier: Classifier, max_texts: int) -> tuple[list[str], list[str] | None, int]:
    """The texts, pairs and top_k of a /predict body; a BadRequest says what is wrong with it."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"The body is not valid JSON: {error}.", 400) from None
    if not isinstance(body, dict):
        raise BadRequest('The body must be a JSON object such as {"texts": ["a text to classify"]}.')
    known = {"texts", "top_k"} | ({"text_pairs"} if classifier.text_pair_column else set())
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"Unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(sorted(known))}.")
    if "texts" not in body:
        raise BadRequest('Missing "texts": a list of the strings to classify.')
    texts = string_list(body, "texts")
    if len(texts) > max_texts:
        raise BadRequest(f"{len(texts)} texts in one request; the limit is {max_texts} (--max_texts).", 413)
    pairs = None
    if classifier.text_pair_column:
        if "text_pairs" not in body:
            raise BadRequest('This is a sentence-pair model: give "text_pairs", one second text per text.')
        pairs = string_list(body, "text_pairs")
        if len(pairs) != len(texts):
            raise BadRequest(f"{len(texts)} texts but {len(pairs)} text_pairs; give one pair per text.")
    top_k = body.get("top_k", 1)
    if isinstance(top_k, bool) or not isinstance(top_k, int | str):
        raise BadRequest(f'"top_k" must be a number or "all", got {json.dumps(top_k)}.')
    try:
        top_k = parse_top_k(str(top_k))
    except argparse.ArgumentTypeError as error:
        raise BadRequest(f'"top_k": {error}.') from None
    return texts, pairs, top_k


async def read_body(request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes before more of it is read."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"The body has {declared} bytes; the limit is {limit} (--max_body_bytes).", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"The body is over the limit of {limit} bytes (--max_body_bytes).", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def make_app(
    classifier: Classifier,
    batch_size: int = 64,
    max_wait_ms: float = 0.0,
    max_texts: int = MAX_TEXTS,
    max_body_bytes: int = MAX_BODY_BYTES,
):
    """The FastAPI application serving ``classifier``."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    batcher = Batcher(classifier, batch_size, max_wait_ms / 1000)
    labels = [classifier.id2label[index] for index in range(len(classifier.id2label))]

    @asynccontextmanager
    async def lifespan(app):
        batcher.queue = asyncio.Queue()
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        batcher.thread.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="finetune",
        description=f"Text classification with {classifier.model_dir} ({classifier.backend}).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    add_docs_page(app)

    @app.post(
        "/predict",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": PREDICT_SCHEMA}}}},
        summary="Classify texts: one prediction per text, in order",
    )
    async def predict(request: Request):
        try:
            texts, pairs, top_k = parse_request(await read_body(request, max_body_bytes), classifier, max_texts)
        except BadRequest as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        if not texts:
            return JSONResponse({"predictions": []})
        try:
            probabilities = await batcher.probabilities(texts, pairs)
        except Exception as error:
            return JSONResponse({"error": f"Prediction failed: {error}"}, status_code=500)
        added, columns = prediction_columns(probabilities, classifier.id2label, top_k, classifier.threshold)
        records = [{classifier.text_column: text} for text in texts]
        if pairs is not None:
            for record, pair in zip(records, pairs, strict=True):
                record[classifier.text_pair_column] = pair
        # Encoded here, not by FastAPI's jsonable_encoder, which walks every value: a tenth of a request's cost.
        payload = json.dumps({"predictions": merge_rows(records, columns, added)}, ensure_ascii=False)
        return Response(payload.encode(), media_type="application/json")

    @app.get("/labels", summary="The labels the model predicts")
    async def labels_endpoint():
        return {"labels": labels, "multi_label": classifier.multi_label, "threshold": classifier.threshold}

    @app.get("/health", summary="Whether the model is loaded and answering")
    async def health():
        return {"status": "ok", "model": str(classifier.model_dir), "backend": classifier.backend}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return resources.files("finetune").joinpath("static/index.html").read_text(encoding="utf-8")

    return app


def add_docs_page(app) -> None:
    """``GET /docs``: Swagger UI from the files the swagger-ui-bundle package ships, so that the page works on a
    machine without internet access (FastAPI's own page loads them from a CDN). That Swagger UI (4.15) reads
    OpenAPI 3.0, which this API's description keeps to."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.openapi_version = "3.0.3"
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="finetune API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_parser() -> argparse.ArgumentParser:
    from finetune.predict import add_model_arguments

    parser = argparse.ArgumentParser(
        prog="finetune serve",
        description="Serve a trained model (or a finetune export) over HTTP: POST /predict, GET /labels, "
        "GET /health, API docs at /docs and a page to try it at /.",
        epilog="Example: finetune serve --model outputs/textcnn --port 8000",
    )
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument(
        "--max_wait_ms",
        type=float,
        default=0.0,
        help="how long a batch waits for more requests before it runs, in milliseconds (default: 0: it takes the "
        "requests that arrived while the model ran the previous batch, which measured faster here than waiting)",
    )
    parser.add_argument(
        "--max_texts", type=int, default=MAX_TEXTS, help=f"texts allowed in one request (default: {MAX_TEXTS})"
    )
    parser.add_argument(
        "--max_body_bytes",
        type=int,
        default=MAX_BODY_BYTES,
        help=f"largest request body in bytes (default: {MAX_BODY_BYTES})",
    )
    parser.add_argument("--access_log", action="store_true", help="log every request (default: errors only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    for name in ("batch_size", "max_texts", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}.")
    try:
        import uvicorn
    except ImportError:
        raise UserError("finetune serve needs fastapi and uvicorn (pip install 'finetune[deploy]').") from None
    listener = listen(args.host, args.port)
    classifier = Classifier.load(args.model, args.device, args.max_length, args.long_text, args.window_stride)
    classifier.text_column = args.text_column or classifier.text_column  # the field name of each text in answers
    classifier.text_pair_column = args.text_pair_column or classifier.text_pair_column
    app = make_app(classifier, args.batch_size, args.max_wait_ms, args.max_texts, args.max_body_bytes)
    host, port = listener.getsockname()[:2]
    print(
        f"serving {classifier.model_dir} ({classifier.backend}) on http://{host}:{port}  "
        f"(try it: http://{host}:{port}/, API: http://{host}:{port}/docs)",
        file=sys.stderr,
    )
    if not is_loopback(args.host):
        print(
            f"warning: listening on {args.host}: anyone who can reach this machine can use the model", file=sys.stderr
        )
    config = uvicorn.Config(app, log_level="warning", access_log=args.access_log, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, so that a port in use fails with a clear message before the model loads."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as error:
        raise UserError(f"Cannot listen on {host}:{port}: {error.strerror or error}; pick another --port.") from None
    return listener


if __name__ == "__main__":
    from finetune.cli import run_command

    sys.exit(run_command(main, sys.argv[1:]))
