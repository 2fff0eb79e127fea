"""What every figure shares: the :class:`Plot` a figure function returns (figure + caption),
the captions, the "no data" panel, the theme, grid, palette and legend layout, and saving."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from multilabel_llm.core.io import atomic_path  # noqa: E402

NO_DATA = "no data for this setting"
# a group with fewer values is drawn as its points, not as a violin or box (a violin of two
# values looks like a distribution)
SMALL_N = 10

# said of every violin/box figure (Figs 2, 3, 9, 10)
N_NOTE = (
    " n under each step = label steps per model (legend order); groups with fewer than "
    f"{SMALL_N} are drawn as points, not as a violin or box."
)

CAPTIONS = {
    "fig2": (
        "Top probabilities at each generation step r when the last or an intermediate label "
        "is generated. Softmax over the first tokens of the labels and 'none'." + N_NOTE
    ),
    "fig3": (
        "Second-highest probabilities at each generation step r (last vs intermediate). For "
        "intermediate steps also the probability at r of the label actually predicted at r+1 "
        "(r+1 pred), the probability at r+1 of the label that was second at r "
        "(intermediate@r+1), and the % of cases the second-highest label at r is predicted at "
        "r+1 (under each intermediate panel, over the steps where that is possible; steps whose "
        "second-highest is 'none' or already generated are counted apart as impossible; "
        "interm.@r+1 = intermediate@r+1)." + N_NOTE
    ),
    "fig4": (
        "Sorted label probabilities (none left out) at the step that starts the first label; "
        f"n outputs per model in the title (fewer than {SMALL_N}: points instead of boxes)."
    ),
    "fig5": (
        "Accuracy (is the label gold?) of the first and second generated label, over outputs "
        "with more than one label."
    ),
    "fig6": (
        "% of outputs that are multi-label against the % of multi-label in-context "
        "demonstrations (dashed: y = x). Runs at the same setting (prompts, seeds) are pooled "
        "by summing their outputs; each point gives its n (outputs) and the number of runs "
        "it pools when more than one."
    ),
    "fig9": (
        "Box plots of the top (bottom row of each dataset) and second-highest (top row) "
        "probabilities per generation step, last vs intermediate, with r+1 pred and "
        "intermediate@r+1 for intermediate steps." + N_NOTE
    ),
    "fig10": (
        "Entropy (bits) of the label distribution at each generation step, last vs "
        "intermediate; the two panels of a dataset share one y-axis starting at 0." + N_NOTE
    ),
    "fig11": (
        "Where the second-highest label of the first generation step is eventually predicted "
        "(label step index; the first step is the first label itself), among multi-label "
        "outputs where it is predicted at all; 'never' counts are given in the panel title, "
        "with the steps where predicting it was impossible (second-highest 'none' or already "
        "generated), which count in neither."
    ),
    "fig12": (
        "Example-F1 (top) and NLL (bottom) of base vs instruction-tuned models per distribution "
        "method, averaged over datasets."
    ),
    "fig1": (
        "One example's label distribution (softmax over the labels' first tokens and 'none') "
        "at each step where the model starts a label, next to the human distribution (eq. 1); "
        "the generated label of each step is outlined. The example is the output with the most "
        "labels."
    ),
    "fig8": (
        "Binary breakdown from pairwise probabilities (binary) vs pairwise outcomes "
        "(probabilities rounded to 0/1) per dataset: NLL, L1 and example-F1."
    ),
    "fig7": (
        "Micro-F1 of linear probes trained and evaluated on gold labels (Gold), on the model's "
        "predictions (Pred), evaluated on predictions beyond the first label (Pred 2+), and the "
        "model's own micro-F1 (Perf). Hidden state: last layer at the first label token."
    ),
}


@dataclass
class Plot:
    figure: plt.Figure
    caption: str

    def save(self, png: str | os.PathLike, pdf: str | os.PathLike, dpi: int = 150) -> None:
        save_figure(self.figure, png, pdf, dpi=dpi)


def save_figure(fig: plt.Figure, png, pdf, dpi: int = 150) -> None:
    """Write PNG and PDF atomically and close the figure."""
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight")
    plt.close(fig)


def no_data_panel(ax, message: str = NO_DATA) -> None:
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        transform=ax.transAxes,
        fontsize=11,
        color="0.35",
        wrap=True,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.8")


def theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def grid(n_rows: int, n_cols: int, width: float = 5.0, height: float = 3.2):
    theme()
    fig, axes = plt.subplots(
        max(n_rows, 1),
        max(n_cols, 1),
        figsize=(width * max(n_cols, 1), height * max(n_rows, 1)),
        squeeze=False,
    )
    return fig, axes


def ordered(values: Sequence, preferred: Sequence | None = None, keep_missing=False) -> list:
    """Values in ``preferred`` order, then unseen extras; ``keep_missing`` keeps preferred
    values that have no rows (configured datasets get a "no data" panel)."""
    seen = list(dict.fromkeys(v for v in values if pd.notna(v)))
    if preferred:
        first = [v for v in preferred if keep_missing or v in seen]
        return first + [v for v in seen if v not in first]
    return seen


def palette(models: Sequence[str]) -> dict:
    return dict(zip(models, sns.color_palette("colorblind", max(len(models), 1)), strict=False))


def legend_once(fig, axes) -> None:
    """Keep one legend (outside the grid) instead of one per panel."""
    handles, labels = [], []
    for ax in axes.flat:
        legend = ax.get_legend()
        if legend is not None:
            if not handles:
                # the legend's own entries: plots._dist builds them from patches not drawn on the axes
                handles = list(legend.legend_handles)
                labels = [t.get_text() for t in legend.get_texts()]
            legend.remove()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="upper center",
            ncol=min(len(labels), 4),
            bbox_to_anchor=(0.5, 1.0),
            frameon=False,
        )
        fig.tight_layout(rect=(0, 0, 1, 0.93))
    else:
        fig.tight_layout()


def single_axes_plot(frame: pd.DataFrame, draw: Callable, width=6.0, height=4.0):
    theme()
    fig, ax = plt.subplots(figsize=(width, height))
    if frame.empty:
        no_data_panel(ax)
    else:
        draw(ax)
    fig.tight_layout()
    return fig, ax
