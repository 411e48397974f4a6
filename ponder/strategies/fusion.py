"""Fusion: the model reads several of its own answers and writes a better one.

Two registered strategies share this file and its prompts:

* ``fusion`` — Mixture-of-Agents (Wang et al., "Mixture-of-Agents Enhances Large Language
  Model Capabilities", 2024) with one model as every agent: sample ``n`` proposals, show
  them back in an aggregate-and-synthesize prompt, and let the model write one answer.
  With ``layers > 1`` the intermediate layers write ``n`` aggregated proposals each, which
  the next layer reads, as MoA's stacked proposer layers do.
* ``generate-rank-fuse`` — an Archon architecture (Saad-Falcon et al., "Archon: An
  Architecture Search Framework for Inference-Time Techniques", 2024): generate ``n``
  samples, a ranker keeps the best ``keep``, a fuser merges them into ``fusions``
  answers; further layers rank and fuse the previous layer's fusions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ponder.engines.base import Engine
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, need_logprobs, to_candidate, usage_of
from ponder.strategies.pairwise_rank import PairwiseRankConfig, rank_pairwise, restate
from ponder.types import GREEDY, Budget, Completion, Problem, Request, Result, SamplingParams, Usage

SYNTHESIZE_PROMPT = (
    "{question}\n\n"
    "Here are {count} candidate responses to the question above:\n\n"
    "{responses}\n\n"
    "Some of them may be wrong. Evaluate them critically, then write one accurate and "
    "complete response to the question that keeps what they get right and fixes what they "
    "get wrong. Answer the question directly; do not refer to the candidates."
)
"""Aggregate-and-synthesize prompt (MoA's aggregator, Archon's fuser)."""

RANK_PROMPT = (
    "{question}\n\n"
    "Here are {count} candidate responses to the question above:\n\n"
    "{responses}\n\n"
    "Rank the responses from best to worst by how correctly and completely they answer the "
    "question. Reply with the response numbers only, best first, like: [2] > [1] > [3]"
)
"""Archon's listwise ranker prompt."""


def numbered(texts: Sequence[str]) -> str:
    """Candidate texts as ``[1] ...``, ``[2] ...`` blocks, the way the prompts show them."""
    return "\n\n".join(f"[{i}] {t.strip()}" for i, t in enumerate(texts, 1))


def parse_ranking(text: str, count: int) -> list[int]:
    """The order (0-based indices, best first) a listwise ranker wrote in ``text``.

    Response numbers ``1..count`` are taken in order of first appearance, read from the
    bracketed form ``[k]`` when the text has any (so numbers inside quoted answers do not
    count) and from bare numbers otherwise; numbers out of range are ignored and responses
    never mentioned follow in their original order, so a ranker that writes nothing useful
    leaves the order unchanged.
    """
    marks = re.findall(r"\[(\d+)\]", text) or re.findall(r"\d+", text)
    order: list[int] = []
    for mark in marks:
        k = int(mark) - 1
        if 0 <= k < count and k not in order:
            order.append(k)
    return order + [k for k in range(count) if k not in order]


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


async def _synthesize(
    engine: Engine,
    problem: Problem,
    texts: Sequence[str],
    params: SamplingParams,
    n: int,
    rng: np.random.Generator,
) -> list[Completion]:
    """``n`` syntheses of ``texts`` in one batched request."""
    msgs = restate(problem, SYNTHESIZE_PROMPT, count=str(len(texts)), responses=numbered(texts))
    [out] = await engine.generate([Request(msgs, params.with_(seed=_seed(rng)), n=n)])
    return out


@dataclass(frozen=True)
class FusionConfig(SamplingConfig):
    """``layers``: aggregation layers after the first samples. The last layer writes the
    single answer; each earlier one writes ``n`` aggregated proposals for the next. MoA
    uses 3 layers of agents (2 aggregations) and MoA-Lite 2 (1 aggregation); the default
    is MoA-Lite's single aggregation, which suits one small model. Temperature 0.7 as in
    MoA."""

    layers: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layers < 1:
            raise ValueError(
                f"layers must be >= 1 (aggregations after sampling), got {self.layers}"
            )


@register
class Fusion(StrategyBase):
    name: ClassVar[str] = "fusion"
    summary: ClassVar[str] = "mixture-of-agents: n samples shown back, the model writes one answer"
    budget_means: ClassVar[str] = "number of proposals per layer"
    Config = FusionConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        restate(problem, SYNTHESIZE_PROMPT, count="", responses="")  # fail before sampling
        rng = np.random.default_rng(cfg.seed)
        params = cfg.sampling(budget, logprobs=engine.capabilities.logprobs)
        [first] = await engine.generate(
            [Request(problem.messages, params.with_(seed=_seed(rng)), n=budget.n)]
        )
        usage = usage_of(first)
        rounds: list[dict[str, Any]] = [_round(0, "generate", first, cfg.answer_kind)]
        current = first
        for layer in range(1, cfg.layers + 1):
            n = 1 if layer == cfg.layers else budget.n
            current = await _synthesize(engine, problem, [c.text for c in current], params, n, rng)
            usage = usage + usage_of(current)
            rounds.append(_round(layer, "aggregate", current, cfg.answer_kind))
        final = to_candidate(current[0], cfg.answer_kind)
        return Result(
            answer=final.answer,
            best=final,
            candidates=(*(to_candidate(c, cfg.answer_kind) for c in first), final),
            usage=usage,
            strategy=self.name,
            trace={"kind": "rounds", "rounds": rounds},
        )


def _round(layer: int, stage: str, outs: Sequence[Completion], kind: str) -> dict[str, Any]:
    return {
        "layer": layer,
        "stage": stage,
        "texts": [c.text for c in outs],
        "answers": [to_candidate(c, kind).answer for c in outs],
    }


RANKERS = ("listwise", "pairwise")


@dataclass(frozen=True)
class GenerateRankFuseConfig(SamplingConfig):
    """Archon's generate → rank → fuse. ``keep``: candidates the ranker passes to the fuser
    (Archon's ranker keeps the top 5). ``fusions``: fused answers per layer. ``layers``:
    rank→fuse layers; layers after the first rank and fuse the previous layer's fusions,
    so they need ``fusions > 1``. ``ranker``: ``"listwise"`` (the model writes a ranking,
    as Archon's ranker does; at most ``rank_max_tokens`` greedy tokens) or ``"pairwise"``
    (both-order pairwise judgements from logprobs and Bradley–Terry, as ``pairwise-rank``).
    Ranking runs only where it filters (more candidates than ``keep``) or picks the final
    answer among several fusions."""

    layers: int = 1
    keep: int = 5
    fusions: int = 1
    ranker: str = "listwise"
    rank_max_tokens: int = 48

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.keep < 1:
            raise ValueError(f"keep must be >= 1, got {self.keep}")
        if self.fusions < 1:
            raise ValueError(f"fusions must be >= 1, got {self.fusions}")
        if self.layers > 1 and self.fusions < 2:
            raise ValueError(
                "layers > 1 needs fusions >= 2: a later layer ranks and fuses the previous "
                "layer's fusions"
            )
        if self.ranker not in RANKERS:
            raise ValueError(f"ranker must be one of {RANKERS}, got {self.ranker!r}")
        if self.rank_max_tokens < 1:
            raise ValueError(f"rank_max_tokens must be >= 1, got {self.rank_max_tokens}")


@register
class GenerateRankFuse(StrategyBase):
    name: ClassVar[str] = "generate-rank-fuse"
    summary: ClassVar[str] = "Archon: n samples, the model ranks them and fuses the best"
    budget_means: ClassVar[str] = "number of samples in the first layer"
    Config = GenerateRankFuseConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        if cfg.ranker == "pairwise":
            need_logprobs(engine, f"{self.name} with ranker='pairwise'")
        restate(problem, SYNTHESIZE_PROMPT, count="", responses="")  # fail before sampling
        rng = np.random.default_rng(cfg.seed)
        params = cfg.sampling(budget, logprobs=engine.capabilities.logprobs)
        [first] = await engine.generate(
            [Request(problem.messages, params.with_(seed=_seed(rng)), n=budget.n)]
        )
        usage = usage_of(first)
        rounds: list[dict[str, Any]] = [_round(0, "generate", first, cfg.answer_kind)]
        current = first
        for layer in range(1, cfg.layers + 1):
            texts = [c.text for c in current]
            order = list(range(len(texts)))
            if len(texts) > cfg.keep:
                order, info, u = await self._rank(engine, problem, texts)
                usage = usage + u
                rounds.append({"layer": layer, "stage": "rank", "order": order, **info})
            kept = order[: cfg.keep]
            current = await _synthesize(
                engine, problem, [texts[i] for i in kept], params, cfg.fusions, rng
            )
            usage = usage + usage_of(current)
            rounds.append({**_round(layer, "fuse", current, cfg.answer_kind), "fused": kept})
        chosen = 0
        if len(current) > 1:
            order, info, u = await self._rank(engine, problem, [c.text for c in current])
            usage = usage + u
            chosen = order[0]
            rounds.append({"layer": cfg.layers + 1, "stage": "select", "order": order, **info})
        finals = [to_candidate(c, cfg.answer_kind) for c in current]
        best = finals[chosen]
        return Result(
            answer=best.answer,
            best=best,
            candidates=(*(to_candidate(c, cfg.answer_kind) for c in first), *finals),
            usage=usage,
            strategy=self.name,
            trace={"kind": "rounds", "rounds": rounds, "chosen": chosen},
        )

    async def _rank(
        self, engine: Engine, problem: Problem, texts: Sequence[str]
    ) -> tuple[list[int], dict[str, Any], Usage]:
        """Best-first order of ``texts``, what the trace shows about it, and its usage."""
        cfg = self.config
        if cfg.ranker == "pairwise":
            pc = PairwiseRankConfig()
            strengths, comparisons, usage = await rank_pairwise(
                engine, problem, texts, len(texts), pc.opponents, pc.verdict_prefix, pc.prior
            )
            order = sorted(range(len(texts)), key=lambda i: -strengths[i])
            info = {"scores": [float(s) for s in strengths], "comparisons": comparisons}
            return order, info, usage
        msgs = restate(problem, RANK_PROMPT, count=str(len(texts)), responses=numbered(texts))
        params = GREEDY.with_(max_tokens=cfg.rank_max_tokens)
        [[out]] = await engine.generate([Request(msgs, params)])
        return parse_ranking(out.text, len(texts)), {"ranking_text": out.text}, out.usage
