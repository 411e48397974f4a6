"""Hugging Face data sets (GSM8K, MATH-500, or any question/answer set), graded by answer
equivalence.

Needs the ``datasets`` package and the data already on disk: ponder runs offline
(``HF_DATASETS_OFFLINE=1`` and ``HF_HUB_OFFLINE=1`` while loading). ponder does not depend on
``datasets``; when it or the data is missing the error names the command that fixes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from ponder.scoring.answers import KINDS
from ponder.tasks.base import AnswerTask, register_task
from ponder.types import Problem


@dataclass(frozen=True)
class Preset:
    path: str
    name: str | None
    split: str
    question_field: str
    answer_field: str
    answer_kind: str
    instruction: str


_OFFLINE = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
_NUMBER = "Solve step by step. End your reply with: The answer is N."
_BOXED = "Solve step by step. Put the final answer in \\boxed{}."
PRESETS: dict[str, Preset] = {
    "gsm8k": Preset("openai/gsm8k", "main", "test", "question", "answer", "auto", _NUMBER),
    "math-500": Preset("HuggingFaceH4/MATH-500", None, "test", "problem", "answer", "auto", _BOXED),
}


@dataclass(frozen=True)
class HfConfig:
    dataset: str = "gsm8k"
    """A preset (gsm8k, math-500) or a Hugging Face data set path."""
    subset: str = ""
    split: str = ""
    question_field: str = ""
    answer_field: str = ""
    answer_kind: str = ""
    instruction: str = ""
    """Appended to each question (presets have one); empty and no preset: none."""

    def __post_init__(self) -> None:
        preset = PRESETS.get(self.dataset)
        if preset is None and not (self.question_field and self.answer_field):
            raise ValueError(
                f"hf task: {self.dataset!r} is not a preset ({', '.join(PRESETS)}); give "
                "question_field and answer_field (and split) for it"
            )
        if preset is not None:
            for key in ("split", "question_field", "answer_field", "answer_kind", "instruction"):
                if not getattr(self, key):
                    object.__setattr__(self, key, getattr(preset, key))
            object.__setattr__(self, "subset", self.subset or preset.name or "")
            object.__setattr__(self, "dataset", preset.path)
        if not self.split:
            object.__setattr__(self, "split", "test")
        if not self.answer_kind:
            object.__setattr__(self, "answer_kind", "auto")
        if self.answer_kind not in KINDS:
            raise ValueError(f"answer_kind must be one of {KINDS}, got {self.answer_kind!r}")


@register_task
class HuggingFace(AnswerTask):
    name: ClassVar[str] = "hf"
    summary: ClassVar[str] = "a Hugging Face data set on disk (gsm8k, math-500, ...)"
    Config = HfConfig

    def load(self, limit: int | None, seed: int) -> list[Problem]:
        cfg = self.config
        where = f"{cfg.dataset}" + (f" ({cfg.subset})" if cfg.subset else "")
        fetch_cmd = (
            "python -c \"import datasets; datasets.load_dataset("
            f"'{cfg.dataset}'{', ' + repr(cfg.subset) if cfg.subset else ''}, "
            f"split='{cfg.split}')\""
        )
        # Both switches are read when `datasets` / `huggingface_hub` are imported, so they are
        # set before the import; restored afterwards.
        saved = {k: os.environ.get(k) for k in _OFFLINE}
        os.environ.update(dict.fromkeys(_OFFLINE, "1"))
        try:
            try:
                import datasets  # type: ignore[import-not-found]
            except ImportError:
                raise ValueError(
                    "the hf task needs the `datasets` package: `pip install datasets`, then "
                    f"download the data once with {fetch_cmd}"
                ) from None
            try:
                data = datasets.load_dataset(cfg.dataset, cfg.subset or None, split=cfg.split)
            except Exception as exc:
                raise ValueError(
                    f"hf task: {where} split {cfg.split!r} is not available offline ({exc}). "
                    f"Download it once (online) with: {fetch_cmd}"
                ) from None
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        problems = []
        for i, row in enumerate(data):
            if limit is not None and i >= limit:
                break
            missing = [f for f in (cfg.question_field, cfg.answer_field) if f not in row]
            if missing:
                raise ValueError(
                    f"hf task: row {i} of {where} has no field {missing[0]!r} "
                    f"(fields: {', '.join(sorted(row))})"
                )
            question = str(row[cfg.question_field])
            if cfg.instruction:
                question = f"{question}\n{cfg.instruction}"
            problems.append(
                Problem(
                    id=f"{cfg.dataset}/{cfg.split}/{i}",
                    messages=({"role": "user", "content": question},),
                    reference=str(row[cfg.answer_field]),
                    metadata={"task": self.name, "answer_kind": cfg.answer_kind},
                )
            )
        return problems
