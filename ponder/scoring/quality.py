"""How good is a verifier, and how far does resampling with it go?

Input: graded candidates, each a verifier ``score`` and whether the candidate is ``correct``
(and optionally the ``problem`` it answers). Output (``verifier_report``): the false-positive
and false-negative rates at a threshold, the exact AUROC, and the limit of resampling with
this verifier.

Resampling with an imperfect verifier ("Inference Scaling fLaws: The Limits of LLM
Resampling with Imperfect Verifiers", Stroebl, Kapoor & Narayanan, 2024): draw a sample,
return it if the verifier accepts it (score >= threshold), otherwise draw again, up to ``k``
samples; if none is accepted, return the last one. With single-sample accuracy ``p``, true
positive rate ``t = 1 - FNR`` and false positive rate ``f = FPR``, each draw is

* accepted and correct with probability ``c = p t``,
* accepted with probability ``a = p t + (1 - p) f`` (rejected: ``r = 1 - a``),
* rejected and correct with probability ``d = p (1 - t)``,

so the accuracy after at most ``k`` draws is

    A(k) = c (1 - r^k) / a + d r^(k-1)          (A(1) = p)

and the gain of one more draw is ``A(k+1) - A(k) = p (t - a) r^(k-1)``: positive exactly
when ``t > f``, and shrinking geometrically. As ``k`` grows, ``A(k)`` tends to the
verifier's precision ``c / a = p t / (p t + (1 - p) f)``, which is below 1 whenever ``f > 0``:
false positives put a ceiling on resampling however many samples are drawn. ``k_stop`` is the
smallest ``k`` whose next draw gains less than ``epsilon``.

When the records name their problems, the curve averages ``A(k)`` over problems, each with
its own ``p`` (the fraction of its candidates that are correct) and the shared rates; hard
problems (small ``p``) are where the ceiling bites. Otherwise one pooled ``p`` is used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Record",
    "auroc",
    "rates",
    "resampling_accuracy",
    "resampling_gain",
    "resampling_limit",
    "verifier_report",
]

DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64, 128)
_MAX_K = 2**40


@dataclass(frozen=True)
class Record:
    """One graded candidate: the verifier's score, the truth, and optionally its problem."""

    score: float
    correct: bool
    problem: str | None = None


def _records(items: Iterable[Mapping[str, Any] | Record]) -> list[Record]:
    out = []
    for index, item in enumerate(items):
        if isinstance(item, Record):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ValueError(f"record {index}: expected an object, got {item!r}")
        score, correct = item.get("score"), item.get("correct")
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise ValueError(f"record {index}: 'score' must be a number, got {score!r}")
        if not math.isfinite(score):
            raise ValueError(f"record {index}: 'score' must be finite, got {score!r}")
        if correct not in (True, False, 0, 1) or isinstance(correct, float):
            raise ValueError(f"record {index}: 'correct' must be true or false, got {correct!r}")
        problem = item.get("problem")
        out.append(Record(float(score), bool(correct), None if problem is None else str(problem)))
    return out


def auroc(scores: npt.ArrayLike, correct: npt.ArrayLike) -> float | None:
    """The exact area under the ROC curve: the probability that a random correct candidate
    scores above a random incorrect one, ties counting one half (Mann-Whitney U / (P N)).
    None when either class is empty."""
    x = np.asarray(scores, dtype=float)
    y = np.asarray(correct, dtype=bool)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need one label per score, got shapes {x.shape} and {y.shape}")
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    # Average ranks over runs of equal scores (1-based).
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2
    u = ranks[y].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def rates(
    scores: npt.ArrayLike, correct: npt.ArrayLike, threshold: float
) -> tuple[float | None, float | None]:
    """(FPR, FNR) of "accept when score >= threshold": the fraction of incorrect candidates
    accepted and the fraction of correct ones rejected; None for an empty class."""
    x = np.asarray(scores, dtype=float)
    y = np.asarray(correct, dtype=bool)
    accept = x >= threshold
    negatives, positives = int((~y).sum()), int(y.sum())
    fpr = float((accept & ~y).sum() / negatives) if negatives else None
    fnr = float((~accept & y).sum() / positives) if positives else None
    return fpr, fnr


def _terms(p: np.ndarray, fpr: float, fnr: float) -> tuple[np.ndarray, ...]:
    for name, value in (("fpr", fpr), ("fnr", fnr)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"base accuracy must be in [0, 1], got {p}")
    tpr = 1.0 - fnr
    accept = p * tpr + (1 - p) * fpr
    return p * tpr, accept, 1.0 - accept, p * fnr, p * (tpr - accept)


def resampling_accuracy(k: int, p: npt.ArrayLike, fpr: float, fnr: float) -> float:
    """Expected accuracy of "resample until the verifier accepts, at most ``k`` draws, else
    return the last draw": ``A(k) = c (1 - r^k) / a + d r^(k-1)`` (see the module docstring),
    averaged over ``p`` when several base accuracies (one per problem) are given."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ps = np.atleast_1d(np.asarray(p, dtype=float))
    c, a, r, d, _ = _terms(ps, fpr, fnr)
    with np.errstate(divide="ignore", invalid="ignore"):
        accepted = np.where(a > 0, c * (1 - r**k) / np.where(a > 0, a, 1), 0.0)
    return float(np.mean(accepted + d * r ** (k - 1)))


def resampling_gain(k: int, p: npt.ArrayLike, fpr: float, fnr: float) -> float:
    """``A(k+1) - A(k) = p (t - a) r^(k-1)``, averaged over ``p``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ps = np.atleast_1d(np.asarray(p, dtype=float))
    _, _, r, _, first_gain = _terms(ps, fpr, fnr)
    return float(np.mean(first_gain * r ** (k - 1)))


def resampling_limit(
    p: npt.ArrayLike, fpr: float, fnr: float, epsilon: float = 0.01
) -> dict[str, Any]:
    """The asymptote ``lim A(k)`` and ``k_stop``, the smallest ``k`` with
    ``A(k+1) - A(k) < epsilon`` (1 when resampling never helps, i.e. FPR >= TPR)."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    ps = np.atleast_1d(np.asarray(p, dtype=float))
    c, a, _, _, first_gain = _terms(ps, fpr, fnr)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A verifier that accepts nothing leaves the first draw's accuracy, p.
        asymptote = float(np.mean(np.where(a > 0, c / np.where(a > 0, a, 1), ps)))
    helps = bool(np.any(first_gain > 0))
    # The averaged gain is non-increasing in k when every term is >= 0 (TPR > FPR), so the
    # first k below epsilon is found by doubling then bisection.
    k_stop = 1
    if helps and resampling_gain(1, ps, fpr, fnr) >= epsilon:
        high = 2
        while resampling_gain(high, ps, fpr, fnr) >= epsilon and high < _MAX_K:
            high *= 2
        low = high // 2  # gain(low) >= epsilon > gain(high)
        while high - low > 1:
            middle = (low + high) // 2
            if resampling_gain(middle, ps, fpr, fnr) >= epsilon:
                low = middle
            else:
                high = middle
        k_stop = high
    return {
        "asymptote": asymptote,
        "k_stop": k_stop,
        "accuracy_at_k_stop": resampling_accuracy(k_stop, ps, fpr, fnr),
        "helps": helps,
        "epsilon": epsilon,
    }


def _youden(scores: np.ndarray, correct: np.ndarray) -> dict[str, float] | None:
    """The threshold (among the observed scores) that maximises TPR - FPR."""
    positives, negatives = int(correct.sum()), int((~correct).sum())
    if positives == 0 or negatives == 0:
        return None
    best: dict[str, float] | None = None
    best_j = -1
    for threshold in np.unique(scores):
        accept = scores >= threshold
        tp, fp = int((accept & correct).sum()), int((accept & ~correct).sum())
        j = tp * negatives - fp * positives  # (TPR - FPR) * P * N, exact in integers
        # Ties go to the higher threshold: fewer false positives, the error that caps resampling.
        if j >= best_j:
            best_j = j
            best = {"threshold": float(threshold), "tpr": tp / positives, "fpr": fp / negatives}
    return best


def verifier_report(
    records: Iterable[Mapping[str, Any] | Record],
    threshold: float = 0.5,
    epsilon: float = 0.01,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """Everything known about a verifier from graded candidates ``{"score", "correct",
    "problem"?}``: counts, FPR/FNR/precision at ``threshold``, AUROC, the Youden-best
    threshold, and the resampling curve ``A(k)`` for ``ks`` with its asymptote and ``k_stop``.

    Rates of an empty class are None (and count as 0 in the curve, where they are multiplied
    by zero anyway).
    """
    items = _records(records)
    if not items:
        raise ValueError("a verifier report needs at least one graded candidate")
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    scores = np.array([r.score for r in items], dtype=float)
    correct = np.array([r.correct for r in items], dtype=bool)
    fpr, fnr = rates(scores, correct, threshold)
    accepted = scores >= threshold
    n_accepted = int(accepted.sum())
    base = float(correct.mean())

    problems: dict[str, list[bool]] = {}
    for r in items:
        if r.problem is not None:
            problems.setdefault(r.problem, []).append(r.correct)
    if problems and any(r.problem is None for r in items):
        raise ValueError("either every record names its 'problem' or none does")
    per_problem = [float(np.mean(v)) for v in problems.values()]
    ps: list[float] = per_problem or [base]
    f, n = (fpr or 0.0), (fnr or 0.0)
    limit = resampling_limit(ps, f, n, epsilon)
    return {
        "n": len(items),
        "n_correct": int(correct.sum()),
        "problems": len(problems) or None,
        "base_accuracy": base,
        "threshold": threshold,
        "accepted": n_accepted,
        "false_positive_rate": fpr,
        "false_negative_rate": fnr,
        "true_positive_rate": None if fnr is None else 1.0 - fnr,
        "precision": float((accepted & correct).sum() / n_accepted) if n_accepted else None,
        "auroc": auroc(scores, correct),
        "best_threshold": _youden(scores, correct),
        "resampling": {
            "model": "per-problem" if per_problem else "pooled",
            "curve": [{"k": k, "accuracy": resampling_accuracy(k, ps, f, n)} for k in ks],
            **limit,
        },
    }
