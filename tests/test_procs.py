"""The benchmarks' peer processes: started, waited for until healthy, and always stopped."""

import subprocess
import sys

import httpx
import pytest

from ponder.benchmarks._procs import free_port, running, stop


def test_running_yields_once_healthy_and_stops_the_process_after(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with running(cmd, f"http://127.0.0.1:{port}/", seconds=60) as proc:
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        assert proc.poll() is None
    assert proc.poll() is not None


def test_running_a_process_that_exits_raises_with_its_log():
    cmd = [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"]
    url = f"http://127.0.0.1:{free_port()}/health"
    with (
        pytest.raises(RuntimeError, match=r"exited \(3\): no model here"),
        running(cmd, url, seconds=60),
    ):
        pytest.fail("a process that exits is never healthy")


def test_stop_kills_a_process_that_ignores_terminate():
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    stop(proc, seconds=0.5)
    assert proc.returncode == -9
