"""The committed word-problem test set (data/word_problems.jsonl, data/README.md): every
stored answer is recomputed from the problem's own numbers, the rows follow the schema and
the fixed dev/test split, and ponder's answer grading accepts the stored answers, written
the way a model writes them, and rejects a wrong one."""

from __future__ import annotations

import ast
import asyncio
import json
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from ponder.scoring.answers import answers_equivalent, extract_answer
from ponder.tasks.arithmetic import INSTRUCTION
from ponder.tasks.jsonl import Jsonl
from ponder.types import Candidate

DATA = Path(__file__).resolve().parent.parent / "data" / "word_problems.jsonl"
FIELDS = {"id", "question", "answer", "level", "topic", "solution", "split"}
LEVEL_COUNTS = {"easy": 40, "medium": 60, "hard": 30}
# The names a solution may use; nothing else (no builtins, no attribute access).
SAFE_NAMES: dict[str, Any] = {
    "F": Fraction,
    "abs": abs,
    "ceil": math.ceil,
    "comb": math.comb,
    "isqrt": math.isqrt,
    "lcm": math.lcm,
    "len": len,
    "min": min,
    "range": range,
    "str": str,
    "sum": sum,
}
# Numbers a solution may use without the question stating them: small counts and the
# fixed facts of units and calendars (letters in the alphabet, days in January, ...).
KNOWN_CONSTANTS = {*range(11), 12, 24, 26, 31, 60, 100, 365, 1000, 3600}
PLAIN_ANSWER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d*[1-9])?|[1-9]\d*/[1-9]\d*")
QUESTION_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def load_rows() -> list[dict[str, Any]]:
    with DATA.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


ROWS = load_rows()
BY_ID = pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])


def exact(answer: str) -> Fraction:
    """The exact value of a stored answer ("12.5", "3/4", "-10")."""
    return Fraction(answer)


def evaluate(solution: str) -> Any:
    """The value of a solution expression, evaluated with only ``SAFE_NAMES`` in scope."""
    tree = ast.parse(solution, mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            raise ValueError(f"attribute access in solution {solution!r}")
        if isinstance(node, ast.Name) and node.id not in SAFE_NAMES and not _bound(tree, node):
            raise ValueError(f"unknown name {node.id!r} in solution {solution!r}")
    return eval(compile(tree, "<solution>", "eval"), {"__builtins__": {}, **SAFE_NAMES})


def _bound(tree: ast.AST, name: ast.Name) -> bool:
    """Whether ``name`` is a comprehension variable of ``tree``."""
    return any(
        isinstance(node, ast.comprehension)
        and isinstance(node.target, ast.Name)
        and node.target.id == name.id
        for node in ast.walk(tree)
    )


def matches(value: Any, answer: str) -> bool:
    """Whether a computed value equals the stored answer: exactly for integers and
    fractions, to a relative 1e-9 for floats (decimal literals such as 2.40)."""
    target = exact(answer)
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        return False
    if isinstance(value, float):
        return abs(Fraction(value) - target) <= Fraction(1, 10**9) * max(Fraction(1), abs(target))
    return Fraction(value) == target


def model_outputs(answer: str) -> list[str]:
    """Ways a model ends its reply with ``answer``: the instructed sentence and common others."""
    value = exact(answer)
    outputs = [
        f"Step by step we get {answer}.\nThe answer is {answer}.",
        f"Final answer: {answer}",
        f"**Answer:** {answer}",
        f"Therefore the result is \\boxed{{{answer}}}.",
        f"#### {answer}",
        f"The answer is {float(value):.2f}",
    ]
    if value.denominator != 1 and "/" in answer:
        outputs.append(f"The answer is {float(value)}.")
    if value >= 1000 and value.denominator == 1:
        outputs.append(f"The answer is {int(value):,}.")
    return outputs


def test_file_has_enough_problems_at_every_level() -> None:
    assert len(ROWS) >= 120
    levels = {level: sum(r["level"] == level for r in ROWS) for level in LEVEL_COUNTS}
    assert levels == LEVEL_COUNTS


def test_ids_are_unique_and_numbered_in_file_order() -> None:
    assert [r["id"] for r in ROWS] == [f"wp-{i:03d}" for i in range(1, len(ROWS) + 1)]


def test_split_is_every_third_problem_in_dev() -> None:
    for row in ROWS:
        number = int(row["id"].removeprefix("wp-"))
        assert row["split"] == ("dev" if number % 3 == 0 else "test"), row["id"]
    dev = [r for r in ROWS if r["split"] == "dev"]
    assert len(dev) == len(ROWS) // 3
    for level in LEVEL_COUNTS:
        assert any(r["level"] == level for r in dev), level


def test_questions_are_distinct() -> None:
    assert len({r["question"] for r in ROWS}) == len(ROWS)


@BY_ID
def test_row_schema(row: dict[str, Any]) -> None:
    assert set(row) == FIELDS
    assert all(isinstance(row[f], str) and row[f].strip() for f in FIELDS)
    assert row["level"] in LEVEL_COUNTS
    problem, newline, instruction = row["question"].rpartition("\n")
    assert newline and instruction == INSTRUCTION
    assert problem.strip() and "?" in problem


@BY_ID
def test_answer_is_a_plain_exact_number(row: dict[str, Any]) -> None:
    answer = row["answer"]
    assert PLAIN_ANSWER.fullmatch(answer), f"{row['id']}: answer {answer!r} is not plain"
    value = exact(answer)
    if "/" in answer:
        assert str(value) == answer, f"{row['id']}: {answer} is not in lowest terms"


@BY_ID
def test_solution_recomputes_the_answer(row: dict[str, Any]) -> None:
    value = evaluate(row["solution"])
    assert matches(value, row["answer"]), f"{row['id']}: solution gives {value!r}"


@BY_ID
def test_solution_uses_only_numbers_from_the_question(row: dict[str, Any]) -> None:
    stated = {Fraction(n.replace(",", "")) for n in QUESTION_NUMBER.findall(row["question"])}
    literals = [
        node.value
        for node in ast.walk(ast.parse(row["solution"], mode="eval"))
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float)
    ]
    for literal in literals:
        value = Fraction(str(literal))
        assert (
            value in stated or value in KNOWN_CONSTANTS
        ), f"{row['id']}: solution uses {literal}, which the question does not state"


def test_evaluate_refuses_builtins_and_attributes() -> None:
    with pytest.raises(ValueError, match="unknown name"):
        evaluate("open('x')")
    with pytest.raises(ValueError, match="attribute"):
        evaluate("F.__mro__")


@BY_ID
def test_extraction_finds_the_stored_answer_in_model_style_replies(row: dict[str, Any]) -> None:
    answer = row["answer"]
    assert answers_equivalent(answer, answer)
    assert answers_equivalent(extract_answer(answer, "number"), answer)
    for text in model_outputs(answer):
        for kind in ("number", "auto"):
            found = extract_answer(text, kind)
            assert answers_equivalent(found, answer), f"{kind} read {found!r} from {text!r}"
    wrong = str(exact(answer) + 1)
    assert not answers_equivalent(extract_answer(f"The answer is {wrong}.", "number"), answer)


def test_jsonl_task_grades_the_file_with_its_own_answers() -> None:
    task = Jsonl(path=str(DATA), id_field="id", answer_kind="number")
    problems = task.problems()
    assert [p.id for p in problems] == [r["id"] for r in ROWS]

    async def grade_all(template: str) -> list[bool]:
        return [
            await task.grade_candidate(p, Candidate(template.format(r["answer"]), None, 0))
            for p, r in zip(problems, ROWS, strict=True)
        ]

    assert all(asyncio.run(grade_all("Working...\nThe answer is {}.")))
    assert not any(asyncio.run(grade_all("The answer is {}1.")))
