"""Confidence-filtered voting (DeepConf).

Fu et al. 2025, "Deep Think with Confidence". With the top-k log-probabilities at every
position, token confidence is ``C_i = -mean_j log P_i(j)`` over the k alternatives (and the
sampled token when it is outside them, as vLLM reports it to the authors' code); a group
confidence is the mean of ``C_i`` over a sliding window of ``group_window`` tokens (a trace
shorter than the window is one group); a trace's confidence is its lowest group
confidence (or, offline, the mean of its bottom 10% groups, its tail, or its mean).

* **offline**: sample ``n`` traces; keep those whose confidence is at least the
  ``(100 - keep_percent)``-th percentile; vote with the kept traces, each weighted by its
  confidence.
* **online**: sample ``warmup`` traces; their lowest group confidences set the threshold
  ``s`` = their ``(100 - keep_percent)``-th percentile, and only warm-up traces at or above
  ``s`` vote. The remaining ``n - warmup`` traces are launched ``wave`` at a time and grown
  in rounds of ``chunk_tokens`` tokens (one batched request per round, each live trace
  continued from its text so far); after each round a trace with a full window of
  ``group_window`` tokens whose mean confidence is below ``s`` is stopped and never votes
  (its tokens still count); a trace shorter than one window is never stopped, as in the
  authors' code. A trace that ends votes, and its slot goes to a new trace. Before each
  round the vote is tested: once the leader's share of the confidence-weighted vote is at
  least ``consensus`` (the paper's tau), the live traces are stopped and no more are
  launched (the paper's adaptive sampling).

Defaults follow the paper: top-20 log-probs, 16 warm-up traces, ``keep_percent=90``
(DeepConf-high; 10 is DeepConf-low), ``consensus=0.95``, temperature 0.6, top-p 0.95 —
except ``group_window``: the paper's 2048 tokens suit its traces of up to 64k tokens, but is
more than our whole token cap (512; the server's 1024), where every group would be the whole
trace and no trace could ever be stopped. 128 tokens *(choose)* leaves several full windows
in a capped trace while a window still averages over a few sentences. Deviations: the paper
checks the group confidence after every token; here after every chunk, so a stopped trace
may run up to ``chunk_tokens - 1`` tokens past the point where it fell below ``s``. The
paper generates one trace at a time and tests consensus after each; here ``wave`` traces run
at once *(choose: 4)* and consensus is tested after each round, so up to ``wave`` traces
may be in flight when the vote settles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ponder.engines.base import Engine
from ponder.scoring.answers import cluster_answers, extract_answer
from ponder.strategies import confidence, numerics
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, need_logprobs, sample
from ponder.strategies.selection import confident_vote, with_votes
from ponder.types import (
    Budget,
    Candidate,
    Completion,
    Problem,
    Request,
    Result,
    TokenLogprob,
    Usage,
)

MODES = ("online", "offline")


@dataclass(frozen=True)
class ConfidenceVoteConfig(SamplingConfig):
    """See the module docstring. ``trace_confidence`` is one of ``"lowest"``,
    ``"bottom10"``, ``"tail"``, ``"mean"`` (online mode needs ``"lowest"``, the statistic
    its early stopping tests)."""

    temperature: float = 0.6
    mode: str = "online"
    top_logprobs: int = 20
    group_window: int = 128
    trace_confidence: str = "lowest"
    keep_percent: float = 90.0
    warmup: int = 16
    consensus: float = 0.95
    chunk_tokens: int = 64
    wave: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 1 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in [1, 20], got {self.top_logprobs}")
        if self.group_window < 1:
            raise ValueError(f"group_window must be >= 1 token, got {self.group_window}")
        if self.trace_confidence not in confidence.TRACE_CONFIDENCES:
            raise ValueError(
                f"trace_confidence must be one of {confidence.TRACE_CONFIDENCES}, "
                f"got {self.trace_confidence!r}"
            )
        if self.mode == "online" and self.trace_confidence != "lowest":
            raise ValueError(
                "online mode stops traces on their lowest group confidence; use "
                "trace_confidence='lowest' or mode='offline'"
            )
        if not 0 < self.keep_percent <= 100:
            raise ValueError(f"keep_percent must be in (0, 100], got {self.keep_percent}")
        if self.warmup < 1:
            raise ValueError(f"warmup must be >= 1 trace, got {self.warmup}")
        if not 0 < self.consensus <= 1:
            raise ValueError(f"consensus must be in (0, 1], got {self.consensus}")
        if self.chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {self.chunk_tokens}")
        if self.wave < 1:
            raise ValueError(f"wave must be >= 1 trace in flight, got {self.wave}")


@dataclass
class _Trace:
    """A trace being built from one or more completions."""

    phase: str  # "warmup", "online" or "offline"
    text: str = ""
    tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "length"
    status: str = "live"  # -> "complete", "low-confidence", "consensus"
    confidence: float = 0.0

    def extend(self, c: Completion) -> None:
        self.text += c.text
        self.tokens += c.tokens
        self.logprobs.extend(c.logprobs or ())
        self.usage = self.usage + c.usage
        self.finish_reason = c.finish_reason
        if c.tokens and (c.logprobs is None or any(not t.top for t in c.logprobs)):
            raise ValueError(
                "confidence-vote needs the top log-probabilities of every token, and the "
                "engine returned none; use an engine that supports top_logprobs"
            )


def token_confidences(logprobs: Sequence[TokenLogprob]) -> np.ndarray:
    """DeepConf token confidences of a trace from its per-token log-probabilities."""
    return confidence.token_confidences(
        [[v for _, v in lp.top] for lp in logprobs], [lp.logprob for lp in logprobs]
    )


def vote_totals(
    answers: Sequence[str | None], confidences: Sequence[float], voters: Iterable[int]
) -> tuple[dict[str, list[int]], dict[str, float]]:
    """The answer clusters of the ``voters`` (indices into ``answers``; other traces do not
    vote) and each cluster's summed confidence."""
    voting = set(voters)
    clusters = cluster_answers([a if i in voting else None for i, a in enumerate(answers)])
    return clusters, numerics.cluster_sums(clusters, confidences)


def leader_share(totals: Mapping[str, float]) -> float:
    """The leading answer's share of the confidence-weighted vote (0 with no votes)."""
    total = sum(totals.values())
    return max(totals.values()) / total if total > 0 else 0.0


def stops_early(conf: Sequence[float] | np.ndarray, window: int, threshold: float) -> bool:
    """DeepConf's online stop: some full window of ``window`` token confidences has a mean
    below ``threshold``. A trace shorter than one window is never stopped."""
    lowest = confidence.lowest_full_group(conf, window)
    return lowest is not None and lowest < threshold


@register
class ConfidenceVote(StrategyBase):
    name: ClassVar[str] = "confidence-vote"
    summary: ClassVar[str] = (
        "DeepConf: vote with confident traces only; online, stop low-confidence traces early"
    )
    budget_means: ClassVar[str] = "number of traces (online: warm-up traces included)"
    Config = ConfidenceVoteConfig

    def confidence(self, t: _Trace, kind: str | None = None) -> float:
        cfg = self.config
        conf = token_confidences(t.logprobs)
        return confidence.trace_confidence(conf, cfg.group_window, kind or cfg.trace_confidence)

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        need_logprobs(engine, self.name)
        params = cfg.sampling(budget, logprobs=True, top_logprobs=cfg.top_logprobs)
        first = budget.n if cfg.mode == "offline" else min(cfg.warmup, budget.n)
        traces = [_Trace(cfg.mode if cfg.mode == "offline" else "warmup") for _ in range(first)]
        for t, c in zip(traces, await sample(engine, problem, params, first), strict=True):
            t.extend(c)
            t.status = "complete"
            t.confidence = self.confidence(t)
        keep, threshold = confidence.confidence_filter(
            [t.confidence for t in traces], cfg.keep_percent
        )
        voters = [i for i, k in enumerate(keep) if k]
        rounds: list[dict[str, Any]] = [
            {"round": 0, "phase": traces[0].phase, "traces": first, "threshold": threshold}
        ]
        if cfg.mode == "online" and budget.n > first:
            await self._online(
                problem, engine, params, budget.n - first, threshold, traces, voters, rounds
            )
        return self._result(traces, voters, threshold, rounds)

    async def _online(
        self,
        problem: Problem,
        engine: Engine,
        params: Any,
        count: int,
        threshold: float,
        traces: list[_Trace],
        voters: list[int],
        rounds: list[dict[str, Any]],
    ) -> None:
        """Grow ``count`` more traces chunk by chunk, at most ``wave`` at a time, stopping
        the unconfident ones, and launch no more once the vote is settled."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        pending = count
        live: list[int] = []
        while live or pending:
            share = self._leader_share(traces, voters)
            if share >= cfg.consensus:
                for i in live:
                    traces[i].status = "consensus"
                rounds.append(
                    {
                        "round": len(rounds),
                        "stopped": "consensus",
                        "share": share,
                        "not_launched": pending,
                    }
                )
                return
            launch = min(pending, cfg.wave - len(live))
            traces.extend(_Trace("online") for _ in range(launch))
            live.extend(range(len(traces) - launch, len(traces)))
            pending -= launch
            requests = []
            for i in live:
                t = traces[i]
                seed = None if cfg.seed is None else int(rng.integers(2**31 - 1))
                chunk = min(cfg.chunk_tokens, params.max_tokens - t.tokens)
                p = params.with_(max_tokens=chunk, seed=seed)
                requests.append(Request(problem.messages, p, n=1, partial=t.text))
            outs = await engine.generate(requests)
            dropped, finished = [], []
            for i, [c] in zip(live, outs, strict=True):
                t = traces[i]
                t.extend(c)
                conf = token_confidences(t.logprobs)
                t.confidence = confidence.trace_confidence(conf, cfg.group_window, "lowest")
                if stops_early(conf, cfg.group_window, threshold):
                    t.status = "low-confidence"
                    dropped.append(i)
                elif c.finish_reason != "length" or t.tokens >= params.max_tokens:
                    t.status = "complete"
                    finished.append(i)
            voters.extend(finished)
            live = [i for i in live if traces[i].status == "live"]
            rounds.append(
                {
                    "round": len(rounds),
                    "phase": "online",
                    "traces": len(requests),
                    "launched": launch,
                    "stopped_low_confidence": dropped,
                    "finished": finished,
                    "share": share,
                }
            )

    def _vote(
        self, traces: list[_Trace], voters: list[int]
    ) -> tuple[dict[str, list[int]], dict[str, float]]:
        voting = set(voters)
        answers = [
            extract_answer(t.text, self.config.answer_kind) if i in voting else None
            for i, t in enumerate(traces)
        ]
        return vote_totals(answers, [t.confidence for t in traces], voting)

    def _leader_share(self, traces: list[_Trace], voters: list[int]) -> float:
        return leader_share(self._vote(traces, voters)[1])

    def _result(
        self,
        traces: list[_Trace],
        voters: list[int],
        threshold: float,
        rounds: list[dict[str, Any]],
    ) -> Result:
        cfg = self.config
        cands = [
            Candidate(
                text=t.text,
                answer=None if t.status != "complete" else extract_answer(t.text, cfg.answer_kind),
                tokens=t.tokens,
                score=t.confidence,
                mean_logprob=(
                    sum(lp.logprob for lp in t.logprobs) / len(t.logprobs) if t.logprobs else None
                ),
                finish_reason=t.finish_reason if t.status == "complete" else "pruned",
            )
            for t in traces
        ]
        chosen = confident_vote([c.answer for c in cands], [t.confidence for t in traces], voters)
        clusters, totals, winner = chosen.clusters, chosen.details["vote_weights"], chosen.winner
        voted = with_votes(cands, clusters)
        best = None if chosen.index is None else voted[chosen.index]
        trace: dict[str, Any] = {
            "kind": "rounds" if cfg.mode == "online" else "samples",
            "mode": cfg.mode,
            "rounds": rounds,
            "threshold": threshold,
            "confidences": [t.confidence for t in traces],
            "status": [t.status for t in traces],
            "phase": [t.phase for t in traces],
            "voters": sorted(voters),
            "clusters": clusters,
            "vote_weights": totals,
            "winner": winner,
        }
        return Result(
            answer=None if best is None else best.answer,
            best=best,
            candidates=voted,
            usage=Usage.total([t.usage for t in traces]),
            strategy=self.name,
            trace=trace,
        )
