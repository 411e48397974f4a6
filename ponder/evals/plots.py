"""Plots as PNG images (matplotlib, no display needed): lines of points with interval bars,
for the HTML report (embedded as data URIs) and docs/RESULTS.md (files in docs/images)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

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


def line_plot(
    title: str,
    series: Sequence[Series],
    xlabel: str,
    ylabel: str,
    logx: bool = True,
    logy: bool = False,
    ylim: tuple[float, float] | None = None,
    empty: str = "no data",
) -> bytes:
    """A PNG line plot with axes, interval bars and a legend outside the axes; ``empty`` is
    written on it when there is nothing to draw."""
    fig, ax = plt.subplots(figsize=(7.2, 4.2), dpi=100)
    try:
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
                label=s.name[:40],
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
        ax.set_title(title, fontsize=11)
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
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png", metadata={"Software": None})
        return out.getvalue()
    finally:
        plt.close(fig)


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>`` in a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` element holding ``png`` inline."""
    from html import escape

    return f'<img class="plot" alt="{escape(alt)}" src="{data_uri(png)}">'
