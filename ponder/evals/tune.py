"""Fitting a recipe for ``auto`` from sample pools, offline.

A pool holds, per problem and seed, ``n`` samples with their answers, tokens, statistics,
scores and hidden-grader verdicts. Pools may come at several sampling temperatures
(``Pools``: temperature -> pools; a plain list is one unnamed temperature). A recipe that
draws ``k`` samples is simulated on a problem and seed by replaying it
(``ponder.strategies.recipes.replay``, the same policy functions ``auto`` runs) over
samples in drawing order: stage ``j``'s samples are the next ones of the pool at that
stage's temperature (``draw_0 + ... + draw_{j-1}`` onwards), so a recipe at one temperature
reads its pool's first ``k`` samples. Its cost there is those samples' tokens, plus, when a
stage names the ``no_more`` signal, the one token generated per sample the model is asked
about (a scorer call each, as live). A recipe ending in ``confidence-vote`` votes with the
DeepConf trace confidences the pool stores per sample (``stats["confidence"]``, computed
from the top log-probabilities as live ``auto`` computes them). Stage 0 of a live ``auto``
run with seed ``s`` draws exactly the first samples of the pool drawn with seed ``s`` at its
temperature; later stages draw with seeds ``s + 1, s + 2, ...``, i.e. fresh independent
samples from the same distribution as the pool's next ones, so the simulated accuracy and
tokens are unbiased estimates of the live recipe's (exactly equal when given the same
samples, which the tests check). That holds over problems only when each problem's samples
are its own draws: pools drawn before stop 43 shared sample ``i``'s random numbers across
problems (docs/EVALS.md, "Seeds"), so their first indices carry a luck common to every
problem (``results/tune/index_luck.txt``: at most 0.8 points on the committed recipes).

``tune`` compares every fixed pool rule at every ``k`` and temperature
(``ponder.evals.estimators``) with a grid of recipes on the development problems, fits the
recipe with a margin for sampling noise (``Bootstrap``, ``choose_robust``: a paired
bootstrap over the development problems; or without one, ``choose``: the most accurate
within ``max_tokens_per_problem``, or without a budget the cheapest that reaches the best
fixed rule's accuracy), and measures the fitted recipe and the best fixed rule on the
held-back problems with Wilson intervals over problems.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ponder.evals.estimators import (
    COVERAGE,
    EstimatorSpec,
    candidates_of,
    default_estimators,
    estimate,
)
from ponder.evals.metrics import k_grid, wilson_interval
from ponder.evals.store import PoolRecord, SampleRecord
from ponder.evals.tune_signals import STAT, TOKENS
from ponder.strategies.recipes import Recipe, Stage, replay
from ponder.strategies.recipes.format import CONFIDENCE_FINAL
from ponder.strategies.recipes.policy import CONFIDENCE_VOTE

Pools = Mapping[float | None, Sequence[PoolRecord]]
"""Pools by the temperature they were drawn at (None: one set, temperature unnamed)."""

AGREEMENT = (0.5, 0.6, 0.75, 0.8, 1.0)
MARGIN = (0.0, 0.125, 0.25, 0.375, 0.5, 0.75)
NO_MORE = (0.5, 0.65, 0.8)
"""``no_more`` thresholds stage 0 tries, alone and with each agreement threshold, when the
pools carry the model's P(yes) for the samples stage 0 draws."""
TRUNCATED = (0.5, 1.0)
"""``truncated`` thresholds of the give-up rule every stage but the last tries (alone, and
besides each stop rule): the run gives up on a problem once that share of its samples ran
out of tokens before their end, where more samples of the same length seldom help."""
SCORE = (0.5, 0.9, 1.0)
"""``score`` thresholds (the best verifier score so far) every stage but the last tries,
in the recipes whose final rule reads that scorer: a stage that stops on one answers with
the best-scored sample (``policy.pick``). For the visible tests 1.0 is "a sample passes
every visible test"; for the judge, its P(yes)."""
SCHEDULES = (
    (1, 2),
    (1, 4),
    (2, 4),
    (2, 8),
    (2, 16),
    (4, 16),
    (1, 4, 16),
    (2, 4, 8),
    (2, 6, 16),
    (2, 8, 16),
    (4, 8, 16),
)
"""Cumulative sample counts per stage that the grid tries (those within the pool size)."""


@dataclass(frozen=True)
class Point:
    """One strategy on the accuracy-vs-tokens plane over a set of problems.

    ``accuracy``: mean over problems of the expected correctness; ``wilson``: its 95%
    interval over problems; ``tokens``: generated tokens per problem; ``per_problem``:
    problem id -> expected correctness; ``stages``: for a recipe, the share of problems
    stopping at each stage; ``asked``: for a recipe, samples per problem the model was asked
    about (``no_more``; counted in ``scorer_calls`` and, one token each, in ``tokens``);
    ``rule``, ``k``, ``temperature``: for a fixed rule, what it is; ``tokens_by_problem``:
    problem id -> generated tokens (a fixed rule: ``k`` times the mean sample length)."""

    label: str
    kind: str
    accuracy: float
    tokens: float
    problems: int
    wilson: tuple[float, float]
    scorer_calls: float = 0.0
    recipe: Recipe | None = None
    stages: tuple[float, ...] = ()
    per_problem: dict[str, float] = field(default_factory=dict, compare=False, repr=False)
    asked: float = 0.0
    rule: str = ""
    k: int = 0
    temperature: float | None = None
    tokens_by_problem: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "kind": self.kind,
            "accuracy": round(self.accuracy, 4),
            "wilson": [round(x, 4) for x in self.wilson],
            "tokens_per_problem": round(self.tokens, 1),
            "scorer_calls_per_problem": round(self.scorer_calls, 2),
            "problems": self.problems,
        }
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.stages:
            out["stopped_at_stage"] = [round(float(x), 4) for x in self.stages]
        if self.asked:
            out["asked_per_problem"] = round(self.asked, 2)
        if self.recipe is not None:
            out["recipe"] = self.recipe.as_dict()
        return out


def by_problem(pools: Iterable[PoolRecord]) -> dict[str, list[PoolRecord]]:
    out: dict[str, list[PoolRecord]] = defaultdict(list)
    for p in pools:
        out[p.problem_id].append(p)
    return dict(out)


def by_temperature(pools: Sequence[PoolRecord] | Pools) -> dict[float | None, list[PoolRecord]]:
    """``pools`` as temperature -> pools (a plain list: ``{None: pools}``)."""
    if isinstance(pools, Mapping):
        return {t: list(ps) for t, ps in pools.items()}
    return {None: list(pools)}


def _stage_temperatures(recipe: Recipe, pools: Mapping[float | None, Any]) -> list[float | None]:
    """The pool temperature each stage reads: its own, the recipe's, or the only one."""
    out = []
    for j in range(len(recipe.stages)):
        t = recipe.temperature_of(j)
        if t is None:
            if len(pools) != 1:
                raise ValueError(
                    f"the recipe names no temperature; the pools were drawn at several "
                    f"({', '.join(str(x) for x in pools)})"
                )
            t = next(iter(pools))
        if t not in pools:
            raise ValueError(
                f"the recipe samples at temperature {t}; no pools at it "
                f"(pools at {', '.join(str(x) for x in pools)})"
            )
        out.append(t)
    return out


def simulate(recipe: Recipe, pools: Sequence[PoolRecord] | Pools, label: str = "auto") -> Point:
    """``recipe`` replayed on every problem and seed: per problem the mean over its seeds of
    the picked sample's verdict, of the tokens (the samples drawn, and one per sample the
    model was asked about) and of the scorer calls (one per drawn sample when the recipe
    scores, one per sample asked)."""
    grouped = {t: ps for t, ps in by_temperature(pools).items() if ps}
    if not grouped:
        raise ValueError("no pools to simulate the recipe on")
    if recipe.needs_scorer and recipe.scorer is None:
        raise ValueError("the recipe scores samples; name the pool scorer in its 'scorer' field")
    temps = _stage_temperatures(recipe, grouped)
    small = min(p.n for t in set(temps) for p in grouped[t])
    if recipe.total_draws > small:
        raise ValueError(f"the recipe draws {recipe.total_draws} samples; the pools hold {small}")
    index = {t: {p.key: p for p in grouped[t]} for t in set(temps)}
    keys = sorted(index[temps[0]])
    acc: dict[str, float] = {}
    tokens, calls, asks = [], [], []
    stops = np.zeros(len(recipe.stages))
    groups: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for key in keys:
        groups[key[0]].append(key)
    for pid, group in groups.items():
        hits, toks, scored, asked = [], [], [], []
        for key in group:
            samples = _drawn(recipe, temps, index, key)
            scores = None
            if recipe.needs_scorer:
                name = str(recipe.scorer)
                if any(name not in s.scores for s in samples):
                    raise ValueError(f"the pools have no scores from scorer {name!r}")
                scores = [s.scores[name] for s in samples]
            p_yes = [s.stats.get(STAT) for s in samples[: recipe.asks]]
            confidences = _confidences(samples) if recipe.needs_confidences else None
            out = replay(
                recipe, candidates_of(samples), scores, p_yes=p_yes, confidences=confidences
            )
            i = out.selection.index
            hits.append(0.0 if i is None else float(samples[i].correct))
            spent = sum(s.tokens for s in samples[: out.drawn])
            toks.append(spent + sum(int(s.stats.get(TOKENS, 1)) for s in samples[: out.asked]))
            scored.append((out.drawn if recipe.needs_scorer else 0) + out.asked)
            asked.append(out.asked)
            stops[out.stage] += 1 / len(group)
        acc[pid] = float(np.mean(hits))
        tokens.append(float(np.mean(toks)))
        calls.append(float(np.mean(scored)))
        asks.append(float(np.mean(asked)))
    shares = tuple(float(x) for x in stops / len(acc))
    point = _point(label, "recipe", acc, tokens, calls, recipe, shares)
    by_problem = dict(zip(acc, tokens, strict=True))
    return replace(
        point,
        asked=float(np.mean(asks)),
        temperature=recipe.temperature,
        tokens_by_problem=by_problem,
    )


def _confidences(samples: Sequence[SampleRecord]) -> list[float]:
    """The samples' stored DeepConf trace confidences at the ``confidence-vote`` final
    rule's kind (``CONFIDENCE_VOTE.trace_confidence``)."""
    if any("confidence" not in s.stats for s in samples):
        raise ValueError(
            f"the recipe's final rule {CONFIDENCE_FINAL!r} reads each sample's DeepConf "
            "confidence; these pools were drawn without top log-probabilities (draw them with "
            "--top-logprobs 20)"
        )
    return [float(s.stats["confidence"][CONFIDENCE_VOTE.trace_confidence]) for s in samples]


def has_confidences(pools: Sequence[PoolRecord] | Pools) -> bool:
    """Whether every sample of every pool carries its DeepConf trace confidences (the
    evidence of the ``confidence-vote`` final rule)."""
    every = [s for ps in by_temperature(pools).values() for p in ps for s in p.samples]
    return bool(every) and all("confidence" in s.stats for s in every)


def confidence_settings(top_logprobs: int, group_window: int) -> bool:
    """Whether pools drawn with ``top_logprobs`` alternatives per token and DeepConf groups
    of ``group_window`` tokens store the confidences live ``auto`` computes for the
    ``confidence-vote`` final rule (``CONFIDENCE_VOTE``'s); other pools' confidences would
    make the simulation differ from the live run."""
    return (
        top_logprobs == CONFIDENCE_VOTE.top_logprobs
        and group_window == CONFIDENCE_VOTE.group_window
    )


def _drawn(
    recipe: Recipe,
    temps: Sequence[float | None],
    index: Mapping[float | None, Mapping[tuple[str, int], PoolRecord]],
    key: tuple[str, int],
) -> list[SampleRecord]:
    """The samples the recipe would see on one problem and seed, in drawing order."""
    if len(set(temps)) == 1:
        return list(index[temps[0]][key].samples[: recipe.total_draws])
    out: list[SampleRecord] = []
    for stage, t in zip(recipe.stages, temps, strict=True):
        pool = index[t].get(key)
        if pool is None:
            raise ValueError(f"no pool at temperature {t} for problem {key[0]} seed {key[1]}")
        out.extend(pool.samples[len(out) : len(out) + stage.draw])
    return out


def _point(
    label: str,
    kind: str,
    acc: dict[str, float],
    tokens: Sequence[float],
    calls: Sequence[float],
    recipe: Recipe | None = None,
    stages: tuple[float, ...] = (),
) -> Point:
    count = len(acc)
    mean = float(np.mean(list(acc.values())))
    return Point(
        label,
        kind,
        mean,
        float(np.mean(tokens)),
        count,
        wilson_interval(mean * count, count),
        float(np.mean(calls)),
        recipe,
        stages,
        acc,
    )


def fixed_points(
    pools: Sequence[PoolRecord] | Pools,
    specs: Sequence[EstimatorSpec] | None = None,
    ks: Sequence[int] | None = None,
    subsets: int = 200,
) -> list[Point]:
    """Every pool rule at every ``k`` and temperature (labelled ``rule@k``, and ``T=t`` when
    the pools name their temperature). Default rules: ``default_estimators`` but coverage
    (an oracle) and rpc (its Weibull-mixture fit per subset makes it the slowest to
    estimate; give it in ``specs`` to include it), those the pools carry evidence for."""
    out = []
    for t, group in by_temperature(pools).items():
        if not group:
            continue
        scorers = sorted({name for p in group for s in p.samples for name in s.scores})
        chosen = specs
        if chosen is None:
            chosen = [s for s in default_estimators(scorers) if s.strategy != "rpc"]
        chosen = [s for s in chosen if _usable(s, group)]
        at = "" if t is None else f" T={t:g}"
        lengths = _sample_lengths(group)
        out += [
            Point(
                f"{e.label}@{e.k}{at}",
                "fixed",
                e.accuracy,
                e.tokens_per_problem,
                e.problems,
                e.wilson,
                e.scorer_calls_per_problem,
                per_problem=e.per_problem,
                rule=e.label,
                k=e.k,
                temperature=t,
                tokens_by_problem={pid: e.k * length for pid, length in lengths.items()},
            )
            for e in estimate(group, chosen, ks or k_grid(min(p.n for p in group)), subsets=subsets)
        ]
    return out


def _sample_lengths(pools: Sequence[PoolRecord]) -> dict[str, float]:
    """Problem id -> mean over its pools of the mean sample length (tokens)."""
    return {
        pid: float(np.mean([np.mean([s.tokens for s in p.samples]) for p in group]))
        for pid, group in by_problem(pools).items()
    }


def _usable(spec: EstimatorSpec, pools: Sequence[PoolRecord]) -> bool:
    """Whether the pools carry what ``spec`` reads (coverage, an oracle, never is)."""
    stats = [s.stats for p in pools for s in p.samples]
    if spec.strategy == COVERAGE:
        return False
    if spec.strategy == "confidence-vote":
        return all("confidence" in st for st in stats)
    if spec.strategy == "weighted-vote" and spec.scorer is None:
        return all("log_weight_mean" in st for st in stats)
    return True


def recipe_grid(
    n: int,
    scorers: Sequence[str] = (),
    temperatures: Sequence[float | None] = (None,),
    no_more: bool = False,
    confidence: bool = False,
) -> list[Recipe]:
    """The recipes ``tune`` tries with pools of ``n`` samples: each schedule of
    ``SCHEDULES`` within ``n``; stage 0 stops on ``agreement >= a`` (``AGREEMENT``) and,
    with ``no_more``, also on ``no_more >= q`` (``NO_MORE``) alone or with each ``a``;
    middle stages on ``margin >= m`` (``MARGIN``); final rule majority, with
    ``confidence`` (the pools carry DeepConf confidences) confidence-vote, and best-of-n /
    weighted best-of-n with each pool scorer, whose recipes' stages (all but the last) may
    also stop on that scorer's ``score >= s`` (``SCORE``); each at every temperature of
    ``temperatures`` (None: the recipe names none). Each stage but the last may also give
    up on ``truncated >= t`` (``TRUNCATED``) or not."""
    finals: list[tuple[str, str | None]] = [("majority", None)]
    if confidence:
        finals.append((CONFIDENCE_FINAL, None))
    finals += [(f, s) for s in scorers for f in ("best-of-n", "weighted-best-of-n")]
    out = []
    for schedule in SCHEDULES:
        if schedule[-1] > n:
            continue
        draws = [b - a for a, b in itertools.pairwise((0, *schedule))]
        for (final, scorer), t in itertools.product(finals, temperatures):
            by_score = [{"score": v} for v in SCORE] if scorer is not None else []
            first_rules = _first_rules(draws[0], no_more) + by_score
            middle = [[{"margin": m} for m in MARGIN] + by_score] * (len(draws) - 2)
            quits = [_give_ups(k) for k in schedule[:-1]]
            for first, rest, quit_ in itertools.product(
                first_rules, itertools.product(*middle), itertools.product(*quits)
            ):
                rules = (first, *rest)
                stages = [
                    Stage(d, dict(r), give_up_if=dict(q))
                    for d, r, q in zip(draws[:-1], rules, quit_, strict=True)
                ]
                stages.append(Stage(draws[-1]))
                out.append(Recipe(tuple(stages), final, scorer, temperature=t))
    return out


def _first_rules(k: int, no_more: bool) -> list[dict[str, float]]:
    """Stage 0's stop rules on ``k`` samples."""
    rules = [{"agreement": a} for a in _agreements(k)]
    if no_more:
        rules += [{"no_more": q} for q in NO_MORE]
        rules += [{"agreement": a, "no_more": q} for a in _agreements(k) for q in NO_MORE]
    return rules


def _give_ups(k: int) -> list[dict[str, float]]:
    """A stage's give-up rules after ``k`` samples in all: none, or ``truncated >= t`` for
    the thresholds of ``TRUNCATED`` that differ on ``k`` samples."""
    kept: dict[float, float] = {}
    for t in TRUNCATED:
        kept.setdefault(math.ceil(t * k - 1e-9) / k, t)
    return [{}] + [{"truncated": t} for t in sorted(kept.values())]


def _agreements(k: int) -> list[float]:
    """The agreement thresholds that differ on ``k`` samples (shares c/k)."""
    kept: dict[float, float] = {}
    for a in AGREEMENT:
        kept.setdefault(math.ceil(a * k - 1e-9) / k, a)
    return sorted(kept.values())


def first_stage_draws(n: int) -> int:
    """The most samples a grid recipe's first stage draws with pools of ``n``: how many
    samples of each pool ``tune`` needs the model's P(yes) for."""
    return max((s[0] for s in SCHEDULES if s[-1] <= n), default=0)


def has_p_yes(pools: Sequence[PoolRecord] | Pools, first: int) -> bool:
    """Whether every pool carries P(yes) for its first ``first`` samples."""
    groups = by_temperature(pools).values()
    return first > 0 and all(
        STAT in s.stats for ps in groups for p in ps for s in p.samples[:first]
    )


def frontier(points: Sequence[Point]) -> list[Point]:
    """The Pareto frontier: the points no other point beats on accuracy at no more tokens,
    cheapest first."""
    out: list[Point] = []
    for p in sorted(points, key=lambda p: (p.tokens, -p.accuracy)):
        if not out or p.accuracy > out[-1].accuracy + 1e-12:
            out.append(p)
    return out


def best_fixed(points: Sequence[Point]) -> Point:
    """The most accurate fixed rule (ties: fewer tokens)."""
    fixed = [p for p in points if p.kind == "fixed"]
    if not fixed:
        raise ValueError("no fixed strategy to compare with")
    return min(fixed, key=lambda p: (-p.accuracy, p.tokens))


def choose(
    recipes: Sequence[Point], target: float | None = None, max_tokens: float | None = None
) -> Point:
    """The plain fit, without a margin for noise. With ``max_tokens``: the most accurate
    recipe within it (ties: fewer tokens). Otherwise the cheapest recipe reaching accuracy
    ``target`` (when none does, the most accurate one)."""
    if not recipes:
        raise ValueError("no recipes to choose from")
    if max_tokens is not None:
        return min(_within(recipes, max_tokens), key=lambda p: (-p.accuracy, p.tokens))
    if target is not None:
        reaching = [p for p in recipes if p.accuracy >= target - 1e-9]
        if reaching:
            return min(reaching, key=lambda p: (p.tokens, -p.accuracy))
    return min(recipes, key=lambda p: (-p.accuracy, p.tokens))


def _within(recipes: Sequence[Point], max_tokens: float) -> list[Point]:
    within = [p for p in recipes if p.tokens <= max_tokens]
    if not within:
        cheapest = min(p.tokens for p in recipes)
        raise ValueError(
            f"no recipe fits {max_tokens:g} tokens per problem; the cheapest uses "
            f"{cheapest:.0f}: raise --max-tokens-per-problem"
        )
    return within


@dataclass(frozen=True)
class Bootstrap:
    """The fit's margin for sampling noise: a paired bootstrap over the development
    problems. Each of ``draws`` resamples (``count`` problems drawn with replacement by a
    numpy Generator seeded with ``seed``) weighs every candidate's per-problem correctness
    by the same counts. Without a token budget a recipe qualifies when, in at least
    ``confidence`` of the draws, its accuracy is not below the reference's (the best fixed
    rule's) by more than ``tolerance`` (a share, 0.02 = 2 points); with a budget the
    recipes are ranked by their accuracy's ``1 - confidence`` quantile over the draws."""

    draws: int = 1000
    confidence: float = 0.8
    tolerance: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(
                f"the fit's confidence must be in (0, 1), got {self.confidence} (--fit-confidence)"
            )
        if not 0 <= self.tolerance < 1:
            raise ValueError(
                f"the fit's tolerance must be a share in [0, 1), e.g. 0.02 for 2 points, got "
                f"{self.tolerance} (--fit-tolerance)"
            )
        if self.draws < 1:
            raise ValueError(
                f"the fit needs at least 1 bootstrap draw, got {self.draws} (--fit-draws)"
            )

    def describe(self) -> str:
        return (
            f"paired bootstrap, {self.draws} draws (seed {self.seed}), confidence "
            f"{self.confidence:g}, tolerance {self.tolerance:g}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": "bootstrap",
            "draws": self.draws,
            "confidence": self.confidence,
            "tolerance": self.tolerance,
            "seed": self.seed,
        }


DEFAULT_FIT = Bootstrap()
"""``tune``'s and ``ponder tune``'s margin unless told otherwise (docs/EVALS.md, step 5)."""


def resampled_accuracy(points: Sequence[Point], fit: Bootstrap) -> np.ndarray:
    """(points x draws): each point's mean correctness over the problems of each bootstrap
    resample; every point is weighed by the same resamples of the problems of
    ``points[0]``."""
    ids = sorted(points[0].per_problem)
    if not ids:
        raise ValueError("no development problems to resample")
    for p in points:
        if set(p.per_problem) != set(ids):
            raise ValueError(f"{p.label} was measured on other problems than {points[0].label}")
    correct = np.array([[p.per_problem[i] for i in ids] for p in points])
    counts = np.random.default_rng(fit.seed).multinomial(
        len(ids), np.full(len(ids), 1 / len(ids)), size=fit.draws
    )
    return np.asarray(correct @ counts.T / len(ids))


def choose_robust(
    recipes: Sequence[Point],
    reference: Point,
    fit: Bootstrap,
    max_tokens: float | None = None,
) -> tuple[Point, float]:
    """The fit with a margin for noise (``Bootstrap``), and the chosen recipe's statistic.
    Without ``max_tokens``: the cheapest recipe whose accuracy is not below ``reference``'s
    by more than ``fit.tolerance`` in at least ``fit.confidence`` of the draws (ties: the
    larger share of draws, then more accurate); when none qualifies, the one with the
    largest share (ties: fewer tokens); the statistic is that share. With ``max_tokens``:
    within it, the recipe with the largest ``1 - fit.confidence`` quantile of accuracy over
    the draws (ties: more accurate, then fewer tokens); the statistic is that quantile."""
    if not recipes:
        raise ValueError("no recipes to choose from")
    if max_tokens is not None:
        within = _within(recipes, max_tokens)
        low = np.quantile(resampled_accuracy(within, fit), 1 - fit.confidence, axis=1)
        best = min(
            range(len(within)), key=lambda i: (-low[i], -within[i].accuracy, within[i].tokens)
        )
        return within[best], float(low[best])
    acc = resampled_accuracy([reference, *recipes], fit)
    share = np.mean(acc[1:] - acc[0] >= -fit.tolerance - 1e-9, axis=1)
    ok = [i for i in range(len(recipes)) if share[i] >= fit.confidence]
    if ok:
        best = min(ok, key=lambda i: (recipes[i].tokens, -share[i], -recipes[i].accuracy))
    else:
        best = min(range(len(recipes)), key=lambda i: (-share[i], recipes[i].tokens))
    return recipes[best], float(share[best])


def split(
    problem_ids: Iterable[str], dev_fraction: float = 0.5, seed: int = 0
) -> tuple[list[str], list[str]]:
    """(development ids, held-back ids): the sorted ids in a ``seed``-ed random order, the
    first ``round(dev_fraction * count)`` (at least one) for development."""
    if not 0 < dev_fraction < 1:
        raise ValueError(f"dev fraction must be in (0, 1), got {dev_fraction}")
    ids = sorted(set(problem_ids))
    if len(ids) < 2:
        raise ValueError(f"need at least 2 problems to split, got {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    cut = min(max(1, round(dev_fraction * len(ids))), len(ids) - 1)
    dev = sorted(ids[i] for i in order[:cut])
    held = sorted(ids[i] for i in order[cut:])
    return dev, held


@dataclass(frozen=True)
class Tuning:
    """What ``tune`` found: every point on the development problems, the frontier, the
    fitted recipe and the best fixed rule there, and both on the held-back problems;
    ``temperatures``: those the pools were drawn at; ``no_more``: whether the grid had
    recipes reading the model's P(yes); ``confidence``: whether it had recipes ending in
    ``confidence-vote``; ``fit``: the noise margin the fit kept (None: the
    plain fit); ``fit_statistic``: with a margin, the chosen recipe's share of bootstrap
    draws not below the best fixed rule (no budget) or its accuracy quantile (budget);
    ``budget``: the ``max_tokens_per_problem`` fitted within; ``given``: the recipe was
    given, not fitted here (``assess``: every problem is held back, there is no
    development split)."""

    dev_ids: tuple[str, ...]
    held_ids: tuple[str, ...]
    dev_points: tuple[Point, ...]
    frontier: tuple[Point, ...]
    chosen: Point
    best_fixed: Point
    held_recipe: Point | None
    held_fixed: Point | None
    objective: str
    temperatures: tuple[float | None, ...] = (None,)
    no_more: bool = False
    fit: Bootstrap | None = None
    fit_statistic: float | None = None
    budget: float | None = None
    confidence: bool = False
    given: bool = False

    @property
    def recipe(self) -> Recipe:
        assert self.chosen.recipe is not None
        return self.chosen.recipe


def _only(pools: Pools, ids: Sequence[str]) -> dict[float | None, list[PoolRecord]]:
    keep = set(ids)
    return {t: [p for p in ps if p.problem_id in keep] for t, ps in pools.items()}


def tune(
    pools: Sequence[PoolRecord] | Pools,
    dev_ids: Sequence[str],
    held_ids: Sequence[str],
    max_tokens_per_problem: float | None = None,
    recipes: Sequence[Recipe] | None = None,
    subsets: int = 200,
    rules: Sequence[EstimatorSpec] | None = None,
    fit: Bootstrap | None = DEFAULT_FIT,
    confidence: bool = True,
) -> Tuning:
    """Fit a recipe on the ``dev_ids`` pools and measure it on the ``held_ids`` pools;
    ``rules``: the fixed pool rules to compare with (``fixed_points``' default); ``fit``:
    the margin for noise (``choose_robust``), None for the plain fit (``choose``). The grid
    (``recipe_grid``) covers every temperature of ``pools`` and reads ``no_more`` when every
    pool carries P(yes) for the samples stage 0 may draw, and, unless ``confidence`` is
    False (``confidence_settings``), ends in ``confidence-vote`` too when every sample
    carries its DeepConf confidences."""
    grouped = by_temperature(pools)
    dev = _only(grouped, dev_ids)
    held = _only(grouped, held_ids)
    if not any(dev.values()):
        raise ValueError("no pools for the development problems")
    fixed, sims, ask = candidates(
        dev, min(p.n for ps in grouped.values() for p in ps), recipes, subsets, rules, confidence
    )
    temps = tuple(grouped)
    budget = max_tokens_per_problem
    chosen, top, statistic = fit_recipe(sims, fixed, budget, fit)
    objective = _objective(top, budget, fit)
    held_recipe = held_fixed = None
    if any(held.values()):
        assert chosen.recipe is not None
        held_recipe = simulate(chosen.recipe, held, "auto (fitted)")
        held_fixed = _fixed_again(top, held, rules, subsets)
    return Tuning(
        tuple(sorted(set(dev_ids))),
        tuple(sorted(set(held_ids))),
        tuple(fixed + sims),
        tuple(frontier(fixed + sims)),
        chosen,
        top,
        held_recipe,
        held_fixed,
        objective,
        temps,
        ask,
        fit,
        statistic,
        budget,
        any(p.recipe is not None and p.recipe.needs_confidences for p in sims),
    )


def candidates(
    pools: Pools,
    n: int,
    recipes: Sequence[Recipe] | None = None,
    subsets: int = 200,
    rules: Sequence[EstimatorSpec] | None = None,
    confidence: bool = True,
) -> tuple[list[Point], list[Point], bool]:
    """(fixed points, recipe points, whether the grid reads ``no_more``) on ``pools``:
    ``recipes``, or the grid for pools of ``n`` over their scorers and temperatures (with
    the ``confidence-vote`` final rule when ``confidence`` and every sample carries its
    confidences)."""
    every = [p for ps in pools.values() for p in ps]
    scorers = sorted({name for p in every for s in p.samples for name in s.scores})
    ask = has_p_yes(pools, first_stage_draws(n))
    grid = (
        list(recipes)
        if recipes is not None
        else recipe_grid(n, scorers, tuple(pools), ask, confidence and has_confidences(pools))
    )
    fixed = fixed_points(pools, rules, subsets=subsets)
    return fixed, [simulate(r, pools, f"auto[{r.describe()}]") for r in grid], ask


def fit_recipe(
    sims: Sequence[Point],
    fixed: Sequence[Point],
    budget: float | None,
    fit: Bootstrap | None,
) -> tuple[Point, Point, float | None]:
    """(chosen recipe, best fixed rule, the fit's statistic): the best fixed rule (within
    ``budget`` when one fits it) and the recipe ``choose`` (``fit`` None) or
    ``choose_robust`` picks against it."""
    top = best_fixed(fixed)
    if budget is not None:
        top = best_fixed([p for p in fixed if p.tokens <= budget] or fixed)
    if fit is None:
        return choose(sims, top.accuracy, budget), top, None
    chosen, statistic = choose_robust(sims, top, fit, budget)
    return chosen, top, statistic


def _objective(top: Point, budget: float | None, fit: Bootstrap | None) -> str:
    """What the fit optimised, in words."""
    if fit is None:
        if budget is not None:
            return f"most accurate within {budget:g} tokens per problem"
        return f"fewest tokens at the best fixed rule's accuracy ({top.label})"
    if budget is not None:
        return (
            f"within {budget:g} tokens per problem, the largest {1 - fit.confidence:.0%} "
            f"quantile of accuracy over bootstrap resamples ({fit.describe()})"
        )
    return (
        f"fewest tokens while not below the best fixed rule ({top.label}) by more than "
        f"{fit.tolerance:.1%} in at least {fit.confidence:.0%} of bootstrap resamples "
        f"({fit.describe()})"
    )


def _fixed_again(
    point: Point, pools: Pools, rules: Sequence[EstimatorSpec] | None, subsets: int
) -> Point:
    """The fixed rule of ``point`` (same rule, k, temperature) on other pools."""
    group = list(pools.get(point.temperature, ()))
    spec = [e for e in (rules or _specs(group)) if e.label == point.rule]
    return fixed_points({point.temperature: group}, spec, [point.k], subsets)[0]


def _specs(pools: Sequence[PoolRecord]) -> list[EstimatorSpec]:
    scorers = sorted({name for p in pools for s in p.samples for name in s.scores})
    return default_estimators(scorers)


def assess(
    recipe: Recipe,
    pools: Sequence[PoolRecord] | Pools,
    rules: Sequence[EstimatorSpec] | None = None,
    subsets: int = 200,
) -> Tuning:
    """A given recipe (fitted elsewhere, e.g. on another task) against every fixed rule on
    all the pools' problems, which count as held back. The best fixed rule is picked on
    these same problems, so the comparison favours it."""
    grouped = by_temperature(pools)
    if not any(grouped.values()):
        raise ValueError("no pools to assess the recipe on")
    ids = tuple(sorted({p.problem_id for ps in grouped.values() for p in ps}))
    fixed = fixed_points(grouped, rules, subsets=subsets)
    point = simulate(recipe, grouped, "auto (given recipe)")
    top = best_fixed(fixed)
    return Tuning(
        (),
        ids,
        tuple([*fixed, point]),
        tuple(frontier([*fixed, point])),
        point,
        top,
        point,
        top,
        "none: the recipe was given, not fitted here",
        tuple(grouped),
        recipe.asks > 0,
        given=True,
    )
