"""The HTTP app: OpenAI-compatible endpoints, live run events, metrics and the web page.

``create_app(engine, settings)`` builds everything a server needs around one shared
engine; all state lives on the returned app (no module-level state), so tests and
embedders can make as many as they like.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
(OpenAI-compatible, streaming included); ``POST /ponder/runs`` (start a run and stream
its events), ``GET /ponder/runs`` (runs in flight), ``GET /ponder/runs/{id}/events``
(watch a run); ``GET /health``, ``GET /metrics``; the web page at ``/``; ``GET /docs``
and ``GET /openapi.json`` (behind the API key when there is one). The handlers live on
two routers, the API's behind the ``authorize`` dependency; request bodies are read by
``read_json`` (size, depth and NaN limits) and checked by one schema (``schemas.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ponder.engines.base import Engine
from ponder.scoring import describe_scorers
from ponder.server.metrics import Metrics
from ponder.server.responses import completion_body, jsonable, stream_bodies
from ponder.server.runs import Run, RunManager
from ponder.server.schemas import ApiError, model_names, parse_model, parse_run
from ponder.server.settings import ServerSettings
from ponder.strategies import canonical, describe

STATIC = Path(__file__).parent / "static"
HEARTBEAT_SECONDS = 5.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MAX_JSON_DEPTH = 64
MAX_REQUEST_ID = 128
REQUEST_ID_KEY = "ponder.request_id"
"""Deepest nesting of arrays and objects a request body may have."""


def create_app(engine: Engine, settings: ServerSettings | None = None) -> FastAPI:
    """An app that answers with strategies run on ``engine`` (which the caller closes)."""
    settings = settings or ServerSettings()
    metrics = Metrics()
    manager = RunManager(engine, settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await manager.cancel_all()

    app = FastAPI(
        title="ponder", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.manager = manager
    app.add_middleware(CountRequests, metrics=metrics)
    app.add_middleware(RequestId)
    _add_error_handlers(app)
    app.include_router(status_routes)
    app.include_router(api_routes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# ---- errors -------------------------------------------------------------------------


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, whatever raised it, is answered in OpenAI's JSON shape."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        err = ApiError(exc.status_code, str(exc.detail), "invalid_request_error", code)
        return JSONResponse(err.body(), status_code=exc.status_code, headers=exc.headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = jsonable_encoder(exc.errors()[0]) if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ()))
        err = ApiError(400, f"{param}: {first.get('msg', 'invalid')}", param=param or None)
        return JSONResponse(err.body(), status_code=400)

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        err = ApiError(500, f"internal error: {type(exc).__name__}", "server_error", "internal")
        # Answered outside the other middleware: the request id is added here.
        rid = request.scope.get(REQUEST_ID_KEY)
        headers = {"x-request-id": rid.decode()} if isinstance(rid, bytes) else None
        return JSONResponse(err.body(), status_code=500, headers=headers)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, internal)


# ---- shared pieces of the handlers ---------------------------------------------------


def authorize(request: Request) -> None:
    """A dependency: the server's API key, when it has one, as a bearer token."""
    key = request.app.state.settings.api_key
    if not key:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(
            401,
            "a valid API key is required: send 'Authorization: Bearer <key>'",
            "invalid_request_error",
            "invalid_api_key",
        )


def engine_failure(engine: Engine) -> str | None:
    """Why ``engine`` can serve nothing more (see ``LlamaCppEngine.failure``), or None."""
    failure = getattr(engine, "failure", None)
    return failure if isinstance(failure, str) else None


def require_engine(request: Request) -> None:
    """A dependency: refuse at once (503) while the engine has stopped."""
    failure = engine_failure(request.app.state.engine)
    if failure is not None:
        raise ApiError(
            503,
            f"the engine has stopped and cannot serve requests ({failure}); restart the server",
            "server_error",
            "engine_unavailable",
        )


# ---- health, metrics, page and docs --------------------------------------------------

status_routes = APIRouter()


@status_routes.get("/health", response_model=None)
async def health(request: Request) -> dict[str, Any] | JSONResponse:
    """200 with ``status: ok`` while the engine serves; 503 with the reason once it stopped."""
    state = request.app.state
    settings: ServerSettings = state.settings
    failure = engine_failure(state.engine)
    body = {
        "status": "ok" if failure is None else "engine_failed",
        "engine_error": failure,
        "model": settings.model,
        "engine": state.engine.name,
        "runs": {"running": state.manager.running, "waiting": state.manager.waiting},
        "auth_required": bool(settings.api_key),
        "scorers": [{"name": n, "summary": s} for n, s in describe_scorers()],
        "defaults": {"strategy": settings.default_strategy, "budget": settings.default_budget},
        "limits": {
            "max_budget": settings.max_budget,
            "max_tokens": settings.max_tokens,
            "max_body_bytes": settings.max_body_bytes,
            "concurrency": settings.concurrency,
            "queue_size": settings.queue_size,
        },
    }
    return body if failure is None else JSONResponse(body, status_code=503)


@status_routes.get("/metrics")
async def prometheus(request: Request) -> PlainTextResponse:
    state = request.app.state
    manager: RunManager = state.manager
    gauges = {
        "ponder_runs_running": ("Runs executing now.", float(manager.running)),
        "ponder_runs_waiting": ("Runs admitted and waiting to execute.", manager.waiting),
        "ponder_queue_length": ("Runs admitted: running plus waiting.", len(manager.active)),
        "ponder_queue_capacity": ("Most runs admitted at once.", state.settings.queue_size),
        "ponder_engine_up": (
            "1 while the engine serves, 0 once it has stopped (see /health).",
            float(engine_failure(state.engine) is None),
        ),
    }
    stats = getattr(state.engine, "stats", None)
    if callable(stats):
        s = stats()
        gauges["ponder_engine_sequences_running"] = (
            "Sequences the engine is decoding.",
            s.get("running", 0),
        )
        gauges["ponder_engine_sequences_waiting"] = (
            "Sequences waiting for the engine.",
            s.get("waiting", 0),
        )
    return PlainTextResponse(
        state.metrics.render(gauges), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


@status_routes.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@status_routes.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorize)])
async def openapi(request: Request) -> JSONResponse:
    """The OpenAPI schema; behind the API key when the server has one."""
    return JSONResponse(request.app.openapi())


@status_routes.get("/docs", include_in_schema=False, dependencies=[Depends(authorize)])
async def docs() -> HTMLResponse:
    """Swagger UI; behind the API key when the server has one."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="ponder: API")


# ---- the API (behind the key) --------------------------------------------------------

api_routes = APIRouter(dependencies=[Depends(authorize)])


@api_routes.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    settings: ServerSettings = request.app.state.settings
    cards = [_model_card(m, settings) for m in model_names(settings.model)]
    return {"object": "list", "data": cards}


@api_routes.get("/v1/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> dict[str, Any]:
    """Every name chat accepts: the served model's, ``ponder``, ``ponder/<strategy>``
    and ``ponder/<strategy>@<budget>``."""
    return _model_card(model_id, request.app.state.settings)


@api_routes.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
    return await _complete(request, "chat")


@api_routes.post("/v1/completions", response_model=None)
async def completions(request: Request) -> JSONResponse | StreamingResponse:
    return await _complete(request, "text")


@api_routes.post("/ponder/runs")
async def start_run(request: Request) -> StreamingResponse:
    settings: ServerSettings = request.app.state.settings
    body = await read_json(request, settings.max_body_bytes)
    kind = "text" if isinstance(body, dict) and "prompt" in body else "chat"
    spec = parse_run(body, kind, settings)
    require_engine(request)
    run = request.app.state.manager.start(spec)
    return StreamingResponse(
        _event_stream(run, cancel_on_close=True),
        media_type="text/event-stream",
        headers=SSE_HEADERS | {"X-Ponder-Run": run.id},
    )


@api_routes.get("/ponder/runs")
async def list_runs(request: Request) -> dict[str, Any]:
    manager: RunManager = request.app.state.manager
    return {
        "running": [r.summary() for r in manager.active.values()],
        "recent": [r.summary() for r in reversed(manager.recent)],
    }


@api_routes.get("/ponder/runs/{run_id}/events")
async def watch_run(request: Request, run_id: str) -> StreamingResponse:
    run = request.app.state.manager.find(run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id!r} in flight or recent", code="run_not_found")
    return StreamingResponse(
        _event_stream(run, cancel_on_close=False),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _complete(request: Request, kind: str) -> JSONResponse | StreamingResponse:
    settings: ServerSettings = request.app.state.settings
    spec = parse_run(await read_json(request, settings.max_body_bytes), kind, settings)
    require_engine(request)
    run = request.app.state.manager.start(spec)
    headers = {"X-Ponder-Run": run.id}
    if spec.stream:
        return StreamingResponse(
            _completion_stream(run),
            media_type="text/event-stream",
            headers=SSE_HEADERS | headers,
        )
    if not await _finish_or_disconnect(request, run):
        raise ApiError(
            499, "the client disconnected; its run was cancelled", "client_error", "closed"
        )
    if run.result is None:
        raise run.error or _cancelled()
    return JSONResponse(completion_body(spec, run.result, chosen=run.chosen()), headers=headers)


class CountRequests:
    """ASGI middleware: counts every HTTP response by method, route and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.count_request(scope["method"], path, status)


class RequestId:
    """ASGI middleware: every HTTP response carries ``x-request-id``: the client's own
    (when it is 1 to ``MAX_REQUEST_ID`` printable ASCII characters), else a fresh one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or ()).get(b"x-request-id", b"")
        ok = 0 < len(given) <= MAX_REQUEST_ID and all(32 < b < 127 for b in given)
        request_id = given if ok else f"req-{uuid.uuid4().hex}".encode()
        scope[REQUEST_ID_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"
                ]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id)]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _model_card(model_id: str, settings: ServerSettings) -> dict[str, Any]:
    """A model object for ``model_id`` (404 for a name chat would refuse), with the
    strategy and budget it means."""
    strategy, budget = parse_model(model_id, settings.model)
    name = strategy or canonical(settings.default_strategy)
    about = {n: (summary, means) for n, summary, means in describe()}
    summary, means = about[name]
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": "ponder",
        "ponder": {
            "strategy": name,
            "budget": settings.default_budget if budget is None else budget,
            "summary": summary,
            "budget_means": means,
        },
    }


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, read only while it stays within ``limit`` bytes (413 beyond),
    nested at most ``MAX_JSON_DEPTH`` deep, without NaN or Infinity (400 otherwise)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise ApiError(400, "the Content-Length header is not a number", code="invalid_length")
        if int(declared) > limit:
            raise _too_large(limit)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise _too_large(limit)
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ApiError(
            400, f"the request body is not valid JSON: {reason}", code="invalid_json"
        ) from None
    if _depth(body) > MAX_JSON_DEPTH:
        raise ApiError(
            400,
            f"the request body is nested more than {MAX_JSON_DEPTH} levels deep",
            code="invalid_json",
        )
    return body


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body exceeds this server's limit of {limit} bytes",
        "invalid_request_error",
        "body_too_large",
    )


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (0 for a scalar), computed
    without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


async def _finish_or_disconnect(request: Request, run: Run) -> bool:
    """Wait for ``run``; cancel it and return False when the client goes away first."""
    assert run.task is not None
    gone = asyncio.create_task(_disconnected(request))
    try:
        done, _ = await asyncio.wait({run.task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not run.task.done() and not gone.done():
            run.task.cancel()  # this handler itself was cancelled
    if run.task in done:
        return True
    run.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run.task
    return False


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _completion_stream(run: Run) -> AsyncIterator[str]:
    """OpenAI-style SSE: progress as SSE comments (every client skips them) while the run
    works, then the answer's chunks, then ``[DONE]``. Closing the stream cancels the run."""
    try:
        async for event in run.follow(heartbeat=HEARTBEAT_SECONDS):
            if event is None:
                yield ": keep-alive\n\n"
            elif event["type"] == "batch":
                progress = {"samples": event["samples"], "usage": event["usage"]}
                yield f": progress {json.dumps(progress)}\n\n"
        if run.result is not None:
            for body in stream_bodies(run.spec, run.result, run.chosen()):
                yield _data(body)
        else:
            yield _data((run.error or _cancelled()).body())
        yield "data: [DONE]\n\n"
    finally:
        _cancel_unfinished(run)


async def _event_stream(run: Run, cancel_on_close: bool) -> AsyncIterator[str]:
    """A run's events as named SSE events (``event: batch`` …), from the first one."""
    try:
        async for event in run.follow(heartbeat=HEARTBEAT_SECONDS):
            if event is None:
                yield ": keep-alive\n\n"
            else:
                yield f"event: {event['type']}\n{_data(event)}"
    finally:
        if cancel_on_close:
            _cancel_unfinished(run)


def _cancel_unfinished(run: Run) -> None:
    if run.task is not None and not run.task.done():
        run.task.cancel()


def _cancelled() -> ApiError:
    return ApiError(
        503, "the run was cancelled (the server is stopping)", "server_error", "cancelled"
    )


def _data(body: Any) -> str:
    return f"data: {json.dumps(jsonable(body), separators=(',', ':'))}\n\n"
