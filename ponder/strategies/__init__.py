"""Inference-time strategies, one file each, registered by name."""

from ponder.strategies import greedy, vote
from ponder.strategies.base import Strategy, create, describe, names, register

__all__ = ["Strategy", "create", "describe", "greedy", "names", "register", "vote"]
