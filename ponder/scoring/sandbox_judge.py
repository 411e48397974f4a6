"""The two ends of the wire inside the sandbox: the judge, which runs the tests and decides the
verdict, and the program's server, which runs the untrusted program and answers calls.

They are separate processes (separate user ids when ponder runs as root) joined by two pipes.
The program's module runs in its own interpreter; the judge never runs any of its code. The tests
run in the judge, where every function the program defines is a ``Remote``: calling it sends the
arguments to the program and brings back the result. Only plain data crosses, in a small tagged
binary encoding (``encode``/``decode``): None, bool, int, float, complex, str, bytes and lists,
tuples, dicts, sets and frozensets of them. The judge decodes into exactly these built-in types,
so nothing the program sends can carry code (no custom ``__eq__``, no patched builtin).

A frame is a 4-byte big-endian length and one encoded value. Judge to program:
``["call", id, name, args, kwargs, seconds]``. Program to judge: first ``["loaded", exports]``
(or ``["failed"]``), then per call ``["ok", id, value]`` or ``["raise", id, type_name,
message]``. The judge reports to ponder in frames too: ``{"loaded": True}``, ``{"check": i,
"ok": bool}`` per check, and ``{"verdict": "passed"|"failed", "stage": ..., "detail": ...}``.

ponder compiles this file once and hands the code to ``python -I -S -`` in the sandbox, followed
by a call to ``judge`` or ``serve``; it uses the standard library only, and imports what is not
needed on every run (signal, traceback) only when it is needed.
"""

from __future__ import annotations

import builtins
import keyword
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

MAX_DEPTH = 100
"""Deepest nesting of containers that crosses the wire."""

MAX_FRAME = 64 * 2**20
"""Largest frame the judge accepts (bytes); a larger one breaks the link."""

MAX_EXPORTED_VALUE = 2**20
"""Largest plain-data global (encoded bytes) the program hands to the tests; larger ones are
left out."""

GRACE_SECONDS = 1.0
"""How long past a check's limit the judge waits for the program's own timer to answer."""

# Descriptors, placed by the launcher. Program: 0 its text, 3 requests in, 4 replies out.
# Judge: 0 its text, 3 verdict out, 4 replies in, 5 requests out.
PROGRAM_REQUESTS, PROGRAM_REPLIES = 3, 4
JUDGE_VERDICT, JUDGE_REPLIES, JUDGE_REQUESTS = 3, 4, 5

GONE, PROTOCOL, UNRESPONSIVE = "gone", "protocol", "unresponsive"
"""Why a link broke: the program ended, sent what the protocol does not allow, or did not
answer within a check's limit and its grace."""


class WireError(Exception):
    """A frame or value that is not what the protocol allows."""


# ---- plain data ---------------------------------------------------------------------------

_SEQUENCE_TAGS = ((list, b"l"), (tuple, b"t"), (set, b"e"), (frozenset, b"z"))
_BUILD: dict[bytes, Callable[[list[Any]], Any]] = {
    b"l": list,
    b"t": tuple,
    b"e": set,
    b"z": frozenset,
}


def _put_size(out: bytearray, size: int) -> None:
    out += size.to_bytes(4, "big")


def _put_text(out: bytearray, tag: bytes, data: bytes) -> None:
    out += tag
    _put_size(out, len(data))
    out += data


def _put(out: bytearray, value: object, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise TypeError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None:
        out += b"N"
    elif value is True or value is False:
        out += b"T" if value else b"F"
    elif isinstance(value, int):
        number = int(value)
        _put_text(out, b"i", number.to_bytes((number.bit_length() + 8) // 8, "big", signed=True))
    elif isinstance(value, float):
        _put_text(out, b"f", float(value).hex().encode())
    elif isinstance(value, complex):
        out += b"c"
        _put(out, value.real, depth + 1)
        _put(out, value.imag, depth + 1)
    elif isinstance(value, str):
        _put_text(out, b"s", str(value).encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes):
        _put_text(out, b"b", bytes(value))
    elif isinstance(value, dict):
        out += b"d"
        _put_size(out, len(value))
        for key, item in list(value.items()):
            _put(out, key, depth + 1)
            _put(out, item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        out += next(tag for kind, tag in _SEQUENCE_TAGS if isinstance(value, kind))
        items = list(value)
        _put_size(out, len(items))
        for item in items:
            _put(out, item, depth + 1)
    else:
        raise TypeError(
            f"a {type(value).__name__} cannot cross to the tests: only None, bool, int, "
            "float, complex, str, bytes and lists, tuples, dicts, sets of them"
        )


def encode(value: object) -> bytes:
    """``value`` in the wire encoding; subclasses of the plain types are sent as their base type
    (a namedtuple as a tuple, a Counter as a dict). TypeError for anything else."""
    out = bytearray()
    _put(out, value, 0)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise WireError("the value is cut short")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def size(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"nested deeper than {MAX_DEPTH} levels")
        tag = self.take(1)
        if tag == b"N":
            return None
        if tag in (b"T", b"F"):
            return tag == b"T"
        if tag == b"i":
            return int.from_bytes(self.take(self.size()), "big", signed=True)
        if tag == b"f":
            return float.fromhex(self.take(self.size()).decode("ascii"))
        if tag == b"c":
            real, imag = self.value(depth + 1), self.value(depth + 1)
            if type(real) is not float or type(imag) is not float:
                raise WireError("a complex number's parts must be floats")
            return complex(real, imag)
        if tag == b"s":
            return self.take(self.size()).decode("utf-8", "surrogatepass")
        if tag == b"b":
            return self.take(self.size())
        if tag == b"d":
            count = self.size()
            if 2 * count > len(self.data) - self.pos:
                raise WireError("the value is cut short")
            return dict([(self.value(depth + 1), self.value(depth + 1)) for _ in range(count)])
        if tag in _BUILD:
            count = self.size()
            if count > len(self.data) - self.pos:
                raise WireError("the value is cut short")
            return _BUILD[tag]([self.value(depth + 1) for _ in range(count)])
        raise WireError(f"unknown tag {tag!r}")


def decode(data: bytes) -> Any:
    """The built-in value that ``data`` (from ``encode``) stands for; WireError when it is
    anything else. Only exact built-in types are ever built."""
    reader = _Reader(data)
    try:
        value = reader.value(0)
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise WireError(f"not a plain value: {exc}") from None
    if reader.pos != len(data):
        raise WireError("extra bytes after the value")
    return value


# ---- frames -------------------------------------------------------------------------------


def write_frame(fd: int, body: bytes) -> None:
    """Write one frame (raises OSError, e.g. BrokenPipeError when the other end is gone)."""
    data = memoryview(len(body).to_bytes(4, "big") + body)
    while data:
        data = data[os.write(fd, data) :]


def send(fd: int, message: object) -> None:
    """Write ``message`` as one frame."""
    write_frame(fd, encode(message))


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> Any:
    """The next frame's value, or None at end of stream; WireError for a bad frame."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size} bytes is over the {MAX_FRAME}-byte limit")
    body = _read_exactly(fd, size)
    if body is None:
        return None
    return decode(body)


def frames(data: bytes) -> list[Any]:
    """The values of the whole frames in ``data`` (a cut-off last frame or a bad one ends
    the list)."""
    values, pos = [], 0
    while pos + 4 <= len(data):
        end = pos + 4 + int.from_bytes(data[pos : pos + 4], "big")
        if end > len(data):
            break
        try:
            values.append(decode(data[pos + 4 : end]))
        except WireError:
            break
        pos = end
    return values


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (contextlib costs every run an import)
            stream.flush()
        except Exception:
            pass


_SOURCES: dict[str, str] = {}


def _print_from(exc: BaseException, filename: str) -> None:
    """Print ``exc``'s traceback from the first frame in ``filename`` on (the sandbox's own
    frames are not the program's business)."""
    import linecache
    import traceback

    for name, source in _SOURCES.items():
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)


def _compile(source: str, filename: str) -> Any:
    _SOURCES[filename] = source
    return compile(source, filename, "exec")


# ---- the program's end --------------------------------------------------------------------


def exports(namespace: dict[str, Any]) -> list[list[object]]:
    """What the tests may use of the program's globals: functions and classes by name (they are
    called over the wire), modules by name (the judge imports its own copy) and plain-data
    values (copied once, after the program loaded)."""
    out: list[list[object]] = []
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        if isinstance(value, type(sys)):
            out.append([name, "module", value.__name__])
        elif callable(value):
            out.append([name, "function", None])
        else:
            try:
                size = len(encode(value))
            except (TypeError, ValueError, RecursionError):
                continue
            if size <= MAX_EXPORTED_VALUE:
                out.append([name, "value", value])
    return out


def _raised(call_id: object, exc: BaseException) -> bytes:
    try:
        text = str(exc)[:2000]
    except Exception:
        text = ""
    return encode(["raise", call_id, type(exc).__name__, text])


def _answer(namespace: dict[str, Any], message: list[Any]) -> bytes:
    """The encoded reply to one call: its result, or the exception it raised."""
    _, call_id, name, args, kwargs, seconds = message
    try:
        function = namespace[name]
        if type(args) is not list or type(kwargs) is not dict:
            raise TypeError("arguments must be a list and a dict")
    except Exception as exc:
        return _raised(call_id, exc)

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"the call took more than {seconds:.3g} s")

    try:
        if seconds:
            import signal

            signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            result = function(*args, **kwargs)
        finally:
            if seconds:
                signal.setitimer(signal.ITIMER_REAL, 0)
        return encode(["ok", call_id, result])
    except BaseException as exc:
        _print_from(exc, "<code>")
        return _raised(call_id, exc)


def serve(code: str) -> None:
    """Run ``code`` as the module ``__main__`` (an exception ends the process with status 1, as
    in Python), announce its exports, then answer calls until the judge hangs up."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(_compile(code, "<code>"), namespace)
    except SystemExit:
        raise
    except BaseException as exc:
        _print_from(exc, "<code>")
        _flush()
        try:  # noqa: SIM105
            send(PROGRAM_REPLIES, ["failed"])
        except OSError:
            pass
        os._exit(1)
    _flush()
    try:
        send(PROGRAM_REPLIES, ["loaded", exports(namespace)])
        while (message := receive(PROGRAM_REQUESTS)) is not None:
            if type(message) is not list or len(message) != 6 or message[0] != "call":
                break
            reply = _answer(namespace, message)
            _flush()
            write_frame(PROGRAM_REPLIES, reply)
    except (OSError, WireError):
        pass


# ---- the judge's end ----------------------------------------------------------------------


class CandidateError(Exception):
    """An exception raised by the program's code that is not a built-in exception type; the
    message is ``"TypeName: text"``."""


class CandidateGone(BaseException):
    """The program ended, broke the protocol or stopped answering: nothing more can be asked
    of it, and the run cannot pass. A BaseException, so tests that catch Exception do not
    swallow it."""


class CheckTimeout(Exception):
    """A check ran past its time limit."""


def _exception(type_name: object, message: object) -> BaseException:
    """The judge's own exception for one the program raised: the built-in type of that name when
    there is one (below Exception), else CandidateError."""
    name = type_name if type(type_name) is str else "Exception"
    text = message if type(message) is str else ""
    cls = getattr(builtins, name, None) if name.isidentifier() else None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(text)
        except Exception:
            pass
    return CandidateError(f"{name}: {text}")


class Link:
    """The judge's side of the wire: calls into the program, answers decoded as plain data."""

    def __init__(self, replies: int, requests: int) -> None:
        self.replies = replies
        self.requests = requests
        self.broken: str | None = None
        self.cause: str | None = None
        self.deadline: float | None = None
        self.waiting = False
        self._next = 0

    def hello(self) -> list[Any] | None:
        """The program's exports once it loaded; None when it did not load."""
        try:
            message = receive(self.replies)
        except WireError as exc:
            self.stop(PROTOCOL, f"the program broke the protocol: {exc}")
            return None
        if message is None or message == ["failed"]:
            self.stop(GONE, "the program did not finish loading")
            return None
        if type(message) is list and len(message) == 2 and message[0] == "loaded":
            exported = message[1]
            if type(exported) is list:
                return exported
        self.stop(PROTOCOL, "the program broke the protocol: a malformed greeting")
        return None

    def stop(self, cause: str, why: str) -> None:
        """Nothing more can be asked of the program: ``cause`` is GONE, PROTOCOL or
        UNRESPONSIVE."""
        if self.broken is None:
            self.cause, self.broken = cause, why

    def _break(self, cause: str, why: str) -> NoReturn:
        self.stop(cause, why)
        raise CandidateGone(why)

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call the program's ``name`` and return its result (or raise its exception)."""
        if self.broken is not None:
            raise CandidateGone(self.broken)
        self._next += 1
        call_id = self._next
        seconds = None
        if self.deadline is not None:
            seconds = max(self.deadline - time.monotonic(), 0.001)
        request = encode(["call", call_id, name, list(args), dict(kwargs), seconds])
        _flush()
        try:
            write_frame(self.requests, request)
        except OSError:
            self._break(GONE, "the program ended before the tests finished")
        self.waiting = True
        while True:
            try:
                reply = receive(self.replies)
            except WireError as exc:
                self._break(PROTOCOL, f"the program broke the protocol: {exc}")
            if reply is None:
                self._break(GONE, "the program ended before the tests finished")
            if type(reply) is not list or len(reply) < 3 or type(reply[1]) is not int:
                self._break(PROTOCOL, "the program broke the protocol: a malformed reply")
            if reply[1] < call_id:
                continue
            self.waiting = False
            if reply[1] > call_id:
                self._break(PROTOCOL, "the program broke the protocol: a reply to no call")
            if reply[0] == "ok" and len(reply) == 3:
                return reply[2]
            if reply[0] == "raise" and len(reply) == 4:
                raise _exception(reply[2], reply[3])
            self._break(PROTOCOL, "the program broke the protocol: a malformed reply")

    def close(self) -> None:
        """Hang up: the program's server sees the end of its requests and exits."""
        try:  # noqa: SIM105
            os.close(self.requests)
        except OSError:
            pass


class Remote:
    """A function of the program, as the tests see it: calls go over the wire."""

    __slots__ = ("__name__", "_link")

    def __init__(self, name: str, link: Link) -> None:
        self.__name__ = name
        self._link = link

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<the program's {self.__name__}>"


def _usable_name(name: object) -> bool:
    # A program's name must not shadow a builtin: `abs`, `len` or `sorted` in the tests stay the
    # judge's own, whatever the program defines.
    return (
        type(name) is str
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("__")
        and not hasattr(builtins, name)
    )


def _stdlib_module_named(module: object, name: str) -> bool:
    return (
        type(module) is str
        and module.rpartition(".")[2] == name
        and module.partition(".")[0] in sys.stdlib_module_names
    )


def referenced_names(sources: list[str]) -> set[str]:
    """Every global name the code of ``sources`` (and the functions in it) refers to."""
    names: set[str] = set()
    pending = []
    for source in sources:
        try:
            pending.append(compile(source, "<tests>", "exec"))
        except (SyntaxError, ValueError):
            continue
    while pending:
        code = pending.pop()
        names.update(code.co_names)
        pending += [c for c in code.co_consts if isinstance(c, type(code))]
    return names


def namespace_for(exported: list[Any], link: Link, wanted: set[str]) -> dict[str, Any]:
    """The tests' globals: the judge's builtins, then those of the program's exports that the
    tests refer to (``wanted``): functions as Remote, modules as the judge's own import of the
    same standard-library module, plain values as they are."""
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for entry in exported:
        if type(entry) is not list or len(entry) != 3 or not _usable_name(entry[0]):
            continue
        if entry[0] not in wanted:
            continue
        name, kind, payload = entry
        if kind == "function":
            namespace[name] = Remote(name, link)
        elif kind == "value":
            namespace[name] = payload
        elif kind == "module" and _stdlib_module_named(payload, name):
            try:
                namespace[name] = __import__(payload, fromlist=["_"])
            except Exception:
                continue
    return namespace


def _last_line(exc: BaseException) -> str:
    import traceback

    return traceback.format_exception_only(type(exc), exc)[-1].strip()[:300]


def _timed(seconds: float | None, run: Callable[[], None]) -> None:
    """``run()``, interrupted by CheckTimeout after ``seconds`` (no limit when None)."""
    if seconds is None:
        run()
        return
    import signal

    armed = True

    def on_alarm(signum: int, frame: object) -> None:
        if armed:
            raise CheckTimeout(f"check took more than {seconds - GRACE_SECONDS:g} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        run()
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)


class Judge:
    """Runs the tests against the program behind ``link`` and reports to ``verdict_fd``."""

    def __init__(self, link: Link, verdict_fd: int) -> None:
        self.link = link
        self.verdict_fd = verdict_fd

    def report(self, **fields: object) -> None:
        send(self.verdict_fd, fields)

    def run_source(
        self, source: str, filename: str, namespace: dict[str, Any], seconds: float | None
    ) -> str | None:
        """Run ``source`` in ``namespace``; None when it completed with the program still
        answering, else the reason it did not pass (its traceback printed to stderr)."""
        broken_before = self.link.broken
        try:
            if seconds is not None:
                self.link.deadline = time.monotonic() + seconds
            _timed(
                None if seconds is None else seconds + GRACE_SECONDS,
                lambda: exec(_compile(source, filename), namespace),
            )
        except CandidateGone as exc:
            return str(exc)
        except BaseException as exc:
            _print_from(exc, filename)
            return _last_line(exc)
        finally:
            self.link.deadline = None
            if self.link.waiting:
                self.link.stop(UNRESPONSIVE, "the program stopped answering")
                self.link.waiting = False
            _flush()
        if self.link.broken != broken_before:
            return str(self.link.broken)
        return None

    def run(self, tests: str, checks: list[str] | None, check_seconds: float | None) -> bool:
        """Run ``tests`` as one script, or each of ``checks`` on its own with a time limit,
        and report the verdict; True when it passed."""
        exported = self.link.hello()
        if exported is None:
            stage = "load" if self.link.cause == GONE else str(self.link.cause)
            self.report(verdict="failed", stage=stage, detail=self.link.broken)
            return False
        self.report(loaded=True)
        wanted = referenced_names([tests] if checks is None else checks)
        namespace = namespace_for(exported, self.link, wanted)
        if checks is None:
            failure = self.run_source(tests, "<tests>", namespace, None)
        else:
            failures = 0
            for index, source in enumerate(checks):
                why = self.run_source(source, f"<check {index}>", namespace, check_seconds)
                self.report(check=index, ok=why is None)
                failures += why is not None
            failure = f"{failures} of {len(checks)} checks failed" if failures else None
        cause = self.link.cause
        self.link.close()
        if failure is None and cause is None:
            self.report(verdict="passed")
            return True
        detail = "; ".join(dict.fromkeys(why for why in (failure, self.link.broken) if why))
        self.report(verdict="failed", stage=cause or "tests", detail=detail)
        return False


def _not_dumpable() -> None:
    # Same user id as the program: make /proc/<judge>/{fd,mem} and ptrace need privileges.
    import ctypes

    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


def judge(
    tests: str, checks: list[str] | None, check_seconds: float | None, shared_uid: bool
) -> NoReturn:
    """The judge process's entry point: exit status 0 when the tests passed, else 1."""
    if shared_uid:
        _not_dumpable()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    link = Link(JUDGE_REPLIES, JUDGE_REQUESTS)
    passed = Judge(link, JUDGE_VERDICT).run(tests, checks, check_seconds)
    _flush()
    os._exit(0 if passed else 1)
