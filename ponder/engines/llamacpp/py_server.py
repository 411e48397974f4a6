"""llama-cpp-python's own OpenAI-compatible server, loading models as ponder does.

``python -m ponder.engines.llamacpp.py_server ARGS`` takes the arguments of
``python -m llama_cpp.server`` and runs it after ``guard_llama_cpp()``, so that on Intel AMX
CPUs the model loads without llama.cpp's crashing AMX repacking (README, "Intel AMX
CPUs"). The tests use it as the real OpenAI-compatible server on loopback.
"""

from __future__ import annotations

import runpy
import sys

from ponder.engines.llamacpp.native import guard_llama_cpp


def main() -> None:
    guard_llama_cpp()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
