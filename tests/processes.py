"""A server subprocess for a test fixture: wait until it answers, then stop it."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import httpx
import pytest


def wait_until_up(
    proc: subprocess.Popen[bytes], url: str, log: Path, name: str, timeout: float, every: float
) -> None:
    """Poll ``url`` until it answers 200; fail the test, with the log's tail, if ``proc``
    exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not start: {log.read_text()[-2000:]}")
        time.sleep(every)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc``; kill it if it has not exited after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
