"""``ponder serve``: load the engine, serve the app with uvicorn, close the engine."""

from __future__ import annotations

import sys
from typing import Any

from ponder.server.settings import ServerSettings


def serve(
    settings: ServerSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    **engine_options: Any,
) -> None:
    """Serve ``settings.model`` until interrupted; runs in flight are cancelled on exit."""
    import uvicorn

    from ponder.api import load_engine
    from ponder.server.app import create_app

    engine = load_engine(settings.model, **engine_options)
    try:
        app = create_app(engine, settings)
        auth = "API key required" if settings.api_key else "no API key"
        print(
            f"ponder: serving {settings.model} on http://{host}:{port}/ ({auth})", file=sys.stderr
        )
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        engine.close()
