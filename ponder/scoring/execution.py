"""Run untrusted Python (model-written programs) in a contained child process, and judge it with
tests that run in a second, separate process the program cannot reach.

Each run starts the launcher (``ponder/scoring/sandbox_launcher.py``, a fresh ``python -I -S``
process) which, before handing over, applies what the operating system allows:

* resource limits: CPU seconds, address space (memory), file size, process count, no core dumps;
* a fresh, empty temporary working directory, deleted afterwards;
* a minimal environment (``PATH``, ``HOME``, ``TMPDIR``, ``LANG``), none of the parent's variables;
* its own session and process group, killed as a whole at the end and on any limit;
* when running as root: unprivileged user ids of its own (two per run, one for the program and
  one for the judge, so neither can signal, trace or read the other, nor the host), a private
  network namespace (no interfaces up: no connections anywhere, loopback included), a private
  mount namespace in which every file system is read-only except the working directory (a
  size-limited tmpfs), and a private PID namespace (when the run ends every process it started is
  killed by the kernel, including ones that left the process group);
* when not root: the same namespaces through an unprivileged user namespace where the kernel
  permits one, otherwise only the resource limits and process-group kill (see docs/SANDBOX.md).

The launcher starts two interpreters: the *program* (the untrusted code, served by
``sandbox_judge.serve``) and the *judge* (``sandbox_judge.judge``), which runs the tests and calls
the program's functions over a pipe, arguments and results crossing as plain data only. The
verdict is what the judge writes on a pipe of its own to ponder; nothing the program prints, exits
with or sends decides it. What a run reports is an ``ExecResult``.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import functools
import marshal
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ponder.scoring import sandbox_judge, sandbox_launcher

__all__ = [
    "STATUSES",
    "UID_RANGE",
    "ExecResult",
    "Isolation",
    "Limits",
    "Sandbox",
    "probe_isolation",
]

STATUSES = ("passed", "failed", "timeout", "memory", "output_limit", "error", "killed")

UID_RANGE = (1_990_000_000, 1_991_000_000)
"""User ids handed to sandboxed runs when ponder runs as root: two unused ids per running job,
drawn from this range (ids that no account uses; processes with ids in it are sandboxed runs).
The program gets an even id, its judge the odd id after it."""

GRACE_SECONDS = 1.0
"""How long the program may take to exit once the judge has finished, before it is killed."""

VERDICT_BYTES = 1_000_000
"""Most the judge may report (progress and verdict lines)."""


@dataclass(frozen=True)
class Limits:
    """Per-run limits, applied to the program and to the judge alike. ``memory_mb`` caps each
    process's address space, so the total across a run is at most ``max_processes * memory_mb``;
    ``file_size_mb`` caps any single file it writes; ``workdir_mb`` caps the whole working
    directory where a private tmpfs can be mounted; ``output_bytes`` caps stdout and stderr of
    program and judge together."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 512
    file_size_mb: int = 16
    max_processes: int = 32
    output_bytes: int = 1_000_000
    workdir_mb: int = 64

    def __post_init__(self) -> None:
        if not self.wall_seconds > 0:
            raise ValueError(f"wall_seconds must be > 0, got {self.wall_seconds}")
        for name in ("cpu_seconds", "memory_mb", "file_size_mb", "max_processes", "workdir_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.memory_mb < 64:
            raise ValueError(
                f"memory_mb must be >= 64 (Python itself needs ~20 MB), got {self.memory_mb}"
            )
        if self.output_bytes < 1024:
            raise ValueError(f"output_bytes must be >= 1024, got {self.output_bytes}")


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one run.

    ``status`` is one of ``STATUSES``: ``"passed"`` (the judge ran every test to the end with the
    program answering), ``"failed"`` (a test failed or raised, the program raised while loading,
    exited before the tests finished, or stopped answering), ``"timeout"`` (wall or CPU time
    limit), ``"memory"`` (``MemoryError`` under the memory limit), ``"output_limit"`` (more than
    ``output_bytes`` printed; stopped), ``"killed"`` (the program was ended by a signal, e.g. it
    killed itself) or ``"error"`` (the sandbox itself could not run it). ``returncode`` is the
    exit status of the process that decided the outcome: the judge's (0 passed, 1 failed) when
    the tests ran to the end, the program's when it ended first (negative: the signal that ended
    it; None when a limit stopped the run). ``stdout``/``stderr`` hold what the program and the
    tests printed, in arrival order. ``detail`` says why, and names any isolation the OS did not
    allow. ``checks`` (``run_checks`` only) says which checks passed; None when the program did
    not load.
    """

    status: str
    passed: bool
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    detail: str = ""
    checks: tuple[bool, ...] | None = None


@dataclass(frozen=True)
class Isolation:
    """What the launcher could set up on this machine (see ``probe_isolation``)."""

    user: bool = False
    network: bool = False
    filesystem: bool = False
    processes: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def missing(self) -> list[str]:
        names = {
            "user": "separate user id",
            "network": "network namespace",
            "filesystem": "read-only file system",
            "processes": "PID namespace",
        }
        return [text for key, text in names.items() if not getattr(self, key)]


@dataclass(frozen=True)
class _Job:
    """What one run executes: the program, and the tests as one script or as separate checks."""

    code: str
    tests: str = ""
    checks: tuple[str, ...] | None = None
    check_seconds: float | None = None


class _UidPool:
    """Unused pairs of user ids (program, judge) for concurrent runs in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: set[int] = set()
        self._rng = random.Random(secrets.randbits(64))

    def take(self) -> int:
        """An even id; the odd one after it is the judge's."""
        with self._lock:
            while True:
                uid = self._rng.randrange(UID_RANGE[0], UID_RANGE[1], 2)
                if uid not in self._used:
                    self._used.add(uid)
                    return uid

    def give(self, uid: int) -> None:
        with self._lock:
            self._used.discard(uid)


_UIDS = _UidPool()


def _interpreter() -> tuple[str, str]:
    """The real interpreter binary and its installation prefix (a venv's base Python)."""
    return os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)


@functools.cache
def _compiled_loader(path: str) -> bytes:
    """Python text that runs the module at ``path`` as ``__main__``: its code compiled here once
    (the sandbox runs this same interpreter) and marshalled, which spares every run compiling
    it."""
    code = marshal.dumps(compile(Path(path).read_text(encoding="utf-8"), path, "exec"))
    return f"import marshal\nexec(marshal.loads({code!r}))\n".encode()


def _program_text(job: _Job) -> bytes:
    return _compiled_loader(sandbox_judge.__file__) + f"serve({job.code!r})\n".encode()


def _judge_text(job: _Job, shared_uid: bool) -> bytes:
    checks = None if job.checks is None else list(job.checks)
    call = f"judge({job.tests!r}, {checks!r}, {job.check_seconds!r}, {shared_uid!r})\n"
    return _compiled_loader(sandbox_judge.__file__) + call.encode()


def _memfd(name: str, data: bytes) -> int:
    """An anonymous in-memory file holding ``data``, positioned at its start."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _rlimits(limits: Limits) -> dict[str, tuple[int, int]]:
    mb = 1024 * 1024
    return {
        # The soft limit sends SIGXCPU; one more second, then SIGKILL.
        "RLIMIT_CPU": (limits.cpu_seconds, limits.cpu_seconds + 1),
        "RLIMIT_AS": (limits.memory_mb * mb, limits.memory_mb * mb),
        "RLIMIT_FSIZE": (limits.file_size_mb * mb, limits.file_size_mb * mb),
        "RLIMIT_NPROC": (limits.max_processes, limits.max_processes),
        "RLIMIT_CORE": (0, 0),
        "RLIMIT_NOFILE": (256, 256),
    }


def _read_all(fd: int) -> bytes:
    """Everything left in a pipe whose writers are gone."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _report_lines(data: bytes) -> list[dict[str, Any]]:
    """The launcher's notes (``repr`` of plain dicts, one a line)."""
    lines = []
    for line in data.decode(errors="replace").splitlines():
        try:
            value = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            lines.append(value)
    return lines


def _isolation_of(notes: list[dict[str, Any]]) -> Isolation | None:
    extra = tuple(str(x) for n in notes if isinstance(n.get("notes"), list) for x in n["notes"])
    for n in notes:
        got = n.get("isolation")
        if isinstance(got, dict):
            return Isolation(
                user=bool(got.get("user")),
                network=bool(got.get("network")),
                filesystem=bool(got.get("filesystem")),
                processes=bool(got.get("processes")),
                notes=extra,
            )
    return None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass
class _Outcome:
    """Raw facts about one finished run, before they become an ExecResult."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    program_stderr: bytearray = field(default_factory=bytearray)
    verdict: bytearray = field(default_factory=bytearray)
    total: int = 0
    overflow: bool = False
    timed_out: bool = False
    returncode: int | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)


class Sandbox:
    """A bounded pool for running untrusted Python: at most ``max_workers`` runs at once (per
    event loop), each under ``limits`` unless a call passes its own."""

    def __init__(self, max_workers: int = 2, limits: Limits = Limits()) -> None:  # noqa: B008
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.limits = limits
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._slots.get(loop)
        if sem is None:
            sem = self._slots[loop] = asyncio.Semaphore(self.max_workers)
        return sem

    async def run(self, code: str, tests: str = "", limits: Limits | None = None) -> ExecResult:
        """Run ``code`` as the module ``__main__`` of the program process, then ``tests`` as a
        script in the judge process, where the program's functions are called over the wire;
        report how it ended."""
        if not isinstance(code, str) or not isinstance(tests, str):
            raise ValueError("code and tests must be strings of Python source")
        async with self._slot():
            return await _execute(_Job(code, tests), limits or self.limits)

    async def run_checks(
        self,
        code: str,
        checks: Sequence[str],
        check_seconds: float,
        limits: Limits | None = None,
    ) -> ExecResult:
        """Like ``run``, with each of ``checks`` run on its own in the judge, each within
        ``check_seconds``: a failing, raising or hanging check does not stop the others.
        ``ExecResult.checks`` says which passed."""
        if not isinstance(code, str) or any(not isinstance(c, str) for c in checks):
            raise ValueError("code and checks must be strings of Python source")
        if not check_seconds > 0:
            raise ValueError(f"check_seconds must be > 0, got {check_seconds}")
        job = _Job(code, checks=tuple(checks), check_seconds=float(check_seconds))
        async with self._slot():
            return await _execute(job, limits or self.limits)

    async def run_many(
        self, jobs: Sequence[tuple[str, str]], limits: Limits | None = None
    ) -> list[ExecResult]:
        """Run every ``(code, tests)`` job through the pool; results in job order."""
        return list(await asyncio.gather(*(self.run(c, t, limits) for c, t in jobs)))

    def run_sync(self, code: str, tests: str = "", limits: Limits | None = None) -> ExecResult:
        """``run`` for scripts without an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(code, tests, limits))
        raise RuntimeError("run_sync was called inside a running event loop; await run() instead")


async def _launch(
    config: dict[str, Any], pass_fds: Sequence[int] = (), capture: bool = False
) -> asyncio.subprocess.Process:
    """Start the launcher on ``config`` in a session of its own, with a bare environment, its
    code on stdin and stdout/stderr piped (``capture``) or discarded."""
    out = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
    text = _memfd("ponder-launcher", _compiled_loader(sandbox_launcher.__file__))
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            "-",
            marshal.dumps(config).hex(),
            stdin=text,
            stdout=out,
            stderr=out,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd="/",
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    finally:
        os.close(text)


def _prepare(uid: int | None) -> tuple[str, str]:
    """The run's folders: ``base`` and ``base/work``, the program's working directory."""
    base = tempfile.mkdtemp(prefix="ponder-sandbox-")
    os.chmod(base, 0o711)
    workdir = os.path.join(base, "work")
    os.mkdir(workdir, 0o700)
    if uid is not None:
        os.chown(workdir, uid, uid)
    return base, workdir


async def _execute(job: _Job, limits: Limits) -> ExecResult:
    start = time.monotonic()
    uid = _UIDS.take() if os.geteuid() == 0 else None
    judge_uid = None if uid is None else uid + 1
    base = ""
    mine: list[int] = []  # descriptors this function must close
    try:
        base, workdir = _prepare(uid)
        python, prefix = _interpreter()
        program_text = _memfd("ponder-program", _program_text(job))
        mine.append(program_text)
        judge_text = _memfd("ponder-judge", _judge_text(job, shared_uid=uid is None))
        mine.append(judge_text)
        pipes = {name: os.pipe() for name in ("report", "verdict", "judge_out", "judge_err")}
        for r, w in pipes.values():
            mine += [r, w]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        config: dict[str, Any] = {
            "report_fd": pipes["report"][1],
            "uid": uid,
            "gid": uid,
            "workdir": workdir,
            "workdir_mb": limits.workdir_mb,
            "python": python,
            "prefix": prefix,
            "rlimits": _rlimits(limits),
            "grace_seconds": GRACE_SECONDS,
            "fds": {
                "program_text": program_text,
                "judge_text": judge_text,
                "verdict": pipes["verdict"][1],
                "judge_out": pipes["judge_out"][1],
                "judge_err": pipes["judge_err"][1],
            },
            "program": {"uid": uid, "cwd": workdir,
                        "env": {**env, "HOME": workdir, "TMPDIR": workdir}, "in_process": False},
            "judge": {"uid": judge_uid, "cwd": "/", "env": {**env, "HOME": "/"},
                      "in_process": True},
        }  # fmt: skip
        handed, mine = mine, []  # _spawn closes them
        outcome = await _spawn(config, handed, {name: r for name, (r, _) in pipes.items()}, limits)
    except OSError as exc:
        return ExecResult("error", False, None, "", "", time.monotonic() - start, repr(exc))
    finally:
        for fd in mine:
            with contextlib.suppress(OSError):
                os.close(fd)
        if uid is not None:
            _UIDS.give(uid)
        if base:
            shutil.rmtree(base, ignore_errors=True)
    return _classify(outcome, job, limits, time.monotonic() - start)


async def _spawn(
    config: dict[str, Any], handed: list[int], reads: dict[str, int], limits: Limits
) -> _Outcome:
    """Run the launcher and collect what it, the program and the judge wrote. Closes every
    descriptor in ``handed`` (the write ends and program texts the launcher inherits, and the
    read ends in ``reads``)."""
    loop = asyncio.get_running_loop()
    out = _Outcome()
    transports: list[asyncio.BaseTransport] = []
    pumps: list[asyncio.Task[None]] = []
    keep = set(reads.values())
    try:
        proc = await _launch(config, [fd for fd in handed if fd not in keep], capture=True)
    except BaseException:
        for fd in handed:
            os.close(fd)
        raise
    for fd in handed:
        if fd not in keep:
            os.close(fd)

    def kill_group() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            if name == "verdict":
                out.verdict += chunk[: max(VERDICT_BYTES - len(out.verdict), 0)]
                continue
            room = max(limits.output_bytes - out.total, 0)
            (out.stderr if name.endswith("err") else out.stdout).extend(chunk[:room])
            if name == "program_err":
                out.program_stderr.extend(chunk[:room])
            out.total += len(chunk)
            if out.total > limits.output_bytes and not out.overflow:
                out.overflow = True
                kill_group()
            # Past the limit, keep reading (and dropping) to the end: a reader that stops
            # leaves its pipe paused, so the end of the pipe is never seen and the wait for
            # the launcher (which in Python 3.11 also waits for its pipes) runs to the wall
            # limit.

    async def open_pipe(fd: int) -> asyncio.StreamReader:
        reader = asyncio.StreamReader(limit=2**20)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0)
        )
        transports.append(transport)
        return reader

    streams = {"program_out": proc.stdout, "program_err": proc.stderr}
    for name in ("judge_out", "judge_err", "verdict"):
        streams[name] = await open_pipe(reads[name])
    pumps = [asyncio.create_task(pump(stream, name)) for name, stream in streams.items()]
    try:
        await asyncio.wait_for(proc.wait(), limits.wall_seconds)
    except TimeoutError:
        out.timed_out = True
    finally:
        if proc.returncode is None:
            kill_group()
        await proc.wait()
        out.notes = _report_lines(_read_all(reads["report"]))
        os.close(reads["report"])
        iso = _isolation_of(out.notes)
        if iso is None or not iso.processes:
            # Without a PID namespace, children may outlive the run: end its group, and with
            # user ids of its own, every process of those ids (this also finds ones that
            # called setsid()).
            kill_group()
            uid = config["uid"]
            if uid is not None:
                await _reap_uids([int(uid), int(uid) + 1])
        # Pipes end when the last process holding them is gone; a process that escaped the
        # group (only possible without a PID namespace) must not hold the result hostage.
        _, pending = await asyncio.wait(pumps, timeout=2.0)
        for task in pending:
            task.cancel()
        for transport in transports:
            transport.close()
    out.returncode = proc.returncode
    return out


async def _reap_uids(uids: list[int]) -> None:
    """Kill every process of ``uids``: runs have ids of their own, so this ends all they
    started."""
    proc = await _launch({"reap_uids": uids})
    await proc.wait()


def _program_end(end: dict[str, Any], program_stderr: str, limits: Limits) -> tuple[str, int, str]:
    """(status, returncode, detail) for a program that ended before the tests finished."""
    code = int(end["exit"]) if "exit" in end else -int(end["signal"])
    cpu = float(end.get("cpu", 0.0))
    if code < 0:
        if -code == signal.SIGXCPU or (-code == signal.SIGKILL and cpu >= limits.cpu_seconds):
            return "timeout", code, f"CPU time limit of {limits.cpu_seconds} s reached"
        if -code == signal.SIGXFSZ:
            return "failed", code, f"file size limit of {limits.file_size_mb} MB reached"
        return "killed", code, f"ended by {_signal_name(-code)}"
    if code == 0:
        return "failed", 0, "exited with status 0 before the tests finished"
    last = _last_line(program_stderr)
    if last.startswith("MemoryError"):
        return "memory", code, f"MemoryError under the {limits.memory_mb} MB limit"
    if "File too large" in last:
        return "failed", code, f"file size limit of {limits.file_size_mb} MB: {last}"
    return "failed", code, last or f"exited with status {code}"


def _classify(out: _Outcome, job: _Job, limits: Limits, seconds: float) -> ExecResult:
    """Turn what happened into a status, most specific cause first. Only the judge's verdict
    can make a run pass."""
    stdout = out.stdout.decode(errors="replace")
    stderr = out.stderr.decode(errors="replace")
    iso = _isolation_of(out.notes)
    ends = {str(n["role"]): n for n in out.notes if "role" in n}
    error = next((str(n["error"]) for n in out.notes if "error" in n), None)
    reports = [r for r in sandbox_judge.frames(bytes(out.verdict)) if isinstance(r, dict)]
    loaded = any(r.get("loaded") is True for r in reports)
    verdict = next((r for r in reports if "verdict" in r), None)
    checks = None
    if job.checks is not None and loaded:
        ok = {
            r["check"] for r in reports if r.get("ok") is True and isinstance(r.get("check"), int)
        }
        checks = tuple(i in ok for i in range(len(job.checks)))
    suffix = ""
    if iso is not None and iso.missing():
        suffix = f" [not isolated here: {', '.join(iso.missing())}]"

    def result(status: str, returncode: int | None, detail: str) -> ExecResult:
        return ExecResult(
            status, status == "passed", returncode, stdout, stderr, seconds, detail + suffix, checks
        )

    if out.overflow:  # first: the run was stopped for it, whatever came after
        return result("output_limit", None, f"printed more than {limits.output_bytes} bytes")
    if out.timed_out:
        return result("timeout", None, f"wall time limit of {limits.wall_seconds:g} s reached")
    if error is not None:
        return result("error", None, error)
    judge_end = ends.get("judge")
    judge_code = None if judge_end is None else judge_end.get("exit")
    if verdict is not None and verdict["verdict"] == "passed" and judge_code == 0:
        return result("passed", 0, "the judge ran every test to the end")
    stage = None if verdict is None else verdict.get("stage")
    detail = "" if verdict is None else str(verdict.get("detail") or "")
    if stage == "tests":
        status = "memory" if detail.startswith("MemoryError") else "failed"
        return result(status, judge_code if isinstance(judge_code, int) else 1, detail)
    if stage == "unresponsive":
        return result("timeout", None, f"{detail} (a check's time limit passed)")
    if stage == "protocol":
        return result("failed", judge_code if isinstance(judge_code, int) else 1, detail)
    program_end = ends.get("program")
    if stage in ("load", "gone") and program_end is not None:
        status, code, why = _program_end(
            program_end, out.program_stderr.decode(errors="replace"), limits
        )
        return result(status, code, why)
    if judge_end is not None and "signal" in judge_end:
        signum = int(judge_end["signal"])
        if signum == signal.SIGXCPU or float(judge_end.get("cpu", 0.0)) >= limits.cpu_seconds:
            return result("timeout", -signum, f"CPU time limit of {limits.cpu_seconds} s reached")
        return result("error", -signum, f"the judge was ended by {_signal_name(signum)}")
    return result("error", out.returncode, "the sandbox ended without a verdict")


_T = TypeVar("_T")


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run the coroutine ``make()`` to completion, from sync code, whether or not this thread
    already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


_PROBED: Isolation | None = None


async def _probe() -> Isolation:
    read_fd, write_fd = os.pipe()
    try:
        uid = UID_RANGE[0] if os.geteuid() == 0 else None
        config = {
            "report_fd": write_fd,
            "uid": uid,
            "gid": uid,
            "probe": True,
            "workdir": tempfile.gettempdir(),
            "workdir_mb": 1,
            "prefix": _interpreter()[1],
        }
        proc = await _launch(config, [write_fd])
        os.close(write_fd)
        write_fd = -1
        await asyncio.wait_for(proc.wait(), 30)
        return _isolation_of(_report_lines(_read_all(read_fd))) or Isolation(
            notes=("probe failed",)
        )
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)


def probe_isolation() -> Isolation:
    """What isolation this process can give sandboxed runs (asks the launcher once; cached)."""
    global _PROBED
    if _PROBED is None:
        _PROBED = _run_coroutine(_probe)
    return _PROBED
