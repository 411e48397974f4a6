"""The code sandbox: normal runs, and adversarial programs that must be contained.

Each adversarial program runs under small limits and the test checks both its status and that
the host is unharmed (no file written, no connection made, this process alive, no process left).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import textwrap
from pathlib import Path

import pytest

from ponder.scoring.execution import UID_RANGE, Limits, Sandbox, probe_isolation

REPO = Path(__file__).resolve().parent.parent
SMALL = Limits(wall_seconds=5.0, cpu_seconds=3, memory_mb=256, max_processes=8)
ISOLATION = probe_isolation()

needs_uid = pytest.mark.skipif(
    not ISOLATION.user, reason="needs root: the program must run as a user id of its own"
)
needs_net = pytest.mark.skipif(not ISOLATION.network, reason="no network namespace here")
needs_fs = pytest.mark.skipif(not ISOLATION.filesystem, reason="no read-only mount namespace")


def run(code: str, tests: str = "", limits: Limits = SMALL) -> object:
    return Sandbox(limits=limits).run_sync(textwrap.dedent(code), textwrap.dedent(tests))


def sandbox_pids() -> list[int]:
    """Host processes whose real uid is one of the sandbox uids."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        if UID_RANGE[0] <= int(uid_line.split()[1]) < UID_RANGE[1]:
            found.append(int(entry.name))
    return found


def test_pass_and_fail_with_traceback() -> None:
    code = "def add(a, b):\n    return a + b\n"
    ok = run(code, "assert add(2, 3) == 5\nprint('checked')")
    assert (ok.status, ok.passed, ok.returncode) == ("passed", True, 0)
    assert ok.stdout == "checked\n"
    bad = run(code, "assert add(2, 2) == 5, 'two and two'")
    assert (bad.status, bad.passed, bad.returncode) == ("failed", False, 1)
    assert "AssertionError: two and two" in bad.stderr
    assert 'File "<tests>", line 1' in bad.stderr
    assert bad.detail.startswith("AssertionError")


def test_syntax_error_is_a_failure() -> None:
    result = run("def f(:\n    pass\n", "assert True")
    assert result.status == "failed"
    assert "SyntaxError" in result.stderr


@pytest.mark.parametrize("exit_call", ["sys.exit(0)", "os._exit(0)", "raise SystemExit"])
def test_exit_before_the_tests_never_passes(exit_call: str) -> None:
    result = run(f"import os, sys\n{exit_call}\n", "assert False")
    assert result.returncode == 0
    assert result.status == "failed"
    assert not result.passed
    assert "before the tests finished" in result.detail


def test_printing_the_marker_text_does_not_help() -> None:
    # A program cannot know the per-run marker, so printing something like it does not pass.
    result = run("import sys\nprint('\\n' + '0' * 32)\nsys.exit(0)\n", "")
    assert result.status == "failed"


def test_infinite_loop_hits_the_wall_limit() -> None:
    result = run("while True:\n    pass\n", limits=Limits(wall_seconds=1.0, cpu_seconds=30))
    assert result.status == "timeout"
    assert result.returncode is None
    assert "wall time" in result.detail
    assert sandbox_pids() == []


def test_cpu_limit() -> None:
    result = run("while True:\n    pass\n", limits=Limits(wall_seconds=20.0, cpu_seconds=1))
    assert result.status == "timeout"
    assert "CPU time" in result.detail


def test_memory_limit() -> None:
    result = run("block = bytearray(20 * 2**30)\n")
    assert result.status == "memory"
    assert "MemoryError" in result.stderr


@needs_uid
def test_fork_bomb_is_capped_and_cleaned_up() -> None:
    code = """
    import os
    while True:
        try:
            os.fork()
        except OSError:
            pass
    """
    limits = Limits(wall_seconds=1.5, cpu_seconds=5, memory_mb=128, max_processes=6)
    result = run(code, limits=limits)
    assert result.status == "timeout"
    assert sandbox_pids() == []


@needs_uid
def test_children_that_leave_the_group_are_killed() -> None:
    code = """
    import os, time
    if os.fork() == 0:
        os.setsid()
        time.sleep(60)
    print('parent done')
    """
    result = run(code)
    assert result.status == "passed"
    assert sandbox_pids() == []


def test_disk_writes_are_capped() -> None:
    code = """
    import os
    print(os.getcwd(), flush=True)
    with open("big.bin", "wb") as f:
        for _ in range(1024):
            f.write(b"\\0" * 2**20)
    """
    result = run(code)
    assert result.status == "failed"
    assert "file size limit" in result.detail
    workdir = result.stdout.strip()
    assert workdir and not os.path.exists(workdir)


@needs_fs
def test_writes_outside_the_working_directory_fail() -> None:
    tag = secrets.token_hex(8)
    targets = [f"/tmp/ponder-escape-{tag}", str(REPO / f"ponder-escape-{tag}"), f"/dev/shm/e{tag}"]
    code = f"""
    for path in {targets!r}:
        try:
            with open(path, "w") as f:
                f.write("escaped")
            print("wrote", path)
        except OSError as exc:
            print("blocked", path, type(exc).__name__)
    with open("inside.txt", "w") as f:
        f.write("fine")
    """
    result = run(code)
    assert result.status == "passed"
    assert result.stdout.count("blocked") == len(targets)
    for path in targets:
        assert not os.path.exists(path)


def test_parent_environment_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-" + secrets.token_hex(8)
    monkeypatch.setenv("PONDER_TEST_SECRET", secret)
    code = f"""
    import os
    print(dict(os.environ))
    for pid in (os.getppid(), {os.getpid()}):
        try:
            print(open(f"/proc/{{pid}}/environ", "rb").read())
        except OSError as exc:
            print("denied", type(exc).__name__)
    """
    result = run(code)
    assert result.status == "passed"
    assert "PONDER_TEST_SECRET" not in result.stdout
    assert secret not in result.stdout + result.stderr
    assert "HOME" in result.stdout


@needs_net
def test_no_network_connection_arrives() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        code = f"""
        import socket
        for host in ("127.0.0.1", "localhost", "8.8.8.8"):
            try:
                socket.create_connection((host, {port}), timeout=2).close()
                print("connected", host)
            except OSError as exc:
                print("refused", host, type(exc).__name__)
        """
        result = run(code)
        assert result.status == "passed"
        assert "connected" not in result.stdout
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()


def test_printing_100_mb_is_stopped() -> None:
    code = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20)\n"
    result = run(code, limits=Limits(output_bytes=100_000))
    assert result.status == "output_limit"
    assert len(result.stdout) <= 100_000


@needs_uid
def test_cannot_kill_the_parent_or_the_host() -> None:
    code = f"""
    import os, signal
    for pid in (os.getppid(), {os.getpid()}, 1, -1):
        try:
            os.kill(pid, signal.SIGKILL)
            print("sent", pid)
        except OSError as exc:
            print("denied", pid, type(exc).__name__)
    """
    result = run(code)
    # Still here: this process was not killed. The program's own result is readable.
    assert result.status == "passed"
    assert f"sent {os.getpid()}" not in result.stdout
    assert sandbox_pids() == []


def test_killing_itself_reports_killed() -> None:
    result = run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert result.status == "killed"
    assert result.returncode == -9


def test_many_runs_share_a_bounded_pool() -> None:
    sandbox = Sandbox(max_workers=2, limits=SMALL)
    jobs = [(f"import time\nx = {i}\ntime.sleep(0.3)\n", f"assert x == {i}") for i in range(6)]
    jobs.append(("x = 1\n", "assert x == 2"))
    seen: list[int] = []

    async def watch(task: asyncio.Future[list[object]]) -> None:
        while not task.done():
            seen.append(len({_uid_of(pid) for pid in sandbox_pids()} - {None}))
            await asyncio.sleep(0.02)

    async def main() -> list[object]:
        task = asyncio.ensure_future(sandbox.run_many(jobs))
        await watch(task)
        return await task

    results = asyncio.run(main())
    assert [r.status for r in results] == ["passed"] * 6 + ["failed"]
    assert max(seen) <= 2


def _uid_of(pid: int) -> int | None:
    try:
        return Path(f"/proc/{pid}").stat().st_uid
    except OSError:
        return None


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="wall_seconds"):
        Limits(wall_seconds=0)
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=8)
    with pytest.raises(ValueError, match="max_workers"):
        Sandbox(max_workers=0)
