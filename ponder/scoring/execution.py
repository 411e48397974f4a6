"""Run untrusted Python (model-written programs and their tests) in a contained child process.

Each run gets a fresh Python process (the same interpreter, isolated mode ``-I -S``: no
site-packages, no ``PYTHON*`` variables, no current directory on ``sys.path``) started by a
small launcher that, before handing over, applies what the operating system allows:

* resource limits: CPU seconds, address space (memory), file size, process count, no core dumps;
* a fresh, empty temporary working directory, deleted afterwards;
* a minimal environment (``PATH``, ``HOME``, ``TMPDIR``, ``LANG``), none of the parent's variables;
* its own session and process group, killed as a whole at the end and on any limit;
* when running as root: an unprivileged user id of its own (one per run, so runs cannot signal
  each other or the host and the process limit is really enforced), a private network namespace
  (no interfaces up: no connections anywhere, loopback included), a private mount namespace in
  which every file system is read-only except the working directory (a size-limited tmpfs), and
  a private PID namespace (it sees only its own processes; when the run ends every process it
  started is killed by the kernel, including ones that left the process group);
* when not root: the same namespaces through an unprivileged user namespace where the kernel
  permits one, otherwise only the resource limits and process-group kill (see docs/SANDBOX.md).

What a run reports is an ``ExecResult``. A run passes only when the process exited with status 0
*and* printed a per-run random marker that the harness writes after the tests finished, so a
program that exits early (``sys.exit(0)``, ``os._exit(0)``) never passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from collections.abc import Sequence
from dataclasses import dataclass, field

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
"""User ids handed to sandboxed runs when ponder runs as root: one unused id per running job,
drawn from this range (ids that no account uses; processes with ids in it are sandboxed runs)."""


@dataclass(frozen=True)
class Limits:
    """Per-run limits. ``memory_mb`` caps each process's address space, so the total across a
    run is at most ``max_processes * memory_mb``; ``file_size_mb`` caps any single file it writes;
    ``workdir_mb`` caps the whole working directory where a private tmpfs can be mounted;
    ``output_bytes`` caps stdout and stderr together."""

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

    ``status`` is one of ``STATUSES``: ``"passed"`` (exit 0 and the completion marker seen),
    ``"failed"`` (an exception, a failed assert, a nonzero exit, or an exit before the tests
    finished), ``"timeout"`` (wall or CPU time limit), ``"memory"`` (``MemoryError`` under the
    memory limit), ``"output_limit"`` (more than ``output_bytes`` printed; stopped), ``"killed"``
    (ended by a signal, e.g. it killed itself) or ``"error"`` (the sandbox itself could not run
    it). ``returncode`` is the program's exit status (negative: the signal that ended it; None
    when it was stopped by a limit). ``stdout`` excludes the marker. ``detail`` says why, and
    names any isolation the OS did not allow.
    """

    status: str
    passed: bool
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    detail: str = ""


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


# The launcher runs as its own small program (``python -I -S -c _LAUNCHER config``) so that all
# set-up between fork and exec happens in a fresh single-threaded process, never in the caller.
# It prepares namespaces and mounts, then (with a PID namespace) forks an init that reaps, which
# forks the worker: limits, privilege drop, exec of the interpreter with the program on stdin.
_LAUNCHER = r"""
import ctypes, json, os, re, resource, signal, stat, sys

cfg = json.loads(sys.argv[1])
REPORT = cfg["report_fd"]
os.set_inheritable(REPORT, False)
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p)
NEWNS, NEWUSER, NEWPID, NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
ATIME = {"noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21, "strictatime": 1 << 24}


def note(**kw):
    os.write(REPORT, (json.dumps(kw) + "\n").encode())


def failed(what, exc):
    hint = ""
    if isinstance(exc, PermissionError):
        hint = " (the sandbox user cannot reach the interpreter or the working directory)"
    note(error=f"{what}: {exc!r}{hint}")


def enc(s):
    return None if s is None else s.encode()


def mount(src, target, fstype, flags, data=None):
    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def unshare(flags):
    return libc.unshare(flags) == 0


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def mountpoints():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
            yield point, parts[5].split(",")


def read_only(point, opts):
    flags = REMOUNT | BIND | RDONLY | NOSUID
    flags |= (NODEV if "nodev" in opts else 0) | (NOEXEC if "noexec" in opts else 0)
    flags |= sum(v for k, v in ATIME.items() if k in opts)
    mount(None, point, None, flags)


def blocked_ancestor(path):
    # The first directory on the way to ``path`` that other users may not traverse.
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return d
    return None


def lock_down_fs(notes):
    mount(None, "/", None, REC | PRIVATE)
    failed = []
    for point, opts in list(mountpoints()):
        try:
            read_only(point, opts)
        except OSError:
            failed.append(point)
    if "/" in failed:
        notes.append("could not make / read-only")
        return False
    if failed:
        notes.append("left writable: " + ", ".join(sorted(set(failed))))
    owner = "" if cfg["uid"] is None else f",uid={cfg['uid']},gid={cfg['gid']}"
    mount("tmpfs", cfg["workdir"], "tmpfs", NOSUID | NODEV,
          f"size={cfg['workdir_mb']}m,mode=0700{owner}")
    if cfg["uid"] is not None:
        prefix = cfg["prefix"]
        top = blocked_ancestor(prefix)
        if top is not None:
            # e.g. /root is 0700 and the interpreter lives under it: show only the interpreter.
            keep = os.open(prefix, os.O_PATH | os.O_DIRECTORY)
            mount("tmpfs", top, "tmpfs", NOSUID | NODEV, "size=1m,mode=0755")
            os.makedirs(prefix, 0o755)
            mount(f"/proc/self/fd/{keep}", prefix, None, BIND | REC)
            os.close(keep)
            read_only(prefix, [])
            read_only(top, [])
    return True


def enter_namespaces():
    notes, got = [], {"user": cfg["uid"] is not None}
    root = os.geteuid() == 0
    userns = False
    if not root:
        uid, gid = os.geteuid(), os.getegid()
        if unshare(NEWUSER):
            try:
                write("/proc/self/setgroups", "deny")
                write("/proc/self/uid_map", f"0 {uid} 1")
                write("/proc/self/gid_map", f"0 {gid} 1")
                userns = True
            except OSError as exc:
                notes.append(f"user namespace map failed: {exc}")
        else:
            notes.append("unprivileged user namespaces not permitted")
    if root or userns:
        got["network"] = unshare(NEWNET)
        got["processes"] = unshare(NEWPID)
    # Only with a separate uid can a read-only view be kept: root in a user namespace could
    # remount it writable again.
    if root and got["user"]:
        if unshare(NEWNS):
            try:
                got["filesystem"] = lock_down_fs(notes)
            except OSError as exc:
                notes.append(f"file system lock-down failed: {exc}")
        else:
            notes.append("mount namespace not permitted")
    note(isolation=got, notes=notes)
    return got


def exec_worker(fresh_proc):
    if fresh_proc:
        try:
            mount("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC)
        except OSError:
            pass
    for name, value in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), tuple(value))
    fd = os.open(cfg["program"], os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: setuid binaries gain nothing
    os.chdir(cfg["workdir"])
    os.execve(cfg["python"], [cfg["python"], "-I", "-S", "-"], cfg["env"])


def run_init(fresh_proc):
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the launcher
    worker = os.fork()
    if worker == 0:
        try:
            exec_worker(fresh_proc)
        except BaseException as exc:
            failed("could not start the program", exc)
        os._exit(125)
    while True:
        try:
            pid, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == worker:
            cpu = usage.ru_utime + usage.ru_stime
            if os.WIFSIGNALED(status):
                note(signal=os.WTERMSIG(status), cpu=cpu)
            else:
                note(exit=os.WEXITSTATUS(status), cpu=cpu)
            os._exit(0)


def main():
    if cfg.get("reap_uid") is not None:
        os.setgid(cfg["reap_uid"])
        os.setuid(cfg["reap_uid"])
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os._exit(0)
    got = enter_namespaces()
    if cfg.get("probe"):
        os._exit(0)
    if not got.get("processes"):
        exec_worker(False)
    init = os.fork()
    if init == 0:
        try:
            run_init(got.get("filesystem", False))
        except BaseException as exc:
            note(error=f"sandbox init failed: {exc!r}")
        os._exit(125)
    while True:
        try:
            os.waitpid(init, 0)
            os._exit(0)
        except InterruptedError:
            continue


try:
    main()
except BaseException as exc:
    failed("sandbox set-up failed", exc)
    os._exit(125)
"""

# What runs inside: the program's code, then the tests, in one namespace; then the marker,
# written to a copy of stdout taken before any of the program ran.
_HARNESS = """\
import os as _os, sys as _sys


def _ponder_hook(kind, value, tb):
    import traceback

    # Drop the harness's own two frames so the traceback starts in the program.
    traceback.print_exception(kind, value, tb.tb_next.tb_next if tb and tb.tb_next else tb)


def _ponder_main(code, tests, marker):
    import linecache
    _sys.excepthook = _ponder_hook
    out = _os.dup(1)
    namespace = {{"__name__": "__main__", "__builtins__": __builtins__}}
    for name, source in (("<code>", code), ("<tests>", tests)):
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        exec(compile(source, name, "exec"), namespace)
    for stream in (_sys.stdout, _sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    _os.write(out, marker)


_ponder_main({code!r}, {tests!r}, {marker!r})
"""


class _UidPool:
    """Unused user ids for concurrent runs in this process, one each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: set[int] = set()
        self._rng = random.Random(secrets.randbits(64))

    def take(self) -> int:
        with self._lock:
            while True:
                uid = self._rng.randrange(*UID_RANGE)
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


def _read_notes(fd: int) -> list[dict[str, object]]:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    notes = []
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        try:
            notes.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return notes


def _isolation_of(notes: list[dict[str, object]]) -> Isolation | None:
    for n in notes:
        got = n.get("isolation")
        if isinstance(got, dict):
            raw_notes = n.get("notes")
            extra = tuple(str(x) for x in raw_notes) if isinstance(raw_notes, list) else ()
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
    """Raw facts about one finished process, before they become an ExecResult."""

    stdout: bytes = b""
    stderr: bytes = b""
    total: int = 0
    overflow: bool = False
    timed_out: bool = False
    returncode: int | None = None
    notes: list[dict[str, object]] = field(default_factory=list)


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
        """Run ``code`` then ``tests`` (same namespace, ``__name__ == "__main__"``) in a fresh
        contained process and report how it ended."""
        if not isinstance(code, str) or not isinstance(tests, str):
            raise ValueError("code and tests must be strings of Python source")
        async with self._slot():
            return await _execute(code, tests, limits or self.limits)

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


def _prepare(code: str, tests: str, marker: bytes, uid: int | None) -> tuple[str, str, str]:
    """The run's folders: ``base`` (root-only program file) and ``base/work`` (the program's)."""
    base = tempfile.mkdtemp(prefix="ponder-sandbox-")
    os.chmod(base, 0o711)
    program = os.path.join(base, "program.py")
    fd = os.open(program, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(_HARNESS.format(code=code, tests=tests, marker=marker))
    workdir = os.path.join(base, "work")
    os.mkdir(workdir, 0o700)
    if uid is not None:
        os.chown(workdir, uid, uid)
    return base, program, workdir


async def _execute(code: str, tests: str, limits: Limits) -> ExecResult:
    start = time.monotonic()
    nonce = secrets.token_hex(16)
    marker = f"\n{nonce}\n".encode()
    uid = _UIDS.take() if os.geteuid() == 0 else None
    base = ""
    read_fd, write_fd = os.pipe()
    try:
        base, program, workdir = _prepare(code, tests, marker, uid)
        python, prefix = _interpreter()
        config: dict[str, object] = {
            "report_fd": write_fd,
            "uid": uid,
            "gid": uid,
            "workdir": workdir,
            "workdir_mb": limits.workdir_mb,
            "program": program,
            "python": python,
            "prefix": prefix,
            "rlimits": _rlimits(limits),
            "env": {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": workdir,
                "TMPDIR": workdir,
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
            },
        }
        outcome = await _spawn(config, write_fd, read_fd, limits)
        write_fd = -1
    except OSError as exc:
        return ExecResult("error", False, None, "", "", time.monotonic() - start, repr(exc))
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        if uid is not None:
            _UIDS.give(uid)
        if base:
            shutil.rmtree(base, ignore_errors=True)
    return _classify(outcome, nonce, limits, time.monotonic() - start)


async def _spawn(
    config: dict[str, object], write_fd: int, read_fd: int, limits: Limits
) -> _Outcome:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-c",
        _LAUNCHER,
        json.dumps(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        cwd="/",
        start_new_session=True,
        pass_fds=(write_fd,),
    )
    os.close(write_fd)
    out = _Outcome()

    def kill_group() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    async def pump(stream: asyncio.StreamReader | None, is_err: bool) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            room = max(limits.output_bytes - out.total, 0)
            if is_err:
                out.stderr += chunk[:room]
            else:
                out.stdout += chunk[:room]
            out.total += len(chunk)
            if out.total > limits.output_bytes:
                out.overflow = True
                kill_group()
                return

    pumps = [
        asyncio.create_task(pump(proc.stdout, False)),
        asyncio.create_task(pump(proc.stderr, True)),
    ]
    try:
        await asyncio.wait_for(proc.wait(), limits.wall_seconds)
    except TimeoutError:
        out.timed_out = True
    finally:
        if proc.returncode is None:
            kill_group()
        await proc.wait()
        out.notes = _read_notes(read_fd)
        iso = _isolation_of(out.notes)
        if iso is None or not iso.processes:
            # Without a PID namespace, children may outlive the program: end its group, and
            # with a uid of its own, every process of that uid (this also finds ones that
            # called setsid()).
            kill_group()
            if config["uid"] is not None:
                await _reap_uid(int(str(config["uid"])))
        # Pipes end when the last process holding them is gone; a process that escaped the
        # group (only possible without a PID namespace) must not hold the result hostage.
        _, pending = await asyncio.wait(pumps, timeout=2.0)
        for task in pending:
            task.cancel()
    out.returncode = proc.returncode
    return out


async def _reap_uid(uid: int) -> None:
    """Kill every process of ``uid``: runs have their own uid, so this ends all they started."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-c",
        _LAUNCHER,
        json.dumps({"report_fd": 2, "reap_uid": uid}),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={},
    )
    await proc.wait()


def _classify(out: _Outcome, nonce: str, limits: Limits, seconds: float) -> ExecResult:
    """Turn what happened into a status, most specific cause first."""
    marker = f"\n{nonce}\n"
    raw_stdout = out.stdout.decode(errors="replace")
    finished = marker in raw_stdout
    stdout = raw_stdout.replace(marker, "", 1)
    stderr = out.stderr.decode(errors="replace")
    iso = _isolation_of(out.notes)
    final = next((n for n in out.notes if "exit" in n or "signal" in n), None)
    error = next((str(n["error"]) for n in out.notes if "error" in n), None)
    suffix = ""
    if iso is not None and iso.missing():
        suffix = f" [not isolated here: {', '.join(iso.missing())}]"

    def result(status: str, returncode: int | None, detail: str) -> ExecResult:
        return ExecResult(
            status, status == "passed", returncode, stdout, stderr, seconds, detail + suffix
        )

    if out.timed_out:
        return result("timeout", None, f"wall time limit of {limits.wall_seconds:g} s reached")
    if out.overflow:
        return result("output_limit", None, f"printed more than {limits.output_bytes} bytes")
    if error is not None:
        return result("error", None, error)
    if final is not None:
        code = int(str(final["exit"])) if "exit" in final else -int(str(final["signal"]))
        cpu = float(str(final.get("cpu", 0.0)))
    elif out.returncode is not None:
        code, cpu = out.returncode, 0.0
    else:
        return result("error", out.returncode, "the sandbox launcher ended without a report")
    if code < 0:
        name = _signal_name(-code)
        if -code == signal.SIGXCPU or (-code == signal.SIGKILL and cpu >= limits.cpu_seconds):
            return result("timeout", code, f"CPU time limit of {limits.cpu_seconds} s reached")
        if -code == signal.SIGXFSZ:
            return result("failed", code, f"file size limit of {limits.file_size_mb} MB reached")
        return result("killed", code, f"ended by {name}")
    if code == 0:
        if finished:
            return result("passed", 0, "exited 0 after the tests finished")
        return result("failed", 0, "exited with status 0 before the tests finished")
    last = _last_line(stderr)
    if last.startswith("MemoryError"):
        return result("memory", code, f"MemoryError under the {limits.memory_mb} MB limit")
    if "File too large" in last:
        return result("failed", code, f"file size limit of {limits.file_size_mb} MB: {last}")
    return result("failed", code, last or f"exited with status {code}")


_PROBED: Isolation | None = None


def probe_isolation() -> Isolation:
    """What isolation this process can give sandboxed runs (asks the launcher once; cached)."""
    global _PROBED
    if _PROBED is None:
        import subprocess

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
            subprocess.run(
                [sys.executable, "-I", "-S", "-c", _LAUNCHER, json.dumps(config)],
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
                timeout=30,
            )
            os.close(write_fd)
            write_fd = -1
            _PROBED = _isolation_of(_read_notes(read_fd)) or Isolation(notes=("probe failed",))
        finally:
            for fd in (read_fd, write_fd):
                if fd >= 0:
                    os.close(fd)
    return _PROBED
