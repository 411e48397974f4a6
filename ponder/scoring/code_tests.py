"""The visible-test verifier: score a code candidate by the fraction of visible checks it passes.

A problem carries ``metadata["visible_tests"]``, a list of Python statements (usually asserts,
e.g. the examples in a HumanEval docstring, see ``doctest_checks``). Each candidate's program
(its first fenced code block, else its whole text) runs once in the sandbox; every check then
runs on its own, so one failing or raising check does not hide the others, and each check has its
own time limit. The checks run in the sandbox's judge process, which calls the program's functions
over a pipe (see ``ponder.scoring.execution``), so no program can forge its score. The score is
``passed / len(checks)``; 0.0 when the program does not even load. A problem whose list is empty
(a HumanEval docstring with no examples: HumanEval/38 and /41) scores 1.0 for every program that
loads: nothing else can be checked, so selection by this score falls to its tie rule. A problem
with no list at all is a configuration error.
"""

from __future__ import annotations

import ast
import asyncio
import re
import textwrap
from collections.abc import Sequence
from typing import Any

from ponder.scoring.answers import extract_answer
from ponder.scoring.base import Scores, register_scorer
from ponder.scoring.execution import ExecResult, Limits, Sandbox
from ponder.types import Problem, Usage

__all__ = ["VisibleTestScorer", "build_program", "doctest_checks", "visible_tests"]


def visible_tests(problem: Problem) -> list[str]:
    """The problem's visible checks (possibly none), or a ValueError when the problem carries
    no list of them."""
    checks = problem.metadata.get("visible_tests")
    if checks is None:
        raise ValueError(
            f"problem {problem.id!r} has no visible tests (metadata['visible_tests'] is missing); "
            "the visible-tests scorer needs a list of assert statements to run (an empty list "
            "when the problem has none)"
        )
    if not isinstance(checks, list | tuple) or not all(isinstance(c, str) for c in checks):
        raise ValueError(
            f"problem {problem.id!r}: metadata['visible_tests'] must be a list of strings, "
            f"got {type(checks).__name__}"
        )
    return list(checks)


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+def|def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*=",
                     code, re.M) is not None  # fmt: skip


def _imports_of(prompt_code: str) -> str:
    """The top-level import lines of ``prompt_code`` (a HumanEval prompt's ``from typing ...``)."""
    lines = [line for line in prompt_code.splitlines() if re.match(r"(?:import|from)\s+\w", line)]
    return "\n".join(lines)


def build_program(problem: Problem, text: str) -> str:
    """The program to run for candidate ``text``: ``assemble_program`` with the problem's
    ``metadata["prompt_code"]`` (signature and docstring) and ``entry_point``; without a
    prompt, the candidate's code alone."""
    return assemble_program(
        problem.metadata.get("prompt_code") or "", problem.metadata.get("entry_point") or "", text
    )


def assemble_program(prompt_code: str, entry_point: str, text: str) -> str:
    """The candidate's code (its first fenced block, else the whole text) joined to the
    prompt as the official HumanEval harness does. A candidate that defines ``entry_point``
    comes after the whole prompt, so the prompt's imports and helper functions stay defined
    and the candidate's function replaces the prompt's docstring-only one (when prompt and
    candidate do not parse together, only the prompt's imports go in front); a candidate that
    writes only the body continues the prompt (indented by four spaces when it is not
    indented at all)."""
    code = extract_answer(text, "code")
    if code is None:
        code = text
    if not prompt_code:
        return code
    if entry_point and _defines(code, entry_point):
        joined = f"{prompt_code.rstrip()}\n\n\n{code}\n"
        try:
            compile(joined, "<candidate>", "exec")
        except (SyntaxError, ValueError):
            # A prompt that does not parse on its own (cut mid-docstring, say): keep only
            # its import lines in front of the candidate's complete program.
            imports = _imports_of(prompt_code)
            return f"{imports}\n{code}" if imports else code
        return joined
    body = code.strip("\n")
    first = next((line for line in body.splitlines() if line.strip()), "")
    if first and not first[0].isspace():
        body = textwrap.indent(body, "    ")
    return prompt_code.rstrip("\n") + "\n" + body + "\n"


def _count(result: ExecResult) -> int | None:
    """Checks the judge saw pass, or None when the program never finished loading."""
    return None if result.checks is None else sum(result.checks)


class VisibleTestScorer:
    """Outcome scorer: the fraction of the problem's visible checks each candidate passes."""

    name = "visible-tests"

    def __init__(
        self,
        max_workers: int = 2,
        timeout_seconds: float = 10.0,
        check_seconds: float = 3.0,
        memory_mb: int = 512,
    ) -> None:
        if not check_seconds > 0:
            raise ValueError(f"check_seconds must be > 0, got {check_seconds}")
        self.check_seconds = float(check_seconds)
        self.limits = Limits(
            wall_seconds=timeout_seconds,
            cpu_seconds=max(1, int(timeout_seconds + 0.999)),
            memory_mb=memory_mb,
        )
        self.sandbox = Sandbox(max_workers=max_workers, limits=self.limits)

    async def run(
        self, problem: Problem, candidates: Sequence[str]
    ) -> list[tuple[int | None, ExecResult]]:
        """Run every candidate against the checks; per candidate the number passed (None: the
        program did not load) and the sandbox result."""
        checks = visible_tests(problem)
        results = await asyncio.gather(
            *(
                self.sandbox.run_checks(build_program(problem, text), checks, self.check_seconds)
                for text in candidates
            )
        )
        return [(_count(r), r) for r in results]

    async def score(self, problem: Problem, candidates: Sequence[str]) -> Scores:
        total = len(visible_tests(problem))
        runs = await self.run(problem, candidates)
        values = [0.0 if passed is None else passed / total if total else 1.0 for passed, _ in runs]
        return Scores(tuple(values), Usage(scorer_calls=len(candidates)))


@register_scorer("visible-tests", "fraction of the problem's visible tests a program passes")
def _visible_tests(engine: Any = None, **options: Any) -> VisibleTestScorer:
    known = {"max_workers", "timeout_seconds", "check_seconds", "memory_mb"}
    unknown = set(options) - known
    if unknown:
        raise ValueError(
            f"unknown option(s) for scorer 'visible-tests': {sorted(unknown)}; "
            f"known: {sorted(known)}"
        )
    return VisibleTestScorer(**options)


# ---- docstring examples -> assert statements -----------------------------------------------

_ARROWS = ("➞", "==>", "=>", "->", "==", "=", "returns", "should return")
_BULLET_RE = re.compile(r"^\s*(?:[-*•]\s+|\d+[.)]\s+)?")


def _expression(text: str) -> ast.expr | None:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return None
    return tree.body


def _free_names(node: ast.AST, entry_point: str) -> set[str]:
    import builtins

    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return {n for n in names if n != entry_point and not hasattr(builtins, n)}


def _calls(node: ast.AST, entry_point: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == entry_point for n in ast.walk(node))


def _assertion(
    call: str, expected: str, entry_point: str, bound: frozenset[str] = frozenset()
) -> str | None:
    """``assert call == expected``, with a tolerance for float results; None when either side
    is not a self-contained Python expression."""
    call_node, expected_node = _expression(call), _expression(expected)
    if call_node is None or expected_node is None or not _calls(call_node, entry_point):
        return None
    if (_free_names(call_node, entry_point) | _free_names(expected_node, entry_point)) - bound:
        return None
    call, expected = ast.unparse(call_node), ast.unparse(expected_node)
    try:
        value = ast.literal_eval(expected_node)
    except (ValueError, SyntaxError, TypeError):
        value = None
    if isinstance(value, float):
        return f"assert abs(({call}) - ({expected})) <= 1e-6 * max(1.0, abs({expected}))"
    return f"assert ({call}) == ({expected})"


def _split_example(line: str, entry_point: str) -> tuple[str, str] | None:
    """Split ``f(args) <arrow> expected`` at the end of the call to ``entry_point``."""
    start = line.find(f"{entry_point}(")
    if start < 0:
        return None
    depth, quote, i = 0, "", start + len(entry_point)
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                break
        i += 1
    call, rest = line[start : i + 1], line[i + 1 :].strip()
    for arrow in _ARROWS:
        if rest.startswith(arrow):
            expected = rest[len(arrow) :].strip()
            # "f(x) == 1 + 9 = 10": the value after the last "=" is the result.
            if "=" in expected and _expression(expected) is None:
                expected = expected.rsplit("=", 1)[1]
            return call, expected.strip().rstrip(".,;").strip()
    return None


def doctest_checks(prompt: str, entry_point: str) -> list[str]:
    """Assert statements from the examples in a HumanEval-style prompt.

    Recognised: doctest examples (``>>> f(1, 2)`` with the expected value on the following
    line(s), or ``>>> f(1) == 3`` alone) and example lines such as ``f(x) ➞ y``, ``f(x) == y``,
    ``f(x) => y``, ``f(x) -> y`` or ``f(x) = y``. Only examples that call ``entry_point`` and use
    no undefined names are kept; expected floats compare with a relative tolerance of 1e-6.
    Doctest set-up lines (``>>> x = ...``) are prepended to the next check. Order is kept,
    duplicates dropped.
    """
    lines = prompt.splitlines()
    checks: list[str] = []
    setup: list[str] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith(">>>"):
            source = stripped[3:].strip()
            i += 1
            while i < len(lines) and lines[i].strip().startswith("..."):
                source += "\n" + lines[i].strip()[3:].strip()
                i += 1
            expected: list[str] = []
            while i < len(lines):
                nxt = lines[i].strip()
                # Doctest output ends at a blank line; an example line of its own ends it too.
                if not nxt or nxt.startswith((">>>", '"""', "'''")) or f"{entry_point}(" in nxt:
                    break
                expected.append(nxt)
                i += 1
            check = _doctest_check(source, " ".join(expected), entry_point, setup)
            if check is not None:
                checks.append(check)
            continue
        found = _split_example(_BULLET_RE.sub("", stripped), entry_point)
        if found is not None:
            check = _assertion(*found, entry_point)
            if check is not None:
                checks.append(check)
        i += 1
    return list(dict.fromkeys(checks))


def _doctest_check(source: str, expected: str, entry_point: str, setup: list[str]) -> str | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
        node = tree.body[0].value
        check: str | None = None
        if expected and not expected.startswith("Traceback"):
            bound = frozenset(
                n.id
                for line in setup
                for n in ast.walk(ast.parse(line))
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            )
            check = _assertion(source, expected, entry_point, bound)
        elif not expected and isinstance(node, ast.Compare) and _calls(node, entry_point):
            check = f"assert {ast.unparse(node)}"
        if check is not None and setup:
            check = "\n".join([*setup, check])
            setup.clear()
        return check
    setup.append(source)
    return None
