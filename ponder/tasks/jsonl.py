"""A user's own questions: one JSON object per line of a file.

Each line needs a question field and an answer field (names set by options). Grading is by
answer equivalence of the final answers (the reference's own final answer is extracted the
same way, so a GSM8K-style ``"... #### 42"`` works), or by the user's Python function
``module:function`` called as ``fn(text, row) -> bool`` with the candidate's full text and
the line's JSON object (it may be ``async``).
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ponder.scoring.answers import KINDS
from ponder.tasks.base import AnswerTask, register_task
from ponder.types import Candidate, Problem


@dataclass(frozen=True)
class JsonlConfig:
    path: str = ""
    question_field: str = "question"
    answer_field: str = "answer"
    id_field: str = ""
    """Field holding each problem's id; empty: ``<file name>/<line number>``."""
    grader: str = ""
    """``module:function`` grading ``fn(text, row) -> bool``; empty: answer equivalence."""
    system: str = ""
    """An optional system message put before every question."""
    answer_kind: str = "auto"

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("the jsonl task needs a file: give path=FILE (--file FILE)")
        if self.answer_kind not in KINDS:
            raise ValueError(f"answer_kind must be one of {KINDS}, got {self.answer_kind!r}")
        if self.grader and ":" not in self.grader:
            raise ValueError(f"grader must look like module:function, got {self.grader!r}")


def load_grader(spec: str) -> Callable[..., Any]:
    """The function named by ``module:function``, or a ``ValueError`` saying what is wrong."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"grader {spec!r}: cannot import {module_name!r} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"grader {spec!r}: {module_name} has no function {attr!r}")
    return fn


@register_task
class Jsonl(AnswerTask):
    name: ClassVar[str] = "jsonl"
    summary: ClassVar[str] = "your own JSONL file of questions and answers"
    Config = JsonlConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._grader = load_grader(self.config.grader) if self.config.grader else None
        self._rows: dict[str, dict[str, Any]] = {}

    def load(self, limit: int | None, seed: int) -> list[Problem]:
        cfg = self.config
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise ValueError(f"jsonl task: no such file {path}")
        problems: list[Problem] = []
        self._rows = {}
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if limit is not None and len(problems) >= limit:
                    break
                if not line.strip():
                    continue
                where = f"{path}, line {lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
                for field in (cfg.question_field, cfg.answer_field, cfg.id_field):
                    if field and field not in row:
                        raise ValueError(
                            f"{where}: no field {field!r} (fields: {', '.join(sorted(row))}); "
                            "set the field names with --question-field / --answer-field"
                        )
                pid = str(row[cfg.id_field]) if cfg.id_field else f"{path.name}/{lineno}"
                if pid in self._rows:
                    raise ValueError(f"{where}: id {pid!r} appears twice; ids must be unique")
                messages = [{"role": "user", "content": str(row[cfg.question_field])}]
                if cfg.system:
                    messages.insert(0, {"role": "system", "content": cfg.system})
                self._rows[pid] = row
                problems.append(
                    Problem(
                        id=pid,
                        messages=tuple(messages),
                        reference=str(row[cfg.answer_field]),
                        metadata={"task": self.name, "answer_kind": cfg.answer_kind},
                    )
                )
        if not problems:
            raise ValueError(f"jsonl task: {path} has no problems")
        return problems

    async def grade_candidate(self, problem: Problem, candidate: Candidate) -> bool:
        if self._grader is None:
            return bool(super().grade_candidate(problem, candidate))
        if problem.id not in self._rows:
            raise ValueError(f"problem {problem.id!r} was not loaded by this task")
        verdict = self._grader(candidate.text, self._rows[problem.id])
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)

    def grading_key(self, candidate: Candidate) -> str:
        return super().grading_key(candidate) if self._grader is None else candidate.text
