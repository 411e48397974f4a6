"""Token sampling from one row of logits, with an explicit random generator.

Order: temperature, then top-k, top-p (nucleus) and min-p on the tempered
distribution. Temperature 0 is argmax. Reported log-probabilities are the model's raw
distribution (log-softmax of the logits, temperature 1, no truncation), which is what
judging, confidence and perplexity methods need.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from ponder.types import SamplingParams

# Nucleus search first looks among this many top tokens; exact whenever their mass
# already reaches top_p, which avoids sorting a 150k-token vocabulary on most steps.
_NUCLEUS_PROBE = 512


def streams(seed: int, prompt: Sequence[int], n: int) -> list[np.random.Generator]:
    """The random numbers of samples ``0 .. n-1`` of a request seeded ``seed`` with
    ``prompt``: sample ``i`` draws from ``(seed, i, a digest of the prompt's tokens)``.

    The prompt's tokens are part of the seed: the same seed on the same prompt gives the
    same samples, and on different prompts unrelated ones. Seeded by ``(seed, index)``
    alone, every prompt drew the same random numbers, so sample ``i`` of every problem of
    an evaluation (all seeded 0) made the same choices wherever the model's distributions
    were alike: on the default model's arithmetic pools, sample 1 opened "Let's solve" on
    123 of 300 problems and ended on its own 52% of the time, sample 2 opened "To solve" on
    146 and ended 34% of the time (docs/EVALS.md, "Seeds"). The digest is computed once
    for the request, not once a sample.
    """
    blake = hashlib.blake2b(np.asarray(prompt, dtype=np.int64).tobytes(), digest_size=8)
    digest = int.from_bytes(blake.digest(), "little")
    return [np.random.default_rng([seed, i, digest]) for i in range(n)]


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    if params.temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / params.temperature
    ids: np.ndarray | None = None
    if 0 < params.top_k < z.size:
        ids = np.argpartition(z, -params.top_k)[-params.top_k :]
        z = z[ids]
    p = np.exp(z - z.max())
    p /= p.sum()
    if params.top_p < 1.0:
        keep = _nucleus(p, params.top_p)
        ids = keep if ids is None else ids[keep]
        p = p[keep]
    if params.min_p > 0:
        keep = np.flatnonzero(p >= params.min_p * p.max())
        ids = keep if ids is None else ids[keep]
        p = p[keep]
    cdf = np.cumsum(p)
    j = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    j = min(j, p.size - 1)
    return int(j if ids is None else ids[j])


def _nucleus(p: np.ndarray, top_p: float) -> np.ndarray:
    """Indices of the smallest most-probable set whose mass reaches ``top_p``."""
    if p.size > _NUCLEUS_PROBE:
        probe = np.argpartition(p, -_NUCLEUS_PROBE)[-_NUCLEUS_PROBE:]
        if p[probe].sum() >= top_p:
            order = probe[np.argsort(-p[probe], kind="stable")]
        else:
            order = np.argsort(-p, kind="stable")
    else:
        order = np.argsort(-p, kind="stable")
    cdf = np.cumsum(p[order])
    n = int(np.searchsorted(cdf, top_p, side="left")) + 1
    return order[: min(n, order.size)]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    m = z.max()
    return z - (m + np.log(np.exp(z - m).sum()))


def top_alternatives(logprobs: np.ndarray, k: int) -> list[tuple[int, float]]:
    ids = np.argpartition(logprobs, -k)[-k:]
    ids = ids[np.argsort(-logprobs[ids], kind="stable")]
    return [(int(i), float(logprobs[i])) for i in ids]
