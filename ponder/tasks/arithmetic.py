"""Procedurally generated multi-step arithmetic word problems with exact integer answers.

Unlimited and reproducible: problem ``i`` of (``seed``, ``level``) comes from its own
``numpy.random.Generator`` seeded with ``[seed, level, i]``, so the same seed and level give
the same problems, and a longer list starts with the shorter one. The level (1-5) sets the
number of operations, the size of the numbers and how many distractor sentences (with
numbers that do not matter) are mixed in. Graded by answer equivalence of the final number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ponder.tasks.base import AnswerTask, register_task
from ponder.types import Problem


@dataclass(frozen=True)
class Level:
    """How hard a level is: operations after the start, largest operand, distractors."""

    steps: int
    max_value: int
    distractors: int
    ops: tuple[str, ...]


LEVELS: dict[int, Level] = {
    1: Level(2, 10, 0, ("add", "sub")),
    2: Level(3, 20, 1, ("add", "sub", "mul", "div")),
    3: Level(4, 50, 2, ("add", "sub", "mul", "div")),
    4: Level(5, 100, 3, ("add", "sub", "mul", "div")),
    5: Level(6, 1000, 4, ("add", "sub", "mul", "div")),
}

NAMES = ("Maya", "Omar", "Lena", "Ravi", "Sofia", "Kenji", "Amara", "Diego", "Ines", "Tomas")
ITEMS = ("apples", "marbles", "stickers", "coins", "books", "shells", "cards", "pencils")
TEMPLATES: dict[str, tuple[str, ...]] = {
    "start": ("{N} has {v} {item}.", "{N} starts the day with {v} {item}."),
    "add": ("{N} buys {v} more {item}.", "{N} finds {v} more {item}.", "{O} gives {N} {v} {item}."),
    "sub": ("{N} gives {v} {item} to {O}.", "{N} loses {v} {item}.", "{N} sells {v} {item}."),
    "mul": ("{N} then ends up with {v} times as many {item} as before.",),
    "div": ("{N} splits the {item} equally into {v} bags and keeps just one bag.",),
}
# (sentence, smallest number, largest number or None for the level's largest operand)
DISTRACTORS: tuple[tuple[str, int, int | None], ...] = (
    ("{O} has {v} {other}.", 2, None),
    ("{O} is {v} years old.", 6, 80),
    ("The shop where {N} goes is {v} meters away.", 20, 900),
    ("Each of {O}'s {other} weighs {v} grams.", 2, None),
)
INSTRUCTION = "Solve the problem step by step. End your reply with: The answer is N."


def apply(op: str, value: int, operand: int) -> int:
    """One step: the running total after ``op`` with ``operand``."""
    if op == "start":
        return operand
    if op == "add":
        return value + operand
    if op == "sub":
        return value - operand
    if op == "mul":
        return value * operand
    if op == "div":
        if value % operand:
            raise ValueError(f"{value} is not divisible by {operand}")
        return value // operand
    raise ValueError(f"unknown operation {op!r}")


def generate(seed: int, level: int, index: int) -> Problem:
    """Problem ``index`` of the sequence for ``seed`` and ``level``."""
    spec = LEVELS[level]
    rng = np.random.default_rng([seed, level, index])
    name, other_name = (str(x) for x in rng.choice(NAMES, size=2, replace=False))
    item, other_item = (str(x) for x in rng.choice(ITEMS, size=2, replace=False))
    words = {"N": name, "O": other_name, "item": item, "other": other_item}

    value = int(rng.integers(2, spec.max_value + 1))
    steps: list[tuple[str, int]] = [("start", value)]
    for _ in range(spec.steps):
        choices: list[tuple[str, int]] = []
        for op in spec.ops:
            if op == "add":
                choices.append((op, int(rng.integers(2, spec.max_value + 1))))
            elif op == "sub" and value >= 2:
                choices.append((op, int(rng.integers(1, min(value, spec.max_value + 1)))))
            elif op == "mul" and value * 2 <= 10 * spec.max_value:
                choices.append((op, int(rng.integers(2, 4))))
            elif op == "div":
                divisors = [k for k in range(2, 7) if value % k == 0 and k < value]
                if divisors:
                    choices.append((op, int(rng.choice(divisors))))
        op, operand = choices[int(rng.integers(len(choices)))]
        value = apply(op, value, operand)
        steps.append((op, operand))

    sentences = [str(rng.choice(TEMPLATES[op])).format(v=operand, **words) for op, operand in steps]
    for d in rng.choice(len(DISTRACTORS), size=spec.distractors, replace=False):
        template, lo, hi = DISTRACTORS[int(d)]
        v = int(rng.integers(lo, (hi or max(lo, spec.max_value)) + 1))
        text = template.format(v=v, **words)
        sentences.insert(int(rng.integers(1, len(sentences) + 1)), text)
    question = " ".join(sentences) + f" How many {item} does {name} have now?"
    return Problem(
        id=f"arithmetic/L{level}/s{seed}/{index}",
        messages=({"role": "user", "content": f"{question}\n{INSTRUCTION}"},),
        reference=str(value),
        metadata={
            "task": "arithmetic",
            "answer_kind": "number",
            "level": level,
            "steps": [[op, operand] for op, operand in steps],
            "question": question,
        },
    )


@dataclass(frozen=True)
class ArithmeticConfig:
    level: int = 1
    size: int = 200
    """How many problems when no limit is given (any limit works: the supply is unlimited)."""
    answer_kind: str = "number"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {sorted(LEVELS)}, got {self.level!r}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")


@register_task
class Arithmetic(AnswerTask):
    name: ClassVar[str] = "arithmetic"
    summary: ClassVar[str] = "generated multi-step word problems, exact integer answers (level 1-5)"
    Config = ArithmeticConfig

    def load(self, limit: int | None, seed: int) -> list[Problem]:
        count = self.config.size if limit is None else limit
        return [generate(seed, self.config.level, i) for i in range(count)]
