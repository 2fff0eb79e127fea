"""Attention mass on the input vs. generated label tokens (paper §D.6, Table 6).

A separate pass (eager attention is needed to read the weights, and the maps are large):
for each traced example, one forward over prompt + generated tokens; at every counted label
step after the first (``analyses.counted_steps``: labels the output names, first occurrence
only, the same steps as every other §4 analysis), the attention row of the position that
predicts that step (heads averaged, then layers) is split into mass/count on the *input* (the
prompt), on the *label* part (generated tokens so far) and on the *first tokens* of the labels
generated before. Table 6 reports mean(mass / count) per region in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..analyses import counted_steps
from .loading import input_device


@torch.inference_mode()
def attention_summary(
    model,
    tokenizer,
    prompts: dict[str, list[int]],
    traces,
    labels: Sequence[str] | None = None,
    label_format: str | None = None,
) -> pd.DataFrame:
    """Rows: id, step, label, {input,label,first}_{mass,count}, one per counted label step
    after the first. ``step`` is the 0-based index among the counted steps (1 = the second
    label; ``analyses.attention_summary`` reads r = step + 1).

    ``labels`` (the dataset's, ``TraceMeta.labels``) decide which labels an unparsed output
    names; without them each trace's own step labels are the candidates, which keeps the same
    steps (a step's label is always one of the labels or none). ``label_format`` as in
    ``counted_steps``.
    """
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    device = input_device(model)  # the main device also when placed over several GPUs
    rows = []
    for trace in tqdm(traces, unit="ex", desc="attention", mininterval=1):
        candidates = labels if labels is not None else [s.label for s in trace.label_steps]
        steps = counted_steps(trace, candidates, label_format).steps
        if len(steps) < 2 or trace.id not in prompts:
            continue
        prompt = prompts[trace.id]
        # Exact generated ids when the trace kept them (re-tokenising the text can misalign).
        gen = (
            trace.extra.get("gen_ids")
            or tokenizer(trace.text_out, add_special_tokens=False).input_ids
        )
        ids = torch.as_tensor([prompt + gen], device=device)
        out = model(input_ids=ids, output_attentions=True, use_cache=False)
        n_in = len(prompt)
        # (layers, seq, seq) after averaging heads; then mean over layers.
        # per layer to the input device first: layers may sit on different GPUs
        att = torch.stack([a[0].float().mean(0).to(device) for a in out.attentions])
        att = att.mean(0).cpu().numpy()
        firsts = []
        for r, ls in enumerate(steps):
            q = n_in + ls.step - 1  # the position whose output predicts step ls.step
            if r > 0 and q < att.shape[0]:
                row = att[q]
                first_pos = [n_in + s for s in firsts if n_in + s <= q]
                rows.append(
                    {
                        "id": trace.id,
                        "step": r,
                        "label": ls.label,
                        "input_mass": float(row[:n_in].sum()),
                        "input_count": n_in,
                        "label_mass": float(row[n_in : q + 1].sum()),
                        "label_count": q + 1 - n_in,
                        "first_mass": float(row[first_pos].sum()) if first_pos else 0.0,
                        "first_count": len(first_pos),
                    }
                )
            firsts.append(ls.step)
    cols = [
        "id",
        "step",
        "label",
        "input_mass",
        "input_count",
        "label_mass",
        "label_count",
        "first_mass",
        "first_count",
    ]
    return pd.DataFrame(rows, columns=cols)


def attention_table(frame: pd.DataFrame) -> dict[str, float]:
    """Average percentage attention per token on input, label and first label tokens."""
    out = {}
    for region in ("input", "label", "first"):
        valid = frame[frame[f"{region}_count"] > 0]
        per_token = valid[f"{region}_mass"] / valid[f"{region}_count"]
        out[region] = float(100 * per_token.mean()) if len(valid) else float(np.nan)
    return out
