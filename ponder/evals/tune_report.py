"""The tuning report: text, JSON, Markdown (a section for docs/RESULTS.md), a
self-contained HTML page and the frontier plot of accuracy against tokens per problem
(every fixed rule at every ``k``, every recipe tried, the frontier, the fitted recipe), with
the recipe, its stages' thresholds and temperatures, and the held-back figures with their
Wilson intervals."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ponder.evals.plots import img_tag, line_style
from ponder.evals.tune import Point, Tuning
from ponder.evals.tune_splits import SplitFit, spread


def _words(t: Tuning) -> dict[str, str]:
    """The report's names for the recipe and the problems it is measured on: a fitted
    recipe has a development split and a held-back one; a given recipe (``assess``) has
    only the problems it is assessed on."""
    if t.given:
        return {
            "recipe": "given recipe (fitted elsewhere)",
            "where": "all problems",
            "held_short": "all problems",
            "held": "All problems (the recipe was fitted elsewhere; the best fixed rule is "
            "picked on these same problems)",
            "frontier": "Frontier (all problems)",
        }
    return {
        "recipe": "fitted recipe",
        "where": "dev",
        "held_short": "held-back",
        "held": "Held-back split (never seen by the fit)",
        "frontier": "Frontier (development)",
    }


def _row(p: Point) -> str:
    lo, hi = p.wilson
    return (
        f"  {p.accuracy:6.1%}  [{lo:5.1%}, {hi:5.1%}]  {p.tokens:8.0f} tok"
        f"  {p.scorer_calls:5.1f} calls  {p.label}"
    )


def text_report(t: Tuning, header: str = "", splits: Sequence[SplitFit] = ()) -> str:
    """The report as plain text (with ``splits``: how stable the fit is over other splits)."""
    w = _words(t)
    lines = [header] if header else []
    lines += [
        f"development problems: {len(t.dev_ids)}; held-back problems: {len(t.held_ids)}",
        f"objective: {t.objective}",
        *([f"fit: {line}"] if (line := fit_line(t)) else []),
        "",
        f"{w['recipe']}: " + t.recipe.describe(),
        *(f"  {line}" for line in _stage_lines(t)),
    ]
    if not t.given:
        lines += [
            "",
            "development split (accuracy, 95% Wilson interval over problems, tokens per "
            "problem):",
            _row(t.chosen),
            _row(t.best_fixed) + "  (best fixed rule)",
        ]
    lines += ["", f"{w['frontier'].lower()}:", *(_row(p) for p in t.frontier)]
    if t.held_recipe is not None and t.held_fixed is not None:
        lines += [
            "",
            f"{w['held'][0].lower()}{w['held'][1:]}:",
            _row(t.held_recipe),
            _row(t.held_fixed),
            f"  {_comparison(t)}",
        ]
    if splits:
        lines += ["", _splits_title(splits) + ":"]
        lines += [
            "  " + "; ".join(f"{c}: {v}" for c, v in zip(_SPLIT_COLUMNS, row, strict=True))
            for row in _split_rows(splits)
        ]
    return "\n".join(lines) + "\n"


_SPLIT_COLUMNS = (
    "fit",
    "held-back accuracy, mean (min–max)",
    "minus the best fixed rule's, mean (min–max)",
    "tokens / best fixed rule's",
    "splits more / less accurate than the first fit",
)


def _splits_title(splits: Sequence[SplitFit]) -> str:
    seeds = sorted({r.seed for r in splits})
    return f"stability: the fits at {len(seeds)} random splits (split seeds {seeds[0]}–{seeds[-1]})"


def _split_rows(splits: Sequence[SplitFit]) -> list[tuple[str, ...]]:
    """Per fit, the cells of ``_SPLIT_COLUMNS``."""
    return [
        (
            name,
            f"{s['held_accuracy']:.1%} ({s['held_min']:.1%}–{s['held_max']:.1%})",
            f"{s['gap']:+.1%} ({s['gap_min']:+.1%}–{s['gap_max']:+.1%})",
            f"{s['token_share']:.0%}",
            f"{s['better']} / {s['worse']} of {s['splits']}",
        )
        for name, s in spread(splits).items()
    ]


def fit_line(t: Tuning) -> str:
    """The bootstrap fit's statistic for the chosen recipe, in words ("" for the plain fit
    or a given recipe)."""
    if t.fit is None or t.fit_statistic is None:
        return ""
    if t.budget is not None:
        return (
            f"the recipe's {1 - t.fit.confidence:.0%} quantile of development accuracy over "
            f"{t.fit.draws} resamples is {t.fit_statistic:.1%}"
        )
    closest = "no recipe qualifies; the closest " if t.fit_statistic < t.fit.confidence else ""
    return (
        f"{closest or 'the recipe '}is not below {t.best_fixed.label} by more than "
        f"{t.fit.tolerance:.1%} in {t.fit_statistic:.1%} of {t.fit.draws} resamples "
        f"(required: {t.fit.confidence:.0%})"
    )


def thresholds(t: Tuning) -> list[dict[str, Any]]:
    """The recipe stage by stage: samples drawn (and cumulative), temperature, the stop
    rule's thresholds, and the share of development problems (a given recipe's: of all
    problems) that stopped there."""
    rows, total = [], 0
    for j, stage in enumerate(t.recipe.stages):
        total += stage.draw
        share = t.chosen.stages[j] if j < len(t.chosen.stages) else None
        rows.append(
            {
                "stage": j,
                "draw": stage.draw,
                "drawn": total,
                "temperature": t.recipe.temperature_of(j),
                "stop_if": dict(stage.stop_if),
                "give_up_if": dict(stage.give_up_if),
                "stopped_here": share,
            }
        )
    return rows


def _rule(stop_if: dict[str, float], give_up_if: dict[str, float] | None = None) -> str:
    rule = " and ".join(f"{k} >= {v:g}" for k, v in stop_if.items()) or "(none: draw on)"
    if give_up_if:
        rule += "; give up if " + " and ".join(f"{k} >= {v:g}" for k, v in give_up_if.items())
    return rule


_STAGE_COLUMNS = ("stage", "draw (total)", "temperature", "stop if", "stopped here")
_POINT_COLUMNS = ("accuracy", "95% Wilson", "tokens / problem", "scorer calls / problem")


def _stage_cells(r: dict[str, Any]) -> tuple[str, ...]:
    """A ``thresholds`` row as the cells of ``_STAGE_COLUMNS``."""
    temp = "" if r["temperature"] is None else f"{r['temperature']:g}"
    share = "" if r["stopped_here"] is None else f"{r['stopped_here']:.0%}"
    rule = _rule(r["stop_if"], r.get("give_up_if"))
    return (str(r["stage"]), f"{r['draw']} ({r['drawn']})", temp, rule, share)


def _point_cells(p: Point) -> tuple[str, ...]:
    """A candidate's figures as the cells of ``_POINT_COLUMNS``."""
    lo, hi = p.wilson
    return (f"{p.accuracy:.1%}", f"{lo:.1%}–{hi:.1%}", f"{p.tokens:.0f}", f"{p.scorer_calls:.1f}")


def _md_head(columns: Sequence[str]) -> list[str]:
    return [_md_row(columns), "|" + "---|" * len(columns)]


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _html_head(columns: Sequence[str]) -> str:
    return "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"


def _html_row(cells: Sequence[str]) -> str:
    return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def _stage_columns(t: Tuning) -> tuple[str, ...]:
    return (*_STAGE_COLUMNS[:-1], f"{_STAGE_COLUMNS[-1]} ({_words(t)['where']})")


def _stage_lines(t: Tuning) -> list[str]:
    out, where = [], _words(t)["where"]
    for r in thresholds(t):
        temp = "" if r["temperature"] is None else f" at T={r['temperature']:g}"
        share = (
            "" if r["stopped_here"] is None else f"; {r['stopped_here']:.0%} stop here ({where})"
        )
        out.append(
            f"stage {r['stage']}: draw {r['draw']}{temp} ({r['drawn']} so far), "
            f"stop if {_rule(r['stop_if'], r.get('give_up_if'))}{share}"
        )
    if t.chosen.asked:
        out.append(f"P(yes) asked about {t.chosen.asked:.2f} samples per problem ({where})")
    return out


def _comparison(t: Tuning) -> str | None:
    if t.held_recipe is None or t.held_fixed is None:
        return None
    ratio = t.held_recipe.tokens / t.held_fixed.tokens if t.held_fixed.tokens else float("nan")
    diff = t.held_recipe.accuracy - t.held_fixed.accuracy
    return f"recipe vs best fixed rule: {diff:+.1%} accuracy at {ratio:.0%} of its tokens"


def markdown_report(
    t: Tuning, command: str, header: str = "", image: str = "", splits: Sequence[SplitFit] = ()
) -> str:
    """A Markdown section for docs/RESULTS.md: the command, the recipe and its thresholds,
    development and held-back accuracy (95% Wilson) and tokens, the frontier (every
    candidate on it) and the plot ``image`` (every candidate)."""
    title = command.split(" --")[0]
    w = _words(t)
    lines = [f"### {title}", "", "```sh", command, "```", ""]
    if header:
        lines += [f"{line}  " for line in header.splitlines()] + [""]
    lines += [
        f"Objective: {t.objective}. Development problems: {len(t.dev_ids)}; held-back "
        f"problems: {len(t.held_ids)}.",
        *(["", f"Fit: {line}."] if (line := fit_line(t)) else []),
        "",
        f"**Recipe{' (given, fitted elsewhere)' if t.given else ''}:** `{t.recipe.describe()}`",
        "",
        *_md_head(_stage_columns(t)),
        *(_md_row(_stage_cells(r)) for r in thresholds(t)),
    ]
    if not t.given:
        lines += ["", *_md_table("Development split", [t.chosen, t.best_fixed])]
    if t.held_recipe is not None and t.held_fixed is not None:
        lines += [
            "",
            *_md_table(w["held"], [t.held_recipe, t.held_fixed]),
            "",
            f"{_comparison(t)}.",
        ]
    if splits:
        lines += ["", f"**{_splits_title(splits)}**", "", *_md_head(_SPLIT_COLUMNS)]
        lines += [_md_row(row) for row in _split_rows(splits)]
    lines += ["", *_md_table(w["frontier"], t.frontier)]
    if image:
        lines += ["", f"![accuracy vs tokens per problem, every candidate]({image})"]
    return "\n".join(lines) + "\n"


def _md_table(title: str, points: Sequence[Point]) -> list[str]:
    return [
        f"**{title}**",
        "",
        *_md_head(("candidate", *_POINT_COLUMNS)),
        *(_md_row((p.label.replace("|", "/"), *_point_cells(p))) for p in points),
    ]


def html_report(
    t: Tuning,
    command: str,
    header: str = "",
    png: bytes | None = None,
    splits: Sequence[SplitFit] = (),
) -> str:
    """One self-contained HTML page: the command, the frontier plot (inline), the recipe
    and its thresholds, development and held-back accuracy with 95% Wilson intervals and
    tokens, the frontier and every candidate tried."""
    e = html.escape
    w = _words(t)
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(command)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "pre{background:#f5f5f5;padding:8px;overflow-x:auto}</style></head><body>",
        f"<h1>{e(command.split(' --')[0])}</h1>",
        f"<pre>{e(command)}</pre>",
        f"<p>{e(header).replace(chr(10), '<br>')}</p>" if header else "",
        f"<p>Objective: {e(t.objective)}. Development problems: {len(t.dev_ids)}; held-back "
        f"problems: {len(t.held_ids)}.</p>",
        f"<p>Fit: {e(fit_line(t))}.</p>" if fit_line(t) else "",
    ]
    if png is not None:
        parts.append(img_tag(png, "accuracy vs tokens per problem"))
    parts += [
        "<h2>Recipe</h2>",
        f"<p><code>{e(t.recipe.describe())}</code></p>",
        _html_head(_stage_columns(t)),
        *(_html_row(_stage_cells(r)) for r in thresholds(t)),
        "</table>",
    ]
    parts.append(f"<pre>{e(json.dumps(t.recipe.as_dict(), indent=2))}</pre>")
    if not t.given:
        parts += _html_table("Development split", [t.chosen, t.best_fixed])
    if t.held_recipe is not None and t.held_fixed is not None:
        parts += _html_table(w["held"], [t.held_recipe, t.held_fixed])
        parts.append(f"<p>{e(str(_comparison(t)))}</p>")
    if splits:
        parts += [f"<h2>{e(_splits_title(splits))}</h2>", _html_head(_SPLIT_COLUMNS)]
        parts += [_html_row(row) for row in _split_rows(splits)] + ["</table>"]
    parts += _html_table(w["frontier"], t.frontier)
    ranked = sorted(t.dev_points, key=lambda p: (p.tokens, -p.accuracy))
    parts.append(f"<details><summary>Every candidate ({len(ranked)})</summary>")
    parts += _html_table("", ranked)
    parts.append("</details></body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def _html_table(title: str, points: Sequence[Point]) -> list[str]:
    rows = [f"<h2>{html.escape(title)}</h2>"] if title else []
    rows.append(_html_head(("candidate", "kind", *_POINT_COLUMNS)))
    rows += [_html_row((p.label, p.kind, *_point_cells(p))) for p in points]
    rows.append("</table>")
    return rows


def json_report(t: Tuning, splits: Sequence[SplitFit] = ()) -> dict[str, Any]:
    """The report as JSON-able data (the recipe itself is written separately)."""
    return {
        "objective": t.objective,
        "fit": None if t.fit is None else t.fit.as_dict(),
        "fit_statistic": t.fit_statistic,
        "max_tokens_per_problem": t.budget,
        "dev_problems": list(t.dev_ids),
        "held_problems": list(t.held_ids),
        "recipe": t.recipe.as_dict(),
        "recipe_given": t.given,
        "thresholds": thresholds(t),
        "temperatures": list(t.temperatures),
        "no_more": t.no_more,
        "confidence_final": t.confidence,
        "chosen": t.chosen.as_dict(),
        "best_fixed": t.best_fixed.as_dict(),
        "frontier": [p.as_dict() for p in t.frontier],
        "held_recipe": None if t.held_recipe is None else t.held_recipe.as_dict(),
        "held_fixed": None if t.held_fixed is None else t.held_fixed.as_dict(),
        "points": [p.as_dict() for p in t.dev_points],
        "splits": [r.as_dict() for r in splits],
        "split_spread": spread(splits) if splits else None,
    }


def plot_frontier(t: Tuning, path: str | Path, title: str = "") -> Path:
    """Accuracy against tokens per problem on the development split (a given recipe's: on
    all problems; log-scale tokens): fixed rules by name, the recipes tried, the frontier,
    the fitted recipe and, when there is a held-back split, the recipe and the best fixed
    rule there with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10.5, 5.5))
    recipes = [p for p in t.dev_points if p.kind == "recipe"]
    ax.scatter(
        [p.tokens for p in recipes],
        [p.accuracy for p in recipes],
        s=8,
        color="0.75",
        label="recipes tried",
    )
    rules: dict[str, list[Point]] = {}
    for p in t.dev_points:
        if p.kind == "fixed":
            rules.setdefault(p.label.rsplit("@", 1)[0], []).append(p)
    for i, (name, pts) in enumerate(sorted(rules.items())):
        pts = sorted(pts, key=lambda p: p.tokens)
        color, dashed = line_style(i)
        ax.plot(
            [p.tokens for p in pts],
            [p.accuracy for p in pts],
            "o--" if dashed else "o-",
            color=color,
            ms=3,
            lw=1,
            label=name,
        )
    front = list(t.frontier)
    ax.step(
        [p.tokens for p in front],
        [p.accuracy for p in front],
        where="post",
        color="k",
        lw=1,
        ls="--",
        label="frontier",
    )
    if not t.given:
        ax.scatter(
            [t.chosen.tokens],
            [t.chosen.accuracy],
            marker="*",
            s=220,
            color="red",
            zorder=5,
            label="fitted recipe (dev)",
        )
    held = _words(t)["held_short"]
    for point, marker, name in ((t.held_recipe, "*", "recipe"), (t.held_fixed, "D", "best fixed")):
        if point is None:
            continue
        lo, hi = point.wilson
        ax.errorbar(
            [point.tokens],
            [point.accuracy],
            yerr=[[point.accuracy - lo], [hi - point.accuracy]],
            fmt=marker,
            color="purple",
            ms=9,
            capsize=4,
            label=f"{name} ({held}, 95% Wilson)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per problem")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "accuracy vs tokens per problem")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the data
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
