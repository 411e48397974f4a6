"""Inference-time strategies, one file each, registered by name.

Every module in this package that defines a strategy registers it on import; importing
the package imports them all, so adding a method is adding a file.
"""

import importlib
import pkgutil

from ponder.strategies.base import (
    Strategy,
    StrategyBase,
    canonical,
    create,
    describe,
    names,
    register,
    settings,
)

_SUPPORT = {
    "base",
    "common",
    "trace",
    "numerics",
    "resampling",
    "selection",
    "confidence",
    "stopping",
    "rpc_pruning",
}
for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in _SUPPORT and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "Strategy",
    "StrategyBase",
    "canonical",
    "create",
    "describe",
    "names",
    "register",
    "settings",
]
