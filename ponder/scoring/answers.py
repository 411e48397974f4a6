"""Extract, normalise and compare the final answers in free-text model outputs.

``extract_answer`` pulls the answer out of a generation, ``normalize_answer`` turns it into a
canonical key (``"0.5"``, ``"1/2"`` and ``"\\frac{1}{2}"`` all become ``"1/2"``), and
``answers_equivalent`` / ``cluster_answers`` build on those keys for grading and voting.

Answers that are mathematical expressions (``\\sqrt{2}/2``, ``2x+1``, ``\\frac{\\pi}{2}``) are also
compared by value, by ``ponder.scoring.symbolic``: two expressions that agree at every probe
point to a relative 1e-9 are taken as equal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache

from ponder.scoring.mathverify import math_verify_equivalent
from ponder.scoring.symbolic import (
    Fingerprint,
    brackets,
    fingerprints,
    looks_like_expression,
    number_fingerprint,
    values_match,
)

__all__ = [
    "KINDS",
    "answers_equivalent",
    "cluster_answers",
    "extract_answer",
    "normalize_answer",
    "ponder_equivalent",
]

KINDS = ("auto", "number", "boxed", "choice", "code", "text")

_REL_TOL = Fraction(1, 10**9)
# answers are strings and these functions pure: voting over many subsets of one pool's
# answers asks the same questions again and again (replaying early-stop-vote over 20
# word-problem pools: 35 s without these caches, 10 s with them)
_MEMO = 1 << 16
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
# The whole part of a mixed number: digits not glued to a letter, exponent or decimal point.
_WHOLE_RE = re.compile(r"(?<![\w.^])(\d+)\s*$")
_PLAIN_WORDS_RE = re.compile(r"[A-Za-z]{3,}(?:[ '-][A-Za-z]+)*[.!?]?")


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

    ponder's own rules decide first (``ponder_equivalent``). Their "different" is final when
    both answers are plain numbers or plain words, or lists with different brackets (a point
    is not a list, ``[0, 1)`` is not ``[0, 1]``: ``symbolic.brackets``); otherwise Hugging Face's
    math-verify decides, with ``b`` as its gold answer (``math_verify_equivalent``). On the
    committed answer pairs this order agrees with more verdicts than either alone
    (docs/SCORING.md).
    """
    if a is None or b is None:
        return False
    clean_a, clean_b = _clean(a), _clean(b)
    if _same_by_rules(clean_a, clean_b):
        return True
    if _plain(clean_a) and _plain(clean_b):
        return False
    shape_a, shape_b = (brackets(_ASSIGN_RE.sub("", c, count=1)) for c in (clean_a, clean_b))
    if shape_a is not None and shape_b is not None and shape_a != shape_b:
        return False
    return math_verify_equivalent(a, b)


def ponder_equivalent(a: str | None, b: str | None) -> bool:
    """ponder's own rules (fast and symmetric): True when the normalised keys are equal, when
    both are numbers whose values agree to a relative tolerance of 1e-9 (so a long decimal
    matches the fraction it rounds), or when both read as mathematical expressions (or tuples
    of them) with the same value at every probe point (``\\sqrt{2}/2`` and
    ``\\frac{1}{\\sqrt{2}}``, ``2x+1`` and ``1+2x``)."""
    if a is None or b is None:
        return False
    return _same_by_rules(_clean(a), _clean(b))


def _same_by_rules(clean_a: str, clean_b: str) -> bool:
    key_a, key_b = _key(clean_a), _key(clean_b)
    if key_a == key_b or _keys_close(key_a, key_b):
        return True
    values = _fingerprints([clean_a, clean_b])
    return values_match(values[clean_a], values[clean_b])


def cluster_answers(answers: list[str | None]) -> dict[str, list[int]]:
    """Group equivalent answers: map each canonical key to the indices of its answers.

    Keys and indices keep first-seen order and None answers are skipped. An answer joins the
    first earlier cluster it is equivalent to by ponder's own rules (``ponder_equivalent``:
    equal keys, numbers within tolerance, or expressions with equal values; math-verify is
    not asked, which keeps voting over many answers fast). The distinct answers that look
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
                matches = (k for k, fp in representatives.items() if values_match(fp, mine))
                key = next(matches, key)
            representatives.setdefault(key, mine)
        clusters.setdefault(key, []).append(index)
    return clusters


@lru_cache(maxsize=_MEMO)
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


@lru_cache(maxsize=_MEMO)
def _key(clean: str) -> str:
    """The canonical key of a cleaned answer: its exact number, else its normalised text."""
    value = _parse_number(_ASSIGN_RE.sub("", clean, count=1))
    if value is not None:
        return str(value)
    text = re.sub(r"\s+", " ", clean).lower().strip(_EDGE_PUNCT)
    choice = re.fullmatch(r"\(([a-z])\)", text)
    return choice.group(1) if choice else text


def _plain(clean: str) -> bool:
    """A cleaned answer that is just a number, or just words: ponder's rules are final."""
    text = _ASSIGN_RE.sub("", clean, count=1)
    return _parse_number(text) is not None or _PLAIN_WORDS_RE.fullmatch(text) is not None


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
    if looks_like_expression(result):
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
    parenthesised (``\\frac{x+1}{2}`` -> ``(x+1)/2``). A fraction of integers right after a
    whole number is a mixed number (``2\\frac{1}{3}`` -> ``(2+1/3)``); after other digits it
    is a product (``x^2\\frac{1}{2}`` -> ``x^2*1/2``). A malformed fraction is left as written.
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
        before = s[pos : match.start()]
        whole = _WHOLE_RE.search(before)
        if whole and all(p.isdigit() for p in parts):
            out.append(f"{before[: whole.start()]}({whole.group(1)}+{parts[0]}/{parts[1]})")
        else:
            frac = "/".join(p if re.fullmatch(r"-?\\?[\w.]+", p) else f"({p})" for p in parts)
            glued = before[-1:].isdigit() and frac[:1].isdigit()
            out.append(f"{before}*{frac}" if glued else before + frac)
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


@lru_cache(maxsize=_MEMO)
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


@lru_cache(maxsize=_MEMO)
def _keys_close(key_a: str, key_b: str) -> bool:
    """Return True when two canonical numeric keys agree to the relative tolerance."""
    if not (_KEY_RE.fullmatch(key_a) and _KEY_RE.fullmatch(key_b)):
        return False
    try:
        a, b = Fraction(key_a), Fraction(key_b)
    except ZeroDivisionError:
        return False
    return abs(a - b) <= _REL_TOL * max(abs(a), abs(b))


def _fingerprints(cleans: Sequence[str]) -> dict[str, Fingerprint | None]:
    """The value fingerprint of each cleaned answer (None: not mathematics): a number's at
    once, the rest from ``symbolic.fingerprints`` (a leading ``x =`` dropped)."""
    out: dict[str, Fingerprint | None] = {}
    formulas: dict[str, str] = {}
    for clean in dict.fromkeys(cleans):
        text = _ASSIGN_RE.sub("", clean, count=1).strip()
        number = _parse_number(text)
        if number is not None:
            out[clean] = number_fingerprint(number)
        else:
            formulas[clean] = text
    values = fingerprints(list(formulas.values()))
    out.update((clean, values[text]) for clean, text in formulas.items())
    return out
