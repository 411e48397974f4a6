"""The model's own P(yes) to "would more attempts give a better answer?", after a sample.

Adaptive Inference-Time Compute (Manvi et al., 2024) has the model predict, after it has
answered, whether sampling again would do better, and stops when it says no. ponder asks
without any training: the conversation so far (the problem's messages, then the sample as
the assistant's reply) gets one more user turn, ``QUESTION``, and the model generates one
token greedily with its top log-probabilities. As the judge scorer does
(``ponder.scoring.judge.yes_probability``),

    P(yes) = p(yes) / (p(yes) + p(no))

where ``p(yes)`` sums the probabilities of every spelling of "yes" (``"Yes"``, ``" yes"``,
...) among the first token's top alternatives, and likewise ``p(no)``. When neither is among
them the answer is 0.5 (no evidence) and counted as undecided. The request's prefix is the
sample's own conversation, so an engine with a prefix cache computes only what it has not
seen (at best the question's few tokens; the chat template may re-tokenise the reply).

A recipe reads it as the ``no_more`` signal: the mean over the samples asked of
``1 - P(yes)`` (``ponder.strategies.recipes.policy.signals``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ponder.engines.base import Engine
from ponder.scoring.judge import yes_probability
from ponder.types import Problem, Request, SamplingParams, Usage

log = logging.getLogger(__name__)

QUESTION = "Would more attempts give a better answer? Answer yes or no."
"""The user turn appended after the sample (the assistant's reply)."""

PARAMS = SamplingParams(
    temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, max_tokens=1, logprobs=True, top_logprobs=20
)
"""One greedy token with its 20 most likely alternatives."""


@dataclass(frozen=True)
class Asked:
    """P(yes) per text asked, the usage of asking (one scorer call and one generated token
    per text, with the prompt tokens the engine computed or found cached) and how many
    answers had neither yes nor no among the top tokens (scored 0.5)."""

    p_yes: tuple[float, ...]
    usage: Usage
    undecided: int = 0
    tokens: tuple[int, ...] = ()


def request(problem: Problem, text: str) -> Request:
    """The question about one sample: the problem's conversation, the sample as the
    assistant's reply, then ``QUESTION``."""
    messages = (
        *problem.messages,
        {"role": "assistant", "content": text},
        {"role": "user", "content": QUESTION},
    )
    return Request(messages, PARAMS)


async def ask(engine: Engine, problem: Problem, texts: Sequence[str]) -> Asked:
    """P(yes) for each of ``texts`` (samples of ``problem``), in one engine call."""
    if not texts:
        return Asked((), Usage())
    outputs = await engine.generate([request(problem, t) for t in texts])
    values, tokens, usage, undecided = [], [], Usage(scorer_calls=len(texts)), 0
    for [completion] in outputs:
        usage = usage + completion.usage
        tokens.append(completion.tokens)
        p = yes_probability(completion.logprobs[0] if completion.logprobs else None)
        if p is None:
            undecided += 1
            log.warning(
                "no_more: neither yes nor no among the top tokens (got %r)", completion.text
            )
            p = 0.5
        values.append(p)
    return Asked(tuple(values), usage, undecided, tuple(tokens))
