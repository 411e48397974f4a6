"""The recipe file: an escalation policy for the ``auto`` strategy, as small readable JSON.

A recipe is a list of stages and a final rule. Stage ``j`` draws ``draw`` more samples (one
engine request); then, over every sample drawn so far, the online difficulty signals are
computed (``ponder.strategies.recipes.policy``) and the run stops when every threshold of
the stage's ``stop_if`` is met (``signal >= threshold``), answering with the majority vote,
or, when the rule names ``score`` (the best verifier score so far), with the best-scored
sample. A stage may also have a ``give_up_if`` rule (read the same way): when it holds, the
problem is judged beyond what more samples would fix and the run stops too, answering with
the majority vote of what it has (e.g. ``{"truncated": 1.0}``: every sample so far ran out
of tokens before its end).
``temperature`` (of the recipe, or of one stage) is the sampling temperature its samples
are drawn at (``ponder tune`` fits it); without one, the strategy's ``temperature`` setting.
``max_tokens`` (of the recipe) is the per-sample token cap it was fitted at (``ponder tune``
records its ``--max-tokens``): ``auto`` draws at it, in place of its ``max_tokens`` setting
(the budget's per-sample cap still bounds it), because the ``truncated`` signal and the
fitted accuracy both depend on the cap.
A stage with neither rule never stops the run early. When the last stage has drawn and no
rule fired, the ``final`` rule picks the answer from all samples: ``majority``
(self-consistency), ``best-of-n`` or ``weighted-best-of-n`` (these two need a scorer), or
``confidence-vote``: the offline DeepConf filter-and-vote of the fixed rule
``confidence-vote`` at its default settings (``policy.CONFIDENCE_VOTE``: each sample's lowest
group confidence over windows of 128 tokens of its top-20 log-probabilities; the samples at
or above the 10th percentile vote, weighted by it), which needs an engine with
log-probabilities (``auto`` then requests the top ones).

Example::

    {"format": "ponder-recipe/1",
     "temperature": 0.7,
     "max_tokens": 256,
     "stages": [{"draw": 2, "stop_if": {"agreement": 1.0, "no_more": 0.6},
                 "give_up_if": {"truncated": 1.0}},
                {"draw": 6, "stop_if": {"margin": 0.5}},
                {"draw": 8, "temperature": 1.0}],
     "final": "majority"}

``scorer`` names the pool scorer a recipe was fitted with (``ponder tune``); ``about``
holds free-form provenance (model, task, fitted figures). Neither changes what ``auto``
does: it scores with the scorer it is given.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

FORMAT = "ponder-recipe/1"
SIGNALS = ("agreement", "margin", "confidence", "score", "no_more", "truncated")
"""agreement: share of the drawn samples in the largest answer cluster; margin: that share
minus the second largest cluster's; confidence: mean over samples of the geometric-mean
token probability ``exp(mean token logprob)``; score: the best verifier score so far;
no_more: mean over the samples of ``1 - P(yes)``, the model's own probability that more
attempts would not give a better answer (``ponder.strategies.recipes.more``); truncated:
the share of the drawn samples that stopped at the token cap (``finish_reason`` "length")
rather than at their end."""
FINALS = ("majority", "best-of-n", "weighted-best-of-n", "confidence-vote")
SCORED_FINALS = ("best-of-n", "weighted-best-of-n")
CONFIDENCE_FINAL = "confidence-vote"
DEFAULT = "default.json"


def _check_temperature(value: Any, where: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 5:
        raise ValueError(f"{where}'temperature' must be a number in [0, 5], got {value!r}")


def _check_max_tokens(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"recipe 'max_tokens' must be an integer >= 1, got {value!r}")


def _check_rule(rule: Any, where: str) -> None:
    """A stop rule: an object signal -> finite threshold (in [0, 1] but for ``score``)."""
    if not isinstance(rule, dict):
        raise ValueError(f"stage {where!r} must be an object signal -> threshold, got {rule!r}")
    for name, value in rule.items():
        if name not in SIGNALS:
            raise ValueError(
                f"stage {where!r} has unknown signal {name!r}; signals: {', '.join(SIGNALS)}"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"stage '{where}.{name}' must be a finite number, got {value!r}")
        if name != "score" and not 0 <= value <= 1:
            raise ValueError(f"stage '{where}.{name}' must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class Stage:
    """Draw ``draw`` more samples (at ``temperature`` when set), then stop if every
    ``stop_if[signal] >= threshold``, or give up if every ``give_up_if[signal] >=
    threshold``."""

    draw: int
    stop_if: dict[str, float] = field(default_factory=dict)
    temperature: float | None = None
    give_up_if: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.draw, bool) or not isinstance(self.draw, int) or self.draw < 1:
            raise ValueError(f"stage 'draw' must be an integer >= 1, got {self.draw!r}")
        _check_temperature(self.temperature, "stage ")
        _check_rule(self.stop_if, "stop_if")
        _check_rule(self.give_up_if, "give_up_if")

    @property
    def reads(self) -> set[str]:
        """The signals either of its rules names."""
        return set(self.stop_if) | set(self.give_up_if)


@dataclass(frozen=True)
class Recipe:
    """An escalation policy: ``stages`` in order, then ``final`` over all samples;
    ``temperature``: the stages' sampling temperature (a stage's own wins); ``max_tokens``:
    the per-sample token cap it was fitted at."""

    stages: tuple[Stage, ...]
    final: str = "majority"
    scorer: str | None = None
    about: dict[str, Any] = field(default_factory=dict, compare=False)
    temperature: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("recipe 'stages' must list at least one stage")
        if self.final not in FINALS:
            raise ValueError(f"recipe 'final' must be one of {FINALS}, got {self.final!r}")
        _check_temperature(self.temperature, "recipe ")
        _check_max_tokens(self.max_tokens)

    def temperature_of(self, stage: int, default: float | None = None) -> float | None:
        """The temperature stage ``stage`` samples at: its own, else the recipe's, else
        ``default``."""
        own = self.stages[stage].temperature
        return (
            own
            if own is not None
            else (self.temperature if self.temperature is not None else default)
        )

    @property
    def total_draws(self) -> int:
        return sum(s.draw for s in self.stages)

    @property
    def needs_scorer(self) -> bool:
        """Whether running it needs an outcome scorer (a score signal or a scored final)."""
        return self.final in SCORED_FINALS or any("score" in s.reads for s in self.stages)

    @property
    def needs_confidences(self) -> bool:
        """Whether the final rule reads DeepConf trace confidences (top log-probabilities)."""
        return self.final == CONFIDENCE_FINAL

    @property
    def needs_logprobs(self) -> bool:
        return self.needs_confidences or any(
            "confidence" in s.reads or "no_more" in s.reads for s in self.stages
        )

    @property
    def asks(self) -> int:
        """How many samples the ``no_more`` signal may ask about: the samples drawn up to
        the last stage naming it (0 when none does)."""
        drawn, out = 0, 0
        for s in self.stages:
            drawn += s.draw
            if "no_more" in s.reads:
                out = drawn
        return out

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        out["stages"] = []
        for s in self.stages:
            stage: dict[str, Any] = {"draw": s.draw}
            if s.stop_if:
                stage["stop_if"] = dict(s.stop_if)
            if s.give_up_if:
                stage["give_up_if"] = dict(s.give_up_if)
            if s.temperature is not None:
                stage["temperature"] = s.temperature
            out["stages"].append(stage)
        out["final"] = self.final
        if self.scorer is not None:
            out["scorer"] = self.scorer
        if self.about:
            out["about"] = self.about
        return out

    def describe(self) -> str:
        """One line: ``draw 2, stop if agreement>=1, give up if truncated>=1; draw 6, stop
        if margin>=0.5; else majority`` (a scored final names its scorer: ``else
        best-of-n@judge``)."""
        parts = []
        for s in self.stages:
            rule = " and ".join(f"{k}>={v:g}" for k, v in s.stop_if.items())
            quit_ = " and ".join(f"{k}>={v:g}" for k, v in s.give_up_if.items())
            at = f" at T={s.temperature:g}" if s.temperature is not None else ""
            parts.append(
                f"draw {s.draw}{at}"
                + (f", stop if {rule}" if rule else "")
                + (f", give up if {quit_}" if quit_ else "")
            )
        final = f"{self.final}@{self.scorer or '?'}" if self.final in SCORED_FINALS else self.final
        head = [f"T={self.temperature:g}"] if self.temperature is not None else []
        head += [f"max_tokens={self.max_tokens}"] if self.max_tokens is not None else []
        at = ", ".join(head) + ": " if head else ""
        return at + "; ".join(parts) + f"; else {final}"


def from_dict(data: Any, source: str = "recipe") -> Recipe:
    """A validated recipe from parsed JSON; ``ValueError`` naming the bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a recipe is a JSON object, got {type(data).__name__}")
    known = {"format", "stages", "final", "scorer", "about", "temperature", "max_tokens"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"{source}: unknown field(s) {', '.join(map(repr, unknown))}; "
            f"fields: {', '.join(sorted(known))}"
        )
    if data.get("format", FORMAT) != FORMAT:
        raise ValueError(f"{source}: 'format' must be {FORMAT!r}, got {data.get('format')!r}")
    stages = data.get("stages")
    if not isinstance(stages, list):
        raise ValueError(f"{source}: 'stages' must be a list of stages, got {stages!r}")
    built = []
    for j, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise ValueError(f"{source}: stages[{j}] must be an object, got {stage!r}")
        extra = sorted(set(stage) - {"draw", "stop_if", "give_up_if", "temperature"})
        if extra:
            raise ValueError(
                f"{source}: stages[{j}] has unknown field(s) "
                f"{', '.join(map(repr, extra))}; fields: draw, stop_if, give_up_if, temperature"
            )
        if "draw" not in stage:
            raise ValueError(f"{source}: stages[{j}] needs 'draw' (samples to draw)")
        try:
            built.append(
                Stage(
                    stage["draw"],
                    _rule_of(stage.get("stop_if")),
                    stage.get("temperature"),
                    _rule_of(stage.get("give_up_if")),
                )
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{source}: stages[{j}]: {exc}") from None
    scorer = data.get("scorer")
    if scorer is not None and not isinstance(scorer, str):
        raise ValueError(f"{source}: 'scorer' must be a scorer name, got {scorer!r}")
    about = data.get("about") or {}
    if not isinstance(about, dict):
        raise ValueError(f"{source}: 'about' must be an object, got {about!r}")
    try:
        return Recipe(
            tuple(built),
            data.get("final", "majority"),
            scorer,
            about,
            data.get("temperature"),
            data.get("max_tokens"),
        )
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def _rule_of(value: Any) -> Any:
    """A rule as given: absent or null is no rule; anything else is checked by ``Stage``."""
    return {} if value is None else (dict(value) if isinstance(value, dict) else value)


def load(path: str | Path | None = None) -> Recipe:
    """The recipe in the JSON file ``path``; the built-in default when ``path`` is None."""
    if path is None:
        text = resources.files(__package__).joinpath(DEFAULT).read_text()
        return from_dict(json.loads(text), f"built-in recipe {DEFAULT}")
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read recipe {str(p)!r}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"recipe {str(p)!r} is not valid JSON: {exc}") from None
    return from_dict(data, f"recipe {str(p)!r}")


def save(recipe: Recipe, path: str | Path) -> Path:
    """Write ``recipe`` as indented JSON; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(recipe.as_dict(), indent=2) + "\n")
    return p
