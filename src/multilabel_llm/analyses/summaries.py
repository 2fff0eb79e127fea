"""Summaries of tables pooled over runs: attention (Table 6), probes (Figs 7/15), base vs
instruct (Fig 12), label order (Table 7), and the row selection a figure reads."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

# region → column prefixes accepted in attention.csv (the engine writes ``first_*``)
ATTENTION_REGIONS = {
    "input": ("input",),
    "label": ("label",),
    "first_token": ("first_token", "first"),
}


def attention_summary(attention: pd.DataFrame, min_step: int | None = None) -> pd.DataFrame:
    """Table 6 (one model/dataset): average % attention per token to each prompt region.

    ``attention`` (the engine's ``attention.csv``) has one row per (example, label step after
    the first) with ``<region>_mass`` (attention of the position predicting that label's first
    token, heads then layers averaged) and ``<region>_count`` (tokens in the region) for
    region in input / label / first_token (or ``first``). Per token attention = mass / count,
    averaged over rows, in % (``pct_per_token_<region>``, the paper's numbers);
    ``share_<region>`` is the mean mass in %, the cumulative split the paper quotes (~80/20).

    Step numbering: the engine's ``step`` column is the 0-based index of the label step (its
    first row per example is ``step`` 1, the second label). Here, as in ``step_stats.csv`` and
    the paper ("when they generate the second or higher label"), generation steps count from
    1: ``r = step + 1``, so the rows cover ``r >= 2``. ``min_step`` keeps rows with
    ``r >= min_step``; ``from_step``/``to_step`` give the range of ``r`` summarised.
    """
    frame = attention
    if "step" in attention.columns:
        r = attention["step"] + 1
    elif min_step is not None:
        raise ValueError(f"attention table has no 'step' column (columns: {list(attention)})")
    if min_step is not None:
        frame = attention[r >= min_step]
    out: dict[str, float] = {"n": len(frame)}
    if "step" in attention.columns:
        kept = r.loc[frame.index]
        out["from_step"] = int(kept.min()) if len(kept) else math.nan
        out["to_step"] = int(kept.max()) if len(kept) else math.nan
    for region, prefixes in ATTENTION_REGIONS.items():
        prefix = next((p for p in prefixes if f"{p}_mass" in frame.columns), None)
        if prefix is None:
            raise ValueError(
                f"attention table lacks '{prefixes[0]}_mass' (columns: {list(attention)})"
            )
        mass, count = f"{prefix}_mass", f"{prefix}_count"
        if count in frame.columns:
            valid = frame[frame[count] > 0]
            out[f"pct_per_token_{region}"] = (
                float((valid[mass] / valid[count]).mean() * 100) if len(valid) else math.nan
            )
        out[f"share_{region}"] = float(frame[mass].mean() * 100) if len(frame) else math.nan
    return pd.DataFrame([out])


PROBE_VARIANTS = {"gold": "Gold", "pred": "Pred", "pred2+": "Pred 2+", "perf": "Perf"}


def normalise_probe_variant(name: str) -> str:
    """Map spellings such as ``pred_2plus``/``Pred 2+``/``nonfirst`` to the paper's names."""
    key = str(name).strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    key = key.replace("2plus", "2+").replace("nonfirst", "pred2+").replace("model", "perf")
    if key in PROBE_VARIANTS:
        return PROBE_VARIANTS[key]
    return str(name)


def probe_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Figs 7/15: probe micro-F1 per variant with the paper's variant names, in paper order.

    ``scores`` needs ``variant`` and ``micro_f1``; other columns (dataset, model, n) are kept.
    """
    missing = {"variant", "micro_f1"} - set(scores.columns)
    if missing:
        raise ValueError(f"probe scores lack columns {sorted(missing)} (have {list(scores)})")
    out = scores.copy()
    out["variant"] = out["variant"].map(normalise_probe_variant)
    order = {name: k for k, name in enumerate(PROBE_VARIANTS.values())}
    out["_order"] = out["variant"].map(lambda v: order.get(v, len(order)))
    keys = [c for c in ("dataset", "model") if c in out.columns]
    return out.sort_values([*keys, "_order"], kind="stable").drop(columns="_order")


def base_vs_instruct(alignment: pd.DataFrame, models: dict[str, dict]) -> pd.DataFrame:
    """Fig 12: example-F1 and NLL of base vs instruction-tuned models per method.

    ``alignment`` is the concatenation of the alignment tables (``method, model, nll,
    example_f1`` and optionally ``dataset``); ``models`` maps model slot → its config (needs
    ``instruct``; ``family`` groups models, default the slot name). Values are averaged over
    datasets and prompts. Columns ``family, variant (base|instruct), method, metric
    (example_f1|nll), value, n_datasets``. Models absent from ``models`` are skipped.
    """
    missing = {"method", "model", "nll", "example_f1"} - set(alignment.columns)
    if missing:
        raise ValueError(
            f"alignment table lacks columns {sorted(missing)} (have {list(alignment)})"
        )
    frame = alignment[alignment["model"].isin(list(models))].copy()
    if "display_name" in frame.columns:  # the metrics stage's readable method names
        frame["method"] = frame["display_name"].fillna(frame["method"])
    frame["family"] = [models[m].get("family", m) for m in frame["model"]]
    frame["variant"] = ["instruct" if models[m].get("instruct") else "base" for m in frame["model"]]
    long = frame.melt(
        id_vars=[c for c in ("family", "variant", "method", "dataset") if c in frame.columns],
        value_vars=["example_f1", "nll"],
        var_name="metric",
        value_name="value",
    )
    group = ["family", "variant", "method", "metric"]
    out = long.groupby(group, sort=True).agg(
        value=("value", "mean"),
        n_datasets=("dataset", "nunique") if "dataset" in long.columns else ("value", "size"),
    )
    return out.reset_index()


def select_rows(frame: pd.DataFrame, **allowed: Sequence) -> pd.DataFrame:
    """Rows whose ``column`` value is in ``allowed[column]``, for each column the frame has
    (a figure reads only its study's cells of a table that holds other studies' rows too)."""
    keep = pd.Series(True, index=frame.index)
    for column, values in allowed.items():
        if column in frame.columns:
            keep &= frame[column].isin(list(values))
    return frame[keep]


def label_order_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 7: pool the per-run ``label_order_agreement`` rows by label-order setting.

    ``rows`` needs ``label_order, n, n_alphabetical, n_prompt, prompt_is_alphabetical``
    (stacked over models, datasets and seeds). Percentages are over the pooled multi-label
    outputs; the prompt column is NaN for settings where prompt order is alphabetical.
    """
    need = {"label_order", "n", "n_alphabetical", "n_prompt", "prompt_is_alphabetical"}
    if need - set(rows.columns):
        raise ValueError(f"label-order rows lack {sorted(need - set(rows.columns))}")
    out = []
    for setting, group in rows.groupby("label_order", sort=False):
        n = int(group["n"].sum())
        distinct = group[~group["prompt_is_alphabetical"].astype(bool)]
        n_distinct = int(distinct["n"].sum())
        out.append(
            {
                "setting": setting,
                "n_runs": len(group),
                "n": n,
                "pct_alphabetical": 100.0 * group["n_alphabetical"].sum() / n if n else math.nan,
                "pct_prompt": (
                    100.0 * distinct["n_prompt"].sum() / n_distinct if n_distinct else math.nan
                ),
            }
        )
    return pd.DataFrame(out, columns=["setting", "n_runs", "n", "pct_alphabetical", "pct_prompt"])
