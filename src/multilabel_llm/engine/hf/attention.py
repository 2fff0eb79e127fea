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

from multilabel_llm.data.label_steps import counted_steps
from multilabel_llm.engine.hf.tracer import PrefixCache
from multilabel_llm.engine.loading import input_device
from multilabel_llm.engine.tracing import common_prefix_len


def attention_rows_plain(model, sequences, queries) -> list[np.ndarray]:
    """Reference: one full forward per sequence; for each sequence the attention rows (heads
    averaged, then layers) of the positions ``queries[i]``, each of the sequence's length."""
    device = input_device(model)  # the main device also when placed over several GPUs
    rows = []
    for seq, qs in zip(sequences, queries, strict=True):
        ids = torch.as_tensor([seq], device=device)
        out = model(input_ids=ids, output_attentions=True, use_cache=False)
        # per layer to the input device first: layers may sit on different GPUs
        att = torch.stack([a[0].float().mean(0).to(device) for a in out.attentions]).mean(0)
        rows.append(att[list(qs)].cpu().numpy())
    return rows


def attention_rows(
    model, sequences, queries, shared: int, pad_id: int = 0, batch_size: int = 8
) -> list[np.ndarray]:
    """:func:`attention_rows_plain`, batched over a shared prefix: the first ``shared``
    tokens (the same in every sequence) run once; the rest of each sequence is left-padded
    between prefix and suffix (as the trace engine does) and ``batch_size`` of them attend to
    the prefix's KV in one forward. Every query position must lie at or after ``shared``."""
    device = input_device(model)
    prefix = PrefixCache(model, list(sequences[0][:shared])) if shared else None
    rows: list[np.ndarray | None] = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        chunk = [i for i in order[start : start + batch_size] if len(queries[i])]
        if not chunk:
            continue
        suffixes = [list(sequences[i][shared:]) for i in chunk]
        out = _padded_forward(model, prefix, suffixes, pad_id, device)
        width = max(len(s) for s in suffixes)
        for r, i in enumerate(chunk):
            pad = width - len(suffixes[r])
            qs = torch.as_tensor([pad + q - shared for q in queries[i]])
            # columns: prefix, this row's padding (masked: weight 0), then its own tokens
            keep = torch.cat([torch.arange(shared), torch.arange(shared + pad, shared + width)])
            layers = [a[r].float().mean(0).to(device)[qs][:, keep] for a in out.attentions]
            rows[i] = torch.stack(layers).mean(0).cpu().numpy()
    return [
        r if r is not None else np.zeros((0, len(s))) for r, s in zip(rows, sequences, strict=True)
    ]


def _padded_forward(model, prefix, suffixes, pad_id, device):
    """Left-padded suffixes over the prefix cache (``PrefixCache.forward_suffixes`` with the
    attention weights), or on their own when there is no shared prefix."""
    n_pre = prefix.prefix_len if prefix is not None else 0
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(suffixes), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(suffixes), n_pre + width), dtype=torch.long)
    mask[:, :n_pre] = 1
    for r, s in enumerate(suffixes):
        ids[r, width - len(s) :] = torch.as_tensor(s)
        mask[r, n_pre + width - len(s) :] = 1
    positions = n_pre + (mask[:, n_pre:].cumsum(-1) - 1).clamp(min=0)
    return model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        past_key_values=prefix.expanded(len(suffixes)) if prefix is not None else None,
        use_cache=prefix is not None,
        output_attentions=True,
        logits_to_keep=1,
    )


@torch.inference_mode()
def label_step_attention(
    model,
    tokenizer,
    prompts: dict[str, list[int]],
    traces,
    labels: Sequence[str] | None = None,
    label_format: str | None = None,
    *,
    batched: bool = True,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Rows: id, step, label, {input,label,first}_{mass,count}, one per counted label step
    after the first. ``step`` is the 0-based index among the counted steps (1 = the second
    label; ``analyses.attention_summary`` reads r = step + 1 and summarises the rows).

    ``labels`` (the dataset's, ``TraceMeta.labels``) decide which labels an unparsed output
    names; without them each trace's own step labels are the candidates, which keeps the same
    steps (a step's label is always one of the labels or none). ``label_format`` as in
    ``counted_steps``. ``batched=False`` runs one full forward per example (the reference
    the batched shared-prefix pass is tested against).
    """
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    todo = []  # (trace id, prompt length, counted steps, full ids, query positions)
    for trace in traces:
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
        n_in, seq = len(prompt), list(prompt) + list(gen)
        # the position whose output predicts step ls.step, for every counted step after the first
        qs = [n_in + ls.step - 1 for ls in steps[1:] if n_in + ls.step - 1 < len(seq)]
        todo.append((trace.id, n_in, steps, seq, qs))
    seqs, queries = [t[3] for t in todo], [t[4] for t in todo]
    if batched and todo:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        shared = common_prefix_len(list(prompts[todo[0][0]]), [prompts[t[0]] for t in todo])
        with tqdm(total=len(todo), unit="ex", desc="attention", mininterval=1) as bar:
            att_rows = attention_rows(model, seqs, queries, shared, int(pad), batch_size)
            bar.update(len(todo))
    else:
        att_rows = attention_rows_plain(model, seqs, queries)
    rows = []
    for (tid, n_in, steps, seq, _qs), att in zip(todo, att_rows, strict=True):
        firsts = [steps[0].step]
        for r, ls in enumerate(steps[1:], start=1):
            q = n_in + ls.step - 1
            if q < len(seq):  # steps are in order: att row r - 1 is this step's
                row = att[r - 1]
                first_pos = [n_in + s for s in firsts if n_in + s <= q]
                rows.append(
                    {
                        "id": tid,
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
