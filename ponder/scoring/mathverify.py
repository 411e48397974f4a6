"""Hugging Face's math-verify as the second opinion on answers ponder's own rules call
different (intervals, sets, unordered solution lists, ``\\pm``, matrices, ``5!``...).

math-verify evaluates exactly and its own timeout is a ``SIGALRM`` (main thread only), so it
runs in a worker process (``_mathverify_worker``), started on first use and shared by every
thread: each text is given to ``math_verify.parse`` as inline math (``$...$``) unless it
already holds ``$`` or ``\\boxed``, parsed once (cached in the worker), and
``math_verify.verify`` compares the two with the reference as its gold answer. A comparison
that takes longer than ``TIMEOUT_S`` kills the worker (the next one starts a new one) and
counts as "different"; so does a worker that cannot start.
"""

from __future__ import annotations

import atexit
import json
import select
import subprocess
import sys
import threading
from typing import IO

__all__ = ["TIMEOUT_S", "math_verify_equivalent"]

TIMEOUT_S = 5.0
_START_TIMEOUT_S = 120.0
_MAX_CHARS = 400


class _Worker:
    """The worker process and the pipe to it; one comparison at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None

    def compare(self, answer: str, reference: str, timeout: float) -> bool:
        with self._lock:
            proc = self._proc if self._proc and self._proc.poll() is None else self._start()
            if proc is None:
                return False
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps([answer, reference]) + "\n")
                proc.stdin.flush()
            except OSError:
                self._stop()
                return False
            reply = _read_line(proc.stdout, timeout)
            if reply is None:
                self._stop()
                return False
            return json.loads(reply) is True

    def _start(self) -> subprocess.Popen[str] | None:
        self._stop()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ponder.scoring._mathverify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._proc = proc
        assert proc.stdout is not None
        if _read_line(proc.stdout, _START_TIMEOUT_S) != '"ready"':
            self._stop()
            return None
        return proc

    def close(self) -> None:
        """Kill the worker (at exit: one stuck in a long computation would outlive ponder)."""
        self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _read_line(stream: IO[str], timeout: float) -> str | None:
    """The next line of ``stream`` without its newline, or None after ``timeout`` seconds or
    at the end of the stream."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return None
    line = stream.readline()
    return line.rstrip("\n") if line else None


_worker = _Worker()
atexit.register(_worker.close)


def math_verify_equivalent(answer: str, reference: str) -> bool:
    """math-verify's verdict that ``answer`` states ``reference``; False when either does not
    parse, either is longer than 400 characters, or the comparison fails or overruns."""
    if len(answer) > _MAX_CHARS or len(reference) > _MAX_CHARS:
        return False
    return _worker.compare(answer, reference, TIMEOUT_S)
