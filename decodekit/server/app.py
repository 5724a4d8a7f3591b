"""The HTTP face: OpenAI's endpoints, health, Prometheus metrics and the playground.

    GET  /                      the playground (static/playground.html)
    GET  /health                200 while serving, 503 while shutting down
    GET  /metrics               Prometheus text
    GET  /v1/models             the one model served
    POST /v1/completions        OpenAI's completions, streaming as server-sent events
    POST /v1/chat/completions   OpenAI's chat completions, likewise
    GET  /decodekit/methods     the model, what `decoding.method` may name, and the limits (for the playground)

A handler checks the request (400 at once for bad input), queues it (429 when the queue is
full), waits for its first event (so an error the model side finds is still a clean 4xx), and
then streams or collects the rest. A client that leaves cancels its job.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from decodekit.backend import Backend
from decodekit.drafters import LOSSY, METHODS
from decodekit.errors import DecodekitError
from decodekit.search import SEARCHES
from decodekit.server.engine import Engine, Event, Job
from decodekit.server.limits import ServerLimits
from decodekit.server.metrics import Metrics
from decodekit.server.protocol import ApiError
from decodekit.server.requests import DecodingChoice, GenerationRequest, chat_request, completion_request
from decodekit.server.responses import RequestStats, Responder
from decodekit.strategies import STRATEGIES
from decodekit.types import StopReason

POLL_S = 0.1  # how often a waiting handler checks whether its client is still there
MAX_BODY_BYTES = 4 * 2**20
MAX_READING = 16  # request bodies read at once; more get a 429 (slow senders cannot pile up memory)
MAX_DEPTH = 64  # JSON nesting: a JSON Schema in response_format is the deepest thing a request needs


def create_app(backend: Backend, model_name: str, default: DecodingChoice, *, limits: ServerLimits,
               api_key: str | None = None, max_queue: int = 32, timeout_s: float | None = None) -> FastAPI:
    """An app serving `backend` (already loaded) under `model_name`. A default method the model
    cannot run fails here, before the server starts listening."""
    if max_queue < 1:
        raise DecodekitError(f"max_queue must be at least 1 (a queue of {max_queue} would refuse every request)")
    metrics = Metrics()
    engine = Engine(backend, default, metrics, max_queue)
    reading = asyncio.Semaphore(MAX_READING)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        engine.start()
        yield
        await run_in_threadpool(engine.stop)

    app = FastAPI(title="decodekit", summary="OpenAI-compatible decoding server", lifespan=lifespan)
    app.state.engine = engine
    app.state.metrics = metrics

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        metrics.requests.labels(request.url.path, str(error.status)).inc()
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    def authorize(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if api_key is not None and not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                           kind="authentication_error", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(resources.files("decodekit.server").joinpath("static/playground.html").read_text("utf-8"))

    @app.get("/health")
    async def health() -> JSONResponse:
        status = 503 if engine.stopping else 200
        return JSONResponse({"status": "ok" if status == 200 else "shutting down", "model": model_name,
                             "queue_depth": engine.waiting}, status_code=status)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        authorize(request)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": int(time.time()),
                                            "owned_by": "decodekit", "decoding": default.label(),
                                            "max_model_len": backend.context_length}]}

    @app.get("/decodekit/methods")
    async def methods() -> dict:
        """What the playground needs to build its form (nothing secret: open without the key)."""
        return {"model": model_name,
                "default": {"method": default.method, "options": default.options, "drafter": default.drafter},
                "drafting": list(METHODS), "lossy": list(LOSSY), "strategies": list(STRATEGIES),
                "searches": list(SEARCHES),
                "limits": {"max_tokens": limits.max_tokens, "default_max_tokens": limits.default_max_tokens,
                           "context_length": backend.context_length}}

    async def generate(request: Request, parse: Callable[..., GenerationRequest]) -> Response:
        authorize(request)
        if reading.locked():
            raise ApiError(429, f"{MAX_READING} request bodies are being read already: retry in a moment",
                           kind="rate_limit_error", headers={"Retry-After": "1"})
        async with reading:
            body = await _json_body(request)
        # Tokenizing runs beside the worker's decoding: both only read the tokenizer.
        generation = await run_in_threadpool(parse, body, backend, model_name, default, limits)
        job = Job(generation, timeout_s)
        engine.submit(job)
        responder = Responder(generation, model_name)
        first = await _next_event(job, request)
        if first is None:  # the client left while its request waited
            metrics.requests.labels(request.url.path, "499").inc()
            return Response(status_code=499)
        if first.error is not None:
            raise first.error
        if generation.stream:
            return StreamingResponse(_stream(job, first, responder, request.url.path, metrics),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return await _collect(job, first, request, responder, metrics)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await generate(request, chat_request)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await generate(request, completion_request)

    return app


async def _json_body(request: Request) -> object:
    """The body as JSON, read no further than MAX_BODY_BYTES (a prompt longer than any model's
    context is far smaller; a client that sends more gets a 413, not a server holding it all).

    Only `application/json`: a web page can POST text/plain to a local server without the
    browser asking first (no CORS preflight), so any other type is refused with a 415."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, f"the request body must be JSON, sent as Content-Type: application/json (got "
                            f"'{content_type or 'none'}')")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > MAX_BODY_BYTES:
            raise _too_large()
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ApiError(400, f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the request body is not valid JSON: {error}") from None
    check_json(body)
    return body


def check_json(body: object) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings that are not Unicode text: JSON's
    "\\ud800" escapes decode to a lone surrogate, which no tokenizer can take. Iterative, so a
    deep body cannot exhaust the stack here either."""
    pending: list[tuple[object, int, str]] = [(body, 1, "")]
    while pending:
        value, depth, where = pending.pop()
        if depth > MAX_DEPTH:
            raise ApiError(400, f"the request body nests deeper than {MAX_DEPTH} levels", where or None)
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, where or None)
                pending.append((item, depth + 1, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            pending.extend((item, depth + 1, f"{where}.{i}" if where else str(i)) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where or None)


def _check_text(text: str, where: str | None) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        raise ApiError(400, f"{where or 'the body'}: a string holds a lone surrogate (U+{code:04X}) at character "
                            f"{error.start}: it is not Unicode text", where) from None


def _too_large() -> ApiError:
    return ApiError(413, f"the request body is over {MAX_BODY_BYTES // 2**20} MiB")


async def _next_event(job: Job, request: Request) -> Event | None:
    """The job's next event; None (and the job cancelled) if the client has left, a 504 if the
    request has run out of time. Checks for a departed client at least every POLL_S, whether
    events arrive quickly or not at all."""
    try:
        while True:
            if time.monotonic() - job.checked_at >= POLL_S:
                job.checked_at = time.monotonic()
                if await request.is_disconnected():
                    job.cancel()
                    return None
            try:
                return await asyncio.wait_for(job.events.get(), POLL_S)
            except TimeoutError:
                if job.expired():  # e.g. still queued behind a long request
                    job.cancel()
                    raise job.timeout_error() from None
    except BaseException:
        job.cancel()
        raise


async def _collect(job: Job, event: Event | None, request: Request, responder: Responder, metrics: Metrics) -> Response:
    n = responder.request.n
    texts: list[str] = [""] * n
    reasons: list[StopReason | None] = [None] * n
    endpoint = request.url.path
    try:
        while event is not None:
            if event.error is not None:
                raise event.error
            if event.kind == "chunk" and event.chunk is not None:
                texts[event.index] += event.chunk.text
            elif event.kind == "choice":
                reasons[event.index] = event.stop_reason
            elif event.kind == "done" and event.stats is not None:
                metrics.requests.labels(endpoint, "200").inc()
                metrics.latency.observe(time.monotonic() - job.arrived)
                return JSONResponse(responder.complete(texts, reasons, event.stats))
            event = await _next_event(job, request)
        metrics.requests.labels(endpoint, "499").inc()  # the client left before the answer was ready
        return Response(status_code=499)
    finally:
        job.cancel()  # a no-op once done; stops the worker if the handler was cancelled


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def _stream(job: Job, event: Event, responder: Responder, endpoint: str, metrics: Metrics) -> AsyncIterator[str]:
    """OpenAI's chunk stream. A choice's finish chunk waits for the next event, so that the last
    one can carry the request's statistics; `usage` follows it when asked for."""
    opened: set[int] = set()
    finish: dict | None = None
    status = "200"
    try:
        while True:
            if event.kind == "done" and event.stats is not None:
                yield _closing(finish, event.stats, responder)
                return
            if finish is not None:
                yield _sse(finish)
                finish = None
            if event.error is not None:
                status = str(event.error.status)
                yield _sse(event.error.body())
                return
            if event.kind == "chunk" and event.chunk is not None:
                if event.index not in opened:
                    opened.add(event.index)
                    if (opening := responder.opening(event.index)) is not None:
                        yield _sse(opening)
                # Every step goes out, text or not (a character split across steps), so the
                # per-chunk step figures add up to the final statistics.
                yield _sse(responder.chunk(event.index, event.chunk))
            elif event.kind == "choice":
                finish = responder.finish(event.index, event.stop_reason)
            event = await job.events.get()
    except BaseException:
        status = "499"  # the client left mid-stream, or the server is shutting down
        raise
    finally:
        job.cancel()  # a no-op once done; stops the worker if the client left
        metrics.requests.labels(endpoint, status).inc()
        metrics.latency.observe(time.monotonic() - job.arrived)


def _closing(finish: dict | None, stats: RequestStats, responder: Responder) -> str:
    """The stream's last chunks: the last finish chunk, then usage if asked for; the very last
    one carries the statistics. Then OpenAI's end marker."""
    chunks = [finish] if finish is not None else []
    if responder.request.include_usage or not chunks:
        chunks.append(responder.usage_chunk(stats))
    chunks[-1] = {**chunks[-1], **stats.fields()}
    return "".join(_sse(chunk) for chunk in chunks) + _sse("[DONE]")
