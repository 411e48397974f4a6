"""Answers read as mathematics and compared by value: a sanitising LaTeX reader, sympy
trees, and evaluation at fixed probe points, guarded by a thread deadline.

``fingerprints(texts)`` reads each text (a cleaned answer: fractions already ``a/b``, no
``$`` or ``\\boxed``) as a formula or a bracketed list of formulas over single letters,
numbers, ``pi``, ``e``, ``i`` and a few functions, and gives its values at ``PROBES`` fixed
points; ``values_match`` compares two such fingerprints to a relative 1e-9. Only the
sanitised text, rebuilt from whitelisted tokens, reaches ``sympy.parse_expr`` (unevaluated);
the trees are evaluated in complex floating point, so nothing is computed exactly. The
formulas of one call are parsed together on a daemon thread with a deadline; results are
cached per text.
"""

from __future__ import annotations

import cmath
import functools
import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "PROBES",
    "Fingerprint",
    "brackets",
    "fingerprints",
    "looks_like_expression",
    "number_fingerprint",
    "values_match",
]

Fingerprint = tuple[str, tuple[tuple[complex, ...], ...]]
"""An answer read as mathematics: its enclosing brackets (``""`` for none, ``"()"`` for a
tuple, ``"[)"`` for an interval) and, for each comma-separated element, its values at the
probe points."""

PROBES = 3
_VALUE_TOL = 1e-9
# Bounds that keep parsing and evaluation cheap whatever the model wrote.
_MAX_EXPR_CHARS = 160
_MAX_TOKENS = 96
_MAX_ELEMENTS = 16
_PARSE_TIMEOUT_S = 2.0
_PARSE_SECONDS_PER_FORMULA = 0.05
_CACHE_SIZE = 4096
_fingerprint_cache: dict[str, Fingerprint | None] = {}
# After this many parses overran the timeout (their threads cannot be killed), stop reading
# expressions at all rather than leave more threads spinning.
_MAX_OVERRUNS = 4
_overruns = 0
_overrun_lock = threading.Lock()

_FUNCTION_NAMES = {"sqrt": "sqrt", "sin": "sin", "cos": "cos", "tan": "tan", "exp": "exp"}
_FUNCTION_NAMES |= {"log": "log", "ln": "log"}
# In a final answer "e" is Euler's number and "i" the imaginary unit far more often than a variable.
_CONSTANT_NAMES = {"pi": "pi", "e": "E", "i": "I"}
_LATEX_OPERATORS = {"cdot": "*", "times": "*", "div": "/"}
_EXPR_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|\\(?P<cmd>[a-zA-Z]+)|(?P<word>[a-zA-Z]+)"
    r"|(?P<op>\*\*|[-+*/^(){}\[\]]))"
)


def looks_like_expression(text: str) -> bool:
    """True for a formula over a variable such as ``2x + 1``: not prose, not a bare number, and
    not a number with a unit letter (``5h`` still reduces to ``5``)."""
    tokens = _expr_tokens(text)
    kinds = {kind for kind, _ in tokens or ()}
    return "sym" in kinds and bool(kinds & {"op", "func"})


def _expr_tokens(text: str) -> list[tuple[str, str]] | None:
    """Tokens of a formula: numbers, single-letter symbols, the constants ``pi``, ``e`` and
    ``i``, the whitelisted functions, operators and brackets (``{}`` read as ``()``). None for
    anything else, e.g. a word or a LaTeX command outside the whitelist."""
    if len(text) > _MAX_EXPR_CHARS:
        return None
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _EXPR_TOKEN_RE.match(text, pos)
        if match is None:
            return None if text[pos:].strip() else tokens
        pos = match.end()
        if match.group("num"):
            tokens.append(("num", match.group("num")))
            continue
        name = match.group("cmd") or match.group("word")
        if name is None:
            op = match.group("op")
            op = {"{": "(", "}": ")", "**": "^"}.get(op, op)
            tokens.append((op if op in "()[]" else "op", op))
        elif name in _CONSTANT_NAMES and (name == "pi" or match.group("word")):
            tokens.append(("const", _CONSTANT_NAMES[name]))
        elif name in _FUNCTION_NAMES:
            tokens.append(("func", _FUNCTION_NAMES[name]))
        elif match.group("cmd") and name in _LATEX_OPERATORS:
            tokens.append(("op", _LATEX_OPERATORS[name]))
        elif match.group("word") and len(name) == 1:
            tokens.append(("sym", name))
        else:
            return None
        if len(tokens) > _MAX_TOKENS:
            return None
    return tokens


def _closing(tokens: list[tuple[str, str]], start: int, end: int) -> int | None:
    """Index of the bracket closing the one at ``start`` (within ``end``), or None."""
    opener = tokens[start][0]
    closer = ")" if opener == "(" else "]"
    depth = 0
    for k in range(start, end):
        if tokens[k][0] == opener:
            depth += 1
        elif tokens[k][0] == closer:
            depth -= 1
            if depth == 0:
                return k
    return None


def _emit(tokens: list[tuple[str, str]], start: int, end: int) -> str | None:
    """Python-syntax text for ``tokens[start:end]`` with implicit products made explicit
    (``2x`` -> ``2*x``), ``^`` as ``**``, ``\\sqrt[n]{a}`` as ``_root(a, n)`` and
    ``\\sin^2 x`` as ``sin(x)**(2)``. None when the tokens do not form a formula."""
    pieces: list[str] = []
    previous = "op"
    k = start
    while k < end:
        kind, value = tokens[k]
        if kind == "op":
            piece, k = ("**" if value == "^" else value), k + 1
        elif kind in ("num", "sym", "const"):
            if kind == "num" and previous == "num":
                return None  # "1 000": ambiguous digit grouping
            piece, k = value, k + 1
        elif kind == "(":
            group = _emit_group(tokens, k, end)
            if group is None:
                return None
            piece, k = f"({group[0]})", group[1]
        elif kind == "func":
            call = _emit_call(tokens, k, end)
            if call is None:
                return None
            piece, k = call
        else:
            return None  # a stray closing bracket, or "[" outside \sqrt[n]
        if kind != "op" and previous != "op":
            pieces.append("*")
        pieces.append(piece)
        previous = kind
    return "".join(pieces) if pieces else None


def _emit_group(tokens: list[tuple[str, str]], k: int, end: int) -> tuple[str, int] | None:
    """The text inside the bracket group opening at ``k``, and the index after it."""
    close = _closing(tokens, k, end)
    inner = None if close is None else _emit(tokens, k + 1, close)
    return None if close is None or not inner else (inner, close + 1)


def _emit_atom(tokens: list[tuple[str, str]], k: int, end: int) -> tuple[str, int] | None:
    """A function argument or exponent: a bracket group, or one number, letter or ``pi``."""
    if k < end and tokens[k][0] == "(":
        return _emit_group(tokens, k, end)
    if k < end and tokens[k][0] in ("num", "sym", "const"):
        return tokens[k][1], k + 1
    return None


def _emit_call(tokens: list[tuple[str, str]], k: int, end: int) -> tuple[str, int] | None:
    """A function application at ``k``: ``sqrt(a)``, ``_root(a, n)``, ``sin(a)**(p)``."""
    name = tokens[k][1]
    k += 1
    index = power = None
    if name == "sqrt" and k < end and tokens[k][0] == "[":
        close = _closing(tokens, k, end)
        index = None if close is None else _emit(tokens, k + 1, close)
        if close is None or not index:
            return None
        k = close + 1
    if k < end and tokens[k] == ("op", "^"):
        exponent = _emit_atom(tokens, k + 1, end)
        if exponent is None:
            return None
        power, k = exponent
    argument = _emit_atom(tokens, k, end)
    if argument is None:
        return None
    arg, k = argument
    call = f"_root({arg},{index})" if index else f"{name}({arg})"
    return (f"{call}**({power})" if power else call), k


def brackets(text: str) -> str | None:
    """The brackets around a comma-separated list such as ``(a, b)`` or ``[a, b)`` (``""``
    for none, and for a lone ``(x+1)``); None when ``text`` does not split into elements."""
    split = _split_elements(text)
    return None if split is None else split[0]


def _split_elements(text: str) -> tuple[str, list[str]] | None:
    """Split ``(a, b)`` / ``[a, b)`` / ``a, b`` into its brackets and top-level elements."""
    brackets = ""
    if len(text) >= 2 and text[0] in "([" and text[-1] in ")]":
        depth = 0
        for k, char in enumerate(text):
            depth += (char in "([{") - (char in ")]}")
            if depth == 0 and k < len(text) - 1:
                break  # the first bracket closes early: "(a)(b)", not one enclosed list
        else:
            brackets, text = text[0] + text[-1], text[1:-1]
    elements, depth, begin = [], 0, 0
    for k, char in enumerate(text):
        depth += (char in "([{") - (char in ")]}")
        if char == "," and depth == 0:
            elements.append(text[begin:k].strip())
            begin = k + 1
    elements.append(text[begin:].strip())
    if brackets and len(elements) == 1:
        brackets = ""  # "(x+1)" is just a parenthesised expression
    if len(elements) > _MAX_ELEMENTS or not all(elements):
        return None
    return brackets, elements


@dataclass(frozen=True)
class _Formula:
    """A cleaned answer that still needs sympy: its brackets and one source per element."""

    brackets: str
    sources: tuple[str, ...]


def number_fingerprint(value: Fraction) -> Fingerprint | None:
    """The fingerprint of a number (the same value at every probe); None if it overflows."""
    try:
        number = complex(float(value))
    except OverflowError:
        return None
    return "", ((number,) * PROBES,)


def _prepare(text: str) -> _Formula | None:
    """The formulas to parse for ``text``, or None when it is not mathematics."""
    split = _split_elements(text)
    if split is None:
        return None
    brackets, elements = split
    sources = []
    for element in elements:
        tokens = _expr_tokens(element)
        source = None if tokens is None else _emit(tokens, 0, len(tokens))
        if source is None:
            return None
        sources.append(source)
    return _Formula(brackets, tuple(sources))


def fingerprints(texts: Sequence[str]) -> dict[str, Fingerprint | None]:
    """The value fingerprint of each text (None: not mathematics). Formulas not seen before
    are parsed and probed together in one guarded job; results are cached."""
    out: dict[str, Fingerprint | None] = {}
    pending: dict[str, _Formula] = {}
    for text in dict.fromkeys(texts):
        if text in _fingerprint_cache:
            out[text] = _fingerprint_cache[text]
            continue
        prepared = _prepare(text)
        if prepared is None:
            out[text] = None
        else:
            pending[text] = prepared
    if pending:
        _parse_formula("1")  # sympy is imported here, not against the job's deadline
        jobs = [formula.sources for formula in pending.values()]
        deadline = _PARSE_TIMEOUT_S + _PARSE_SECONDS_PER_FORMULA * len(jobs)
        results = _guarded(_probe_many, jobs, deadline) or [None] * len(jobs)
        for (text, formula), values in zip(pending.items(), results, strict=True):
            out[text] = None if values is None else (formula.brackets, values)
    if len(_fingerprint_cache) > _CACHE_SIZE:
        _fingerprint_cache.clear()
    _fingerprint_cache.update(out)
    return out


def values_match(a: Fingerprint | None, b: Fingerprint | None) -> bool:
    """True when two fingerprints have the same shape and agree at every probe."""
    if a is None or b is None or a[0] != b[0] or len(a[1]) != len(b[1]):
        return False
    for values_a, values_b in zip(a[1], b[1], strict=True):
        for x, y in zip(values_a, values_b, strict=True):
            if abs(x - y) > _VALUE_TOL * max(abs(x), abs(y), 1e-3):
                return False
    return True


def _guarded(fn: Callable[[Any], Any], arg: Any, timeout: float | None = None) -> Any:
    """``fn(arg)`` on a daemon thread with a deadline: None if it fails or overruns."""
    global _overruns
    if _overruns >= _MAX_OVERRUNS:
        return None
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn(arg))
        except Exception:  # hostile input may break the parser in any way: "not a formula"
            box.append(None)

    thread = threading.Thread(target=run, name="ponder-answer-parse", daemon=True)
    thread.start()
    thread.join(_PARSE_TIMEOUT_S if timeout is None else timeout)
    if thread.is_alive():
        with _overrun_lock:
            _overruns += 1
        return None
    return box[0] if box else None


def _probe_many(jobs: list[tuple[str, ...]]) -> list[tuple[tuple[complex, ...], ...] | None]:
    """``_probe`` for each job; a job that fails to parse or evaluate gives None."""
    out: list[tuple[tuple[complex, ...], ...] | None] = []
    for sources in jobs:
        try:
            out.append(_probe(sources))
        except Exception:  # any parser or evaluation failure means "not a formula"
            out.append(None)
    return out


def _probe(sources: tuple[str, ...]) -> tuple[tuple[complex, ...], ...] | None:
    """Parse each Python-syntax formula with sympy and evaluate it at the probe points."""
    out = []
    for source in sources:
        expr = _parse_formula(source)
        names = sorted(symbol.name for symbol in expr.free_symbols)
        values = tuple(
            _evaluate(expr, {name: _probe_value(name, probe) for name in names})
            for probe in range(PROBES)
        )
        if not all(cmath.isfinite(v) for v in values):
            return None
        out.append(values)
    return tuple(out)


@functools.cache
def _probe_value(name: str, probe: int) -> float:
    """A fixed, irregular value in [0.3, 1.7] for symbol ``name`` at probe ``probe``."""
    return random.Random(f"{name}/{probe}").uniform(0.3, 1.7)


@functools.cache
def _sympy_namespace() -> dict[str, Any]:
    """The only names the parsed text can reach: sympy's node types and a few functions,
    all unevaluated so that nothing is computed exactly (``2^{2^{100}}`` stays a tree)."""
    import sympy  # type: ignore[import-untyped]

    def sqrt(a: Any, evaluate: bool = False) -> Any:
        return sympy.Pow(a, sympy.Rational(1, 2), evaluate=False)

    def root(a: Any, n: Any, evaluate: bool = False) -> Any:
        return sympy.Pow(a, sympy.Pow(n, -1, evaluate=False), evaluate=False)

    names: dict[str, Any] = {"__builtins__": {}}
    for node in ("Add", "Mul", "Pow", "Integer", "Float", "Rational", "Symbol"):
        names[node] = getattr(sympy, node)
    names["pi"], names["E"], names["I"] = sympy.pi, sympy.E, sympy.I
    for name in ("sin", "cos", "tan", "exp", "log"):
        names[name] = getattr(sympy, name)
    names["sqrt"], names["_root"] = sqrt, root
    return names


def _parse_formula(source: str) -> Any:
    """The unevaluated sympy tree of ``source``, text that ``_emit`` built from whitelisted
    tokens (numbers, single letters, ``pi``, the functions above, operators, brackets)."""
    from sympy.parsing.sympy_parser import (  # type: ignore[import-untyped]
        parse_expr,
        standard_transformations,
    )

    return parse_expr(
        source,
        local_dict={},
        global_dict=_sympy_namespace(),
        transformations=standard_transformations,
        evaluate=False,
    )


_CMATH_FUNCTIONS: dict[str, Callable[[complex], complex]] = {
    "sin": cmath.sin,
    "cos": cmath.cos,
    "tan": cmath.tan,
    "exp": cmath.exp,
    "log": cmath.log,
}


def _evaluate(expr: Any, env: dict[str, float]) -> complex:
    """The value of a sympy tree in complex floating point (bounded cost, overflow raises)."""
    if expr.is_Symbol:
        return complex(env[expr.name])
    if expr.is_Number or expr.is_NumberSymbol:
        return complex(float(expr))
    name = type(expr).__name__
    if name == "ImaginaryUnit":
        return 1j
    args = [_evaluate(arg, env) for arg in expr.args]
    if name == "Add":
        return sum(args, 0j)
    if name == "Mul":
        product = 1 + 0j
        for factor in args:
            product *= factor
        return product
    if name == "Pow":
        base, exponent = args
        if base.imag == 0 and exponent.imag == 0 and base.real > 0:
            return complex(base.real**exponent.real)
        return base**exponent
    if name in _CMATH_FUNCTIONS and len(args) == 1:
        return _CMATH_FUNCTIONS[name](args[0])
    raise ValueError(f"cannot evaluate {name}")
