"""The model as its own judge: the probability that it answers "Yes" to "is this correct?".

Self-evaluation in the style of "Language Models (Mostly) Know What They Know" (Kadavath et
al., 2022, P(True)): the judged model reads the question and a candidate, is asked a yes/no
question, and the score is

    P(Yes) = p(yes) / (p(yes) + p(no))

where ``p(yes)`` sums the probabilities of every spelling of "yes" (``"Yes"``, ``" yes"``,
``"YES"`` ...) among the top log-probabilities of the first generated token, and likewise
``p(no)``. Normalising over the two removes the mass the model puts on other tokens. When
neither appears among the top-k tokens the score is 0.5 (no evidence either way) and the
scorer counts it in ``undecided``.

The same scorer rates whole candidates (``score``: "Is this solution correct?") and partial
solutions, either their last step (``score_steps``: "Is the last step correct?") or the
whole prefix (``score_prefixes``: "Is the solution so far correct?", which step-level
searches use with ``aggregation="last"``, where the last score must stand for the whole
path), always with one batched engine call.

With ``inline=True`` the question is asked in the solver's own conversation instead: the
candidate (or partial solution) stays the assistant's reply to the problem's own messages,
exactly as written, and the question follows as the next user turn. The engine's prefix
cache then already holds everything but the question (the sampler just computed it), so a
judgement computes ~25 prompt tokens instead of the solution's new text plus the question;
what the model is asked differs ("your solution" in context, not a third party's
transcript), so its accuracy is measured before it is anyone's default (docs/SCORING.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from ponder.scoring.base import Scores, question_text, register_scorer
from ponder.types import Completion, Problem, Request, SamplingParams, TokenLogprob, Usage

__all__ = [
    "INLINE_OUTCOME",
    "INLINE_PREFIX",
    "INLINE_PROCESS",
    "OUTCOME_TEMPLATE",
    "PREFIX_TEMPLATE",
    "PROCESS_TEMPLATE",
    "JudgeScorer",
    "yes_probability",
]

log = logging.getLogger(__name__)

OUTCOME_TEMPLATE = (
    "Here is a question and a proposed solution.\n\n"
    "Question:\n{question}\n\n"
    "Proposed solution:\n{solution}\n\n"
    "Is this solution correct? Answer Yes or No."
)
"""The outcome question; ``{question}`` and ``{solution}`` are filled in."""

PROCESS_TEMPLATE = (
    "Here is a question and a solution in progress, one step per paragraph.\n\n"
    "Question:\n{question}\n\n"
    "Solution so far:\n{previous}{step}\n\n"
    "Is the last step (the last paragraph) correct? Answer Yes or No."
)
"""The process question; ``{question}``, ``{previous}`` (the earlier steps as written, each
ending with its delimiter; empty for the first step) and ``{step}`` (the step being judged)
are filled in. The solution comes last and grows only at its end, so the judge prompt of a
path's next step extends the one of its previous step and the engine's prefix cache serves
all of it but the new step."""

PREFIX_TEMPLATE = (
    "Here is a question and a solution in progress, one step per paragraph.\n\n"
    "Question:\n{question}\n\n"
    "Solution so far:\n{previous}{step}\n\n"
    "Is the solution so far correct, every step of it? Answer Yes or No."
)
"""The whole-prefix question, with the fields of ``PROCESS_TEMPLATE`` and the same layout
(the solution last, growing only at its end), so its prompts share the cache the same way;
a path with an early wrong step should get a low score however good its last step is."""

INLINE_OUTCOME = "Is your solution above correct? Answer Yes or No."
"""The outcome question asked inline, as the user's next turn after the candidate."""

INLINE_PROCESS = (
    "Is the last step (the last paragraph) of your solution so far correct? Answer Yes or No."
)
"""The process question asked inline, after the partial solution."""

INLINE_PREFIX = "Is your solution so far correct, every step of it? Answer Yes or No."
"""The whole-prefix question asked inline, after the partial solution."""

_YES = "yes"
_NO = "no"
# Characters a tokenizer may leave around a word piece: whitespace and SentencePiece's marker.
_PIECE_EDGES = " \t\n\r\u2581\u0120"
_KEEP_TAIL = "[... earlier text omitted ...]\n"


def yes_probability(first: TokenLogprob | None) -> float | None:
    """P(Yes) normalised over Yes/No from the first generated token and its top alternatives.

    Returns None when neither a "yes" nor a "no" spelling is among them.
    """
    if first is None:
        return None
    seen: dict[str, float] = dict(first.top)
    seen.setdefault(first.token, first.logprob)
    mass = {_YES: 0.0, _NO: 0.0}
    for token, logprob in seen.items():
        word = token.strip(_PIECE_EDGES).lower()
        if word in mass:
            mass[word] += math.exp(logprob)
    total = mass[_YES] + mass[_NO]
    return None if total == 0 else mass[_YES] / total


class JudgeScorer:
    """Scores candidates (outcome) or partial solutions (process) by the engine's P(Yes).

    ``top_logprobs``: how many alternatives of the first token to look at (1-20).
    ``max_chars``: a solution longer than this keeps only its last ``max_chars`` characters
    (the end holds the answer), so that long candidates still fit the context.
    ``outcome_template`` / ``process_template`` / ``prefix_template``: replace the questions
    asked (same fields as ``OUTCOME_TEMPLATE`` / ``PROCESS_TEMPLATE`` / ``PREFIX_TEMPLATE``).
    ``inline``: ask in the solver's own conversation (the module's docstring), with the
    questions ``inline_outcome`` / ``inline_process`` / ``inline_prefix`` (plain text, no
    fields); the solution is then neither clipped nor reformatted, so that its tokens match
    the ones the engine has cached.
    """

    name = "judge"

    def __init__(
        self,
        engine: Any,
        top_logprobs: int = 20,
        max_chars: int = 6000,
        outcome_template: str = OUTCOME_TEMPLATE,
        process_template: str = PROCESS_TEMPLATE,
        prefix_template: str = PREFIX_TEMPLATE,
        inline: bool = False,
        inline_outcome: str = INLINE_OUTCOME,
        inline_process: str = INLINE_PROCESS,
        inline_prefix: str = INLINE_PREFIX,
    ) -> None:
        if engine is None:
            raise ValueError("the judge scorer needs an engine (the model that judges)")
        if not engine.capabilities.logprobs:
            raise ValueError(
                f"the judge scorer reads P(Yes) from token log-probabilities, and engine "
                f"{engine.name!r} does not provide them; use an engine (or server) with logprobs"
            )
        if not 1 <= top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in [1, 20], got {top_logprobs}")
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        for template, fields in (
            (outcome_template, ("{question}", "{solution}")),
            (process_template, ("{question}", "{previous}", "{step}")),
            (prefix_template, ("{question}", "{previous}", "{step}")),
        ):
            missing = [f for f in fields if f not in template]
            if missing:
                raise ValueError(f"judge template lacks {missing}: {template!r}")
        if not isinstance(inline, bool):
            raise ValueError(f"inline must be true or false, got {inline!r}")
        for name, question in (
            ("inline_outcome", inline_outcome),
            ("inline_process", inline_process),
            ("inline_prefix", inline_prefix),
        ):
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"{name} must be a non-empty question, got {question!r}")
        self.inline = inline
        self.inline_outcome = inline_outcome
        self.inline_process = inline_process
        self.inline_prefix = inline_prefix
        self.engine = engine
        self.max_chars = max_chars
        self.outcome_template = outcome_template
        self.process_template = process_template
        self.prefix_template = prefix_template
        self.params = SamplingParams(
            temperature=0.0,
            top_p=1.0,
            top_k=0,
            min_p=0.0,
            max_tokens=1,
            logprobs=True,
            top_logprobs=top_logprobs,
        )
        self.undecided = 0
        """How many judgements so far found neither Yes nor No in the top tokens (scored 0.5)."""

    async def score(self, problem: Problem, candidates: Sequence[str]) -> Scores:
        """P(Yes) to "Is this solution correct?" for each candidate, in one engine call."""
        if self.inline:
            return await self._judge_inline(problem, list(candidates), self.inline_outcome)
        question = question_text(problem)
        prompts = [
            self.outcome_template.format(question=question, solution=self._clip(text))
            for text in candidates
        ]
        return await self._judge(prompts)

    async def score_steps(self, problem: Problem, partials: Sequence[Sequence[str]]) -> Scores:
        """P(Yes) to "Is the last step correct?" for each partial solution, in one engine call."""
        if self.inline:
            return await self._judge_inline(problem, _joined(partials), self.inline_process)
        return await self._judge(self._partial_prompts(problem, partials, self.process_template))

    async def score_prefixes(self, problem: Problem, partials: Sequence[Sequence[str]]) -> Scores:
        """P(Yes) to "Is the solution so far correct?" for each partial solution (its whole
        prefix judged at once), in one engine call."""
        if self.inline:
            return await self._judge_inline(problem, _joined(partials), self.inline_prefix)
        return await self._judge(self._partial_prompts(problem, partials, self.prefix_template))

    def _partial_prompts(
        self, problem: Problem, partials: Sequence[Sequence[str]], template: str
    ) -> list[str]:
        question = question_text(problem)
        _check_steps(partials)
        prompts = []
        for steps in partials:
            previous = "".join(steps[:-1]).lstrip()
            # Clipped like any long text, but keeping the delimiter after the last step.
            tail = previous[len(previous.rstrip()) :]
            previous = self._clip(previous) + tail if previous.strip() else ""
            prompts.append(
                template.format(question=question, previous=previous, step=steps[-1].strip())
            )
        return prompts

    async def _judge_inline(self, problem: Problem, texts: list[str], question: str) -> Scores:
        ask = {"role": "user", "content": question}
        conversations = [
            (*problem.messages, {"role": "assistant", "content": text}, ask) for text in texts
        ]
        return await self._judge(conversations)

    async def _judge(self, prompts: Sequence[str | tuple[dict[str, str], ...]]) -> Scores:
        """One engine call: each prompt is a judge question (one user message) or a whole
        conversation ending in the question."""
        if not prompts:
            return Scores((), Usage())
        requests = [
            Request(({"role": "user", "content": p},) if isinstance(p, str) else p, self.params)
            for p in prompts
        ]
        outputs = await self.engine.generate(requests)
        values: list[float] = []
        usage = Usage(scorer_calls=len(prompts))
        for [completion] in outputs:
            usage = usage + completion.usage
            p = yes_probability(_first(completion))
            if p is None:
                self.undecided += 1
                log.warning(
                    "judge: neither Yes nor No among the top tokens (got %r); scoring 0.5",
                    completion.text,
                )
                p = 0.5
            values.append(p)
        return Scores(tuple(values), usage)

    def _clip(self, text: str) -> str:
        text = text.strip()
        if len(text) <= self.max_chars:
            return text
        return _KEEP_TAIL + text[-self.max_chars :]


def _check_steps(partials: Sequence[Sequence[str]]) -> None:
    """``ValueError`` naming the first partial solution with no steps."""
    for index, steps in enumerate(partials):
        if not steps:
            raise ValueError(f"partial solution {index} has no steps to judge")


def _joined(partials: Sequence[Sequence[str]]) -> list[str]:
    """Each partial solution's steps as the one text the sampler wrote."""
    _check_steps(partials)
    return ["".join(steps) for steps in partials]


def _first(completion: Completion) -> TokenLogprob | None:
    return completion.logprobs[0] if completion.logprobs else None


@register_scorer(
    "judge",
    "the model judges itself: P(Yes) to 'is this solution / the last step / the solution "
    "so far correct?' "
    "(outcome and process; needs logprobs)",
)
def _make_judge(engine: Any, **options: Any) -> JudgeScorer:
    return JudgeScorer(engine, **options)
