"""Estimates of sampling strategies at every ``k <= n`` from stored pools of ``n`` samples.

For a pool of ``n`` samples and a selection rule, the accuracy at ``k`` is the expectation,
over the ``k``-subsets of the pool (each kept in sampling order), of the hidden-grader
verdict of the sample the rule picks from the subset. It is computed

* exactly for coverage: pass@k ``= 1 - C(n-c, k) / C(n, k)`` (``metrics.pass_at_k``);
* exactly for best-of-n: the rule picks the first sample of a total order (score, then
  fewer tokens, then sampling order), so the sample of rank ``r`` is picked with
  probability ``C(n-1-r, k-1) / C(n, k)``;
* exactly, by enumeration, when there are at most ``subsets`` k-subsets (always at
  ``k = 1`` and ``k = n``);
* otherwise as the mean over ``subsets`` random k-subsets drawn with a
  ``numpy.random.Generator`` seeded by (``seed``, problem, pool seed, k), with its Monte
  Carlo standard error. All rules see the same random subsets.

An adaptive rule (``ADAPTIVE``: early-stop-vote, whose budget ``k`` is the most samples it
may draw) depends on the order the samples arrive in, and stops after fewer than ``k`` of
them when the vote settles. It is estimated over ``subsets`` random orders of ``k`` of the
pool's samples (the first ``k`` of a seeded random permutation), replayed through the
strategy's own decision (``early_stop_vote.replay``); its cost is the tokens of the
samples it drew in each order, averaged, not ``k`` samples'.

The rules are the functions of ``ponder.strategies.selection`` that the live strategies
call, so an estimate is what the live strategy would answer from those samples. The pool's
sampling settings apply to every rule (e.g. confidence-vote runs at the pool's temperature,
offline). Accuracy over problems is the mean of each problem's estimate (averaged over
pool seeds) with a Wilson interval over problems; cost at ``k`` is ``k`` samples' tokens
and, for rules that use a scorer, ``k`` scorer calls.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from ponder.evals.metrics import k_grid, pass_at_k, wilson_interval
from ponder.evals.runner import _split_top_level
from ponder.evals.store import PoolRecord, SampleRecord
from ponder.options import parse_pairs
from ponder.strategies import canonical, create, early_stop_vote, rpc_pruning
from ponder.strategies.selection import (
    ballots,
    best_scored,
    majority_survivors,
    path_probability,
    select_best_of_majority,
    select_confident,
    select_first_accepted,
    select_majority,
    select_rpc,
    select_weighted,
)
from ponder.types import Candidate

COVERAGE = "coverage"
SCORED = ("best-of-n", "weighted-best-of-n", "best-of-majority")
"""Rules that need a scorer."""
ESTIMATED = (
    "sample",
    "self-consistency",
    "weighted-vote",
    "rpc",
    "best-of-n",
    "weighted-best-of-n",
    "best-of-majority",
    "confidence-vote",
    "early-stop-vote",
)
ADAPTIVE = ("early-stop-vote",)
"""Rules that decide from what they drew whether to draw more: estimated over random
orders (``orders_for``), their cost the samples they drew, not ``k``."""
_SPEC_RE = re.compile(r"^\s*([\w.-]+)\s*(?:\[(.*)\])?\s*(?:@\s*([\w.-]+))?\s*$")


@dataclass(frozen=True)
class EstimatorSpec:
    """One rule to estimate: ``label`` names it in reports; ``config`` is the strategy's
    own frozen config (its selection settings); ``scorer`` the pool scorer it reads."""

    label: str
    strategy: str
    config: Any = None
    scorer: str | None = None


@dataclass(frozen=True)
class Estimate:
    """One rule at one ``k`` over a set of problems.

    ``accuracy``: mean over problems of the expected correctness of the rule's pick;
    ``se``: its Monte Carlo standard error (0 when exact); ``wilson``: 95% Wilson interval
    over problems; ``tokens_per_problem`` / ``scorer_calls_per_problem``: the cost of ``k``
    samples; ``exact``: no subset sampling was needed for any problem."""

    label: str
    strategy: str
    scorer: str | None
    k: int
    problems: int
    accuracy: float
    se: float
    wilson: tuple[float, float]
    tokens_per_problem: float
    scorer_calls_per_problem: float
    exact: bool
    per_problem: dict[str, float] = field(default_factory=dict, compare=False, repr=False)


def parse_estimators(text: str | Sequence[str], scorers: Sequence[str]) -> list[EstimatorSpec]:
    """Rules from ``"self-consistency,best-of-n@judge,confidence-vote[keep_percent=10]"``:
    a strategy name (or ``coverage``), optional settings in brackets (``;``-separated
    ``key=value``), optional ``@scorer`` (one of the pool's ``scorers``). A rule that needs a
    scorer and names none gets one spec per pool scorer."""
    items = _split_top_level(text) if isinstance(text, str) else list(text)
    specs: list[EstimatorSpec] = []
    for item in items:
        match = _SPEC_RE.match(item)
        if not match:
            raise ValueError(f"bad estimator {item!r}; expected name[key=value;...]@scorer")
        name, body, scorer = match.group(1), match.group(2), match.group(3)
        pairs = filter(None, (p.strip() for p in (body or "").split(";")))
        settings = parse_pairs(pairs, f"a setting in {item!r}")
        base = "".join(item.split()).split("@")[0]
        specs.extend(_specs_for(name, settings, scorer, base, scorers))
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"estimators repeat: {', '.join(labels)}")
    return specs


def _specs_for(
    name: str,
    settings: dict[str, Any],
    scorer: str | None,
    label: str,
    scorers: Sequence[str],
) -> list[EstimatorSpec]:
    if name == COVERAGE:
        if settings or scorer:
            raise ValueError("coverage (pass@k) takes no settings and no scorer")
        return [EstimatorSpec(COVERAGE, COVERAGE)]
    strategy = canonical(name)
    if strategy not in ESTIMATED:
        raise ValueError(
            f"strategy {strategy!r} cannot be estimated from a pool (it does not select "
            f"among independent samples); run it as a cell. Pool rules: {', '.join(ESTIMATED)}"
        )
    if strategy == "confidence-vote":
        settings = {"mode": "offline", **settings}
        if settings["mode"] != "offline":
            raise ValueError("a pool estimates confidence-vote offline only; run online as a cell")
    config = create(strategy, **settings).config  # type: ignore[attr-defined]
    if strategy in ADAPTIVE and scorer is not None:
        raise ValueError(f"estimator {label!r} does not use a scorer")
    if scorer is not None and scorer not in scorers:
        raise ValueError(f"estimator {label!r}: the pool has no scorer {scorer!r} ({scorers})")
    if scorer is None and _uses_scorer(strategy, config, scorers):
        if not scorers:
            raise ValueError(f"estimator {label!r} needs a scorer; the pool was drawn with none")
        if len(scorers) == 1:
            return [EstimatorSpec(f"{label}@{scorers[0]}", strategy, config, scorers[0])]
        return [EstimatorSpec(f"{label}@{s}", strategy, config, s) for s in scorers]
    if scorer is not None and not _uses_scorer(strategy, config, [scorer]):
        raise ValueError(f"estimator {label!r} does not use a scorer")
    return [
        EstimatorSpec(label if scorer is None else f"{label}@{scorer}", strategy, config, scorer)
    ]


def _uses_scorer(strategy: str, config: Any, scorers: Sequence[str]) -> bool:
    if strategy in SCORED:
        return True
    if strategy == "weighted-vote":
        return config.weight == "score" or (config.weight == "auto" and bool(scorers))
    return strategy == "sample" and bool(scorers)


def default_estimators(scorers: Sequence[str]) -> list[EstimatorSpec]:
    """Coverage and every pool rule at its default settings; rules that use a scorer once
    per pool scorer (and weighted-vote also by path probability)."""
    names = [COVERAGE, "sample", "self-consistency", "rpc", "confidence-vote"]
    names.append("weighted-vote[weight=path-probability]")
    if scorers:
        names += ["weighted-vote[weight=score]", *SCORED]
    return parse_estimators(names, scorers)


# ---- one pool -----------------------------------------------------------------------------


def candidates_of(samples: Sequence[SampleRecord]) -> list[Candidate]:
    """The pool's samples as the candidates the live strategies would have built."""
    return [
        Candidate(
            text=s.text,
            answer=s.answer,
            tokens=s.tokens,
            mean_logprob=s.stats.get("mean_logprob"),
            finish_reason=s.finish_reason,
        )
        for s in samples
    ]


Picker = Callable[[Sequence[Candidate], Sequence[SampleRecord]], int | None]


def picker(spec: EstimatorSpec) -> Picker:
    """The selection function of ``spec``: (candidates, their samples) -> the index picked."""
    cfg, scorer = spec.config, spec.scorer

    def scores(samples: Sequence[SampleRecord]) -> list[float]:
        assert scorer is not None
        return [s.scores[scorer] for s in samples]

    def log_weights(samples: Sequence[SampleRecord]) -> list[float]:
        key = "log_weight_mean" if cfg.length_normalize else "log_weight_sum"
        if any(key not in s.stats for s in samples):
            raise ValueError("weighted-vote by path probability needs a pool drawn with logprobs")
        return [-math.inf if s.stats[key] is None else s.stats[key] for s in samples]

    def confidences(samples: Sequence[SampleRecord]) -> list[float]:
        if any("confidence" not in s.stats for s in samples):
            raise ValueError("confidence-vote needs a pool drawn with top_logprobs > 0")
        return [s.stats["confidence"][cfg.trace_confidence] for s in samples]

    rules: dict[str, Picker] = {
        "sample": lambda c, s: select_first_accepted(
            c, scores(s) if scorer else None, cfg.threshold
        ).index,
        "self-consistency": lambda c, s: select_majority(c).index,
        "weighted-vote": lambda c, s: (
            select_weighted(c, scores(s)).index
            if scorer
            else select_weighted(c, log_weights(s), log_space=True).index
        ),
        "rpc": lambda c, s: select_rpc(c, cfg.pruning, cfg.prune_quantile).index,
        "best-of-n": lambda c, s: best_scored(c, scores(s)),
        "weighted-best-of-n": lambda c, s: select_weighted(c, scores(s)).index,
        "best-of-majority": lambda c, s: select_best_of_majority(
            c, *majority_survivors(c, cfg.alpha, cfg.top_k), scores(s)
        ).index,
        "confidence-vote": lambda c, s: select_confident(c, confidences(s), cfg.keep_percent).index,
    }
    rule = rules[spec.strategy]
    unfinished = getattr(cfg, "unfinished", "vote")
    if unfinished == "vote":
        return rule
    return lambda c, s: rule(ballots(c, unfinished), s)


def orders_for(n: int, k: int, count: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """``count`` random orders of ``k`` of ``n`` samples: the first ``k`` of each of
    ``count`` random permutations (an adaptive rule sees its samples in this order)."""
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    return [tuple(rng.permutation(n)[:k].tolist()) for _ in range(count)]


def adaptive_estimate(
    spec: EstimatorSpec,
    pool: PoolRecord,
    orders: Sequence[tuple[int, ...]],
    rng: np.random.Generator,
    cands: Sequence[Candidate] | None = None,
) -> tuple[float, float, float]:
    """(expected correctness, variance of that estimate, expected tokens) of an adaptive
    rule over ``orders`` of the pool's samples (``orders_for``); ``rng`` for the rule's own
    random choices (the Dirichlet test's draws)."""
    if spec.strategy not in ADAPTIVE:
        raise ValueError(f"{spec.label!r} is not an adaptive rule")
    samples = pool.samples
    cands = candidates_of(samples) if cands is None else cands
    hits, tokens = [], []
    for order in orders:
        drawn, i = early_stop_vote.replay(spec.config, [cands[j] for j in order], len(order), rng)
        hits.append(0.0 if i is None else float(samples[order[i]].correct))
        tokens.append(float(sum(samples[j].tokens for j in order[:drawn])))
    var = float(np.var(hits, ddof=1)) / len(hits) if len(hits) > 1 else 0.0
    return float(np.mean(hits)), var, float(np.mean(tokens))


def subsets_for(
    n: int, k: int, count: int, rng: np.random.Generator
) -> tuple[list[tuple[int, ...]], bool]:
    """The k-subsets to average over (each in ascending order) and whether they are all of
    them: every subset when there are at most ``count``, else ``count`` random ones."""
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if math.comb(n, k) <= count:
        return list(combinations(range(n), k)), True
    return [
        tuple(sorted(rng.choice(n, size=k, replace=False).tolist())) for _ in range(count)
    ], False


def best_of_n_exact(
    candidates: Sequence[Candidate], scores: Sequence[float], correct: Sequence[bool], k: int
) -> float:
    """Expected correctness of best-of-n's pick over all k-subsets: the sample of rank ``r``
    in the rule's total order is picked with probability ``C(n-1-r, k-1) / C(n, k)``."""
    n = len(candidates)
    order = sorted(range(n), key=lambda i: (-(scores[i] or 0.0), candidates[i].tokens, i))
    total = math.comb(n, k)
    return sum(math.comb(n - 1 - r, k - 1) / total for r, i in enumerate(order) if correct[i])


def pool_estimate(
    spec: EstimatorSpec,
    pool: PoolRecord,
    k: int,
    subsets: Sequence[tuple[int, ...]],
    exact: bool,
    cands: Sequence[Candidate] | None = None,
) -> tuple[float, float, bool]:
    """(expected correctness at ``k``, variance of that estimate, exact) for one pool;
    ``subsets`` as ``subsets_for`` returned them."""
    samples = pool.samples
    correct = [s.correct for s in samples]
    if spec.strategy == COVERAGE:
        return pass_at_k(len(samples), sum(correct), k), 0.0, True
    cands = candidates_of(samples) if cands is None else cands
    if spec.strategy == "best-of-n":
        assert spec.scorer is not None
        values = [s.scores[spec.scorer] for s in samples]
        return best_of_n_exact(cands, values, correct, k), 0.0, True
    if spec.strategy in ADAPTIVE:
        raise ValueError(f"{spec.label!r} is adaptive: estimate it with adaptive_estimate")
    pick = picker(spec)
    hits = []
    for subset in subsets:
        i = pick([cands[j] for j in subset], [samples[j] for j in subset])
        hits.append(0.0 if i is None else float(correct[subset[i]]))
    mean = float(np.mean(hits))
    var = 0.0 if exact else float(np.var(hits, ddof=1)) / len(hits) if len(hits) > 1 else 0.0
    return mean, var, exact


def _rng(seed: int, problem_id: str, pool_seed: int, k: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(problem_id.encode()), pool_seed, k, *salt])


# ---- a run's pools ------------------------------------------------------------------------


def estimate(
    pools: Sequence[PoolRecord],
    specs: Sequence[EstimatorSpec],
    ks: Sequence[int] | None = None,
    subsets: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[Estimate]:
    """Every rule at every ``k`` (default 1, 2, 4, ... n) over the pools' problems."""
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if not pools:
        return []
    n = min(p.n for p in pools)
    ks = k_grid(n) if ks is None else [int(k) for k in ks]
    if any(not 1 <= k <= n for k in ks):
        raise ValueError(f"k must be in 1..{n} (the smallest pool), got {list(ks)}")
    by_problem: dict[str, list[PoolRecord]] = defaultdict(list)
    for p in pools:
        by_problem[p.problem_id].append(p)
    cands = {(p.problem_id, p.seed): candidates_of(p.samples) for p in pools}
    out = []
    for k in ks:
        draws = {
            (p.problem_id, p.seed): subsets_for(
                p.n, k, subsets, _rng(seed, p.problem_id, p.seed, k)
            )
            for p in pools
        }
        with _rpc_fits(specs, draws, cands):
            out.extend(_estimates_at(k, specs, by_problem, draws, cands, confidence, subsets, seed))
    return out


def _rpc_fits(
    specs: Sequence[EstimatorSpec],
    draws: dict[tuple[str, int], tuple[list[tuple[int, ...]], bool]],
    cands: dict[tuple[str, int], list[Candidate]],
) -> AbstractContextManager[None]:
    """RPC's Weibull fits of every drawn subset of every pool, in one batch
    (``rpc_pruning.prefitted``), when a rule needs them."""
    if not any(s.strategy == "rpc" and s.config.pruning == "weibull" for s in specs):
        return nullcontext()
    rows: list[list[float]] = []
    for key, (subs, _) in draws.items():
        probs = [path_probability(c) for c in cands[key]]
        rows.extend([probs[j] for j in s] for s in subs)
    return rpc_pruning.prefitted(rows)


def _estimates_at(
    k: int,
    specs: Sequence[EstimatorSpec],
    by_problem: dict[str, list[PoolRecord]],
    draws: dict[tuple[str, int], tuple[list[tuple[int, ...]], bool]],
    cands: dict[tuple[str, int], list[Candidate]],
    confidence: float,
    subsets: int,
    seed: int,
) -> list[Estimate]:
    out = []
    for spec in specs:
        per_problem, var_sum, all_exact = {}, 0.0, True
        tokens, calls = [], []
        for pid, group in by_problem.items():
            values, spent = [], []
            for p in group:
                if spec.strategy in ADAPTIVE:
                    # one generator for the orders, one for the rule's own draws
                    orders = orders_for(p.n, k, subsets, _rng(seed, pid, p.seed, k, 1))
                    mean, var, cost = adaptive_estimate(
                        spec, p, orders, _rng(seed, pid, p.seed, k, 2), cands[(pid, p.seed)]
                    )
                    all_exact = False
                else:
                    subs, exact = draws[(p.problem_id, p.seed)]
                    mean, var, ex = pool_estimate(spec, p, k, subs, exact, cands[(pid, p.seed)])
                    cost = k * float(np.mean([s.tokens for s in p.samples]))
                    all_exact &= ex
                values.append(mean)
                spent.append(cost)
                var_sum += var / len(group) ** 2
            per_problem[pid] = float(np.mean(values))
            tokens.append(float(np.mean(spent)))
            calls.append(k if spec.scorer else 0)
        count = len(per_problem)
        acc = float(np.mean(list(per_problem.values())))
        out.append(
            Estimate(
                label=spec.label,
                strategy=spec.strategy,
                scorer=spec.scorer,
                k=k,
                problems=count,
                accuracy=acc,
                se=math.sqrt(var_sum) / count,
                wilson=wilson_interval(acc * count, count, confidence),
                tokens_per_problem=float(np.mean(tokens)),
                scorer_calls_per_problem=float(np.mean(calls)),
                exact=all_exact,
                per_problem=per_problem,
            )
        )
    return out
