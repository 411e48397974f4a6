"""The HTTP server: OpenAI-compatible API, live run events, metrics, the web page."""

from ponder.server.app import create_app
from ponder.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
