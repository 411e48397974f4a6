"""Plots as PNG images (matplotlib, no display needed): lines of points with interval bars,
for the HTML report (embedded as data URIs) and docs/RESULTS.md (files in docs/images)."""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ParamSpec

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ponder.evals.estimators import Estimate
from ponder.evals.metrics import PowerLaw, fit_power_law

P = ParamSpec("P")

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#393b79",
    "#e7969c",
    "#637939",
    "#843c39",
)


def line_style(i: int) -> tuple[str, bool]:
    """The ``i``-th line's colour and whether it is dashed (once the palette repeats)."""
    return PALETTE[i % len(PALETTE)], i >= len(PALETTE)


@dataclass(frozen=True)
class Series:
    """A named line of points ``(x, y, lo, hi)``; ``lo``/``hi`` draw an interval bar.
    ``line=False`` draws the points only (e.g. cells of a strategy run per budget)."""

    name: str
    points: tuple[tuple[float, float, float | None, float | None], ...]
    color: str
    dashed: bool = False
    markers: bool = True
    line: bool = True


def estimate_series(estimates: Sequence[Estimate], suffix: str = "") -> list[Series]:
    """A line per pool rule (its label and ``suffix``) over k: accuracy against tokens per
    problem with 95% Wilson bars; colours in label order, dashed once the palette repeats."""
    out = []
    for i, label in enumerate(sorted({e.label for e in estimates})):
        mine = sorted((e for e in estimates if e.label == label), key=lambda e: e.k)
        out.append(
            Series(
                f"{label}{suffix}",
                tuple((e.tokens_per_problem, e.accuracy, *e.wilson) for e in mine),
                *line_style(i),
            )
        )
    return out


def power_law_series(name: str, fit: PowerLaw, k_max: float, color: str) -> Series:
    """The fitted coverage curve ``exp(a·k^b)`` at 24 points from k = 1 to ``k_max``, dashed."""
    ks = np.geomspace(1, k_max, 24)
    return Series(
        name,
        tuple((float(k), float(v), None, None) for k, v in zip(ks, fit.predict(ks), strict=True)),
        color,
        dashed=True,
        markers=False,
    )


def coverage_plot(title: str, coverage: Sequence[Estimate]) -> bytes:
    """Coverage (pass@k) against k, with Wilson bars and the fitted power law."""
    pts = sorted(coverage, key=lambda e: e.k)
    series = [
        Series("coverage", tuple((float(e.k), e.accuracy, *e.wilson) for e in pts), PALETTE[0])
    ]
    fit = fit_power_law([e.k for e in pts], [e.accuracy for e in pts])
    if fit is not None:
        name = f"exp({fit.a:.3f}·k^{fit.b:.3f})"
        series.append(power_law_series(name, fit, max(e.k for e in pts), PALETTE[1]))
    return line_plot(title, series, "k samples", "coverage (pass@k)", ylim=(0.0, 1.0))


_TITLE_WIDTH = 80  # characters a title line holds across the figure
_LABEL_WIDTH = 30  # characters a legend line holds


def line_figure(
    title: str,
    series: Sequence[Series],
    xlabel: str,
    ylabel: str,
    logx: bool = True,
    logy: bool = False,
    ylim: tuple[float, float] | None = None,
    empty: str = "no data",
) -> Figure:
    """A line plot with axes, interval bars and a legend outside the axes, laid out so that
    nothing is cut: a long title and long series names wrap onto more lines rather than
    being clipped or shortened. ``empty`` is written on it when there is nothing to draw."""
    fig, ax = plt.subplots(figsize=(7.2, 4.2), dpi=100, layout="constrained")
    drawn = 0
    for s in series:
        pts = [p for p in s.points if (p[0] > 0 or not logx) and (p[1] > 0 or not logy)]
        if not pts:
            continue
        drawn += 1
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        style = "--" if s.dashed else "-"
        ax.plot(
            xs,
            ys,
            style if s.line else "none",
            color=s.color,
            marker="o" if s.markers else None,
            markersize=4,
            linewidth=1.6,
            label=_wrap(s.name, _LABEL_WIDTH),
        )
        bars = [p for p in pts if p[2] is not None and p[3] is not None]
        if bars:
            ax.errorbar(
                [p[0] for p in bars],
                [p[1] for p in bars],
                yerr=[
                    [max(0.0, p[1] - (p[2] or 0.0)) for p in bars],
                    [max(0.0, (p[3] or 0.0) - p[1]) for p in bars],
                ],
                fmt="none",
                ecolor=s.color,
                elinewidth=1.0,
                capsize=3,
            )
    fig.suptitle(_wrap(title, _TITLE_WIDTH), fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if not drawn:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def png_of(draw: Callable[P, Figure]) -> Callable[P, bytes]:
    """``draw`` returning its figure as PNG bytes, cropped to everything drawn (title and
    legend whole); the figure is closed."""

    def render(*args: P.args, **kwargs: P.kwargs) -> bytes:
        fig = draw(*args, **kwargs)
        try:
            out = io.BytesIO()
            fig.savefig(
                out, format="png", bbox_inches="tight", pad_inches=0.1, metadata={"Software": None}
            )
            return out.getvalue()
        finally:
            plt.close(fig)

    render.__doc__ = f"``{draw.__name__}`` as PNG bytes (``png_of``)."
    return render


line_plot = png_of(line_figure)


def _wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters where it has spaces
    to break at (a long word stays whole)."""
    return (
        "\n".join(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False))
        or text
    )


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>`` in a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` element holding ``png`` inline."""
    from html import escape

    return f'<img class="plot" alt="{escape(alt)}" src="{data_uri(png)}">'
