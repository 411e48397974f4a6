"""The results plots: nothing drawn is cut off (long titles and series names wrap and the
image is cropped to all that is drawn), and every series keeps its whole name."""

import io

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np

from ponder.evals import plots
from ponder.evals.plots import PALETTE, Series, line_plot

TITLE = (
    "Accuracy vs tokens: arithmetic · qwen2.5-coder-0.5b-instruct · task seed 0 · "
    "levels 1-5 · pools of 16 and cells"
)
NAMES = [
    "coverage (pool)",
    "weighted-vote[weight=path-probability] (pool)",
    "best-of-majority[alpha=0.3;top_k=2]@judge (pool)",
    "greedy (cells)",
]


def series():
    return [
        Series(name, tuple((70.0 * 2**j, 0.3 + 0.1 * i, 0.2, 0.9) for j in range(5)), PALETTE[i])
        for i, name in enumerate(NAMES)
    ]


def test_nothing_drawn_touches_the_edge_of_the_image():
    png = line_plot(TITLE, series(), "tokens generated per problem", "accuracy", ylim=(0, 1))
    rgb = matplotlib.image.imread(io.BytesIO(png))[..., :3]
    edges = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    assert (edges > 0.95).all(), "a title, label or legend is cut at the image's edge"


def test_the_legend_and_title_keep_every_word():
    fig = plots.line_figure(TITLE, series(), "tokens", "accuracy")
    try:
        legend = fig.axes[0].get_legend()
        assert [t.get_text().replace("\n", " ") for t in legend.get_texts()] == NAMES
        assert fig.get_suptitle().replace("\n", " ") == TITLE
    finally:
        plt.close(fig)
