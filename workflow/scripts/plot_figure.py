"""Snakemake adapter: stacked analysis CSVs → one paper figure (PNG + PDF)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from multilabel_llm import analyses, plots  # noqa: E402
from multilabel_llm.report import read_tables  # noqa: E402

p = snakemake.params
frame = analyses.select_rows(read_tables(snakemake.input, p.run_keys), **p.select)
order = {"models": p.models, "datasets": p.datasets}
EMPTY_STEPS = pd.DataFrame(columns=["dataset", "model", *analyses.STEP_COLUMNS])

if p.kind == "fig1":
    if frame.empty:
        frame = pd.DataFrame(columns=["id", "text_out", "step", "label", "prob", "generated"])
    title = "" if frame.empty else f"{frame['dataset'].iloc[0]}, {frame['model'].iloc[0]}"
    if not frame.empty:
        title += f", example {frame['id'].iloc[0]}: {frame['text_out'].iloc[0]!r}"
    plot = plots.figure_example_steps(frame, title=title[:160])
elif p.kind == "fig8":
    if not frame.empty and "display_name" in frame.columns:
        frame = frame.assign(method=frame["display_name"].fillna(frame["method"]))
    plot = plots.figure_binary_variants(frame)
elif p.kind in ("fig2", "fig10"):
    quantity = "top_prob" if p.kind == "fig2" else "entropy_bits"
    plot = plots.figure_step_quantity(
        frame if not frame.empty else EMPTY_STEPS, quantity, max_step=p.max_step, **order
    )
elif p.kind == "fig3":
    plot = plots.figure_second(frame if not frame.empty else EMPTY_STEPS, p.max_step, **order)
elif p.kind == "fig9":
    plot = plots.figure_top_two_box(frame if not frame.empty else EMPTY_STEPS, p.max_step, **order)
elif p.kind == "fig4":
    if frame.empty:
        frame = pd.DataFrame(columns=["dataset", "model", "id", "rank", "prob"])
    plot = plots.figure_first_step_sorted(frame, **order)
elif p.kind == "fig5":
    if frame.empty:
        frame = pd.DataFrame(columns=["dataset", "model", "position", "accuracy"])
    plot = plots.figure_label_position_accuracy(frame, max_position=p.max_step)
elif p.kind == "fig6":
    if frame.empty:
        frame = pd.DataFrame(
            columns=["dataset", "model", "multilabel_ratio", "n", "n_multilabel", "pct_multilabel"]
        )
    plot = plots.figure_multilabel_icl(frame)
elif p.kind == "fig11":
    if frame.empty:
        frame = pd.DataFrame(columns=["dataset", "model", "position", "count"])
    plot = plots.figure_second_position(frame, **order)
elif p.kind == "fig12":
    table = (
        analyses.base_vs_instruct(frame, p.model_info)
        if not frame.empty
        else pd.DataFrame(columns=["family", "variant", "method", "metric", "value"])
    )
    plot = plots.figure_base_vs_instruct(table)
elif p.kind == "fig7":
    scores = (
        analyses.probe_summary(frame)
        if not frame.empty
        else pd.DataFrame(columns=["dataset", "model", "variant", "micro_f1"])
    )
    plot = plots.figure_probes(scores, **order)
else:
    raise ValueError(f"unknown figure {p.kind!r}")

plot.save(snakemake.output.png, snakemake.output.pdf)
print(f"{p.kind}: {len(frame)} rows. {plot.caption}", file=sys.stderr)
