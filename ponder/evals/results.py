"""docs/RESULTS.md and its plots, regenerated from committed results without a model.

``ponder results build`` reads every ``results/*.jsonl.gz`` (``ponder.evals.export``),
estimates every pool rule at k = 1, 2, 4, ... n (``ponder.evals.estimators``), summarises
every cell (``ponder.evals.metrics``) and writes the Markdown page and PNG plots. Runs are
grouped by task, model, task seed and (for pools) the pool's settings and scorers; runs that
differ only in the task's options (e.g. arithmetic levels 1-5) are one group, reported as
a whole and per level. ``results/INTRO.md``, when present, opens the page (commands, which
split is which).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ponder.evals.estimators import (
    ADAPTIVE,
    Estimate,
    default_estimators,
    estimate,
    parse_estimators,
)
from ponder.evals.metrics import Summary, busy_seconds, fit_power_law, summarize
from ponder.evals.plots import PALETTE, Series, coverage_plot, estimate_series, line_plot
from ponder.evals.report import pool_verifier_quality
from ponder.evals.store import CellRecord, PoolRecord, Store
from ponder.strategies import canonical, names

_LEVEL_RE = re.compile(r"/L(\d+)/")


@dataclass
class Group:
    """Runs of one task, model and task seed reported together."""

    title: str
    slug: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    pools: dict[str, list[PoolRecord]] = field(default_factory=dict)
    scorers: dict[str, list[str]] = field(default_factory=dict)
    cells: dict[str, list[CellRecord]] = field(default_factory=lambda: defaultdict(list))
    cell_scorers: dict[str, str | None] = field(default_factory=dict)
    pool_configs: dict[str, dict[str, Any]] = field(default_factory=dict)


def pool_title(cfg: dict[str, Any]) -> str:
    """What tells one pool run's pools from another's in a group: the sampling, the
    scorers with their options, and where rescored samples came from."""
    pool = cfg.get("pool", {})
    parts = [f"temperature {pool.get('temperature')}, at most {pool.get('max_tokens')} tokens"]
    scorers = [
        name + ("[" + ";".join(f"{k}={v}" for k, v in sorted(opts.items())) + "]" if opts else "")
        for name, opts in sorted(cfg.get("scorers", {}).items())
    ]
    parts.append(f"scorers {', '.join(scorers)}" if scorers else "no scorers")
    if cfg.get("samples_from"):
        parts.append(f"the samples of run `{cfg['samples_from']}`")
    scorer_model = cfg.get("scorer_model", {}).get("name")
    if scorer_model and scorer_model != _model({"config": cfg}):
        parts.append(f"scored by {scorer_model}")
    return "; ".join(parts)


def _model(run: dict[str, Any]) -> str:
    model = run["config"].get("model", {})
    return str(model.get("name") if isinstance(model, dict) else model)


def groups(store: Store) -> list[Group]:
    """The store's runs grouped as described in the module docstring."""
    out: dict[tuple[str, str, int], Group] = {}
    for run in store.runs():
        cfg = run["config"]
        key = (run["task"], _model(run), int(cfg.get("task_seed", 0)))
        slug = re.sub(r"[^a-z0-9]+", "-", f"{key[0]}-{key[1]}-seed{key[2]}".lower()).strip("-")
        group = out.setdefault(key, Group(f"{key[0]} · {key[1]} · task seed {key[2]}", slug))
        group.runs.append(run)
        if cfg.get("mode") == "pool":
            # Pools are estimated together only when drawn and scored alike: the same
            # settings, scorers with the same options, scored by the same model.
            scored = {k: cfg[k] for k in ("scorers", "scorer_model") if k in cfg}
            pool_key = json.dumps({"pool": cfg["pool"], **scored}, sort_keys=True, default=str)
            group.pools.setdefault(pool_key, []).extend(store.pools(run["run_id"]))
            group.scorers[pool_key] = sorted(cfg.get("scorers", {}))
            group.pool_configs[pool_key] = cfg
        else:
            for cell in store.cells(run["run_id"]):
                group.cells[f"{cell.strategy}\t{cell.budget}"].append(cell)
                group.cell_scorers[cell.strategy] = cfg.get("scorer")
    return list(out.values())


def level_of(problem_id: str) -> int | None:
    """The arithmetic level in a problem id (``arithmetic/L3/...``), else None."""
    match = _LEVEL_RE.search(problem_id)
    return int(match.group(1)) if match else None


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}"


def _interval(lo_hi: tuple[float, float]) -> str:
    return f"{100 * lo_hi[0]:.1f}–{100 * lo_hi[1]:.1f}"


def estimate_table(estimates: Sequence[Estimate]) -> list[str]:
    """Markdown rows: rule, k, accuracy, Wilson interval, Monte Carlo SE, cost."""
    lines = [
        "| rule | k | problems | accuracy % | 95% Wilson | MC s.e. | tokens/problem | "
        "scorer calls | how |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for e in sorted(estimates, key=lambda e: (e.label, e.k)):
        lines.append(
            f"| {e.label} | {e.k} | {e.problems} | {_pct(e.accuracy)} | {_interval(e.wilson)} | "
            f"{100 * e.se:.2f} | {e.tokens_per_problem:,.0f} | {e.scorer_calls_per_problem:g} | "
            f"{'exact' if e.exact else 'subsets'} |"
        )
    return lines


def verifier_table(quality: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: each pool scorer as a verifier of the hidden grader's verdicts
    (``ponder.scoring.quality.verifier_report`` per scorer)."""

    def num(x: Any, digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    lines = [
        "| scorer | samples | correct % | AUROC | FPR at ≥ 0.5 | FNR at ≥ 0.5 | "
        "precision at ≥ 0.5 | best threshold (TPR / FPR) | resampling ceiling | k_stop |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, q in sorted(quality.items()):
        best = q["best_threshold"]
        youden = (
            "-"
            if best is None
            else f"{best['threshold']:.3g} ({best['tpr']:.2f} / {best['fpr']:.2f})"
        )
        res = q["resampling"]
        lines.append(
            f"| {name} | {q['n']:,} | {_pct(q['base_accuracy'])} | {num(q['auroc'])} | "
            f"{num(q['false_positive_rate'])} | {num(q['false_negative_rate'])} | "
            f"{num(q['precision'])} | {youden} | {_pct(res['asymptote'])} | "
            f"{res['k_stop'] if res['helps'] else 'never helps'} |"
        )
    return lines


def cell_rows(cells: dict[str, list[CellRecord]]) -> list[tuple[str, int, Summary]]:
    out = []
    for key, group in cells.items():
        label, budget = key.split("\t")
        out.append((label, int(budget), summarize(group)))
    return sorted(out, key=lambda r: (r[0], r[1]))


def cell_table(rows: Sequence[tuple[str, int, Summary]]) -> list[str]:
    lines = [
        "| strategy | budget | problems | accuracy % | 95% Wilson | tokens/problem | "
        "s/problem |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for label, budget, s in rows:
        lines.append(
            f"| {label} | {budget} | {s.problems} | {_pct(s.accuracy)} | {_interval(s.wilson)} | "
            f"{s.tokens_per_problem:,.0f} | {s.seconds_per_problem:.1f} |"
        )
    return lines


def accuracy_plot(
    title: str, estimates: Sequence[Estimate], cells: Sequence[tuple[str, int, Summary]]
) -> bytes:
    """Accuracy against tokens per problem: pool rules as lines over k, cells as points
    (in the colour of the pool rule of the same name, if any), all with 95% Wilson bars."""
    series = estimate_series(estimates, " (pool)")
    colors = {e: s.color for e, s in zip(sorted({e.label for e in estimates}), series, strict=True)}
    for label in sorted({c[0] for c in cells}):
        rows = sorted((c for c in cells if c[0] == label), key=lambda c: c[1])
        color = colors.setdefault(label, PALETTE[len(colors) % len(PALETTE)])
        series.append(
            Series(
                f"{label} (cells)",
                tuple((s.tokens_per_problem, s.accuracy, *s.wilson) for _, _, s in rows),
                color,
                line=len(rows) > 1,
            )
        )
    return line_plot(title, series, "tokens generated per problem", "accuracy", ylim=(0.0, 1.0))


_NOT_SELECTION = {"temperature", "top_p", "top_k", "min_p", "max_tokens", "seed"}
_RULE_RE = re.compile(r"^([\w.-]+)(?:\[(.*)\])?(?:@([\w.-]+))?$")


def rule_key(
    label: str, scorer: str | None = None, pool: bool = False
) -> tuple[str, tuple[str, ...], str | None]:
    """What identifies a selection rule in a label: the strategy's canonical name, its
    settings other than sampling ones, and its scorer (``@name``, else ``scorer``).

    confidence-vote's ``mode`` is part of the rule, and its default differs by where the
    label comes from: a pool estimates it offline, a cell runs it online (the strategy's
    default), so a plain ``confidence-vote`` cell is never matched with the pool's figure."""
    match = _RULE_RE.match(label)
    if not match:
        return (label, (), scorer)
    name, body, at = match.groups()
    name = canonical(name) if name in names(with_aliases=True) else name
    pairs = ["=".join(x.strip() for x in p.split("=", 1)) for p in (body or "").split(";")]
    pairs = [p for p in pairs if p]
    if name == "confidence-vote" and not any(p.startswith("mode=") for p in pairs):
        pairs.append("mode=" + ("offline" if pool else "online"))
    settings = tuple(sorted(p for p in pairs if p.split("=")[0] not in _NOT_SELECTION))
    return (name, settings, at or scorer)


def comparison(
    group: Group,
    estimates: Sequence[Estimate],
    cells: Sequence[tuple[str, int, Summary]],
    subsets: int = 200,
    seed: int = 0,
) -> list[str]:
    """Cells of sampling strategies next to the pool's estimate of the same rule at
    ``k = budget``: accuracies, whether the estimate is inside the cell's Wilson interval,
    and the cost of the whole matched grid both ways. With one pool run in the group, a
    cell run on part of its problems is compared with the estimate on those problems."""
    by_key = {(rule_key(e.label, pool=True), e.k): e for e in estimates}
    [only] = group.pools if len(group.pools) == 1 else [None]
    rows, matched, sizes, inside_count = [], [], [], 0
    for label, budget, summary in cells:
        scorer = group.cell_scorers.get(label)
        e = by_key.get((rule_key(label, scorer), budget)) or by_key.get((rule_key(label), budget))
        if e is None:
            continue
        mine = {c.problem_id for c in group.cells[f"{label}\t{budget}"]}
        chosen = [p for p in group.pools[only] if p.problem_id in mine] if only else []
        if only and chosen and len({p.problem_id for p in chosen}) < e.problems:
            # a cell on part of the pool's problems (a grid still running) is compared
            # with the pool's estimate on exactly those problems
            [spec] = parse_estimators([e.label], group.scorers[only])
            [e] = estimate(chosen, [spec], ks=[budget], subsets=subsets, seed=seed)
        matched.append((label, budget))
        sizes.append(len(mine))
        inside = summary.wilson[0] <= e.accuracy <= summary.wilson[1]
        inside_count += inside
        rows.append(
            f"| {label} | {budget} | {e.label} | {_pct(summary.accuracy)} "
            f"({_interval(summary.wilson)}) | {_pct(e.accuracy)} ± {100 * e.se:.2f} | "
            f"{'yes' if inside else '**no**'} | {summary.tokens_per_problem:,.0f} | "
            f"{e.tokens_per_problem:,.0f} |"
        )
    if not rows:
        return []
    cell_records = [c for label, budget in matched for c in group.cells[f"{label}\t{budget}"]]
    # rescored pools (``samples_from``) hold samples another run drew: not drawn twice
    pools = [
        p
        for key, ps in group.pools.items()
        if not group.pool_configs[key].get("samples_from")
        for p in ps
    ]
    cell_tokens = sum(c.tokens_generated for c in cell_records)
    pool_tokens = sum(int(p.usage.get("tokens_generated", 0)) for p in pools)
    cell_seconds = sum(c.seconds for c in cell_records)
    pool_seconds = sum(p.seconds for p in pools)
    cell_wall = busy_seconds([(c.finished - c.seconds, c.finished) for c in cell_records])
    pool_wall = busy_seconds([(p.finished - p.seconds, p.finished) for p in pools])
    budgets = sorted({b for _, b in matched})
    strategies = sorted({label for label, _ in matched})
    counts = sorted(set(sizes))
    problems = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    verdict = (
        f"The pool's estimate is inside the cell's interval in {inside_count} of {len(rows)} cells."
    )
    table = [
        "### Pool estimates vs cells run per budget",
        "",
        "| cell | budget | pool rule | cells accuracy % (95% Wilson) | pool estimate % ± s.e. "
        "| inside | cells tokens/problem | pool tokens/problem at k |",
        "|---|---:|---|---|---|---|---:|---:|",
        *rows,
        "",
    ]
    if only and counts[-1] < len({p.problem_id for p in group.pools[only]}):
        # cells run on a part of the pool's problems only (not a grid over them): each is
        # checked against the estimate on its own problems, and their cost is not set
        # against the whole pool's
        return [*table, verdict, ""]
    return [
        *table,
        f"{verdict} The matched grid is {len(matched)} cells ({len(strategies)} "
        f"{'strategy' if len(strategies) == 1 else 'strategies'}, "
        f"budgets {', '.join(map(str, budgets))}; {problems} problems each), against "
        f"{len(pools)} pools.",
        "",
        "| path | tokens generated | wall time | cell- or pool-seconds |",
        "|---|---:|---:|---:|",
        f"| cells, one run per strategy and budget | {cell_tokens:,} | {_duration(cell_wall)} "
        f"| {cell_seconds:,.0f} |",
        f"| pools, every rule estimated | {pool_tokens:,} | {_duration(pool_wall)} "
        f"| {pool_seconds:,.0f} |",
        f"| cells ÷ pools | {_ratio(cell_tokens, pool_tokens)} | "
        f"{_ratio(cell_wall, pool_wall)} | {_ratio(cell_seconds, pool_seconds)} |",
        "",
        "Wall time is the time at least one cell (or pool) of the grid was in flight, from "
        "the start and end each one records: work run side by side counts once, and the "
        "gaps between the parts of a run resumed later do not count (nor does loading the "
        "model). Cell- and pool-seconds are summed over each one's own time.",
        "",
    ]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b else "–"


def matched(
    group: Group,
    cells: Sequence[tuple[str, int, Summary]],
    pool_key: str,
    specs: Sequence[Any],
    estimates: Sequence[Estimate],
    subsets: int,
    seed: int,
) -> list[str]:
    """Every cell row against one pool's rules *on the cell's own problems*:
    self-consistency@n (``n`` the pool size) and the most accurate rule at n (coverage, an
    oracle, aside), and self-consistency at ``k`` = the cell's budget (so a search at
    budget 4 is also set against 4 samples' vote, at about its own cost); the paired
    accuracy differences (cell minus self-consistency, mean over problems with a 95% normal
    interval) and the tokens. A cell run on part of the problems is then compared on
    exactly those. ``estimates``: the pool's own, over all its problems (reused for a cell
    that ran them all; other problem sets are estimated once each, at the ks they need)."""
    pools = group.pools[pool_key]
    if not pools:
        return []
    n = min(p.n for p in pools)
    have = frozenset(p.problem_id for p in pools)
    at: dict[frozenset[str], dict[int, list[Estimate]]] = {have: defaultdict(list)}
    for e in estimates:
        at[have][e.k].append(e)
    rows = []
    for label, budget, _ in cells:
        mine = [c for c in group.cells[f"{label}\t{budget}"] if c.problem_id in have]
        if not mine:
            continue
        problems = frozenset(c.problem_id for c in mine)
        known = at.setdefault(problems, defaultdict(list))
        missing = [k for k in sorted({n, budget}) if k <= n and k not in known]
        if missing:
            chosen = [p for p in pools if p.problem_id in problems]
            for e in estimate(chosen, specs, ks=missing, subsets=subsets, seed=seed):
                known[e.k].append(e)
        sc = next((e for e in known[n] if e.strategy == "self-consistency"), None)
        rules = [e for e in known[n] if e.strategy != "coverage"]
        if sc is None or not rules:
            continue
        best = max(rules, key=lambda e: (e.accuracy, -e.tokens_per_problem))
        summary = summarize(mine)
        per_cell: dict[str, list[float]] = defaultdict(list)
        for c in mine:
            per_cell[c.problem_id].append(float(c.correct))
        share = summary.tokens_per_problem / sc.tokens_per_problem
        at_budget = next((e for e in known[budget] if e.strategy == "self-consistency"), None)
        if budget == n:
            same = f"as @{n} | | "
        elif at_budget is None:
            same = "- | | "
        else:
            same = (
                f"{_pct(at_budget.accuracy)} | {_paired(per_cell, at_budget)} | "
                f"{at_budget.tokens_per_problem:,.0f} "
            )
        rows.append(
            f"| {label} | {budget} | {len(problems)} | {_pct(summary.accuracy)} "
            f"({_interval(summary.wilson)}) | {_pct(sc.accuracy)} ({_interval(sc.wilson)}) | "
            f"{_paired(per_cell, sc)} | "
            f"{summary.tokens_per_problem:,.0f} / {sc.tokens_per_problem:,.0f} "
            f"({100 * share:.0f}%) | {same}| {best.label} {_pct(best.accuracy)} |"
        )
    if not rows:
        return []
    return [
        f"Cells against the pool on the same problems (the pool's rules at k = {n}, and "
        "self-consistency at k = the cell's budget, estimated on exactly the problems each "
        "cell ran; Δ is the cell's accuracy minus self-consistency's, paired by problem, "
        "with a 95% normal interval):",
        "",
        f"| cell | budget | problems | cell accuracy % | self-consistency@{n} % | Δ points "
        f"| tokens/problem: cell / pool (share) | self-consistency@budget % | Δ points "
        f"| its tokens/problem | best rule@{n} % |",
        "|---|---:|---:|---|---|---|---|---|---|---:|---|",
        *rows,
        "",
    ]


def _paired(per_cell: dict[str, list[float]], e: Estimate) -> str:
    """Cell minus estimate, mean over problems with a 95% normal interval, in points."""
    diffs = np.array([np.mean(v) - e.per_problem[pid] for pid, v in sorted(per_cell.items())])
    half = 1.96 * float(diffs.std(ddof=1)) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0
    return f"{100 * diffs.mean():+.1f} ± {100 * half:.1f}"


def _by_level(pools: Sequence[PoolRecord]) -> dict[int, list[PoolRecord]]:
    out: dict[int, list[PoolRecord]] = defaultdict(list)
    for p in pools:
        level = level_of(p.problem_id)
        if level is not None:
            out[level].append(p)
    return dict(sorted(out.items()))


def page_estimators(scorers: Sequence[str]) -> list[Any]:
    """The page's default rules: ``default_estimators`` (what ``ponder report`` and ``ponder
    tune`` use); next to the plain vote, self-consistency without the votes of samples cut
    off by the token cap (``unfinished=drop``) and the two adaptive votes a pool can replay
    (``ADAPTIVE``): early-stop-vote at its defaults (ESC: windows of 5, stop when one agrees)
    and with ``window=1, rule=beta`` (Adaptive-Consistency: stop after any sample once the
    leader is 95% likely to beat the runner-up), budget ``k`` the most they may draw."""
    specs = default_estimators(scorers)
    at = next(i for i, s in enumerate(specs) if s.strategy == "self-consistency") + 1
    extra = parse_estimators(PAGE_EXTRA_RULES, [])
    return [*specs[:at], *extra, *specs[at:]]


PAGE_EXTRA_RULES = (
    "self-consistency[unfinished=drop]",
    "early-stop-vote",
    "early-stop-vote[window=1;rule=beta]",
)


def group_section(
    group: Group, images: Path, image_prefix: str, subsets: int, seed: int, rules: str | None
) -> list[str]:
    """The Markdown of one group; writes its plots into ``images``."""
    lines = [f"## {group.title}", ""]
    for run in group.runs:
        cfg = run["config"]
        options = ", ".join(f"{k}={v}" for k, v in sorted(cfg.get("task_options", {}).items()))
        what = (
            f"pool n={cfg['pool']['n']}, scorers {', '.join(cfg.get('scorers', {})) or 'none'}"
            if cfg.get("mode") == "pool"
            else "cells: " + ", ".join(cfg.get("strategies", {}))
        )
        lines.append(
            f"- run `{run['run_id']}` ({options}): {what}; ponder {cfg.get('ponder_version')}"
        )
    lines.append("")
    cells = cell_rows(group.cells)
    all_estimates: list[Estimate] = []
    own: dict[str, tuple[list[Any], list[Estimate]]] = {}  # each pool's rules and estimates
    several = len(group.pools) > 1
    for index, (pool_key, pools) in enumerate(group.pools.items()):
        scorers = group.scorers[pool_key]
        slug = f"{group.slug}-pool{index + 1}" if several else group.slug
        specs = parse_estimators(rules, scorers) if rules else page_estimators(scorers)
        n = min(p.n for p in pools)
        problems = len({p.problem_id for p in pools})
        seeds = len({p.seed for p in pools})
        estimates = estimate(pools, specs, subsets=subsets, seed=seed)
        own[pool_key] = (specs, estimates)
        if index:  # a second pool's rules are told apart in the plot and the comparison
            estimates = [replace(e, label=f"{e.label} (pool {index + 1})") for e in estimates]
        all_estimates += estimates
        lines += [
            f"### Pool of {n}: {problems} problems × {seeds} seed(s)"
            + (f" ({pool_title(group.pool_configs[pool_key])})" if several else ""),
            "",
            f"Every rule estimated from the same samples at k = 1, 2, 4, … {n} "
            f"({subsets} random k-subsets where not exact; docs/EVALS.md).",
            "",
            *estimate_table(estimates),
            "",
        ]
        coverage = [e for e in estimates if e.strategy == "coverage"]
        fit = fit_power_law([e.k for e in coverage], [e.accuracy for e in coverage])
        if fit is not None:
            lines += [
                f"Coverage power law (Brown et al. 2024): coverage(k) ≈ exp({fit.a:.3f}·"
                f"k^{fit.b:.3f}), R² {fit.r2:.3f} over {fit.points} points.",
                "",
            ]
        name = f"{image_prefix}{slug}-coverage.png"
        (images / name).write_bytes(coverage_plot(f"Coverage vs k: {group.title}", coverage))
        lines += [f"![coverage vs k](images/{name})", ""]
        quality = pool_verifier_quality(pools)
        if quality:
            lines += [
                'Each scorer as a verifier of the samples (docs/SCORING.md, "How good is a '
                'verifier?"): AUROC is the chance that a correct sample outscores an '
                'incorrect one; the resampling ceiling is the accuracy that "draw until '
                'the scorer accepts (≥ 0.5)" tends to however many samples are drawn, '
                "each problem with its own base accuracy (Inference Scaling fLaws), and "
                "k_stop the draw after which one more gains under a point.",
                "",
                *verifier_table(quality),
                "",
            ]
        levels = _by_level(pools)
        if len(levels) > 1:
            # the adaptive replays (the slowest to estimate) are left out of the per-level
            # and per-cell tables, which re-estimate every rule on each problem set
            lines += _level_table(levels, _selection_only(specs), n, subsets, seed)
    if cells:
        lines += [
            "### Cells (each strategy run at each budget)",
            "",
            *cell_table(cells),
            "",
            "s/problem is each cell's own wall time from start to finish; cells run side by "
            "side (`--concurrency`) share the machine, so it is not a throughput.",
            "",
        ]
        cell_levels = sorted(
            {lv for rows in group.cells.values() for c in rows if (lv := level_of(c.problem_id))}
        )
        if len(cell_levels) > 1:
            lines += _cell_level_table(group.cells, cell_levels)
    if all_estimates and cells:
        first = next(iter(group.pools))
        first_specs, first_estimates = own[first]
        lines += matched(
            group,
            cells,
            first,
            _selection_only(first_specs),
            _selection_only(first_estimates),
            subsets,
            seed,
        )
        lines += comparison(group, all_estimates, cells, subsets, seed)
    if all_estimates or cells:
        name = f"{image_prefix}{group.slug}-accuracy.png"
        (images / name).write_bytes(
            accuracy_plot(f"Accuracy vs tokens: {group.title}", all_estimates, cells)
        )
        lines += [f"![accuracy vs tokens](images/{name})", ""]
    return lines


def _selection_only(rules: Sequence[Any]) -> list[Any]:
    """The rules (estimator specs or their estimates) that are not adaptive replays."""
    return [r for r in rules if r.strategy not in ADAPTIVE]


def _level_table(
    levels: dict[int, list[PoolRecord]], specs: Sequence[Any], n: int, subsets: int, seed: int
) -> list[str]:
    ks = sorted({1, n})
    per = {
        lv: estimate(pools, specs, ks=ks, subsets=subsets, seed=seed)
        for lv, pools in levels.items()
    }
    header = (
        "| rule | k | "
        + " | ".join(f"L{lv} ({len({p.problem_id for p in levels[lv]})})" for lv in levels)
        + " |"
    )
    lines = ["Accuracy % by level (problems per level in brackets):", "", header]
    lines.append("|---|---:|" + "---:|" * len(levels))
    for spec in specs:
        for k in ks:
            row = [
                _pct(next(e.accuracy for e in per[lv] if e.label == spec.label and e.k == k))
                for lv in levels
            ]
            lines.append(f"| {spec.label} | {k} | " + " | ".join(row) + " |")
    return [*lines, ""]


def _cell_level_table(cells: dict[str, list[CellRecord]], levels: Sequence[int]) -> list[str]:
    lines = [
        "Cells, accuracy % by level:",
        "",
        "| strategy | budget | " + " | ".join(f"L{lv}" for lv in levels) + " |",
    ]
    lines.append("|---|---:|" + "---:|" * len(levels))
    for key in sorted(cells):
        label, budget = key.split("\t")
        row = []
        for lv in levels:
            mine = [c for c in cells[key] if level_of(c.problem_id) == lv]
            row.append(_pct(summarize(mine).accuracy) if mine else "-")
        lines.append(f"| {label} | {budget} | " + " | ".join(row) + " |")
    return [*lines, ""]


def build(
    store: Store,
    out: Path,
    images: Path,
    intro: str = "",
    subsets: int = 200,
    seed: int = 0,
    rules: str | None = None,
    image_prefix: str = "results-",
    progress: Callable[[str], None] | None = None,
) -> str:
    """Write the Markdown page to ``out`` and its plots into ``images``; return the text.
    ``progress`` is told when each group starts (the CLI prints it: a group's estimates can
    take minutes)."""
    images.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Results",
        "",
        "Generated by `ponder results build` from the committed data in `results/` "
        "(no model needed). Accuracy intervals are 95% Wilson over problems; pool estimates "
        "carry their Monte Carlo standard error (MC s.e.) where subsets were sampled.",
        "",
    ]
    if intro:
        lines += [intro.strip(), ""]
    found = groups(store)
    if not found:
        lines.append("No results yet.")
    for number, group in enumerate(found, 1):
        if progress is not None:
            pools = sum(len(p) for p in group.pools.values())
            cells = sum(len(c) for c in group.cells.values())
            progress(f"[{number}/{len(found)}] {group.title}: {pools} pools, {cells} cells")
        lines += group_section(group, images, image_prefix, subsets, seed, rules)
    text = "\n".join(lines).rstrip() + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
