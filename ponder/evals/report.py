"""Reports from a results database: text tables, JSON, and one self-contained HTML page
with inline SVG plots (no scripts, no external files).

Rows are (run × strategy × budget); a run is one configuration (task, model, strategies).
Plots per run: accuracy against tokens generated per problem with 95% Wilson bars,
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

import numpy as np

from ponder.evals.metrics import Summary, summarize
from ponder.evals.store import Store

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


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


def verifier_quality(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    """Per strategy label: ``ponder.scoring.quality.verifier_report`` over every candidate
    that carries a scorer value and was graded (the scorer as a verifier, judged against
    the task's grading). Strategies whose candidates have no scores are left out."""
    from ponder.scoring.quality import verifier_report

    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cell in store.cells(run_id, with_result=True):
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
    return (
        f"run {run['run_id']}: task {run['task']} ({options}); model {model.get('name')}"
        f"{f' sha256 {sha}…' if sha else ''}; scorer {cfg.get('scorer')}; "
        f"ponder {cfg.get('ponder_version')}"
    )


def text_report(store: Store) -> str:
    """Aligned text tables, one per run."""
    runs, rows = collect(store)
    if not runs:
        return "no runs in this database\n"
    out = []
    for run in runs:
        mine = [r for r in rows if r.run_id == run["run_id"]]
        out.append(describe_run(run))
        table = [list(COLUMNS), *(_cells(r) for r in mine)]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        for j, line in enumerate(table):
            out.append(
                "  ".join(
                    v.rjust(w) if i else v.ljust(w)
                    for i, (v, w) in enumerate(zip(line, widths, strict=True))
                )
            )
            if j == 0:
                out.append("  ".join("-" * w for w in widths))
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
        out.extend(_verifier_lines(verifier_quality(store, run["run_id"])))
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
        "verifier": {r["run_id"]: clean(verifier_quality(store, r["run_id"])) for r in runs},
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


# ---- SVG plots ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """A named line of points ``(x, y, lo, hi)``; ``lo``/``hi`` draw an interval bar."""

    name: str
    points: tuple[tuple[float, float, float | None, float | None], ...]
    color: str
    dashed: bool = False
    markers: bool = True


def _ticks_log(lo: float, hi: float) -> list[float]:
    base = 2.0 if hi / lo <= 2**12 else 10.0
    start = math.floor(math.log(lo, base))
    stop = math.ceil(math.log(hi, base))
    return [base**e for e in range(start, stop + 1)]


def _ticks_linear(lo: float, hi: float) -> list[float]:
    span = hi - lo or 1.0
    step = 10 ** math.floor(math.log10(span / 4))
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= 6:
            step *= mult
            break
    first = math.floor(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1.5))]


def _label(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def svg_plot(
    title: str,
    series: Sequence[Series],
    xlabel: str,
    ylabel: str,
    logx: bool = True,
    logy: bool = False,
    ylim: tuple[float, float] | None = None,
    empty: str = "no data",
) -> str:
    """An inline SVG line plot with axes, ticks, interval bars and a legend; ``empty`` is
    shown instead when there is nothing to draw."""
    width, height, left, right, top, bottom = 640, 380, 64, 190, 34, 48
    pts = [p for s in series for p in s.points]
    xs = [p[0] for p in pts if p[0] > 0 or not logx]
    ys = [v for p in pts for v in (p[1], p[2], p[3]) if v is not None and (v > 0 or not logy)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    if not xs or not ys:
        parts.append(f'<text x="{left}" y="{height / 2}">{html.escape(empty)}</text></svg>')
        return "".join(parts)
    x0, x1 = min(xs), max(xs)
    y0, y1 = ylim if ylim is not None else (min(ys), max(ys))
    if logx:
        pad = max((x1 / x0) ** 0.06, 1.15)
        x0, x1 = x0 / pad, x1 * pad
    else:
        pad = max((x1 - x0) * 0.06, 0.5)
        x0, x1 = x0 - pad, x1 + pad
    if ylim is None and logy:
        pad = max((y1 / y0) ** 0.06, 1.15)
        y0, y1 = y0 / pad, y1 * pad
    elif ylim is None:
        pad = max((y1 - y0) * 0.06, 0.5 if y0 == y1 else 0.0)
        y0, y1 = y0 - pad, y1 + pad
    fx = (lambda v: math.log(v)) if logx else (lambda v: v)
    fy = (lambda v: math.log(v)) if logy else (lambda v: v)
    pw, ph = width - left - right, height - top - bottom

    def px(v: float) -> float:
        return left + (fx(v) - fx(x0)) / (fx(x1) - fx(x0)) * pw

    def py(v: float) -> float:
        return top + ph - (fy(v) - fy(y0)) / (fy(y1) - fy(y0)) * ph

    axis = 'stroke="#333" stroke-width="1"'
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" {axis}/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" {axis}/>')
    xticks = _ticks_log(x0, x1) if logx else _ticks_linear(x0, x1)
    for t in xticks:
        if x0 - 1e-9 * abs(x0) <= t <= x1 + 1e-9 * abs(x1):
            x = px(t)
            parts.append(
                f'<line x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 4}" {axis}/>'
            )
            parts.append(
                f'<text x="{x:.1f}" y="{top + ph + 17}" font-size="11" '
                f'text-anchor="middle">{_label(t)}</text>'
            )
    yticks = _ticks_log(y0, y1) if logy else _ticks_linear(y0, y1)
    for t in yticks:
        if y0 - 1e-12 <= t <= y1 + 1e-12:
            y = py(t)
            parts.append(
                f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" '
                'stroke="#ddd" stroke-width="1"/>'
            )
            parts.append(
                f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
                f'text-anchor="end">{_label(round(t, 6))}</text>'
            )
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" font-size="12" '
        f'text-anchor="middle">{html.escape(xlabel)}</text>'
    )
    parts.append(
        f'<text x="14" y="{top + ph / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + ph / 2})">{html.escape(ylabel)}</text>'
    )
    for i, s in enumerate(series):
        ok = [p for p in s.points if (p[0] > 0 or not logx) and (p[1] > 0 or not logy)]
        if not ok:
            continue
        dash = ' stroke-dasharray="5,4"' if s.dashed else ""
        line = " ".join(f"{px(p[0]):.1f},{py(p[1]):.1f}" for p in ok)
        parts.append(
            f'<polyline class="series" points="{line}" fill="none" stroke="{s.color}" '
            f'stroke-width="2"{dash}/>'
        )
        for x, y, lo, hi in ok:
            if lo is not None and hi is not None:
                ylo, yhi, xc = py(max(lo, y0)), py(min(hi, y1)), px(x)
                parts.append(
                    f'<path class="interval" d="M{xc:.1f},{ylo:.1f}V{yhi:.1f}'
                    f'M{xc - 4:.1f},{ylo:.1f}h8M{xc - 4:.1f},{yhi:.1f}h8" '
                    f'stroke="{s.color}" stroke-width="1.5" fill="none"/>'
                )
            if s.markers:
                parts.append(
                    f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{s.color}">'
                    f"<title>{html.escape(s.name)}: x={x:.4g}, y={y:.4g}</title></circle>"
                )
        ly = top + 14 + 18 * i
        parts.append(
            f'<line x1="{left + pw + 12}" y1="{ly - 4}" x2="{left + pw + 32}" y2="{ly - 4}" '
            f'stroke="{s.color}" stroke-width="2"{dash}/>'
        )
        parts.append(
            f'<text x="{left + pw + 36}" y="{ly}" font-size="11">{html.escape(s.name[:26])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def run_plots(rows: Sequence[Row]) -> list[str]:
    """The three plots of one run's rows."""
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
                ks = np.geomspace(1, max(curve), 24)
                cov.append(
                    Series(
                        f"{s} fit",
                        tuple(
                            (float(k), float(v), None, None)
                            for k, v in zip(ks, fit.predict(ks), strict=True)
                        ),
                        color[s],
                        dashed=True,
                        markers=False,
                    )
                )
    return [
        svg_plot(
            "Accuracy vs tokens (95% Wilson)",
            acc,
            "tokens generated per problem",
            "accuracy",
            ylim=(0.0, 1.0),
        ),
        svg_plot("Coverage vs k (pass@k)", cov, "k samples", "coverage", ylim=(0.0, 1.0)),
        svg_plot(
            "Cost of a correct answer",
            cost,
            "budget",
            "tokens per correct answer",
            logy=True,
            empty="no correct answers yet",
        ),
    ]


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 24px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
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
        quality = _verifier_lines(verifier_quality(store, run["run_id"]))
        if quality:
            body.append(
                "<p>Verifier quality (the scorer's values against the grading; fLaws "
                'resampling ceiling):</p><ul class="verifier">'
                + "".join(f"<li>{html.escape(line.strip())}</li>" for line in quality)
                + "</ul>"
            )
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
