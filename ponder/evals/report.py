"""Reports from a results database: text tables, JSON, and one self-contained HTML page
with PNG plots (matplotlib) embedded as data URIs (no scripts, no external files).

Rows are (run × strategy × budget); a run is one configuration (task, model, strategies).
A pool run (``ponder.evals.pool``) gets a table of every pool rule estimated at every k
(``ponder.evals.estimators``) instead of cell rows. Plots per run: accuracy against tokens
generated per problem with 95% Wilson bars (pool rules as lines over k),
coverage (pass@k over a cell's candidates) against k with the fitted power law
(Brown et al. 2024), and cost of a correct answer (tokens per correct) against budget.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ponder.evals.estimators import Estimate, default_estimators, estimate
from ponder.evals.metrics import Summary, summarize
from ponder.evals.plots import (
    PALETTE,
    Series,
    coverage_plot,
    estimate_series,
    img_tag,
    line_plot,
    power_law_series,
)
from ponder.evals.store import PoolRecord, Store


@dataclass(frozen=True)
class Row:
    """The metrics of one (run, strategy, budget) group."""

    run_id: str
    task: str
    model: str
    strategy: str
    budget: int
    summary: Summary


def collect(store: Store, confidence: float = 0.95) -> tuple[list[dict[str, Any]], list[Row]]:
    """The runs and one summarised row per (run, strategy, budget), in a stable order."""
    runs = store.runs()
    rows: list[Row] = []
    for run in runs:
        groups: dict[tuple[str, int], list[Any]] = defaultdict(list)
        for cell in store.cells(run["run_id"]):
            groups[(cell.strategy, cell.budget)].append(cell)
        for (strategy, budget), cells in sorted(groups.items()):
            rows.append(
                Row(
                    run["run_id"],
                    run["task"],
                    run["model"],
                    strategy,
                    budget,
                    summarize(cells, confidence),
                )
            )
    return runs, rows


def _fmt(x: float, digits: int = 1) -> str:
    if math.isinf(x):
        return "inf"
    if math.isnan(x):
        return "-"
    return f"{x:,.{digits}f}"


COLUMNS = (
    "strategy",
    "budget",
    "problems",
    "cells",
    "accuracy",
    "95% Wilson",
    "95% Jeffreys",
    "tokens/problem",
    "prompt computed",
    "prompt cached",
    "s/problem",
    "tokens/correct",
    "s/correct",
    "coverage",
)


def _cells(row: Row) -> list[str]:
    s = row.summary
    top_k = max(s.coverage) if s.coverage else 0
    cov = f"{s.coverage[top_k]:.3f} @{top_k}" if top_k else "-"
    return [
        row.strategy,
        str(row.budget),
        str(s.problems),
        str(s.cells),
        f"{s.accuracy:.3f}",
        f"{s.wilson[0]:.3f}-{s.wilson[1]:.3f}",
        f"{s.jeffreys[0]:.3f}-{s.jeffreys[1]:.3f}",
        _fmt(s.tokens_per_problem),
        _fmt(s.prompt_computed_per_problem),
        _fmt(s.prompt_cached_per_problem),
        _fmt(s.seconds_per_problem, 2),
        _fmt(s.tokens_per_correct),
        _fmt(s.seconds_per_correct, 2),
        cov,
    ]


def pool_verifier_quality(pools: Sequence[PoolRecord]) -> dict[str, dict[str, Any]]:
    """Per pool scorer: ``ponder.scoring.quality.verifier_report`` over every sample of
    ``pools`` that carries a finite score from it (the scorer as a verifier of the hidden
    grader's verdicts, each problem with its own base accuracy)."""
    from ponder.scoring.quality import verifier_report

    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pool in pools:
        for sample in pool.samples:
            for name, score in sample.scores.items():
                if isinstance(score, int | float) and math.isfinite(score):
                    records[name].append(
                        {
                            "score": float(score),
                            "correct": sample.correct,
                            "problem": pool.problem_id,
                        }
                    )
    return {name: verifier_report(recs) for name, recs in sorted(records.items())}


def verifier_quality(store: Store, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per strategy label (per scorer for a pool run): ``ponder.scoring.quality.
    verifier_report`` over every candidate that carries a scorer value and was graded (the
    scorer as a verifier, judged against the task's grading). Strategies whose candidates
    have no scores are left out."""
    from ponder.scoring.quality import verifier_report

    if run["config"].get("mode") == "pool":
        return pool_verifier_quality(store.pools(run["run_id"]))
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cell in store.cells(run["run_id"], with_result=True):
        candidates = (cell.result or {}).get("candidates") or []
        for cand, ok in zip(candidates, cell.candidates_correct, strict=False):
            score = cand.get("score") if isinstance(cand, dict) else None
            if isinstance(score, int | float) and math.isfinite(score):
                records[cell.strategy].append(
                    {"score": float(score), "correct": bool(ok), "problem": cell.problem_id}
                )
    return {label: verifier_report(recs) for label, recs in records.items() if recs}


def _verifier_lines(quality: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for label, q in sorted(quality.items()):
        res = q["resampling"]
        stop = f"k_stop {res['k_stop']}" if res.get("helps") else "more draws do not help"

        def f(x: Any) -> str:
            return "-" if x is None else f"{x:.3f}"

        out.append(
            f"  verifier of {label}: {q['n']} graded candidates, FPR {f(q['false_positive_rate'])}"
            f", FNR {f(q['false_negative_rate'])}, AUROC {f(q['auroc'])}, {stop} "
            f"(ceiling {f(res.get('asymptote'))})"
        )
    return out


def describe_run(run: dict[str, Any]) -> str:
    """One line naming a run: id, task and options, model and hash, ponder version."""
    cfg = run["config"]
    model = cfg.get("model", {})
    sha = (model.get("sha256") or "")[:12]
    options = ", ".join(f"{k}={v}" for k, v in sorted(cfg.get("task_options", {}).items()))
    if cfg.get("mode") == "pool":
        scoring = f"pool of {cfg['pool']['n']}; scorers {', '.join(cfg.get('scorers', {})) or '-'}"
        if cfg.get("samples_from"):
            scoring += f" (the samples of run {cfg['samples_from']})"
    else:
        scoring = f"scorer {cfg.get('scorer')}"
    return (
        f"run {run['run_id']}: task {run['task']} ({options}); model {model.get('name')}"
        f"{f' sha256 {sha}…' if sha else ''}; {scoring}; "
        f"ponder {cfg.get('ponder_version')}"
    )


def _aligned(table: list[list[str]]) -> list[str]:
    """Rows of cells as text lines: the first column left-aligned, the others right-aligned,
    a rule under the header row."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    out = []
    for j, line in enumerate(table):
        out.append(
            "  ".join(
                v.rjust(w) if i else v.ljust(w)
                for i, (v, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def text_report(store: Store) -> str:
    """Aligned text tables, one per run."""
    runs, rows = collect(store)
    if not runs:
        return "no runs in this database\n"
    out = []
    for run in runs:
        mine = [r for r in rows if r.run_id == run["run_id"]]
        out.append(describe_run(run))
        if run["config"].get("mode") == "pool":
            pools = store.pools(run["run_id"])
            estimates = pool_estimates(run, pools)
            if estimates:
                out.extend(_aligned([list(POOL_COLUMNS), *(_pool_cells(e) for e in estimates)]))
            else:
                out.append("  (no finished pools yet)")
            out.extend(_verifier_lines(pool_verifier_quality(pools)))
            out.append("")
            continue
        out.extend(_aligned([list(COLUMNS), *(_cells(r) for r in mine)]))
        for r in mine:
            fit = r.summary.power_law
            if fit is not None and r.budget == max(
                x.budget for x in mine if x.strategy == r.strategy
            ):
                out.append(
                    f"  {r.strategy}: coverage(k) ≈ exp({fit.a:.3f}·k^{fit.b:.3f}) "
                    f"(R² {fit.r2:.3f}, {fit.points} points)"
                )
        if not mine:
            out.append("  (no finished cells yet)")
        out.extend(_verifier_lines(verifier_quality(store, run)))
        errors = store.error_count(run["run_id"])
        if errors:
            out.append(f"  {errors} cell attempts failed in the engine (see the errors table)")
        out.append("")
    return "\n".join(out)


def json_report(store: Store) -> dict[str, Any]:
    """Every run's configuration and every row's metrics, as plain JSON values."""
    runs, rows = collect(store)

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return {
        "runs": runs,
        "verifier": {r["run_id"]: clean(verifier_quality(store, r)) for r in runs},
        "rows": [
            clean(
                {
                    "run_id": r.run_id,
                    "task": r.task,
                    "model": r.model,
                    "strategy": r.strategy,
                    "budget": r.budget,
                    **asdict(r.summary),
                }
            )
            for r in rows
        ],
    }


# ---- plots -------------------------------------------------------------------------------


def run_plots(rows: Sequence[Row]) -> list[str]:
    """The three plots of one run's rows, as inline ``<img>`` elements."""
    strategies = sorted({r.strategy for r in rows})
    color = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(strategies)}
    acc, cov, cost = [], [], []
    for s in strategies:
        mine = sorted((r for r in rows if r.strategy == s), key=lambda r: r.budget)
        acc.append(
            Series(
                s,
                tuple(
                    (r.summary.tokens_per_problem, r.summary.accuracy, *r.summary.wilson)
                    for r in mine
                ),
                color[s],
            )
        )
        cost.append(
            Series(
                s,
                tuple(
                    (float(r.budget), r.summary.tokens_per_correct, None, None)
                    for r in mine
                    if math.isfinite(r.summary.tokens_per_correct)
                ),
                color[s],
            )
        )
        widest = max(mine, key=lambda r: (max(r.summary.coverage, default=0), r.budget))
        curve = widest.summary.coverage
        if len(curve) >= 2:
            cov.append(
                Series(
                    f"{s} (b={widest.budget})",
                    tuple((float(k), v, None, None) for k, v in sorted(curve.items())),
                    color[s],
                )
            )
            fit = widest.summary.power_law
            if fit is not None:
                cov.append(power_law_series(f"{s} fit", fit, max(curve), color[s]))
    return [
        img_tag(
            line_plot(
                "Accuracy vs tokens (95% Wilson)",
                acc,
                "tokens generated per problem",
                "accuracy",
                ylim=(0.0, 1.0),
            ),
            "accuracy vs tokens",
        ),
        img_tag(
            line_plot("Coverage vs k (pass@k)", cov, "k samples", "coverage", ylim=(0.0, 1.0)),
            "coverage vs k",
        ),
        img_tag(
            line_plot(
                "Cost of a correct answer",
                cost,
                "budget",
                "tokens per correct answer",
                logy=True,
                empty="no correct answers yet",
            ),
            "cost of a correct answer",
        ),
    ]


def pool_estimates(
    run: dict[str, Any], pools: Sequence[PoolRecord], subsets: int = 200
) -> list[Estimate]:
    """Every default pool rule at k = 1, 2, 4, ... n over a pool run's ``pools``."""
    scorers = sorted(run["config"].get("scorers", {}))
    return estimate(pools, default_estimators(scorers), subsets=subsets) if pools else []


POOL_COLUMNS = (
    "rule",
    "k",
    "problems",
    "accuracy",
    "95% Wilson",
    "MC s.e.",
    "tokens/problem",
    "scorer calls",
    "how",
)


def _pool_cells(e: Estimate) -> list[str]:
    return [
        e.label,
        str(e.k),
        str(e.problems),
        f"{e.accuracy:.3f}",
        f"{e.wilson[0]:.3f}-{e.wilson[1]:.3f}",
        f"{e.se:.4f}",
        _fmt(e.tokens_per_problem),
        f"{e.scorer_calls_per_problem:g}",
        "exact" if e.exact else "subsets",
    ]


def pool_plots(estimates: Sequence[Estimate]) -> list[str]:
    """Accuracy vs tokens (a line per rule over k) and coverage vs k with its power law."""
    coverage = [e for e in estimates if e.strategy == "coverage"]
    return [
        img_tag(
            line_plot(
                "Pool rules: accuracy vs tokens (95% Wilson)",
                estimate_series(estimates),
                "tokens generated per problem",
                "accuracy",
                ylim=(0.0, 1.0),
            ),
            "pool accuracy vs tokens",
        ),
        img_tag(coverage_plot("Coverage vs k (pass@k)", coverage), "pool coverage vs k"),
    ]


def _verifier_html(quality_by_label: dict[str, dict[str, Any]]) -> str:
    quality = _verifier_lines(quality_by_label)
    if not quality:
        return ""
    return (
        "<p>Verifier quality (the scorer's values against the grading; fLaws "
        'resampling ceiling):</p><ul class="verifier">'
        + "".join(f"<li>{html.escape(line.strip())}</li>" for line in quality)
        + "</ul>"
    )


def _pool_html(store: Store, run: dict[str, Any]) -> str:
    pools = store.pools(run["run_id"])
    estimates = pool_estimates(run, pools)
    if not estimates:
        return "<p>no finished pools yet</p></section>"
    parts = ['<div class="plots">' + "".join(pool_plots(estimates)) + "</div>"]
    parts.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in POOL_COLUMNS))
    parts.append("</tr>")
    for e in estimates:
        parts.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in _pool_cells(e)))
        parts.append("</tr>")
    parts.append(
        "</table><p>Every rule estimated from the same stored samples (docs/EVALS.md): exact "
        "where marked, else the mean over random k-subsets with its Monte Carlo s.e.</p>"
    )
    parts.append(_verifier_html(pool_verifier_quality(pools)))
    return "".join(parts) + "</section>"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 24px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; } .plots img { max-width: 100%; }
.run { margin-bottom: 40px; } code { background: #f6f6f6; padding: 1px 4px; }
"""


def html_report(store: Store) -> str:
    """One self-contained HTML page: per run, its configuration, plots and table."""
    runs, rows = collect(store)
    body = [
        f"<h1>ponder report</h1><p>{len(runs)} run(s), database <code>"
        f"{html.escape(str(store.path))}</code></p>"
    ]
    if not runs:
        body.append("<p>no runs in this database</p>")
    for run in runs:
        mine = [r for r in rows if r.run_id == run["run_id"]]
        body.append(f'<section class="run"><h2>{html.escape(describe_run(run))}</h2>')
        if run["config"].get("mode") == "pool":
            body.append(_pool_html(store, run))
            continue
        strategies = run["config"].get("strategies", {})
        body.append("<ul>")
        for label, spec in strategies.items():
            settings = ", ".join(f"{k}={v}" for k, v in sorted(spec.get("config", {}).items()))
            body.append(
                f"<li><b>{html.escape(label)}</b>: {html.escape(spec.get('name', ''))} "
                f"({html.escape(settings)})</li>"
            )
        body.append("</ul>")
        if not mine:
            body.append("<p>no finished cells yet</p></section>")
            continue
        body.append('<div class="plots">' + "".join(run_plots(mine)) + "</div>")
        body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS))
        body.append("</tr>")
        for r in mine:
            body.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in _cells(r)) + "</tr>")
        body.append("</table>")
        fits = []
        for r in mine:
            fit = r.summary.power_law
            if fit is not None:
                fits.append(
                    f"<li>{html.escape(r.strategy)} b={r.budget}: coverage(k) ≈ "
                    f"exp({fit.a:.3f}·k<sup>{fit.b:.3f}</sup>), R² {fit.r2:.3f}</li>"
                )
        if fits:
            body.append("<p>Power-law fits of coverage:</p><ul>" + "".join(fits) + "</ul>")
        body.append(_verifier_html(verifier_quality(store, run)))
        body.append("</section>")
    notes = (
        "<p>Accuracy: the mean over problems of each problem's mean correctness over seeds; "
        "intervals are 95% Wilson and Jeffreys (Beta posterior) with n = problems. Coverage: "
        "unbiased pass@k over each cell's candidates. Cost columns are per cell; tokens/"
        "correct is total tokens generated divided by correct cells.</p>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>ponder report</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + notes
        + "</body></html>\n"
    )
