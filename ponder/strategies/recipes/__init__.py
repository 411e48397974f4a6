"""Recipes for the ``auto`` strategy: the file format (``format``), the policy's decisions
as pure functions (``policy``), the model's own "would more attempts help?" (``more``) and
the built-in default recipe (``default.json``)."""

from ponder.strategies.recipes.format import (
    FINALS,
    FORMAT,
    SIGNALS,
    Recipe,
    Stage,
    from_dict,
    load,
    save,
)
from ponder.strategies.recipes.policy import Outcome, fires, pick, reason, replay, signals, step

__all__ = [
    "FINALS",
    "FORMAT",
    "SIGNALS",
    "Outcome",
    "Recipe",
    "Stage",
    "fires",
    "from_dict",
    "load",
    "pick",
    "reason",
    "replay",
    "save",
    "signals",
    "step",
]
