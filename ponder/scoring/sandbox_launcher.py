"""The sandbox launcher: a small program, ``python -I -S sandbox_launcher.py CONFIG``, that sets up
one run and starts its two processes, the program and the judge.

It runs as its own process so that all set-up between fork and exec happens in a fresh
single-threaded interpreter, never in the caller. It enters the namespaces and locks the file
system down, then (with a PID namespace) forks an init that reaps. The supervisor (that init, or
the launcher itself without a PID namespace) makes the two pipes between program and judge, forks
both workers, and reports how each ended. A worker places its descriptors, sets the resource
limits, drops to its user id and execs the interpreter on its program text (descriptor 0).

``CONFIG`` is a marshalled dict in hex, made by ``ponder.scoring.execution``. Everything is
reported as lines on ``report_fd`` (``Reporter.note``): ``{"isolation": ..., "notes": ...}``,
``{"role": ..., "exit"|"signal": ..., "cpu": ...}`` per worker, ``{"error": ...}``. Standard
library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import marshal
import os
import resource
import signal
import stat
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

NEWNS, NEWUSER, NEWPID, NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
ATIME = {"noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21, "strictatime": 1 << 24}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)  # fmt: skip


class Reporter:
    """JSON lines to ponder on one descriptor, kept out of every exec."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_inheritable(fd, False)

    def note(self, **fields: object) -> None:
        """One line: the ``repr`` of ``fields`` (plain values only; ponder reads it back with
        ``ast.literal_eval``). The launcher imports neither json nor re: 10 ms a run."""
        os.write(self.fd, (repr(fields) + "\n").encode())

    def failed(self, what: str, exc: BaseException) -> None:
        hint = ""
        if isinstance(exc, PermissionError):
            hint = " (the sandbox user cannot reach the interpreter or the working directory)"
        self.note(error=f"{what}: {exc!r}{hint}")


def _enc(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def mount(
    src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    """mount(2); OSError on failure."""
    if _libc.mount(_enc(src), _enc(target), _enc(fstype), flags, _enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def unshare(flags: int) -> bool:
    return bool(_libc.unshare(flags) == 0)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def unescape(field: str) -> str:
    """A path from /proc/self/mountinfo, where space, tab, newline and backslash are octal
    escapes (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountpoints(text: str) -> Iterator[tuple[str, list[str]]]:
    """(mount point, mount options) for each line of /proc/self/mountinfo."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 5:
            yield unescape(parts[4]), parts[5].split(",")


def read_only(point: str, opts: list[str]) -> None:
    """Remount ``point`` read-only and nosuid, keeping its nodev, noexec and atime options."""
    flags = REMOUNT | BIND | RDONLY | NOSUID
    flags |= (NODEV if "nodev" in opts else 0) | (NOEXEC if "noexec" in opts else 0)
    flags |= sum(v for k, v in ATIME.items() if k in opts)
    mount(None, point, None, flags)


def blocked_ancestor(path: str) -> str | None:
    """The first directory on the way to ``path`` that other users may not traverse."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return d
    return None


def lock_down_fs(cfg: dict[str, Any], notes: list[str]) -> bool:
    """Every mount read-only, a private tmpfs on the working directory, and the interpreter
    reachable by the run's users; False when / could not be made read-only."""
    mount(None, "/", None, REC | PRIVATE)
    with open("/proc/self/mountinfo") as f:
        points = list(mountpoints(f.read()))
    failed = []
    for point, opts in points:
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
          f"size={cfg['workdir_mb']}m,mode=0700{owner}")  # fmt: skip
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


def enter_namespaces(cfg: dict[str, Any], report: Reporter) -> dict[str, bool]:
    """Unshare what this machine allows; reports and returns what was set up."""
    notes: list[str] = []
    got = {"user": cfg["uid"] is not None}
    root = os.geteuid() == 0
    userns = False
    if not root:
        uid, gid = os.geteuid(), os.getegid()
        if unshare(NEWUSER):
            try:
                _write("/proc/self/setgroups", "deny")
                _write("/proc/self/uid_map", f"0 {uid} 1")
                _write("/proc/self/gid_map", f"0 {gid} 1")
                userns = True
            except OSError as exc:
                notes.append(f"user namespace map failed: {exc}")
        else:
            notes.append("unprivileged user namespaces not permitted")
    if root or userns:
        got["network"] = unshare(NEWNET)
        got["processes"] = unshare(NEWPID)
    if userns and got["processes"] and unshare(NEWNS):
        # Its own /proc (mounted by init) hides ponder's and other processes from the program.
        try:
            mount(None, "/", None, REC | PRIVATE)
            got["own_proc"] = True
        except OSError as exc:
            notes.append(f"private mount namespace failed: {exc}")
    # Only with a separate uid can a read-only view be kept: root in a user namespace could
    # remount it writable again.
    if root and got["user"]:
        if unshare(NEWNS):
            try:
                got["filesystem"] = got["own_proc"] = lock_down_fs(cfg, notes)
            except OSError as exc:
                notes.append(f"file system lock-down failed: {exc}")
        else:
            notes.append("mount namespace not permitted")
    report.note(isolation=got, notes=notes)
    return got


def place(fds: list[int]) -> None:
    """Make ``fds[i]`` open as descriptor ``i`` (inheritable) and close every other one."""
    floor = max([*fds, len(fds)]) + 1
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in fds]
    for target, fd in enumerate(copies):
        os.dup2(fd, target, inheritable=True)
    os.closerange(len(fds), os.sysconf("SC_OPEN_MAX"))


def run_worker(
    cfg: dict[str, Any], role: dict[str, Any], fds: list[int], report: Reporter
) -> NoReturn:
    """In a fresh child: descriptors, limits, user id, no new privileges, then the Python text
    that ``fds[0]`` holds: in a new interpreter (the program), or in this one (the judge,
    which is ponder's own code: this spares every run an interpreter start)."""
    high = fcntl.fcntl(report.fd, fcntl.F_DUPFD_CLOEXEC, max([*fds, len(fds)]) + 1)
    place([*fds, high])
    report.fd = len(fds)
    os.set_inheritable(report.fd, False)
    for name, value in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), tuple(value))
    if role["uid"] is not None:
        os.setgroups([])
        os.setgid(role["uid"])
        os.setuid(role["uid"])
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # setuid binaries gain nothing
    os.chdir(role["cwd"])
    if not role["in_process"]:
        os.execve(cfg["python"], [cfg["python"], "-I", "-S", "-"], role["env"])
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(role["env"])
    chunks = []
    while chunk := os.read(0, 1 << 20):
        chunks.append(chunk)
    os.close(report.fd)
    exec(compile(b"".join(chunks), "<judge>", "exec"), {"__name__": "__main__"})
    os._exit(0)


def _start(cfg: dict[str, Any], role: dict[str, Any], fds: list[int], report: Reporter) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            run_worker(cfg, role, fds, report)
        except BaseException as exc:
            report.failed(f"could not start the {role['name']}", exc)
        os._exit(125)
    return pid


class _GraceOver(Exception):
    pass


def _grace_over(signum: int, frame: object) -> None:
    raise _GraceOver


def supervise(cfg: dict[str, Any], report: Reporter) -> None:
    """Start the judge and the program joined by two pipes, reap every child, report how each
    worker ended; once the judge is done, the program gets ``grace_seconds`` to exit before
    it is killed."""
    # Not dumpable: a program running as the same user cannot open this process's descriptors
    # (the report) through /proc. Workers inherit it until exec; the judge never execs.
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    fd = cfg["fds"]
    judge = dict(cfg["judge"], name="judge")
    program = dict(cfg["program"], name="program")
    judge_fds = [fd["judge_text"], fd["judge_out"], fd["judge_err"], fd["verdict"],
                 replies_r, requests_w]  # fmt: skip
    program_fds = [fd["program_text"], 1, 2, requests_r, replies_w]
    workers = {
        _start(cfg, judge, judge_fds, report): "judge",
        _start(cfg, program, program_fds, report): "program",
    }
    for own in {*judge_fds[3:], *program_fds[3:], fd["judge_text"], fd["program_text"],
                fd["judge_out"], fd["judge_err"]}:  # fmt: skip
        os.close(own)
    signal.signal(signal.SIGALRM, _grace_over)
    ended: set[str] = set()
    while len(ended) < len(workers):
        try:
            pid, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        except _GraceOver:
            for pid, role in workers.items():
                if role not in ended:
                    os.kill(pid, signal.SIGKILL)
            continue
        role = workers.get(pid, "")
        if not role:
            continue
        ended.add(role)
        cpu = usage.ru_utime + usage.ru_stime
        if os.WIFSIGNALED(status):
            report.note(role=role, signal=os.WTERMSIG(status), cpu=cpu)
        else:
            report.note(role=role, exit=os.WEXITSTATUS(status), cpu=cpu)
        if role == "judge" and len(ended) < len(workers):
            signal.setitimer(signal.ITIMER_REAL, cfg["grace_seconds"])
    signal.setitimer(signal.ITIMER_REAL, 0)


def reap(uids: list[int]) -> None:
    """Kill every process of each of ``uids`` (runs without a PID namespace)."""
    for uid in uids:
        pid = os.fork()
        if pid == 0:
            os.setgid(uid)
            os.setuid(uid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)
            os._exit(0)
        os.waitpid(pid, 0)


def run_init(cfg: dict[str, Any], report: Reporter, fresh_proc: bool) -> NoReturn:
    """PID 1 of the run's namespace: supervise, then exit, which ends every process left."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the launcher
    if fresh_proc:
        try:
            mount("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC)
        except OSError as exc:
            report.note(notes=[f"could not mount the run's own /proc: {exc}"])
    supervise(cfg, report)
    os._exit(0)


def main(argv: list[str]) -> NoReturn:
    cfg = marshal.loads(bytes.fromhex(argv[1]))
    if cfg.get("reap_uids"):
        reap(cfg["reap_uids"])
        os._exit(0)
    report = Reporter(cfg["report_fd"])
    try:
        got = enter_namespaces(cfg, report)
        if cfg.get("probe"):
            os._exit(0)
        if not got.get("processes"):
            supervise(cfg, report)
            os._exit(0)
        init = os.fork()
        if init == 0:
            try:
                run_init(cfg, report, got.get("own_proc", False))
            except BaseException as exc:
                report.note(error=f"sandbox init failed: {exc!r}")
            os._exit(125)
        while True:
            try:
                os.waitpid(init, 0)
                os._exit(0)
            except InterruptedError:
                continue
    except BaseException as exc:
        report.failed("sandbox set-up failed", exc)
        os._exit(125)


if __name__ == "__main__":
    main(sys.argv)
