"""``KEY=VALUE`` settings as people type them on a command line or in a spec.

One parser for every place that takes settings as text (``--set``, ``--scorer-set``,
``--task-set``, ``vote[temperature=1.0;max_tokens=64]``): a value is read as JSON when it
parses (numbers, ``true``/``false``, lists, objects), else kept as the text typed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any


def parse_value(value: str) -> Any:
    """``value`` as JSON when it parses, else the text itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def parse_pair(item: str, what: str) -> tuple[str, Any]:
    """``KEY=VALUE`` → ``(KEY, value)``; ``ValueError`` naming ``what`` when malformed."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{what} takes KEY=VALUE, got {item!r}")
    return key.strip(), parse_value(value.strip())


def parse_pairs(items: Iterable[str] | None, what: str) -> dict[str, Any]:
    """Several ``KEY=VALUE`` items as a dict (a later key wins)."""
    return dict(parse_pair(item, what) for item in items or [])


def make_config(cls: type[Any], options: dict[str, Any], owner: str, noun: str = "setting") -> Any:
    """The frozen config ``cls`` built from user ``options``, with errors a user can act on:
    an unknown key names the known ones; a bad value keeps the config's own message.
    ``owner`` names what is configured (``"strategy 'vote'"``), ``noun`` what a key is."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"{owner} has no {noun} {', '.join(map(repr, unknown))}; "
            f"its {noun}s are: {', '.join(sorted(known)) or '(none)'}"
        )
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"{owner}: {exc}") from None
