"""Auto: run a recipe, an escalation policy that spends samples only where a problem needs
them (Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally...": the best method
depends on the problem's difficulty; Li et al. 2024, ESC, and Aggarwal et al. 2023,
Adaptive-Consistency: stop sampling once the vote is settled).

The recipe (``ponder.strategies.recipes``; ``recipe=PATH`` or an inline object, default the
built-in ``default.json``) lists stages. Stage ``j`` draws its samples in one engine request
(the prompt computed once and forked) with seed ``seed + j``, so stage 0 draws exactly the
first samples of a pool drawn with ``seed``, at the stage's temperature (the recipe's, when
it records one; else the ``temperature`` setting); then the online signals over every
sample so far (answer agreement, vote margin, mean token confidence, best verifier score,
and, only when the stage's rule names it, ``no_more``: the model's own P(yes) to "would
more attempts give a better answer?", asked once per sample, ``recipes.more``) are checked
against the stage's thresholds. The run stops at the first stage whose rule fires and
answers with the majority vote (the best-scored sample when the rule names ``score``);
when none fires, the recipe's final rule (majority,
best-of-n, weighted best-of-n or confidence-vote) picks from all samples. The budget caps
the samples. A recipe that records its ``max_tokens`` (``ponder tune`` writes the cap it
was fitted at) is drawn at that cap in place of the ``max_tokens`` setting, as its
temperature is; the budget's per-sample cap still bounds it, and the trace gives the cap
used and a note when it is below the recipe's. Only a recipe ending in
``confidence-vote`` requests the top log-probabilities
(``policy.CONFIDENCE_VOTE.top_logprobs`` per token); each sample's DeepConf trace confidence
is computed from them as a pool stores it (``ponder.evals.pool.sample_stats``) and the
recipe's final rule votes with them (``policy.pick``, as the offline simulation does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.scoring.base import require_outcome
from ponder.strategies import confidence
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, need_logprobs, sample, to_candidate, usage_of
from ponder.strategies.confidence_vote import token_confidences
from ponder.strategies.recipes import Recipe, from_dict, load, more, policy
from ponder.strategies.selection import with_votes
from ponder.types import Budget, Candidate, Completion, Problem, Result, Usage


@dataclass(frozen=True)
class AutoConfig(SamplingConfig):
    """``recipe``: a recipe JSON file's path, or the recipe itself as an object; empty for
    the built-in default."""

    recipe: str | dict[str, Any] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.recipe, str | dict):
            raise ValueError(f"recipe must be a file path or a recipe object, got {self.recipe!r}")


def trace_confidence(completion: Completion, engine: Engine) -> float:
    """The sample's DeepConf trace confidence at ``policy.CONFIDENCE_VOTE``'s settings, from
    its top log-probabilities (an empty sample: 0, as ``confidence.trace_confidence``)."""
    cfg = policy.CONFIDENCE_VOTE
    lps = completion.logprobs or ()
    if completion.tokens and (len(lps) == 0 or any(not t.top for t in lps)):
        raise ValueError(
            "the recipe's final rule 'confidence-vote' needs the top log-probabilities of "
            f"every token, and engine {engine.name!r} returned none; use an engine that "
            "supports top_logprobs, or a recipe with another final rule"
        )
    conf = token_confidences(lps)
    return confidence.trace_confidence(conf, cfg.group_window, cfg.trace_confidence)


def _cap_note(recipe: Recipe, cap: int) -> str:
    """Why the samples were drawn below the recipe's fitted cap (empty when they were not)."""
    if recipe.max_tokens is None or cap >= recipe.max_tokens:
        return ""
    return (
        f"drawn at the budget's per-sample cap of {cap} tokens, below the {recipe.max_tokens} "
        "the recipe was fitted at: more samples run out of tokens than in its fit"
    )


@register
class Auto(StrategyBase):
    name: ClassVar[str] = "auto"
    summary: ClassVar[str] = "a recipe: draw in stages, stop once the samples agree enough"
    budget_means: ClassVar[str] = "maximum number of samples (the recipe's draws, cut to it)"
    Config = AutoConfig

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        spec = self.config.recipe
        self.recipe: Recipe = (
            from_dict(spec, "recipe setting") if isinstance(spec, dict) else load(spec or None)
        )

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg, recipe = self.config, self.recipe
        outcome_scorer = require_outcome(scorer, self.name) if recipe.needs_scorer else None
        if recipe.needs_logprobs:
            need_logprobs(engine, self.name)
        limit = min(recipe.total_draws, budget.n)
        samples: list[Completion] = []
        cands: list[Candidate] = []
        scores: list[float | None] | None = [] if outcome_scorer else None
        usage, log = Usage(), []
        p_yes: list[float] = []
        confidences: list[float] | None = [] if recipe.needs_confidences else None
        top = policy.CONFIDENCE_VOTE.top_logprobs if recipe.needs_confidences else 0
        # the recipe's fitted cap replaces the setting; ``sampling`` bounds it by the budget
        drawn_at = replace(cfg, max_tokens=recipe.max_tokens) if recipe.max_tokens else cfg
        undecided = 0
        for j, stage in enumerate(recipe.stages):
            m = min(stage.draw, limit - len(samples))
            seed = None if cfg.seed is None else cfg.seed + j
            temperature = recipe.temperature_of(j, cfg.temperature)
            params = drawn_at.sampling(
                budget,
                logprobs=engine.capabilities.logprobs,
                top_logprobs=top,
                seed=seed,
                temperature=temperature,
            )
            new = await sample(engine, problem, params, m)
            samples.extend(new)
            if confidences is not None:
                confidences.extend(trace_confidence(c, engine) for c in new)
            fresh = [to_candidate(c, cfg.answer_kind) for c in new]
            if outcome_scorer is not None and scores is not None:
                scored = await outcome_scorer.score(problem, [c.text for c in fresh])
                fresh = [replace(c, score=s) for c, s in zip(fresh, scored.values, strict=True)]
                scores.extend(scored.values)
                usage = usage + scored.usage
            cands.extend(fresh)
            if "no_more" in stage.reads:
                asked = await more.ask(engine, problem, [c.text for c in samples[len(p_yes) :]])
                p_yes.extend(asked.p_yes)
                undecided += asked.undecided
                usage = usage + asked.usage
            entry, done = policy.step(stage, j, cands, scores, p_yes)
            log.append({**entry, "samples": m, "seed": seed, "temperature": temperature})
            if done or len(samples) >= limit:
                outcome = policy.finish(
                    recipe, cands, scores, len(cands), j, done, log, len(p_yes), confidences
                )
                break
        chosen = outcome.selection
        voted = with_votes(cands, chosen.clusters)
        best = None if chosen.index is None else voted[chosen.index]
        return Result(
            answer=None if best is None else best.answer,
            best=best,
            candidates=voted,
            usage=usage_of(samples) + usage,
            strategy=self.name,
            trace={
                "kind": "rounds",
                "rounds": list(outcome.stages),
                "recipe": recipe.as_dict(),
                "stopped_at": outcome.stage,
                "stopped": (
                    "gave up" if outcome.gave_up else "rule" if outcome.stopped_early else "end"
                ),
                "reason": policy.reason(outcome, len(recipe.stages)),
                "rule": outcome.rule,
                "samples_drawn": len(samples),
                "clusters": chosen.clusters,
                "winner": chosen.winner,
                **({"scores": scores} if scores is not None else {}),
                **({"confidences": confidences} if confidences is not None else {}),
                **({"p_yes": p_yes, "undecided": undecided} if p_yes else {}),
                "max_tokens": params.max_tokens,
                **({"note": note} if (note := _cap_note(recipe, params.max_tokens)) else {}),
            },
        )
