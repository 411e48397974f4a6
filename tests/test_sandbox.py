"""The code sandbox: normal runs, and adversarial programs that must be contained.

Each adversarial program runs under small limits and the test checks both its status and that
the host is unharmed (no file written, no connection made, this process alive, no process left).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
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


def test_printing_and_exiting_does_not_help() -> None:
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
    # Several times: the end of the run once depended on how much was in the pipe when the
    # limit was reached, and about one run in eight waited out the wall limit instead.
    for _ in range(8):
        result = run(code, limits=Limits(output_bytes=100_000))
        assert result.status == "output_limit"
        assert len(result.stdout) <= 100_000
        assert result.seconds < 5


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
            # A run has two ids: an even one for the program, the next for its judge.
            uids = {_uid_of(pid) for pid in sandbox_pids()} - {None}
            seen.append(len({uid // 2 for uid in uids if uid is not None}))
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


# ---- the verdict cannot be forged ------------------------------------------------------------
#
# Each program below is wrong (``add`` does not add) and tries to pass anyway. The tests run in
# a separate judge process; only what the judge reports decides the verdict.

SECRET = "expected-" + secrets.token_hex(8)
ADD_TESTS = f"""
assert add(1, 2) == 3
assert add(-1, 1) == 0
assert add(2.5, 0.5) == 3.0
_secret = {SECRET!r}
"""
BUILTIN_TESTS = f"""
import math
assert math.isclose(add(1, 2), 3)
assert abs(add(2.5, 0.5) - 3.0) < 1e-9
assert round(add(1.2, 1.8)) == 3
_secret = {SECRET!r}
"""
RIGHT_ADD = "def add(a, b):\n    return a + b\n"

# Finds a completion marker like the old harness's (b"\\n" + 32 hex digits + b"\\n") in a value.
_FIND_MARKER = """
import gc, os, re, sys
def marker_in(value):
    if isinstance(value, bytes) and re.fullmatch(rb"\\n[0-9a-f]{32}\\n", value):
        return value
    if isinstance(value, (str, bytes)):
        text = value.encode() if isinstance(value, str) else value
        found = re.findall(rb"b'\\\\n([0-9a-f]{32})\\\\n'", text)
        return b"\\n" + found[-1] + b"\\n" if found else None
    return None
def forge_from(value):
    if marker_in(value):
        os.write(1, marker_in(value))
        os._exit(0)
"""
WRONG_ADD = "def add(a, b):\n    return 0\n"


def forgery(body: str, tests: str = ADD_TESTS, find_marker: bool = False) -> tuple[str, str]:
    """A wrong program: ``body``, then an ``add`` that returns 0 (with ``marker_in`` and
    ``forge_from``, which prints a marker it finds and exits 0, defined first when
    ``find_marker``); and the tests it must not pass."""
    return (_FIND_MARKER if find_marker else "") + textwrap.dedent(body) + WRONG_ADD, tests


FORGERIES: dict[str, tuple[str, str]] = {
    # from issue 15: overriding exec, forging the completion marker, reading the tests on stdin
    "exec_override": forgery(
        """
        import builtins
        builtins.exec = lambda *a, **k: None
        """,
    ),
    "marker_from_caller_frame": forgery(
        """
        frame = sys._getframe(0)
        while frame is not None:
            for value in list(frame.f_locals.values()):
                if marker_in(value):
                    os.write(1, marker_in(value))
            frame = frame.f_back
        os._exit(0)
        """,
        find_marker=True,
    ),
    "stdin_rewind": forgery(
        """
        os.lseek(0, 0, 0)
        text = os.read(0, 10**7)
        print(text.decode(errors="replace"))
        forge_from(text)
        """,
        find_marker=True,
    ),
    # results whose __eq__ says yes to everything
    "custom_eq": (
        """
        class Yes:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
        def add(a, b):
            return Yes()
        """,
        ADD_TESTS,
    ),
    "float_subclass_eq": (
        """
        class Yes(float):
            def __eq__(self, other):
                return True
            __hash__ = float.__hash__
        def add(a, b):
            return Yes(0)
        """,
        ADD_TESTS,
    ),
    # builtins the tests use, patched or shadowed; __import__ handing the tests a fake module
    "patched_builtins_and_import": forgery(
        """
        import builtins, types
        real_import = builtins.__import__
        fake_math = types.SimpleNamespace(isclose=lambda *a, **k: True)
        def fake_import(name, *args, **kwargs):
            return fake_math if name == "math" else real_import(name, *args, **kwargs)
        builtins.__import__ = fake_import
        builtins.abs = lambda x: 0
        builtins.round = lambda *a: 3
        """,
        BUILTIN_TESTS,
    ),
    "shadowed_builtins": forgery(
        """
        import types
        math = types.SimpleNamespace(isclose=lambda *a, **k: True)
        def abs(x):
            return 0
        def round(x, n=None):
            return 3
        """,
        BUILTIN_TESTS.replace("import math\n", ""),
    ),
    # signal handlers and atexit: forge the ending while or after the tests run
    "signal_handler": (
        _FIND_MARKER
        + textwrap.dedent("""
        import signal
        def forge(signum, frame):
            while frame is not None:
                for value in list(frame.f_locals.values()):
                    forge_from(value)
                frame = frame.f_back
        signal.signal(signal.SIGALRM, forge)
        def add(a, b):
            signal.setitimer(signal.ITIMER_REAL, 0.001)
            total = 0
            for i in range(10**6):
                total += i
            return 0
        """),
        ADD_TESTS,
    ),
    "atexit": forgery(
        """
        import atexit
        frame, found = sys._getframe(0), []
        while frame is not None:
            found += [marker_in(v) for v in list(frame.f_locals.values()) if marker_in(v)]
            frame = frame.f_back
        def forge():
            for marker in found:
                os.write(1, marker)
            os._exit(0)
        atexit.register(forge)
        """,
        find_marker=True,
    ),
    # searching the interpreter's memory, and /proc, for the marker or the tests
    "memory_search": forgery(
        """
        for obj in gc.get_objects():
            items = obj if isinstance(obj, (tuple, list)) else ()
            for value in items:
                forge_from(value)
        """,
        find_marker=True,
    ),
    "proc_snooping": forgery(
        """
        found = []
        for pid in ["self"] + [p for p in os.listdir("/proc") if p.isdigit()]:
            for name in ("cmdline", "environ", "fd/0", "fd/3", "fd/4", "fd/5"):
                try:
                    handle = os.open(f"/proc/{pid}/{name}", os.O_RDONLY | os.O_NONBLOCK)
                    found.append(os.read(handle, 10**7))
                    os.close(handle)
                except OSError:
                    pass
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                fds = []
            for fd in fds:
                try:
                    handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
                    os.write(handle, b'{"verdict": "passed"}\\n')
                    os.close(handle)
                except OSError:
                    pass
        text = b"".join(found)
        print(text[-10**5:])
        forge_from(text)
        """,
        find_marker=True,
    ),
    # ending the process from inside the tests' calls, with or without fake output
    "sys_exit_in_call": (
        """
        import sys
        def add(a, b):
            sys.exit(0)
        """,
        ADD_TESTS,
    ),
    "os_exit_in_call_with_fake_output": (
        """
        import os
        def add(a, b):
            for fd in (1, 2, 3, 4, 5, 6):
                try:
                    os.write(fd, b'{"verdict": "passed"}\\n{"loaded": true}\\n')
                except OSError:
                    pass
            os._exit(0)
        """,
        ADD_TESTS,
    ),
    # a well-formed "passed" verdict (and a judge exit 0) into every pipe reachable in /proc,
    # again after the judge's own report: ponder's verdict pipe must be out of reach
    "verdict_through_proc_pipes": forgery(
        """
        import atexit, os, time
        import __main__ as sandbox
        body = sandbox.encode({"verdict": "passed"})
        frame = len(body).to_bytes(4, "big") + body
        note = repr({"role": "judge", "exit": 0, "cpu": 0.0}).encode() + b"\\n"
        targets = []
        for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                path = f"/proc/{pid}/fd/{fd}"
                try:
                    if os.readlink(path).startswith("pipe:"):
                        targets.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
        def forge(data):
            for handle in targets:
                try:
                    os.write(handle, data)
                except OSError:
                    pass
        forge(frame)
        atexit.register(lambda: (time.sleep(0.3), forge(note)))
        """,
    ),
    # speaking the judge's protocol itself: announcing exports and answering before being asked
    "forged_protocol": forgery(
        """
        import __main__ as sandbox
        for call_id in range(1, 10):
            sandbox.send(4, ["ok", call_id, True])
        sandbox.send(4, ["loaded", [["add", "value", 3], ["_secret", "value", "x"]]])
        """,
    ),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_wrong_programs_cannot_forge_a_pass(name: str) -> None:
    code, tests = FORGERIES[name]
    result = run(code, tests)
    assert result.status != "passed", result
    assert not result.passed
    assert SECRET not in result.stdout, "the tests were readable by the program"
    assert sandbox_pids() == []


@pytest.mark.parametrize(
    "name", ["atexit", "signal_handler", "proc_snooping", "memory_search", "stdin_rewind"]
)
def test_right_programs_with_the_same_tricks_still_pass(name: str) -> None:
    if name == "proc_snooping" and not ISOLATION.user:
        pytest.skip("as the same user, writing into the judge's pipes breaks the program's run")
    code, tests = FORGERIES[name]
    tricks = textwrap.dedent(code).replace("def add(a, b):", "def _unused(a, b):")
    result = run(tricks + "\n" + RIGHT_ADD, tests)
    assert result.status == "passed", result


@needs_uid
def test_the_program_cannot_stop_or_kill_the_judge() -> None:
    code = """
    import os, signal
    others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    for pid in others:
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    def add(a, b):
        return 0
    """
    result = run(code, ADD_TESTS)
    assert result.status == "failed"
    assert "AssertionError" in result.detail


def test_the_program_never_sees_the_tests() -> None:
    code = """
    import os, sys
    print(open("/proc/self/cmdline", "rb").read())
    print(sorted(os.listdir("/proc/self/fd")))
    def add(a, b):
        print("args", a, b)
        return a + b
    """
    result = run(code, ADD_TESTS)
    assert result.status == "passed"
    assert "args 1 2" in result.stdout
    assert SECRET not in result.stdout + result.stderr


# ---- what crosses between program and tests ----------------------------------------------------


def test_plain_data_crosses_exactly() -> None:
    code = """
    import collections, math
    Point = collections.namedtuple("Point", "x y")
    LIMIT = [1, 2, {"a": (3, 4)}]
    VALUES = [None, True, 0, -7, 10**5000, 1.5, -0.0, math.inf, 1 + 2j, "é\\udc80", b"\\0\\xff",
              (1, 2), [1, 2], {(1, "x"): {3}}, frozenset({4}), set()]
    def values():
        return VALUES
    def subclasses():
        return Point(1, 2), collections.Counter("aab"), collections.OrderedDict(a=1)
    def nan():
        return float("nan")
    def echo(*args, **kwargs):
        return [args, kwargs]
    """
    tests = """
    v = values()
    assert v == [None, True, 0, -7, 10**5000, 1.5, -0.0, math.inf, 1 + 2j, "é\\udc80", b"\\0\\xff",
                 (1, 2), [1, 2], {(1, "x"): {3}}, frozenset({4}), set()]
    assert VALUES == v
    assert [type(x) for x in v[10:]] == [bytes, tuple, list, dict, frozenset, set]
    assert v[1] is True and v[0] is None and math.copysign(1, v[6]) == -1
    assert subclasses() == ((1, 2), {"a": 2, "b": 1}, {"a": 1})
    assert type(subclasses()[0]) is tuple
    assert math.isnan(nan())
    assert echo(1, [2], k=(3,)) == [(1, [2]), {"k": (3,)}]
    assert LIMIT == [1, 2, {"a": (3, 4)}]
    """
    result = run(code, tests)
    assert result.status == "passed", result.stderr


def test_exceptions_and_unsendable_values_reach_the_tests() -> None:
    code = """
    class Odd(Exception):
        pass
    def fails(kind):
        if kind == "value":
            raise ValueError("bad value")
        if kind == "odd":
            raise Odd("strange")
        return object()
    def generator():
        yield 1
    """
    tests = """
    try:
        fails("value")
    except ValueError as exc:
        assert str(exc) == "bad value"
    try:
        fails("odd")
    except Exception as exc:
        assert str(exc) == "Odd: strange", exc
    for call in (lambda: fails("other"), generator, lambda: fails(lambda: 1)):
        try:
            call()
        except TypeError as exc:
            assert "cannot cross" in str(exc), exc
        else:
            raise AssertionError("an unsendable value crossed")
    """
    result = run(code, tests)
    assert result.status == "passed", result.stderr


def test_a_program_that_ends_during_the_tests_fails_even_if_the_tests_catch_it() -> None:
    code = "import os\ndef add(a, b):\n    os._exit(0)\n"
    tests = "try:\n    add(1, 2)\nexcept BaseException:\n    pass\n"
    result = run(code, tests)
    assert result.status == "failed"
    assert "before the tests finished" in result.detail


def test_checks_run_apart_and_a_program_that_ignores_its_timer_loses_the_rest() -> None:
    code = textwrap.dedent(
        """
    import signal
    def f(x):
        if x == 1:
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            while True:
                pass
        if x == 2:
            while True:
                pass
        return x
    """
    )
    sandbox = Sandbox(limits=SMALL)
    honest = asyncio.run(
        sandbox.run_checks(code, ["assert f(0) == 0", "assert f(2) == 2", "assert f(3) == 3"], 0.5)
    )
    assert honest.checks == (True, False, True)
    assert honest.status == "failed"
    stubborn = asyncio.run(
        sandbox.run_checks(code, ["assert f(0) == 0", "assert f(1) == 1", "assert f(3) == 3"], 0.5)
    )
    assert stubborn.checks == (True, False, False)
    assert "stopped answering" in stubborn.detail
    assert asyncio.run(sandbox.run_checks("x = ", ["assert True"], 1.0)).checks is None


# ---- the two sandbox-side modules as code ------------------------------------------------------


def test_the_wire_decodes_only_plain_values() -> None:
    from ponder.scoring.sandbox_judge import WireError, decode, encode, frames, receive, send

    value = [None, True, -(2**70), 2.5, -0.0, 1j, "s\udc80", b"b", (1,), {1: [2]}, {3}, frozenset()]
    assert decode(encode(value)) == value
    assert [type(v) for v in decode(encode(value))] == [type(v) for v in value]
    for bad in (
        b"",
        b"N!",
        b"X",
        b"i\x00\x00\x00\x09\x01",
        b"f\x00\x00\x00\x03xyz",
        b"c" + encode(1) + encode(2.0),
        b"d\x00\x00\x00\x01" + encode([1]) + encode(None),
        b"e\x00\x00\x00\x01" + encode({}),
        b"l\xff\xff\xff\xff",
        b"s\x00\x00\x00\x01\xff",
    ):
        with pytest.raises(WireError):
            decode(bad)
    with pytest.raises(WireError, match="deeper"):
        decode(b"l\x00\x00\x00\x01" * 500 + b"N")
    with pytest.raises(TypeError, match="cannot cross"):
        encode(object())
    read_fd, write_fd = os.pipe()
    try:
        send(write_fd, ["ok", 1, (1, 2)])
        os.write(write_fd, b"\x00\x00\x00\x01X")
        os.write(write_fd, (2**31).to_bytes(4, "big"))
        assert receive(read_fd) == ["ok", 1, (1, 2)]
        with pytest.raises(WireError, match="unknown tag"):
            receive(read_fd)
        with pytest.raises(WireError, match="limit"):
            receive(read_fd)
        os.close(write_fd)
        write_fd = -1
        assert receive(read_fd) is None
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    stream = b"".join(len(encode(v)).to_bytes(4, "big") + encode(v) for v in ({"a": 1}, [2]))
    assert frames(stream + b"\x00\x00\x01\x00N") == [{"a": 1}, [2]]


def test_the_judge_keeps_its_builtins_and_imports_only_real_modules() -> None:
    from ponder.scoring.sandbox_judge import Link, Remote, namespace_for, referenced_names

    link = Link(-1, -1)
    exported = [
        ["abs", "function", None],
        ["__builtins__", "value", None],
        ["add", "function", None],
        ["math", "module", "math"],
        ["json", "module", "os"],
        ["x", "value", 42],
        ["not an identifier", "value", None],
    ]
    namespace = namespace_for(exported, link, referenced_names(["y = add(math.pi, abs(-1))"]))
    assert set(namespace) == {"__name__", "__builtins__", "add", "math"}
    namespace = namespace_for(exported, link, {"add", "math", "x", "json", "abs"})
    assert set(namespace) == {"__name__", "__builtins__", "add", "math", "x"}
    assert isinstance(namespace["add"], Remote) and namespace["x"] == 42
    import builtins
    import math

    assert namespace["math"] is math and namespace["__builtins__"] is builtins


def test_the_launcher_places_descriptors_and_reads_mountinfo() -> None:
    from ponder.scoring import sandbox_launcher

    line = "36 35 98:0 /mnt1 /mnt\\040dir rw,noatime master:1 - ext3 /dev/root rw"
    assert list(sandbox_launcher.mountpoints(line + "\nshort line\n")) == [
        ("/mnt dir", ["rw", "noatime"])
    ]
    assert sandbox_launcher.blocked_ancestor("/usr/bin") is None
    script = textwrap.dedent(
        f"""
        import os, runpy
        place = runpy.run_path({sandbox_launcher.__file__!r})["place"]
        a, b = os.pipe()
        os.write(b, b"x")
        place([a, os.open(os.devnull, os.O_WRONLY), 2])
        assert os.read(0, 1) == b"x"
        os.write(2, b"ok")
        assert sorted(int(fd) for fd in os.listdir("/proc/self/fd"))[:4] == [0, 1, 2, 3]
        """
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0 and done.stderr == b"ok", done.stderr


def test_the_sandbox_side_modules_use_the_standard_library_only() -> None:
    import ast

    from ponder.scoring import sandbox_judge, sandbox_launcher

    for module in (sandbox_judge, sandbox_launcher):
        tree = ast.parse(Path(str(module.__file__)).read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        outside = {n for n in names if n.partition(".")[0] not in sys.stdlib_module_names}
        assert outside <= {"__future__"}, (module.__name__, outside)
