"""Seaborn figures of paper §4/§D, drawn from the analysis CSVs (multilabel_llm.analyses).

Every ``figure_*`` function takes the stacked analysis tables (with ``dataset`` and ``model``
columns) and returns a :class:`~multilabel_llm.report.figure_base.Plot`: the matplotlib figure
plus a caption. A setting with no rows gets an explicit "no data for this setting" panel instead
of an error, so a partly configured experiment (no SFT model, one dataset, …) still yields every
figure. The registry of figure kinds is :mod:`multilabel_llm.report.figure_registry`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from multilabel_llm.analyses.mechanisms import second_next_eligible  # noqa: E402
from multilabel_llm.data.label_steps import INTERMEDIATE, LAST  # noqa: E402
from multilabel_llm.report.figure_base import (  # noqa: E402
    CAPTIONS,
    SMALL_N,
    Plot,
    grid,
    legend_once,
    no_data_panel,
    ordered,
    palette,
    single_axes_plot,
)

POSITIONS = (LAST, INTERMEDIATE)
QUANTITY_LABELS = {
    "top_prob": "top probability (%)",
    "second_prob": "second-highest probability (%)",
    "entropy_bits": "entropy (bits)",
}


def _steps(frame: pd.DataFrame, max_step: int) -> pd.DataFrame:
    frame = frame[frame["step"] <= max_step].copy()
    frame["r"] = "r=" + frame["step"].astype(int).astype(str)
    return frame


def _group_sizes(data: pd.DataFrame, x: str, hue: str) -> dict:
    return data.groupby([x, hue], observed=True).size().to_dict()


def _n_label(sizes: dict, x_value, hue_order: Sequence) -> str:
    """``n=12`` (one model) or ``n=12/5`` (one count per model, legend order)."""
    return "n=" + "/".join(str(sizes.get((x_value, h), 0)) for h in hue_order)


def _dist(
    ax,
    data: pd.DataFrame,
    x: str,
    y: str,
    hue: str,
    order,
    hue_order,
    palette,
    kind,
    n_in_ticks: bool = True,
):
    """Violins (or boxes) per (x, hue) group, with the group sizes under the x ticks; a group
    with fewer than ``SMALL_N`` values is drawn as its points only."""
    hue_order = list(hue_order)
    sizes = _group_sizes(data, x, hue)
    is_big = pd.Series(
        [sizes.get((a, b), 0) >= SMALL_N for a, b in zip(data[x], data[hue], strict=True)],
        index=data.index,
    )
    # same order/hue_order in every call keeps the dodged positions aligned
    common = dict(x=x, y=y, hue=hue, order=order, hue_order=hue_order, palette=palette, ax=ax)
    big, small = data[is_big.to_numpy()], data[~is_big.to_numpy()]
    if not big.empty:
        if kind == "box":
            sns.boxplot(data=big, **common, dodge=True, fliersize=2, legend=False)
        else:
            sns.violinplot(
                data=big,
                **common,
                dodge=True,  # "auto" would centre a model that is alone among the big groups
                cut=0,
                density_norm="width",
                inner="quartile",
                linewidth=0.8,
                legend=False,
            )
            sns.stripplot(data=big, **common, dodge=True, size=2, alpha=0.4, legend=False)
    if not small.empty:
        sns.stripplot(
            data=small, **common, dodge=True, size=4.5, alpha=0.9, jitter=0.12, legend=False
        )
    ax.legend(
        handles=[Patch(facecolor=palette[h], label=h) for h in hue_order if h in palette],
        title=hue,
    )
    if n_in_ticks:
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([f"{o}\n{_n_label(sizes, o, hue_order)}" for o in order])


def figure_step_quantity(
    step_stats: pd.DataFrame,
    quantity: str = "top_prob",
    max_step: int = 2,
    kind: str = "violin",
    caption: str | None = None,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> Plot:
    """Figs 2, 10 (13): one quantity per generation step; rows = datasets, columns = last /
    intermediate; hue = model."""
    if quantity not in QUANTITY_LABELS:
        raise ValueError(f"quantity {quantity!r} not in {list(QUANTITY_LABELS)}")
    frame = _steps(step_stats, max_step)
    if quantity != "entropy_bits":
        frame[quantity] = frame[quantity] * 100
    datasets = ordered(frame["dataset"], datasets, True) or ["(none)"]
    models = ordered(frame["model"], models)
    fig, axes = grid(len(datasets), 2)
    order = [f"r={k}" for k in range(1, max_step + 1)]
    for i, dataset in enumerate(datasets):
        # last vs intermediate is the comparison: both panels of a row share one y-range from 0
        row_max = frame.loc[frame["dataset"] == dataset, quantity].max()
        top = 100.0 if quantity != "entropy_bits" else (row_max if row_max > 0 else 1.0)
        for j, position in enumerate(POSITIONS):
            ax = axes[i, j]
            cell = frame[(frame["dataset"] == dataset) & (frame["position"] == position)]
            ax.set_title(f"{dataset} — {position}")
            if cell.empty:
                no_data_panel(ax)
                continue
            present = [o for o in order if o in set(cell["r"])]
            _dist(ax, cell, "r", quantity, "model", present, models, palette(models), kind)
            ax.set_xlabel("generation step")
            ax.set_ylabel(QUANTITY_LABELS[quantity])
            ax.set_ylim(-0.02 * top, 1.02 * top)
    legend_once(fig, axes)
    key = {"top_prob": "fig2", "second_prob": "fig3", "entropy_bits": "fig10"}[quantity]
    return Plot(fig, caption or CAPTIONS[key])


SECOND_QUANTITIES = {
    "second_prob": "second",
    "next_pred_prob": "r+1 pred",
    "second_prob_next": "interm.@r+1",
}


def _second_long(frame: pd.DataFrame) -> pd.DataFrame:
    long = frame.melt(
        id_vars=["dataset", "model", "id", "r", "step", "position"],
        value_vars=list(SECOND_QUANTITIES),
        var_name="quantity",
        value_name="prob",
    ).dropna(subset=["prob"])
    long["prob"] = long["prob"] * 100
    long["x"] = long["quantity"].map(SECOND_QUANTITIES) + "\n" + long["r"]
    return long


def _second_next_text(cell: pd.DataFrame, models: Sequence[str]) -> str:
    """Per model and step: % second predicted next over the steps where it is possible (n),
    and how many intermediate steps were left out because it was not (analyses docs)."""
    lines = []
    for model in models:
        mine = cell[(cell["model"] == model) & (cell["position"] == INTERMEDIATE)]
        if mine.empty:
            continue
        parts = []
        for r, group in mine.groupby("r", sort=True):
            hits = second_next_eligible(group)["second_is_next"]
            left_out = len(group) - len(hits)
            pct = f"{100 * hits.astype(bool).mean():.1f}%" if len(hits) else "–"
            extra = f", {left_out} impossible" if left_out else ""
            parts.append(f"{r}: {pct} (n={len(hits)}{extra})")
        lines.append(f"{model}: " + ", ".join(parts))
    return "2nd predicted next\n" + "\n".join(lines) if lines else ""


def _draw_second(ax, cell: pd.DataFrame, position: str, models, kind: str, max_step: int):
    long = _second_long(cell)
    if position == LAST:
        long = long[long["quantity"] == "second_prob"]
    order = [
        f"{label}\nr={k}"
        for k in range(1, max_step + 1)
        for q, label in SECOND_QUANTITIES.items()
        if position == INTERMEDIATE or q == "second_prob"
    ]
    order = [o for o in order if o in set(long["x"])]
    if long.empty:
        no_data_panel(ax)
        return
    _dist(ax, long, "x", "prob", "model", order, models, palette(models), kind)
    ax.set_ylabel("probability (%)")
    ax.set_ylim(-2, 102)
    ax.tick_params(axis="x", labelsize=8)
    # the % second-predicted-next goes under the axis, where it cannot hide a violin
    text = _second_next_text(cell, models) if position == INTERMEDIATE else ""
    ax.set_xlabel(text, fontsize=8)


def figure_second(
    step_stats: pd.DataFrame,
    max_step: int = 2,
    kind: str = "violin",
    caption: str | None = None,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> Plot:
    """Fig 3 (14): second-highest probabilities, r+1 pred, intermediate@r+1, % second next."""
    frame = _steps(step_stats, max_step)
    datasets = ordered(frame["dataset"], datasets, True) or ["(none)"]
    models = ordered(frame["model"], models)
    fig, axes = grid(len(datasets), 2, width=6.5)
    for i, dataset in enumerate(datasets):
        for j, position in enumerate(POSITIONS):
            ax = axes[i, j]
            ax.set_title(f"{dataset} — {position}")
            cell = frame[(frame["dataset"] == dataset) & (frame["position"] == position)]
            if cell.empty:
                no_data_panel(ax)
                continue
            _draw_second(ax, cell, position, models, kind, max_step)
    legend_once(fig, axes)
    return Plot(fig, caption or CAPTIONS["fig3"])


def figure_top_two_box(
    step_stats: pd.DataFrame,
    max_step: int = 2,
    caption: str | None = None,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> Plot:
    """Fig 9 (16): box plots; per dataset two rows (second-highest above, top below)."""
    frame = _steps(step_stats, max_step)
    datasets = ordered(frame["dataset"], datasets, True) or ["(none)"]
    models = ordered(frame["model"], models)
    fig, axes = grid(2 * len(datasets), 2, width=6.5, height=2.8)
    order = [f"r={k}" for k in range(1, max_step + 1)]
    for i, dataset in enumerate(datasets):
        for j, position in enumerate(POSITIONS):
            cell = frame[(frame["dataset"] == dataset) & (frame["position"] == position)]
            ax_second, ax_top = axes[2 * i, j], axes[2 * i + 1, j]
            ax_second.set_title(f"{dataset} — {position}: second-highest")
            ax_top.set_title(f"{dataset} — {position}: top")
            if cell.empty:
                no_data_panel(ax_second)
                no_data_panel(ax_top)
                continue
            _draw_second(ax_second, cell, position, models, "box", max_step)
            top = cell.assign(top_prob=cell["top_prob"] * 100)
            present = [o for o in order if o in set(top["r"])]
            _dist(ax_top, top, "r", "top_prob", "model", present, models, palette(models), "box")
            ax_top.set_xlabel("generation step")
            ax_top.set_ylabel("top probability (%)")
            ax_top.set_ylim(-2, 102)
    legend_once(fig, axes)
    return Plot(fig, caption or CAPTIONS["fig9"])


def figure_first_step_sorted(
    sorted_probs: pd.DataFrame,
    caption: str | None = None,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> Plot:
    """Fig 4: box plot of the k-th largest first-step probability; rows = datasets."""
    datasets = ordered(sorted_probs["dataset"], datasets, True) or ["(none)"]
    models = ordered(sorted_probs["model"], models)
    fig, axes = grid(len(datasets), 1, width=7.0)
    for i, dataset in enumerate(datasets):
        ax = axes[i, 0]
        cell = sorted_probs[sorted_probs["dataset"] == dataset]
        # every rank of a model has one value per output: n is the number of outputs
        outputs = cell.groupby("model")["id"].nunique().to_dict() if "id" in cell else {}
        counts = ", ".join(f"{m} {outputs[m]}" for m in models if m in outputs)
        ax.set_title(f"{dataset} (n outputs: {counts})" if counts else dataset)
        if cell.empty:
            no_data_panel(ax)
            continue
        cell = cell.assign(prob=cell["prob"] * 100)
        ranks = sorted(cell["rank"].unique())
        _dist(ax, cell, "rank", "prob", "model", ranks, models, palette(models), "box", False)
        ax.set_xlabel("label rank at the first label step")
        ax.set_ylabel("probability (%)")
        ax.set_ylim(-2, 102)
    legend_once(fig, axes)
    return Plot(fig, caption or CAPTIONS["fig4"])


def figure_label_position_accuracy(
    accuracy: pd.DataFrame, max_position: int = 2, caption: str | None = None
) -> Plot:
    """Fig 5: accuracy of the k-th generated label; colour = dataset, line style = model."""
    frame = accuracy[accuracy["position"] <= max_position].copy()
    frame["accuracy"] = frame["accuracy"] * 100

    def draw(ax):
        sns.lineplot(
            data=frame,
            x="position",
            y="accuracy",
            hue="dataset",
            style="model",
            markers=True,
            dashes=True,
            ax=ax,
        )
        ax.set_xticks(range(1, max_position + 1))
        ax.set_xticklabels([_ordinal(k) for k in range(1, max_position + 1)])
        ax.set_xlabel("position of the label in the output")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        sns.move_legend(ax, "center left", bbox_to_anchor=(1.0, 0.5), frameon=False)

    fig, _ = single_axes_plot(frame, draw)
    return Plot(fig, caption or CAPTIONS["fig5"])


def _ordinal(k: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")


def pool_multilabel_rates(rates: pd.DataFrame) -> pd.DataFrame:
    """Fig 6's points: one per (dataset, model, % multi-label demos), pooling every run at that
    setting (several prompts or seeds) by summing outputs, never by averaging percentages.

    Columns ``dataset, model, demo_pct, n`` (outputs), ``n_multilabel``, ``n_runs``,
    ``pct_multilabel``.
    """
    need = {"dataset", "model", "multilabel_ratio", "n", "n_multilabel"}
    if need - set(rates.columns):
        raise ValueError(
            f"multilabel_rate rows lack {sorted(need - set(rates.columns))} (have {list(rates)})"
        )
    frame = rates.dropna(subset=["multilabel_ratio"])
    frame = frame.assign(demo_pct=frame["multilabel_ratio"].astype(float) * 100)
    pooled = frame.groupby(["dataset", "model", "demo_pct"], as_index=False, sort=True).agg(
        n=("n", "sum"), n_multilabel=("n_multilabel", "sum"), n_runs=("n", "size")
    )
    pooled["pct_multilabel"] = [
        100.0 * k / n if n else float("nan")
        for k, n in zip(pooled["n_multilabel"], pooled["n"], strict=True)
    ]
    return pooled


def figure_multilabel_icl(rates: pd.DataFrame, caption: str | None = None) -> Plot:
    """Fig 6: % multi-label outputs vs % multi-label demos; colour = dataset, style = model.

    Runs at the same setting are pooled (:func:`pool_multilabel_rates`) and each point is
    labelled with its n (outputs) and, when it pools several runs, their number.
    """
    frame = pool_multilabel_rates(rates)

    def draw(ax):
        ax.plot([0, 100], [0, 100], ls="--", color="0.6", lw=1)
        sns.lineplot(
            data=frame,
            x="demo_pct",
            y="pct_multilabel",
            hue="dataset",
            style="model",
            markers=True,
            estimator=None,  # one row per point already: nothing may be averaged here
            errorbar=None,
            ax=ax,
        )
        for row in frame.itertuples(index=False):
            note = f"n={row.n}" + (f" ({row.n_runs} runs)" if row.n_runs > 1 else "")
            ax.annotate(
                note,
                (row.demo_pct, row.pct_multilabel),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color="0.3",
            )
        ax.set_xlabel("multi-label in-context examples (%)")
        ax.set_ylabel("multi-label outputs (%)")
        ax.set_xlim(-3, 103)
        ax.set_ylim(-3, 103)
        sns.move_legend(ax, "center left", bbox_to_anchor=(1.0, 0.5), frameon=False)

    fig, _ = single_axes_plot(frame, draw)
    return Plot(fig, caption or CAPTIONS["fig6"])


def figure_second_position(
    positions: pd.DataFrame,
    caption: str | None = None,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> Plot:
    """Fig 11: histogram of the step at which step 1's second-highest label is predicted."""
    datasets = ordered(positions["dataset"], datasets, True) or ["(none)"]
    models = ordered(positions["model"], models) or ["(none)"]
    fig, axes = grid(len(models), len(datasets), width=4.2, height=3.0)
    for i, model in enumerate(models):
        for j, dataset in enumerate(datasets):
            ax = axes[i, j]
            cell = positions[(positions["model"] == model) & (positions["dataset"] == dataset)]
            position = cell["position"].astype(str)
            predicted = cell[position.str.fullmatch(r"\d+")]
            never = int(cell.loc[position == "never", "count"].sum())
            # steps whose second-highest is none or already generated cannot count either way
            impossible = int(
                cell.loc[position.isin(["second_none", "second_generated"]), "count"].sum()
            )
            note = f"never predicted: {never}" + (
                f"; impossible (none/generated): {impossible}" if impossible else ""
            )
            ax.set_title(f"{dataset} — {model}\n({note})", fontsize=9)
            if predicted.empty or predicted["count"].sum() == 0:
                no_data_panel(ax)
                continue
            predicted = predicted.assign(step=predicted["position"].astype(int))
            predicted = predicted.groupby("step", as_index=False)["count"].sum()
            predicted["pct"] = 100 * predicted["count"] / predicted["count"].sum()
            sns.barplot(data=predicted, x="step", y="pct", color=sns.color_palette()[0], ax=ax)
            ax.set_xlabel("label step at which it is predicted")
            ax.set_ylabel("% of predicted cases")
            ax.set_ylim(0, 100)
    fig.tight_layout()
    return Plot(fig, caption or CAPTIONS["fig11"])


def figure_base_vs_instruct(table: pd.DataFrame, caption: str | None = None) -> Plot:
    """Fig 12: rows = example-F1 / NLL, columns = model families; hue = base/instruct."""
    families = ordered(table["family"]) if not table.empty else ["(none)"]
    metrics = {"example_f1": "example-F1", "nll": "NLL"}
    fig, axes = grid(2, len(families), width=6.0, height=3.2)
    for j, family in enumerate(families):
        sub = table[table["family"] == family] if not table.empty else table
        variants = set(sub["variant"]) if not sub.empty else set()
        missing = [v for v in ("base", "instruct") if v not in variants]
        for i, (metric, label) in enumerate(metrics.items()):
            ax = axes[i, j]
            cell = sub[sub["metric"] == metric] if not sub.empty else sub
            note = f" (no {' / '.join(missing)} model configured)" if missing else ""
            ax.set_title(f"{family}: {label}{note}", fontsize=9)
            if cell.empty:
                no_data_panel(ax)
                continue
            sns.barplot(
                data=cell,
                x="method",
                y="value",
                hue="variant",
                hue_order=["base", "instruct"],
                ax=ax,
            )
            ax.set_xlabel("")
            ax.set_ylabel(label)
            ax.tick_params(axis="x", rotation=30)
    legend_once(fig, axes)
    return Plot(fig, caption or CAPTIONS["fig12"])


def figure_probes(
    scores: pd.DataFrame,
    caption: str | None = None,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> Plot:
    """Figs 7/15: probe micro-F1 per variant (Gold/Pred/Pred 2+/Perf); columns = datasets."""
    datasets = ordered(scores["dataset"], datasets, True) or ["(none)"]
    models = ordered(scores["model"], models)
    fig, axes = grid(1, len(datasets), width=4.8, height=3.4)
    order = ["Gold", "Pred", "Pred 2+", "Perf"]
    for j, dataset in enumerate(datasets):
        ax = axes[0, j]
        ax.set_title(dataset)
        cell = scores[scores["dataset"] == dataset]
        if cell.empty:
            no_data_panel(ax)
            continue
        present = [v for v in order if v in set(cell["variant"])] + sorted(
            set(cell["variant"]) - set(order)
        )
        sns.barplot(
            data=cell,
            x="variant",
            y="micro_f1",
            hue="model",
            order=present,
            hue_order=models,
            palette=palette(models),
            ax=ax,
        )
        ax.set_xlabel("")
        ax.set_ylabel("micro-F1")
        ax.set_ylim(0, 1)
    legend_once(fig, axes)
    return Plot(fig, caption or CAPTIONS["fig7"])


def figure_example_steps(frame: pd.DataFrame, title: str = "", caption: str | None = None) -> Plot:
    """Fig 1: one panel per label step plus the human distribution; bars = labels."""
    steps = ordered(frame["step"]) if not frame.empty else []
    fig, axes = grid(1, max(len(steps), 1), width=3.6, height=3.4)
    if not steps:
        no_data_panel(axes[0, 0], "no output with a label step")
    for j, step in enumerate(steps):
        ax = axes[0, j]
        cell = frame[frame["step"] == step].fillna({"prob": 0.0})
        colors = [sns.color_palette()[1] if step == "human" else sns.color_palette()[0]] * len(cell)
        bars = ax.bar(cell["label"], 100 * cell["prob"], color=colors)
        for bar, generated in zip(bars, cell["generated"], strict=True):
            if generated:
                bar.set_edgecolor("black")
                bar.set_linewidth(2)
        ax.set_title(step if step == "human" else f"generating {step}")
        ax.set_ylim(0, 100)
        ax.set_ylabel("probability (%)" if j == 0 else "")
        ax.tick_params(axis="x", rotation=60)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return Plot(fig, caption or CAPTIONS["fig1"])


def figure_binary_variants(alignment: pd.DataFrame, caption: str | None = None) -> Plot:
    """Fig 8: binary breakdown with probabilities vs outcomes; panels = metrics."""
    metrics = {"nll": "NLL", "l1": "L1", "example_f1": "example-F1"}
    fig, axes = grid(1, len(metrics), width=4.2, height=3.4)
    for j, (metric, label) in enumerate(metrics.items()):
        ax = axes[0, j]
        ax.set_title(label)
        if alignment.empty or metric not in alignment.columns:
            no_data_panel(ax)
            continue
        sns.barplot(data=alignment, x="dataset", y=metric, hue="method", ax=ax)
        ax.set_xlabel("")
        ax.set_ylabel(label)
    legend_once(fig, axes)
    return Plot(fig, caption or CAPTIONS["fig8"])
