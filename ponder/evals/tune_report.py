"""The tuning report: text, JSON and the frontier plot of accuracy against tokens per
problem (every fixed rule at every ``k``, every recipe tried, the frontier, the fitted
recipe), with the held-back figures and their Wilson intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ponder.evals.tune import Point, Tuning


def _row(p: Point) -> str:
    lo, hi = p.wilson
    return (
        f"  {p.accuracy:6.1%}  [{lo:5.1%}, {hi:5.1%}]  {p.tokens:8.0f} tok"
        f"  {p.scorer_calls:5.1f} calls  {p.label}"
    )


def text_report(t: Tuning, header: str = "") -> str:
    """The report as plain text."""
    lines = [header] if header else []
    lines += [
        f"development problems: {len(t.dev_ids)}; held-back problems: {len(t.held_ids)}",
        f"objective: {t.objective}",
        "",
        "fitted recipe: " + t.recipe.describe(),
        "  stopped at stage (development): "
        + ", ".join(f"{j}: {s:.0%}" for j, s in enumerate(t.chosen.stages)),
        "",
        "development split (accuracy, 95% Wilson interval over problems, tokens per problem):",
        _row(t.chosen),
        _row(t.best_fixed) + "  (best fixed rule)",
        "",
        "frontier (development):",
        *(_row(p) for p in t.frontier),
    ]
    if t.held_recipe is not None and t.held_fixed is not None:
        ratio = t.held_recipe.tokens / t.held_fixed.tokens if t.held_fixed.tokens else float("nan")
        diff = t.held_recipe.accuracy - t.held_fixed.accuracy
        lines += [
            "",
            "held-back split (never seen by the fit):",
            _row(t.held_recipe),
            _row(t.held_fixed),
            f"  recipe vs best fixed rule: {diff:+.1%} accuracy at {ratio:.0%} of its tokens",
        ]
    return "\n".join(lines) + "\n"


def json_report(t: Tuning) -> dict[str, Any]:
    """The report as JSON-able data (the recipe itself is written separately)."""
    return {
        "objective": t.objective,
        "dev_problems": list(t.dev_ids),
        "held_problems": list(t.held_ids),
        "recipe": t.recipe.as_dict(),
        "chosen": t.chosen.as_dict(),
        "best_fixed": t.best_fixed.as_dict(),
        "frontier": [p.as_dict() for p in t.frontier],
        "held_recipe": None if t.held_recipe is None else t.held_recipe.as_dict(),
        "held_fixed": None if t.held_fixed is None else t.held_fixed.as_dict(),
        "points": [p.as_dict() for p in t.dev_points],
    }


def plot_frontier(t: Tuning, path: str | Path, title: str = "") -> Path:
    """Accuracy against tokens per problem on the development split (log-scale tokens):
    fixed rules by name, the recipes tried, the frontier, the fitted recipe and, when
    there is a held-back split, the recipe and the best fixed rule there with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
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
    for name, pts in sorted(rules.items()):
        pts = sorted(pts, key=lambda p: p.tokens)
        ax.plot([p.tokens for p in pts], [p.accuracy for p in pts], "o-", ms=3, lw=1, label=name)
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
    ax.scatter(
        [t.chosen.tokens],
        [t.chosen.accuracy],
        marker="*",
        s=220,
        color="red",
        zorder=5,
        label="fitted recipe (dev)",
    )
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
            label=f"{name} (held-back, 95% Wilson)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per problem")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "accuracy vs tokens per problem")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
