"""Answer convergence: stop reasoning once the answer it would give has settled.

Liu & Wang, "Answer Convergence as a Signal for Early Stopping in Reasoning" (EMNLP
2025): models usually reach their final answer well before their reasoning ends. The
reasoning is generated in chunks; after each chunk the model is forced to answer (the
partial reasoning plus an answer cue such as ``"\\n\\nFinal answer:"``, a few greedy
tokens), and reasoning stops once ``k`` consecutive forced answers agree. The paper
reports over 40% fewer tokens with no loss of accuracy on NaturalQuestions. The paper
chunks by sentence; here a chunk is ``chunk_tokens`` tokens *(choose)*, so the check
costs the same whatever the text looks like.

With ``budget.n > 1``, ``n`` traces run side by side (one batched engine call per
chunk round and per probe round) and their answers are put to a majority vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ponder.engines.base import Engine
from ponder.scoring.answers import answers_equivalent, extract_answer
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, usage_of
from ponder.strategies.selection import majority, with_votes
from ponder.types import (
    GREEDY,
    Budget,
    Candidate,
    Completion,
    Message,
    Problem,
    Request,
    Result,
    Usage,
)

FINISHED, CONVERGED, CAPPED = "finished", "converged", "capped"


@dataclass(frozen=True)
class AnswerConvergenceConfig(SamplingConfig):
    """``chunk_tokens``: reasoning tokens between two forced answers. ``k``: stop after
    this many consecutive equivalent forced answers *(choose: 3)*. ``answer_prompt``: the
    cue appended to the partial reasoning to force an answer (for a thinking model,
    close its thinking first, e.g. ``"\\n</think>\\n\\nFinal answer:"``). ``probe_tokens``:
    greedy tokens for a forced answer, which ends at the first newline after its first
    non-blank text (newlines right after the cue are skipped). ``max_tokens`` caps each
    trace's reasoning; a trace that reaches it answers with its last forced answer."""

    chunk_tokens: int = 64
    k: int = 3
    answer_prompt: str = "\n\nFinal answer:"
    probe_tokens: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {self.chunk_tokens}")
        if self.k < 2:
            raise ValueError(f"k must be >= 2 (answers that agree k times in a row), got {self.k}")
        if not self.answer_prompt.strip():
            raise ValueError("answer_prompt must be non-empty text, e.g. '\\n\\nFinal answer:'")
        if self.probe_tokens < 1:
            raise ValueError(f"probe_tokens must be >= 1, got {self.probe_tokens}")


@dataclass
class _Trace:
    text: str = ""
    tokens: int = 0
    answer: str | None = None  # the latest forced answer
    probe: str = ""
    probe_tokens: int = 0
    streak: int = 0
    status: str | None = None  # None while reasoning

    def candidate(self, cfg: AnswerConvergenceConfig) -> Candidate:
        if self.status == FINISHED:
            answer = extract_answer(self.text, cfg.answer_kind)
            return Candidate(self.text, answer, self.tokens)
        return Candidate(
            self.text + cfg.answer_prompt + self.probe,
            self.answer,
            self.tokens + self.probe_tokens,
            finish_reason="stop" if self.status == CONVERGED else "length",
        )


async def forced_answers(
    engine: Engine, messages: tuple[Message, ...], cues: list[str], max_tokens: int
) -> tuple[list[Completion], Usage]:
    """One greedy forced answer per partial text in ``cues`` (each ending with the answer
    cue): the line after the cue, at most ``max_tokens`` tokens. A probe that stops at a
    newline before writing anything (a model that breaks the line after "Final answer:")
    is continued past that newline, in one batched call per round, until it has written
    text or spent its tokens; the returned completion joins its pieces."""
    texts, tokens = [""] * len(cues), [0] * len(cues)
    finish = ["length"] * len(cues)
    usage = Usage()
    todo = list(range(len(cues)))
    # Each round ends on a newline (a real engine's newline is a token) or writes text, so
    # max_tokens rounds bound the loop even for an engine that reports no tokens.
    for _ in range(max_tokens):
        if not todo:
            break
        reqs = [
            Request(
                messages,
                GREEDY.with_(max_tokens=max_tokens - tokens[i], stop=("\n",)),
                partial=cues[i] + texts[i],
            )
            for i in todo
        ]
        outs = [c for [c] in await engine.generate(reqs)]
        usage = usage + usage_of(outs)
        again = []
        for i, c in zip(todo, outs, strict=True):
            texts[i] += c.text
            tokens[i] += c.tokens
            finish[i] = c.finish_reason
            blank_line = c.stop_reason == "\n" and not texts[i].strip()
            if blank_line and tokens[i] < max_tokens:
                texts[i] += "\n"
                again.append(i)
        todo = again
    probes = [Completion(texts[i], tokens[i], finish[i], Usage()) for i in range(len(cues))]
    return probes, usage


@register
class AnswerConvergence(StrategyBase):
    name: ClassVar[str] = "answer-convergence"
    summary: ClassVar[str] = "reason in chunks, force an answer after each, stop when it settles"
    budget_means: ClassVar[str] = "number of reasoning traces (majority vote when more than one)"
    Config = AnswerConvergenceConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        params = cfg.sampling(budget)
        cap = params.max_tokens
        traces = [_Trace() for _ in range(budget.n)]
        usage = Usage()
        rounds: list[dict[str, Any]] = []
        n_chunks = n_probes = 0
        live = list(range(budget.n))
        while live:
            # Reasoning chunk for every live trace, in one batch. The first round is one
            # request with n samples; later rounds continue each trace from its own text.
            if not rounds:
                first = params.with_(
                    max_tokens=min(cfg.chunk_tokens, cap), seed=int(rng.integers(2**31 - 1))
                )
                [outs] = await engine.generate([Request(problem.messages, first, n=budget.n)])
                chunks = list(outs)
            else:
                reqs = [
                    Request(
                        problem.messages,
                        params.with_(
                            max_tokens=min(cfg.chunk_tokens, cap - traces[i].tokens),
                            seed=int(rng.integers(2**31 - 1)),
                        ),
                        partial=traces[i].text,
                    )
                    for i in live
                ]
                chunks = [c for [c] in await engine.generate(reqs)]
            usage = usage + usage_of(chunks)
            n_chunks += len(chunks)
            entries: dict[int, dict[str, Any]] = {}
            for i, c in zip(live, chunks, strict=True):
                t = traces[i]
                t.text += c.text
                t.tokens += c.tokens
                if c.finish_reason != "length":
                    t.status = FINISHED
                entries[i] = {"trace": i, "chunk": c.text, "tokens": c.tokens}

            # Force an answer from every trace still reasoning, in one batch.
            probing = [i for i in live if traces[i].status is None]
            if probing:
                cues = [traces[i].text + cfg.answer_prompt for i in probing]
                probes, u = await forced_answers(engine, problem.messages, cues, cfg.probe_tokens)
                usage = usage + u
                n_probes += len(probes)
                for i, p in zip(probing, probes, strict=True):
                    t = traces[i]
                    cue = cfg.answer_prompt.strip()
                    answer = extract_answer(f"{cue} {p.text.strip()}", cfg.answer_kind)
                    if answer is not None and answers_equivalent(answer, t.answer):
                        t.streak += 1
                    else:
                        t.streak = int(answer is not None)
                    t.answer, t.probe, t.probe_tokens = answer, p.text, p.tokens
                    if t.streak >= cfg.k:
                        t.status = CONVERGED
                    elif t.tokens >= cap:
                        t.status = CAPPED
                    entries[i].update(probe=p.text, answer=answer, streak=t.streak)
            for i in live:
                entries[i]["status"] = traces[i].status
            rounds.append({"round": len(rounds), "traces": [entries[i] for i in live]})
            live = [i for i in live if traces[i].status is None]

        raw = [t.candidate(cfg) for t in traces]
        winner, clusters = majority(raw)
        cands = with_votes(raw, clusters)
        if winner is not None:
            best = min((cands[i] for i in clusters[winner]), key=lambda c: c.tokens)
        else:
            best = cands[0]
        return Result(
            answer=best.answer,
            best=best,
            candidates=cands,
            usage=usage,
            strategy=self.name,
            trace={
                "kind": "rounds",
                "rounds": rounds,
                "chunks": n_chunks,
                "probes": n_probes,
                "status": [t.status for t in traces],
                "clusters": clusters,
                "winner": winner,
            },
        )
