"""``ponder serve``: load the engine, serve the app with uvicorn, close the engine."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ponder.server.settings import ServerSettings

GRACE_SECONDS = 5
"""On shutdown, requests still open after this long are cancelled (and their runs)."""


def serve(
    settings: ServerSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    engine: Any = None,
    **engine_options: Any,
) -> None:
    """Serve ``engine`` (default: the embedded engine on ``settings.model``, built with
    ``engine_options``) until interrupted, then close it; on exit, requests still open
    after ``GRACE_SECONDS`` are cancelled together with their runs."""
    import uvicorn

    from ponder.api import load_engine
    from ponder.server.app import create_app

    if engine is None:
        engine = load_engine(settings.model or None, **engine_options)
    try:
        app = create_app(engine, settings)
        auth = "API key required" if settings.api_key else "no API key"
        print(
            f"ponder: serving {settings.model} on http://{host}:{port}/ ({auth})", file=sys.stderr
        )
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=GRACE_SECONDS,
        )
    finally:
        engine.close()


@contextlib.contextmanager
def serving_in_background(
    app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> Iterator[str]:
    """Serve ``app`` from a background thread (for notebooks, scripts and tests).

    Yields the server's base URL; ``port=0`` picks a free port. On exit the server
    stops: runs still in flight are cancelled and open connections closed.
    """
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=GRACE_SECONDS
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ponder-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join()
