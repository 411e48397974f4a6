"""Peer processes for the benchmarks: a free loopback port, waiting for health, and
a peer started, waited for and stopped."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(log: Path, chars: int = 2000) -> str:
    """The last ``chars`` characters of a peer's log."""
    return log.read_text(errors="replace")[-chars:]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 180) -> None:
    """Poll ``url`` until it answers below 500; fail with the log's tail if ``proc``
    exits or ``seconds`` pass."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited ({proc.returncode}): {_tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {seconds:.0f} s: {_tail(log)}")


def stop(proc: subprocess.Popen[bytes], seconds: float = 15) -> None:
    """Terminate ``proc``; kill it if it has not exited after ``seconds``."""
    proc.terminate()
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def peer_state(name: str, proc: subprocess.Popen[bytes], log: Path) -> str:
    """A line on whether ``proc`` is still up (or its exit status), then its log's tail."""
    code = proc.poll()
    state = "still running" if code is None else f"exited ({code})"
    return f"{Path(name).name} {state}; the end of its log:\n{_tail(log)}"


@contextmanager
def running(
    cmd: list[str], health: str, env: dict[str, str] | None = None, seconds: float = 180
) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` started with its output in a temporary log, once ``health`` answers
    (``wait_healthy``); stopped (``stop``), and its log removed, on leaving or when it
    does not come up. An error raised while it runs carries a note saying whether the
    process was still up, with its log's tail (the log is gone once this returns)."""
    log = Path(tempfile.mkstemp(prefix="ponder-bench-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(health, proc, log, seconds)
        try:
            yield proc
        except Exception as e:
            e.add_note(peer_state(cmd[0], proc, log))
            raise
    finally:
        stop(proc)
        log.unlink(missing_ok=True)
