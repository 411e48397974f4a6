"""The HTTP app: OpenAI-compatible endpoints, live run events, metrics and the web page.

``create_app(engine, settings)`` builds everything a server needs around one shared
engine; all state lives on the returned app (no module-level state), so tests and
embedders can make as many as they like.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
(OpenAI-compatible, streaming included); ``POST /ponder/runs`` (start a run and stream
its events), ``GET /ponder/runs`` (runs in flight), ``GET /ponder/runs/{id}/events``
(watch a run); ``GET /health``, ``GET /metrics``; the web page at ``/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ponder.engines.base import Engine
from ponder.scoring import describe_scorers
from ponder.server.metrics import Metrics
from ponder.server.responses import completion_body, jsonable, stream_bodies
from ponder.server.runs import Run, RunManager
from ponder.server.schemas import ApiError, model_names, parse_run
from ponder.server.settings import ServerSettings
from ponder.strategies import describe

STATIC = Path(__file__).parent / "static"
HEARTBEAT_SECONDS = 5.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(engine: Engine, settings: ServerSettings | None = None) -> FastAPI:
    """An app that answers with strategies run on ``engine`` (which the caller closes)."""
    settings = settings or ServerSettings()
    metrics = Metrics()
    manager = RunManager(engine, settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await manager.cancel_all()

    app = FastAPI(title="ponder", lifespan=lifespan, redoc_url=None)
    app.state.engine = engine
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.manager = manager
    app.add_middleware(CountRequests, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        err = ApiError(exc.status_code, str(exc.detail), "invalid_request_error", code)
        return JSONResponse(err.body(), status_code=exc.status_code)

    def authorize(request: Request) -> None:
        if not settings.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.api_key.encode()
        ):
            raise ApiError(
                401,
                "a valid API key is required: send 'Authorization: Bearer <key>'",
                "invalid_request_error",
                "invalid_api_key",
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": settings.model,
            "engine": engine.name,
            "runs": {"running": manager.running, "waiting": manager.waiting},
            "auth_required": bool(settings.api_key),
            "scorers": [{"name": n, "summary": s} for n, s in describe_scorers()],
            "defaults": {"strategy": settings.default_strategy, "budget": settings.default_budget},
            "limits": {
                "max_budget": settings.max_budget,
                "max_tokens": settings.max_tokens,
                "concurrency": settings.concurrency,
                "queue_size": settings.queue_size,
            },
        }

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        gauges = {
            "ponder_runs_running": ("Runs executing now.", float(manager.running)),
            "ponder_runs_waiting": ("Runs admitted and waiting to execute.", manager.waiting),
            "ponder_queue_length": ("Runs admitted: running plus waiting.", len(manager.active)),
            "ponder_queue_capacity": ("Most runs admitted at once.", settings.queue_size),
        }
        stats = getattr(engine, "stats", None)
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
            metrics.render(gauges), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [_model_card(m) for m in model_names()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(request: Request, model_id: str) -> dict[str, Any]:
        authorize(request)
        if model_id not in model_names():
            raise ApiError(
                404, f"unknown model {model_id!r}", "invalid_request_error", "model_not_found"
            )
        return _model_card(model_id)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        return await _complete(request, "chat")

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> JSONResponse | StreamingResponse:
        return await _complete(request, "text")

    async def _complete(request: Request, kind: str) -> JSONResponse | StreamingResponse:
        authorize(request)
        spec = parse_run(await _read_json(request), kind, settings)
        run = manager.start(spec)
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
        return JSONResponse(completion_body(spec, run.result), headers=headers)

    @app.post("/ponder/runs")
    async def start_run(request: Request) -> StreamingResponse:
        authorize(request)
        body = await _read_json(request)
        kind = "text" if isinstance(body, dict) and "prompt" in body else "chat"
        run = manager.start(parse_run(body, kind, settings))
        return StreamingResponse(
            _event_stream(run, cancel_on_close=True),
            media_type="text/event-stream",
            headers=SSE_HEADERS | {"X-Ponder-Run": run.id},
        )

    @app.get("/ponder/runs")
    async def list_runs(request: Request) -> dict[str, Any]:
        authorize(request)
        return {
            "running": [r.summary() for r in manager.active.values()],
            "recent": [r.summary() for r in reversed(manager.recent)],
        }

    @app.get("/ponder/runs/{run_id}/events")
    async def watch_run(request: Request, run_id: str) -> StreamingResponse:
        authorize(request)
        run = manager.find(run_id)
        if run is None:
            raise ApiError(404, f"no run {run_id!r} in flight or recent", code="run_not_found")
        return StreamingResponse(
            _event_stream(run, cancel_on_close=False),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


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


def _model_card(model_id: str) -> dict[str, Any]:
    name = model_id.partition("/")[2]
    about = {n: (summary, budget) for n, summary, budget in describe()}
    summary, budget = about[name]
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": "ponder",
        "ponder": {"strategy": name, "summary": summary, "budget_means": budget},
    }


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(
            400, f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None


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
            for body in stream_bodies(run.spec, run.result):
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
