"""The ``ponder`` command line: one module per command, over the library's public API.

Library code never imports this package (the layering is checked by import-linter, see
the ``importlinter`` contracts in pyproject.toml).
"""

from ponder.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
