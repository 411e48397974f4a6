"""The benchmarks' peer processes: started, waited for until healthy, and always stopped."""

import subprocess
import sys
from pathlib import Path

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


def test_an_error_while_running_carries_the_peers_state_and_log_tail():
    """A peer that dies under a benchmark (llama-server crashing mid-run) is named in
    the error, with the end of its log, before the log is removed."""
    port = free_port()
    code = (
        "import http.server, os, threading\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
        "        if self.path == '/crash':\n"
        "            print('GGML_ASSERT: slot overflow', flush=True)\n"
        "            threading.Timer(0.2, os._exit, (6,)).start()\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )
    cmd = [sys.executable, "-c", code]
    with pytest.raises(RuntimeError) as caught, running(cmd, f"http://127.0.0.1:{port}/") as proc:
        httpx.get(f"http://127.0.0.1:{port}/crash", timeout=5)
        proc.wait(timeout=30)
        raise RuntimeError("the driver lost its server")
    [note] = caught.value.__notes__
    assert "exited (6)" in note and "GGML_ASSERT: slot overflow" in note
    assert proc.poll() is not None


def test_an_error_while_a_peer_is_still_up_says_so():
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with pytest.raises(ValueError) as caught, running(cmd, f"http://127.0.0.1:{port}/"):
        raise ValueError("a bad reply")
    [note] = caught.value.__notes__
    assert note.startswith(f"{Path(sys.executable).name} still running")
