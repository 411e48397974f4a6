"""The server's limits and defaults: one frozen value, passed to ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ponder.api import DEFAULT_STRATEGY


@dataclass(frozen=True)
class ServerSettings:
    """How ``ponder serve`` treats requests.

    ``concurrency`` runs execute at once (they share the engine's batches); up to
    ``queue_size`` runs are admitted in all (running plus waiting), beyond that a request
    is refused with 429 and ``Retry-After: retry_after``. ``max_budget`` and
    ``max_tokens`` cap what one request may ask for (400 beyond them); ``max_tokens`` is
    also the per-sample token cap of a request that names none. ``max_body_bytes`` caps a
    request body (413 beyond it, refused before the rest is read). ``api_key``, when set,
    must arrive as ``Authorization: Bearer <key>`` on every API call. ``scorer`` (with
    ``scorer_options``) is the scorer of a request that names none.
    """

    model: str = ""
    api_key: str | None = None
    default_strategy: str = DEFAULT_STRATEGY
    default_budget: int = 4
    max_budget: int = 32
    max_tokens: int = 1024
    concurrency: int = 8
    queue_size: int = 32
    retry_after: int = 1
    max_body_bytes: int = 8 * 1024 * 1024
    scorer: str | None = None
    scorer_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "default_budget",
            "max_budget",
            "max_tokens",
            "concurrency",
            "queue_size",
            "max_body_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"server setting {name} must be >= 1, got {getattr(self, name)}")
        if self.default_budget > self.max_budget:
            raise ValueError(
                f"default_budget ({self.default_budget}) exceeds max_budget ({self.max_budget})"
            )
        if self.queue_size < self.concurrency:
            raise ValueError(
                f"queue_size ({self.queue_size}) counts running runs too, so it must be >= "
                f"concurrency ({self.concurrency})"
            )
        if self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {self.retry_after}")
