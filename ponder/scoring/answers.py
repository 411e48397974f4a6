"""Extract, normalise and compare the final answers in free-text model outputs.

``extract_answer`` pulls the answer out of a generation, ``normalize_answer`` turns it into a
canonical key (``"0.5"``, ``"1/2"`` and ``"\\frac{1}{2}"`` all become ``"1/2"``), and
``answers_equivalent`` / ``cluster_answers`` build on those keys for grading and voting.

Answers that are mathematical expressions (``\\sqrt{2}/2``, ``2x+1``, ``\\frac{\\pi}{2}``) are also
compared by value: a small LaTeX reader turns the answer into a sanitised expression over single
letters, numbers, ``pi`` and a few functions, ``sympy.parse_expr`` builds its tree (unevaluated,
on that sanitised text only), and both trees are evaluated in floating point at fixed probe
points. Two expressions that agree at every probe to a relative 1e-9 are taken as equal.
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

__all__ = ["KINDS", "answers_equivalent", "cluster_answers", "extract_answer", "normalize_answer"]

KINDS = ("auto", "number", "boxed", "choice", "code", "text")

_REL_TOL = Fraction(1, 10**9)
# Thousands groups must be exactly three digits, so "1,2,3" stays three separate numbers.
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
# A minus is a sign only when it does not follow a word or digit: "5-3" is a subtraction.
_NUMBER_RE = re.compile(rf"(?:(?<![\w)])-)?\$?(?<![\w.]){_DIGITS}(?:/\d+)?%?")
_NUMERIC_RE = re.compile(
    rf"(?P<sign>[-+]?)\s*\$?\s*(?P<num>(?:{_DIGITS}|\.\d+)(?:[eE][-+]?\d{{1,3}}|/\d+)?)"
    # A trailing unit word ("dollars", "cm") does not change which value is meant.
    # A single letter glued to the number is a variable ("2x"), not a unit.
    r"\s*%?(?:\s+[a-zA-Z]+\.?|[a-zA-Z]{2,}\.?)?"
)
_KEY_RE = re.compile(r"-?\d+(?:/\d+)?")

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_DEPTH = {"{": 1, "}": -1}
_PHRASE_RE = (
    r"(?:####|\b(?:{words})\b[ \t*]*(?:is\b|should\s+be\b|would\s+be\b|will\s+be\b|:|=))"
    # The answer is captured in a lookahead so a later phrase on the same line still matches.
    r"[ \t*:]*(?:\n[ \t*]*)?(?=(?P<ans>[^\n]*))"
)
_ANSWER_PHRASE_RE = re.compile(_PHRASE_RE.replace("{words}", "answer"), re.I)
_CHOICE_PHRASE_RE = re.compile(_PHRASE_RE.replace("{words}", "answer|option|choice"), re.I)
_SENTENCE_END_RE = re.compile(r"[.!?](?=\s|$)")
_EXPLANATION_RE = re.compile(
    r"[,;]?\s+(?:because|since|as|which|given|due\s+to|so|where)\b.*$", re.I | re.S
)
_MATH_DELIM_RE = re.compile(r"\\[()\[\]]")
# Beyond this many words, an "Answer: ..." line is prose (e.g. "Answer: Let's think ..."), not an
# answer, and the last number in the text is the better guess.
_MAX_TEXT_ANSWER_WORDS = 6

_CHOICE_TOKEN_RE = re.compile(r"(?:(?i:option|choice)\s*)?\(?([A-E])\)?(?=$|[\s.,:;)!])")
_CHOICE_ONLY_RE = re.compile(r"\(?([A-E])\)?")
_BOLD_CHOICE_RE = re.compile(r"\*\*\s*\(?([A-E])\)?[.):]?\s*\*\*")
_LINE_CHOICE_RE = re.compile(r"^[ \t>*]*\(?([A-E])\)?[.)]?[ \t*]*$", re.M)
_CODE_RE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)

_TEXT_CMD_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}"
)
_FRAC_CMD_RE = re.compile(r"\\[dt]?frac(?![a-zA-Z])\s*")
_SPACING_RE = re.compile(r"\\(?:left|right|displaystyle)(?![a-zA-Z])|\\[,;:! ]")
_DEGREE_RE = re.compile(r"\^\s*\{?\\circ\}?|°")
_ASSIGN_RE = re.compile(r"^[a-zA-Z]\w*\s*=\s*")
_EDGE_PUNCT = " \t\n.,;:!?'\"`*"


def extract_answer(text: str, kind: str = "auto") -> str | None:
    """Return the final answer found in ``text`` as a string, or None when there is none.

    ``kind`` selects what to look for:

    * ``"boxed"``: contents of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces allowed).
    * ``"number"``: the last number as written, e.g. ``"-3"``, ``"1,000"``, ``"3/4"``, ``"50%"``,
      with any ``$`` dropped.
    * ``"choice"``: a multiple-choice letter A-E, uppercase.
    * ``"code"``: contents of the first fenced code block (an unclosed fence runs to the end).
    * ``"text"``: the boxed answer, else the last "answer is" / "Answer:" / "####" phrase, as text.
    * ``"auto"``: the boxed answer, else the last answer phrase (reduced to its number when it
      holds one), else the last number.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; expected one of {KINDS}")
    text = text.replace("−", "-")
    if kind == "code":
        match = _CODE_RE.search(text)
        return match.group(1).strip("\n") if match else None
    if kind == "choice":
        return _extract_choice(text)
    if kind == "number":
        return _last_number(text)
    boxed = _last_boxed(text)
    if kind == "boxed" or boxed is not None:
        return boxed
    phrases = _phrases(text, _ANSWER_PHRASE_RE)
    if kind == "text":
        return phrases[-1] if phrases else None
    for phrase in reversed(phrases):
        reduced = _reduce_phrase(phrase)
        if reduced is not None:
            return reduced
    return _last_number(text)


def normalize_answer(answer: str) -> str:
    """Return a canonical key for ``answer`` so that equal answers get equal keys.

    Numbers become their exact value: an integer (``"3.0"`` -> ``"3"``, ``"1,000"`` ->
    ``"1000"``, ``"-0"`` -> ``"0"``) or a reduced fraction (``"0.5"``, ``"\\frac{1}{2}"`` ->
    ``"1/2"``). Currency signs, a percent sign, a trailing unit word and a leading ``x =`` are
    dropped. Anything else is lowercased with whitespace collapsed and edge punctuation removed.
    """
    return _key(_clean(answer))


def answers_equivalent(a: str | None, b: str | None) -> bool:
    """Return True when ``a`` and ``b`` denote the same answer; None equals nothing.

    Answers match when their normalised keys are equal, when both are numbers whose values
    agree to a relative tolerance of 1e-9 (so a long decimal matches the fraction it rounds),
    or when both read as mathematical expressions (or tuples of them) with the same value at
    every probe point (``\\sqrt{2}/2`` and ``\\frac{1}{\\sqrt{2}}``, ``2x+1`` and ``1+2x``).
    """
    if a is None or b is None:
        return False
    clean_a, clean_b = _clean(a), _clean(b)
    key_a, key_b = _key(clean_a), _key(clean_b)
    if key_a == key_b or _keys_close(key_a, key_b):
        return True
    fingerprints = _fingerprints([clean_a, clean_b])
    return _values_match(fingerprints[clean_a], fingerprints[clean_b])


def cluster_answers(answers: list[str | None]) -> dict[str, list[int]]:
    """Group equivalent answers: map each canonical key to the indices of its answers.

    Keys and indices keep first-seen order and None answers are skipped. An answer joins the
    first earlier cluster it is equivalent to, as in ``answers_equivalent``: equal keys,
    numbers within tolerance, or expressions with equal values. The distinct answers that look
    like formulas are parsed together, once, in one guarded job.
    """
    cleans = {index: _clean(a) for index, a in enumerate(answers) if a is not None}
    values = _fingerprints(list(cleans.values()))
    clusters: dict[str, list[int]] = {}
    representatives: dict[str, Fingerprint | None] = {}
    for index, clean in cleans.items():
        key = _key(clean)
        if key not in clusters:
            key = next((k for k in clusters if _keys_close(k, key)), key)
        if key not in clusters:
            mine = values[clean]
            if mine is not None:
                matches = (k for k, fp in representatives.items() if _values_match(fp, mine))
                key = next(matches, key)
            representatives.setdefault(key, mine)
        clusters.setdefault(key, []).append(index)
    return clusters


def _clean(answer: str) -> str:
    """Strip boxes, dollar signs, math delimiters, spacing and text commands; fractions to a/b."""
    s = answer.replace("−", "-").strip()
    boxed = _last_boxed(s)
    if boxed is not None:
        s = boxed
    for old, new in (("\\$", ""), ("$", ""), ("\\%", "%"), ("{,}", ","), ("**", "")):
        s = s.replace(old, new)
    s = _DEGREE_RE.sub("", _SPACING_RE.sub("", _MATH_DELIM_RE.sub("", s)))
    s = _repeat_sub(_TEXT_CMD_RE, r"\1", s)
    s = _replace_fracs(s)
    return s.strip().rstrip(".").strip()


def _key(clean: str) -> str:
    """The canonical key of a cleaned answer: its exact number, else its normalised text."""
    value = _parse_number(_ASSIGN_RE.sub("", clean, count=1))
    if value is not None:
        return str(value)
    text = re.sub(r"\s+", " ", clean).lower().strip(_EDGE_PUNCT)
    choice = re.fullmatch(r"\(([a-z])\)", text)
    return choice.group(1) if choice else text


def _last_boxed(text: str) -> str | None:
    """Return the stripped, non-empty contents of the last balanced ``\\boxed{}``/``\\fbox{}``."""
    found: str | None = None
    for match in _BOXED_RE.finditer(text):
        depth = 1
        for end in range(match.end(), len(text)):
            depth += _BRACE_DEPTH.get(text[end], 0)
            if depth == 0:
                content = text[match.end() : end].strip()
                found = content or found
                break
    return found


def _phrases(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Return the cleaned, non-empty answers of every answer phrase in ``text``, in order."""
    cleaned = (_clean_phrase(m.group("ans")) for m in pattern.finditer(text))
    return [phrase for phrase in cleaned if phrase]


def _clean_phrase(raw: str) -> str:
    """Cut an answer phrase at its sentence end or explanation and drop markup around it."""
    end = _SENTENCE_END_RE.search(raw)
    if end:
        raw = raw[: end.start()]
    return _strip_markup(_EXPLANATION_RE.sub("", raw))


def _strip_markup(s: str) -> str:
    """Remove markdown bold, dollar signs, inline-math delimiters and a trailing period."""
    s = _MATH_DELIM_RE.sub("", s.replace("**", "").replace("\\$", "").replace("$", ""))
    return s.strip().rstrip(".").strip()


def _reduce_phrase(phrase: str) -> str | None:
    """Reduce an answer phrase to a choice letter, its number, or None if it reads as prose."""
    choice = _CHOICE_ONLY_RE.fullmatch(phrase)
    if choice:
        return choice.group(1)
    if "\\" in phrase or _NUMBER_RE.fullmatch(phrase):
        return phrase
    # "3 + 4 = 7" states its result last; "42 (six sevens)" states it first.
    result = phrase.rsplit("=", 1)[-1].strip()
    if _looks_like_expression(result):
        return result
    number = _NUMBER_RE.search(result)
    if number:
        return number.group().replace("$", "")
    return phrase if len(phrase.split()) <= _MAX_TEXT_ANSWER_WORDS else None


def _last_number(text: str) -> str | None:
    """Return the last number in ``text`` as written, without any currency sign."""
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1].replace("$", "") if numbers else None


def _extract_choice(text: str) -> str | None:
    """Return the chosen letter from an answer phrase, a box, bold text or a line of its own."""
    for phrase in reversed(_phrases(text, _CHOICE_PHRASE_RE)):
        match = _CHOICE_TOKEN_RE.match(phrase)
        if match:
            return match.group(1)
    boxed = _last_boxed(text)
    if boxed is not None:
        match = _CHOICE_TOKEN_RE.match(_strip_markup(_repeat_sub(_TEXT_CMD_RE, r"\1", boxed)))
        if match:
            return match.group(1)
    for pattern in (_BOLD_CHOICE_RE, _LINE_CHOICE_RE):
        letters = pattern.findall(text)
        if letters:
            return str(letters[-1])
    return None


def _repeat_sub(
    pattern: re.Pattern[str], repl: str | Callable[[re.Match[str]], str], s: str
) -> str:
    """Apply ``pattern`` until nothing changes, so nested commands unwrap from the inside out."""
    while True:
        new = pattern.sub(repl, s)
        if new == s:
            return s
        s = new


def _replace_fracs(s: str) -> str:
    """Rewrite every ``\\frac{a}{b}`` (also ``\\dfrac``, ``\\tfrac``, ``\\frac12``) as ``a/b``.

    Arguments may hold nested braces and fractions; parts that are not a single token are
    parenthesised (``\\frac{x+1}{2}`` -> ``(x+1)/2``). A malformed fraction is left as written.
    """
    out: list[str] = []
    pos = 0
    for match in _FRAC_CMD_RE.finditer(s):
        if match.start() < pos:
            continue
        parts: list[str] = []
        end = match.end()
        for _ in range(2):
            arg = _latex_argument(s, end)
            if arg is None:
                break
            text, end = arg
            parts.append(_replace_fracs(text).strip())
            while end < len(s) and s[end].isspace():
                end += 1
        if len(parts) != 2 or not all(parts):
            continue
        out.append(s[pos : match.start()])
        out.append("/".join(p if re.fullmatch(r"-?\\?[\w.]+", p) else f"({p})" for p in parts))
        pos = end
    out.append(s[pos:])
    return "".join(out)


def _latex_argument(s: str, start: int) -> tuple[str, int] | None:
    """The argument of a LaTeX command at ``start``: a balanced ``{...}`` group, one command
    such as ``\\pi``, or one character; with the index just past it. None if there is none."""
    if start >= len(s):
        return None
    if s[start] == "{":
        depth = 0
        for end in range(start, len(s)):
            depth += _BRACE_DEPTH.get(s[end], 0)
            if depth == 0:
                return s[start + 1 : end], end + 1
        return None
    command = re.match(r"\\[a-zA-Z]+", s[start:])
    if command:
        return command.group(), start + command.end()
    if s[start] in "}^_":
        return None
    return s[start], start + 1


def _parse_number(s: str) -> Fraction | None:
    """Return the exact value of a numeric string such as ``"-$1,234.50"``, or None."""
    match = _NUMERIC_RE.fullmatch(s)
    if match is None:
        return None
    numerator, _, denominator = match.group("num").replace(",", "").partition("/")
    try:
        value = Fraction(numerator) / Fraction(denominator or 1)
    except ZeroDivisionError:
        return None
    return -value if match.group("sign") == "-" else value


def _keys_close(key_a: str, key_b: str) -> bool:
    """Return True when two canonical numeric keys agree to the relative tolerance."""
    if not (_KEY_RE.fullmatch(key_a) and _KEY_RE.fullmatch(key_b)):
        return False
    try:
        a, b = Fraction(key_a), Fraction(key_b)
    except ZeroDivisionError:
        return False
    return abs(a - b) <= _REL_TOL * max(abs(a), abs(b))


# ---- expressions compared by value -------------------------------------------------------

Fingerprint = tuple[str, tuple[tuple[complex, ...], ...]]
"""An answer read as mathematics: its enclosing brackets (``""`` for none, ``"()"`` for a
tuple, ``"[)"`` for an interval) and, for each comma-separated element, its values at the
probe points."""

_PROBES = 3
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


def _looks_like_expression(text: str) -> bool:
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


def _prepare(clean: str) -> Fingerprint | _Formula | None:
    """A number's fingerprint at once, the formulas to parse for an expression, or None when
    the answer is not mathematics."""
    text = _ASSIGN_RE.sub("", clean, count=1).strip()
    number = _parse_number(text)
    if number is not None:
        try:
            value = complex(float(number))
        except OverflowError:
            return None
        return "", ((value,) * _PROBES,)
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


def _fingerprints(cleans: Sequence[str]) -> dict[str, Fingerprint | None]:
    """The value fingerprint of each cleaned answer (None: not mathematics). Formulas not
    seen before are parsed and probed together in one guarded job; results are cached."""
    out: dict[str, Fingerprint | None] = {}
    pending: dict[str, _Formula] = {}
    for clean in dict.fromkeys(cleans):
        if clean in _fingerprint_cache:
            out[clean] = _fingerprint_cache[clean]
            continue
        prepared = _prepare(clean)
        if isinstance(prepared, _Formula):
            pending[clean] = prepared
        else:
            out[clean] = prepared
    if pending:
        jobs = [formula.sources for formula in pending.values()]
        deadline = _PARSE_TIMEOUT_S + _PARSE_SECONDS_PER_FORMULA * len(jobs)
        results = _guarded(_probe_many, jobs, deadline) or [None] * len(jobs)
        for (clean, formula), values in zip(pending.items(), results, strict=True):
            out[clean] = None if values is None else (formula.brackets, values)
    if len(_fingerprint_cache) > _CACHE_SIZE:
        _fingerprint_cache.clear()
    _fingerprint_cache.update(out)
    return out


def _values_match(a: Fingerprint | None, b: Fingerprint | None) -> bool:
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
            for probe in range(_PROBES)
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
