"""A recipe's decisions as pure functions of the samples drawn so far.

The live ``auto`` strategy and the offline simulation in ``ponder.evals.tune`` call these
same functions on the same evidence (answers, token counts, mean token log-probabilities,
scores, the model's P(yes) to "would more attempts give a better answer?", DeepConf trace
confidences), so a recipe simulated on stored samples answers exactly what ``auto`` answers
from those samples. The answers are clustered and voted by ``ponder.strategies.selection``;
the ``confidence-vote`` final rule is ``selection.select_confident``, the function the fixed
rule ``confidence-vote`` and its pool estimate call, at ``CONFIDENCE_VOTE``'s settings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ponder.strategies.confidence_vote import ConfidenceVoteConfig
from ponder.strategies.recipes.format import CONFIDENCE_FINAL, Recipe, Stage
from ponder.strategies.selection import (
    Selection,
    best_scored,
    select_confident,
    select_majority,
    select_weighted,
)
from ponder.types import Candidate

CONFIDENCE_VOTE = ConfidenceVoteConfig(mode="offline")
"""The ``confidence-vote`` final rule's settings: the fixed rule's defaults (top-20
log-probabilities, lowest group confidence over 128-token windows, keep 90%), as a pool
estimates it and the pools store the confidences."""


def signals(
    candidates: Sequence[Candidate],
    scores: Sequence[float | None] | None = None,
    p_yes: Sequence[float] = (),
) -> dict[str, float | None]:
    """The online difficulty signals over ``candidates`` (all samples drawn so far).

    With ``c1 >= c2`` the sizes of the two largest answer clusters and ``k`` samples:
    ``agreement = c1 / k``, ``margin = (c1 - c2) / k`` (samples without an answer count in
    ``k`` only); ``confidence = mean_i exp(mean token logprob_i)`` (None without
    log-probabilities); ``score = max_i score_i`` (None without scores); ``no_more =
    mean_i (1 - p_yes_i)`` over the samples asked so far (``p_yes``: the first of them, in
    drawing order; None when none was asked); ``truncated``: the share of samples that
    stopped at the token cap (``finish_reason == "length"``)."""
    k = len(candidates)
    sizes = sorted((len(ix) for ix in select_majority(candidates).clusters.values()), reverse=True)
    c1 = sizes[0] if sizes else 0
    c2 = sizes[1] if len(sizes) > 1 else 0
    lps = [c.mean_logprob for c in candidates]
    confidence = None
    if k and all(lp is not None for lp in lps):
        confidence = sum(math.exp(lp) for lp in lps if lp is not None) / k
    best = None
    if scores is not None and any(s is not None for s in scores):
        best = max(s for s in scores if s is not None)
    return {
        "agreement": c1 / k if k else 0.0,
        "margin": (c1 - c2) / k if k else 0.0,
        "confidence": confidence,
        "score": best,
        "no_more": sum(1 - p for p in p_yes) / len(p_yes) if p_yes else None,
        "truncated": sum(c.finish_reason == "length" for c in candidates) / k if k else 0.0,
    }


def fires(stage: Stage, values: dict[str, float | None]) -> bool:
    """Whether ``stage``'s stop rule holds: it has one, and every signal it names is
    available and at least its threshold."""
    return holds(stage.stop_if, values)


def gives_up(stage: Stage, values: dict[str, float | None]) -> bool:
    """Whether ``stage``'s give-up rule holds (read as ``fires`` reads the stop rule)."""
    return holds(stage.give_up_if, values)


def holds(rule: dict[str, float], values: dict[str, float | None]) -> bool:
    if not rule:
        return False
    return all(
        (v := values.get(name)) is not None and v >= threshold for name, threshold in rule.items()
    )


def pick(
    recipe: Recipe,
    candidates: Sequence[Candidate],
    scores: Sequence[float | None] | None,
    stopped_early: bool,
    confidences: Sequence[float] | None = None,
    by_score: bool = False,
) -> tuple[Selection, str]:
    """The answer: when a stop rule fired, the best-scored sample if the rule named the
    ``score`` signal (``by_score``: a sample scored well enough, so that sample is the
    answer) and the majority vote otherwise; else the recipe's ``final`` rule over all
    samples; with the rule's name. ``confidences``: each sample's DeepConf trace confidence
    (``CONFIDENCE_VOTE.trace_confidence``), read by ``confidence-vote``."""
    if stopped_early and by_score and scores is not None:
        return _best_of_n(candidates, scores), "best-of-n"
    if stopped_early or recipe.final == "majority":
        return select_majority(candidates), "majority"
    if recipe.final == CONFIDENCE_FINAL:
        if confidences is None or len(confidences) < len(candidates):
            raise ValueError(
                f"the recipe's final rule {CONFIDENCE_FINAL!r} needs every sample's DeepConf "
                "confidence (top log-probabilities); "
                f"got {0 if confidences is None else len(confidences)} for {len(candidates)}"
            )
        chosen = select_confident(
            candidates, confidences[: len(candidates)], CONFIDENCE_VOTE.keep_percent
        )
        return chosen, recipe.final
    if scores is None:
        raise ValueError(f"the recipe's final rule {recipe.final!r} needs a scorer")
    if recipe.final == "best-of-n":
        return _best_of_n(candidates, scores), recipe.final
    return select_weighted(candidates, [s or 0.0 for s in scores]), recipe.final


def _best_of_n(candidates: Sequence[Candidate], scores: Sequence[float | None]) -> Selection:
    """The best-scored sample (``best_scored``), with the answer clusters for the trace."""
    index = best_scored(candidates, scores)
    chosen = select_majority(candidates)
    key = next((k for k, ix in chosen.clusters.items() if index in ix), None)
    return Selection(index, chosen.clusters, key)


@dataclass(frozen=True)
class Outcome:
    """What a recipe did on one problem: the samples it drew (``drawn``), the stage it
    stopped after (``stage``, 0-based), whether a rule fired (``stopped_early``), each
    stage's signal values, the selection, and how many samples the model was asked
    about for the ``no_more`` signal (``asked``), and whether the stop was the stage's
    give-up rule (``gave_up``: its stop rule did not hold)."""

    drawn: int
    stage: int
    stopped_early: bool
    rule: str
    selection: Selection
    stages: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    asked: int = 0
    gave_up: bool = False


def replay(
    recipe: Recipe,
    candidates: Sequence[Candidate],
    scores: Sequence[float | None] | None = None,
    cap: int | None = None,
    p_yes: Sequence[float | None] = (),
    confidences: Sequence[float] | None = None,
) -> Outcome:
    """Run ``recipe`` over samples already drawn, in order: stage ``j`` sees the first
    ``draw_0 + ... + draw_j`` of them (cut to ``cap`` samples). ``p_yes[i]``: the model's
    P(yes) about sample ``i`` (needed for every sample drawn by a stage whose rule names
    ``no_more``: that stage asks about every sample not yet asked); ``confidences[i]``:
    sample ``i``'s DeepConf trace confidence (read by the ``confidence-vote`` final rule).
    This is the whole policy of ``auto`` with the drawing taken out; ``auto`` itself draws
    stage by stage, asks when a stage needs it, and calls ``step`` after each."""
    limit = min(recipe.total_draws, cap or recipe.total_draws)
    if len(candidates) < limit:
        raise ValueError(f"the recipe draws {limit} samples; only {len(candidates)} given")
    drawn, asked, log = 0, 0, []
    for j, stage in enumerate(recipe.stages):
        drawn = min(drawn + stage.draw, limit)
        if "no_more" in stage.reads:
            asked = drawn
        known = list(p_yes[:asked])
        if len(known) < asked or any(p is None for p in known):
            raise ValueError(
                f"stage {j} reads the no_more signal over {asked} samples; P(yes) is known "
                f"for {sum(p is not None for p in known)} of them"
            )
        entry, done = step(
            stage,
            j,
            candidates[:drawn],
            None if scores is None else scores[:drawn],
            [p for p in known if p is not None],
        )
        log.append(entry)
        if done or drawn >= limit:
            return finish(
                recipe, candidates[:drawn], scores, drawn, j, done, log, asked, confidences
            )
    raise AssertionError("unreachable: the last stage always finishes")


def step(
    stage: Stage,
    index: int,
    candidates: Sequence[Candidate],
    scores: Sequence[float | None] | None,
    p_yes: Sequence[float] = (),
) -> tuple[dict[str, Any], bool]:
    """After stage ``index`` has drawn: its trace entry (signals vs thresholds; ``fired``:
    the stop rule held; ``gave_up``: it did not and the give-up rule did) and whether the
    run stops; ``p_yes``: the P(yes) of the samples asked so far."""
    values = signals(candidates, scores, p_yes)
    fired = fires(stage, values)
    quit_ = not fired and gives_up(stage, values)
    entry: dict[str, Any] = {
        "stage": index,
        "drawn": len(candidates),
        "signals": {k: values[k] for k in values if values[k] is not None},
        "thresholds": dict(stage.stop_if),
        "fired": fired,
    }
    if stage.give_up_if:
        entry["give_up_thresholds"] = dict(stage.give_up_if)
        entry["gave_up"] = quit_
    if p_yes:
        entry["asked"] = len(p_yes)
    return entry, fired or quit_


def finish(
    recipe: Recipe,
    candidates: Sequence[Candidate],
    scores: Sequence[float | None] | None,
    drawn: int,
    stage: int,
    stopped_early: bool,
    log: Sequence[dict[str, Any]],
    asked: int = 0,
    confidences: Sequence[float] | None = None,
) -> Outcome:
    gave_up = stopped_early and bool(log) and bool(log[-1].get("gave_up"))
    chosen, rule = pick(
        recipe,
        candidates[:drawn],
        None if scores is None else scores[:drawn],
        stopped_early,
        None if confidences is None else confidences[:drawn],
        by_score=stopped_early and not gave_up and "score" in recipe.stages[stage].stop_if,
    )
    return Outcome(drawn, stage, stopped_early, rule, chosen, tuple(log), asked, gave_up)


def reason(outcome: Outcome, stages: int) -> str:
    """Why the run stopped, in words: the rule that fired with its signal values, or
    that every stage was drawn (or the budget ran out)."""
    last = outcome.stages[-1]
    if outcome.stopped_early:
        key = "give_up_thresholds" if outcome.gave_up else "thresholds"
        held = ", ".join(f"{k} {last['signals'][k]:.3g} >= {t:g}" for k, t in last[key].items())
        if outcome.gave_up:
            return f"stage {outcome.stage} gave up: {held}; majority over what was drawn"
        return f"stage {outcome.stage} rule fired: {held}"
    if outcome.stage < stages - 1:
        return f"budget reached after {outcome.drawn} samples; {outcome.rule} over all"
    return f"every stage drawn ({outcome.drawn} samples); {outcome.rule} over all"
