"""The example explorer: one self-contained HTML page per traced run (docs/explorer.md).

For every example of a run it shows the text, the gold labels and the human distribution
(paper eq. 1), the generated output with each counted label step marked, the label
distribution at every counted step (the paper's Fig. 1 for that example), and every
method's distribution next to the human one with its per-example NLL / L1 / example-F1.
A summary strip on top repeats the run's alignment-table rows and its share of multi-label
outputs; the list of examples can be searched, sorted and filtered.

:func:`explorer_data` assembles everything as one JSON-able dict (probabilities as integers
in units of 1/``SCALE``, so a 2,000-example run stays a few MB); :func:`render_explorer`
inlines it, the CSS and the script (plain JS + SVG, no library, no network) into one page
that opens from ``file://``.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multilabel_llm import NONE_LABEL
from multilabel_llm.analyses.mechanisms import second_never_predicted, step_statistics
from multilabel_llm.core.distributions import validate_distribution
from multilabel_llm.core.io import write_text
from multilabel_llm.core.metrics import (
    MetricSettings,
    example_f1_per_example,
    reference_distribution,
    score_examples,
)
from multilabel_llm.core.traces import Trace, TraceMeta
from multilabel_llm.data.canonical import CanonicalDataset
from multilabel_llm.data.label_steps import counted_steps

SCALE = 10_000  # probabilities are stored as round(p * SCALE): 4 decimals, short JSON
SUMMARY_METRICS = ("nll", "l1", "example_f1")


@dataclass
class MethodDistribution:
    """One method's distribution file for the run: slot name, row title, frame, its path."""

    method: str
    display_name: str
    frame: pd.DataFrame
    source: str = "distribution"


def _scaled(values) -> list[int]:
    return [int(round(float(v) * SCALE)) for v in values]


def _rounded(value: float, digits: int = 4) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, digits)


def disagreement(h: np.ndarray, multilabel: bool) -> np.ndarray:
    """Per example, how much the annotators disagree: multi-label ``sum_l min(h_l, 1 - h_l)``
    (0 when every annotator gave the same labels), single-label ``1 - max_l h_l``."""
    h = np.asarray(h, dtype=float)
    if multilabel:
        return np.minimum(h, 1.0 - h).sum(axis=1)
    return 1.0 - h.max(axis=1) if h.shape[1] else np.zeros(len(h))


def marked_output(text: str, step_labels: Sequence[str]) -> list[list]:
    """``text`` cut into ``[piece, r]`` segments: ``r`` is the 1-based counted step whose label
    the piece names, -1 for text between labels. Each label is looked up after the previous
    one (case-insensitive), as the labels appear in generation order."""
    segments: list[list] = []
    lower = text.lower()
    cursor = 0
    for r, label in enumerate(step_labels, start=1):
        pos = lower.find(label.lower(), cursor)
        if pos < 0:
            continue  # a step the text does not spell out (e.g. a fallback match)
        if pos > cursor:
            segments.append([text[cursor:pos], -1])
        segments.append([text[pos : pos + len(label)], r])
        cursor = pos + len(label)
    if cursor < len(text):
        segments.append([text[cursor:], -1])
    return segments


def _never_flags(traces: Sequence[Trace], labels: Sequence[str], label_format) -> set[str]:
    """Ids with an intermediate step whose second-highest label is never predicted later
    (the cases Table 4 counts, :func:`analyses.second_never_predicted`)."""
    steps = step_statistics(traces, labels, require_parse=True, label_format=label_format)
    return {
        str(i)
        for i, group in steps.groupby("id", sort=False)
        if int(second_never_predicted(group)["n_never"].iloc[0]) > 0
    }


def _summary_rows(
    alignment: pd.DataFrame | None, run: Mapping[str, str], methods: Sequence[Mapping]
) -> list[dict]:
    """The alignment-table rows of the run's methods (method order of ``methods``)."""
    if alignment is None or alignment.empty:
        return []
    missing = [c for c in ("model", "prompt", "testset", "method") if c not in alignment]
    if missing:
        raise ValueError(f"alignment table lacks columns {missing} (have {list(alignment)})")
    rows = []
    for spec in methods:
        model = spec.get("model", run["model"])
        hit = alignment[
            (alignment["model"].astype(str) == str(model))
            & (alignment["prompt"].astype(str) == str(run["prompt"]))
            & (alignment["testset"].astype(str) == str(run["testset"]))
            & (alignment["method"].astype(str) == spec["method"])
        ]
        if hit.empty:
            continue
        rec = hit.iloc[0].to_dict()
        row = {
            "method": spec["method"],
            "display": str(rec.get("display_name", spec["method"])),
            "n": int(rec["n_examples"]) if "n_examples" in rec else None,
            "untrained": bool(rec.get("untrained", False) is True),
        }
        for metric in SUMMARY_METRICS:
            for suffix in ("", "_ci_low", "_ci_high"):
                key = metric + suffix
                if key in rec and rec[key] is not None:
                    row[key] = _rounded(rec[key])
        rows.append(row)
    return rows


def explorer_data(
    meta: TraceMeta,
    traces: Sequence[Trace],
    dataset: CanonicalDataset,
    methods: Sequence[MethodDistribution] = (),
    run: Mapping[str, str] | None = None,
    alignment: pd.DataFrame | None = None,
    method_models: Mapping[str, str] | None = None,
    settings: MetricSettings | None = None,
    source: str = "traces",
) -> dict:
    """Everything the page shows, JSON-able. ``alignment``: the dataset's alignment table
    (its rows for this run and these methods make the summary strip); ``method_models``: the
    model slot of a method's alignment row when it is not the run's (e.g. SFT outputs)."""
    settings = settings or MetricSettings()
    run = dict(run or {"dataset": dataset.name, "model": meta.model, "prompt": meta.prompt})
    run.setdefault("testset", "")
    labels = list(dataset.labels)
    unknown = [lab for lab in labels if lab not in meta.score_labels]
    if unknown:
        raise ValueError(
            f"{source}: traces score labels {meta.labels}, but the dataset has {unknown} too"
        )
    score_labels = [*labels, NONE_LABEL]
    # trace rows follow meta.score_labels; show them in the dataset's label order
    columns = [meta.score_labels.index(lab) for lab in score_labels]
    ids = [str(t.id) for t in traces]
    known = set(dataset.examples["id"].astype(str))
    absent = [i for i in ids if i not in known]
    if absent:
        raise ValueError(
            f"{source}: {len(absent)} trace ids are not in dataset {dataset.name!r}, "
            f"e.g. {absent[:5]}"
        )
    label_format = meta.info.get("label_format")
    h, gold, _ = reference_distribution(dataset, ids)
    fallback = np.isnan(dataset.human_distribution(ids).to_numpy(dtype=float)).any(axis=1)
    texts = dataset.examples.set_index("id").loc[ids, "text"].astype(str).tolist()
    index = {lab: k for k, lab in enumerate(labels)}
    pred = np.zeros_like(gold)
    for row, trace in enumerate(traces):
        for lab in trace.pred_labels or []:
            if lab in index:
                pred[row, index[lab]] = 1
    model_f1 = example_f1_per_example(pred, gold)
    dis = disagreement(h, dataset.multilabel)
    never = _never_flags(traces, meta.labels, label_format)

    # every method: its row per example and the per-example scores
    method_values, method_scores = [], []
    for spec in methods:
        # range and columns only, as the alignment tables: an unparsed single-label output's
        # hard prediction is an all-zero row, which score_examples handles
        validate_distribution(spec.frame, labels, True, spec.source)
        frame = spec.frame.assign(id=spec.frame["id"].astype(str)).set_index("id")
        rows = [k for k, i in enumerate(ids) if i in frame.index]
        q = frame.loc[[ids[k] for k in rows], labels].to_numpy(dtype=float)
        scores = score_examples(
            q, h[rows], gold[rows], dataset.multilabel, settings, [ids[k] for k in rows]
        )
        values: list = [None] * len(ids)
        per: list = [None] * len(ids)
        for j, k in enumerate(rows):
            values[k] = _scaled(q[j])
            per[k] = [
                _rounded(scores.nll[j]),
                _rounded(scores.l1[j]),
                _rounded(scores.example_f1[j]),
            ]
        method_values.append(values)
        method_scores.append(per)

    examples = []
    n_multi = n_failed = 0
    for row, trace in enumerate(traces):
        counted = counted_steps(trace, meta.labels, label_format)
        steps = []
        for step in counted.steps:
            if not 0 <= step.step < len(trace.step_probs):
                raise ValueError(
                    f"{source}: trace {trace.id!r} has label step {step.step} outside its "
                    f"{len(trace.step_probs)} step_probs rows"
                )
            if step.label not in score_labels:
                raise ValueError(
                    f"{source}: trace {trace.id!r} steps on {step.label!r}, not one of "
                    f"the dataset's labels {labels} (or {NONE_LABEL!r})"
                )
            probs = np.asarray(trace.step_probs[step.step], dtype=float)[columns]
            steps.append(
                {"label": score_labels.index(step.label), "step": step.step, "p": _scaled(probs)}
            )
        n_labels = len(set(trace.pred_labels)) if trace.parse_ok else None
        n_multi += int(bool(n_labels and n_labels >= 2))
        n_failed += int(not trace.parse_ok)
        examples.append(
            {
                "id": ids[row],
                "text": texts[row],
                "gold": [k for k in range(len(labels)) if gold[row, k]],
                "h": _scaled(h[row]),
                "ref": "gold" if fallback[row] else "human",
                "dis": _rounded(dis[row]),
                "out": trace.text_out,
                "parsed": trace.parse_ok,
                "pred": trace.pred_labels,
                "nLab": n_labels,
                "f1": _rounded(model_f1[row]),
                "never2": ids[row] in never,
                "steps": steps,
                "segs": marked_output(trace.text_out, counted.labels),
                "m": [values[row] for values in method_values],
                "s": [per[row] for per in method_scores],
            }
        )
    specs = [
        {"method": m.method, "model": (method_models or {}).get(m.method, run["model"])}
        for m in methods
    ]
    n = len(traces)
    return {
        "run": run,
        "labels": labels,
        "scoreLabels": score_labels,
        "multilabel": bool(dataset.multilabel),
        "scale": SCALE,
        "threshold": settings.threshold,
        "methods": [{"name": m.method, "display": m.display_name} for m in methods],
        "summary": {
            "n": n,
            "nMulti": n_multi,
            "shareMulti": n_multi / n if n else None,
            "nFailed": n_failed,
            "rows": _summary_rows(alignment, run, specs),
        },
        "examples": examples,
    }


def _json_for_script(data: dict) -> str:
    # "</" would end the <script> element early; "<\/" is the same string to JSON.parse
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_explorer(data: dict) -> str:
    """The standalone page: data, CSS and script inlined."""
    run = data["run"]
    title = "Examples: " + " / ".join(
        str(run[k]) for k in ("dataset", "model", "prompt", "testset") if run.get(k)
    )
    return (
        PAGE.replace("__TITLE__", html.escape(title))
        .replace("__STYLE__", STYLE)
        .replace("__SCRIPT__", SCRIPT)
        .replace("__DATA__", _json_for_script(data))
    )


def write_explorer(path: str | os.PathLike, data: dict) -> int:
    """Write the page atomically; returns its size in bytes."""
    page = render_explorer(data)
    write_text(path, page)
    return len(page.encode("utf-8"))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>__TITLE__</title><style>__STYLE__</style></head>
<body>
<h1>__TITLE__</h1>
<div id="summary"></div>
<div id="main">
 <div id="side">
  <input id="search" type="search" placeholder="search id or text">
  <label>sort <select id="sort">
   <option value="order">file order</option>
   <option value="dis">disagreement ↓</option>
   <option value="f1">example-F1 ↑ (worst first)</option>
   <option value="nlab">generated labels ↓</option>
  </select></label>
  <label>disagreement ≥ <input id="f-dis" type="number" min="0" step="0.1" value="0"></label>
  <label>example-F1 ≤ <input id="f-f1" type="number" min="0" max="1" step="0.1" value="1"></label>
  <label>generated labels <select id="f-nlab">
   <option value="any">any</option><option value="0">0</option><option value="1">1</option>
   <option value="2">2</option><option value="3">3+</option>
  </select></label>
  <label><input id="f-never" type="checkbox"> second-highest label never predicted</label>
  <label><input id="f-fail" type="checkbox"> parse failure</label>
  <div id="count"></div>
  <ul id="list"></ul>
 </div>
 <div id="detail"><p class="hint">Select an example on the left.</p></div>
</div>
<script type="application/json" id="data">__DATA__</script>
<script>__SCRIPT__</script>
</body></html>
"""

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 1em; color: #222; font-size: 14px; }
h1 { font-size: 1.2em; margin: 0 0 .4em; } h2 { font-size: 1em; margin: 1em 0 .3em; }
table { border-collapse: collapse; font-size: .9em; }
th, td { border-bottom: 1px solid #ddd; padding: .2em .6em; text-align: right; }
th { background: #f3f4f6; } td.t, th.t { text-align: left; }
#summary { margin-bottom: .8em; } #summary p { margin: .3em 0; }
#main { display: flex; gap: 1em; align-items: flex-start; }
#side { width: 22em; flex: none; display: flex; flex-direction: column; gap: .3em; }
#list { list-style: none; padding: 0; margin: 0; max-height: 70vh; overflow-y: auto;
        border: 1px solid #ddd; }
#list li { padding: .25em .4em; border-bottom: 1px solid #eee; cursor: pointer;
           white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#list li.sel { background: #dbeafe; } #list li:hover { background: #f1f5f9; }
#list li b { font-weight: 600; margin-right: .4em; } #list li i { color: #666; }
#detail { flex: 1; min-width: 0; } .hint, .note { color: #666; font-style: italic; }
.box { background: #f8fafc; border: 1px solid #e5e7eb; padding: .4em .6em; white-space: pre-wrap; }
mark { background: #fde68a; padding: 0 .1em; } mark sup { color: #92400e; font-weight: 600; }
.chip { display: inline-block; background: #e0e7ff; border-radius: .6em; padding: 0 .5em;
        margin: 0 .2em .2em 0; }
svg text { font-size: 11px; fill: #333; }
"""

# Plain JS + SVG: a list, a detail view, two charts. Every drawn number carries a data-*
# attribute so that tests (and curious users) can read it back.
SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const S = D.scale, L = D.labels, SL = D.scoreLabels, EX = D.examples;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const fmt = (v, d = 3) => (v === null || v === undefined) ? "–" : Number(v).toFixed(d);
const pct = (v) => (v === null || v === undefined) ? "–" : (100 * v).toFixed(1) + "%";
const SVGNS = "http://www.w3.org/2000/svg";
function el(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
let selected = -1;

function summary() {
  const s = D.summary;
  let h = `<p>${s.n} examples; multi-label outputs: ${s.nMulti} (${pct(s.shareMulti)}); ` +
    `parse failures: ${s.nFailed}.</p>`;
  if (s.rows.length) {
    h += '<table id="summary-table"><tr><th class="t">method</th><th>n</th><th>NLL ↓</th>' +
      '<th>L1 ↓</th><th>example-F1 ↑</th></tr>';
    const cell = (r, m) => r[m] === undefined ? "–" :
      `${fmt(r[m], 2)} <small>[${fmt(r[m + "_ci_low"], 2)}, ${fmt(r[m + "_ci_high"], 2)}]</small>`;
    for (const r of s.rows) {
      h += `<tr data-method="${esc(r.method)}"><td class="t">${esc(r.display)}` +
        `${r.untrained ? " <i>(untrained)</i>" : ""}</td><td>${r.n ?? "–"}</td>` +
        `<td>${cell(r, "nll")}</td><td>${cell(r, "l1")}</td><td>${cell(r, "example_f1")}</td></tr>`;
    }
    h += "</table>";
  } else {
    h += '<p class="note">No distribution method was scored on this run.</p>';
  }
  $("summary").innerHTML = h;
}

function visible() {
  const q = $("search").value.trim().toLowerCase();
  const minDis = parseFloat($("f-dis").value) || 0;
  const maxF1 = $("f-f1").value === "" ? 1 : parseFloat($("f-f1").value);
  const nlab = $("f-nlab").value, never = $("f-never").checked, fail = $("f-fail").checked;
  const out = [];
  EX.forEach((e, i) => {
    if (q && !e.id.toLowerCase().includes(q) && !e.text.toLowerCase().includes(q)) return;
    if ((e.dis ?? 0) < minDis - 1e-9 || e.f1 > maxF1 + 1e-9) return;
    if (nlab !== "any") {
      const n = e.nLab ?? 0, want = parseInt(nlab, 10);
      if (want === 3 ? n < 3 : n !== want) return;
    }
    if (never && !e.never2) return;
    if (fail && e.parsed) return;
    out.push(i);
  });
  const key = $("sort").value;
  if (key === "dis") out.sort((a, b) => (EX[b].dis ?? 0) - (EX[a].dis ?? 0));
  if (key === "f1") out.sort((a, b) => EX[a].f1 - EX[b].f1);
  if (key === "nlab") out.sort((a, b) => (EX[b].nLab ?? -1) - (EX[a].nLab ?? -1));
  return out;
}

function renderList() {
  const rows = visible();
  $("count").textContent = `${rows.length} of ${EX.length} examples`;
  const parts = rows.map((i) => {
    const e = EX[i];
    return `<li data-index="${i}" data-id="${esc(e.id)}"${i === selected ? ' class="sel"' : ""}>` +
      `<b>${esc(e.id)}</b><i>F1 ${fmt(e.f1, 2)} · ${e.parsed ? e.nLab + " lab" : "unparsed"}</i> ` +
      `${esc(e.text.slice(0, 80))}</li>`;
  });
  $("list").innerHTML = parts.join("");
}

function stepChart(e) {
  // Fig. 1 for this example: one row of bars per counted step, then the human distribution
  const rows = e.steps.map((s, r) => ({name: `step ${r + 1}`, p: s.p, gen: s.label, r: r + 1}));
  rows.push({name: "human", p: e.h, gen: -1, r: "human"});
  const n = SL.length, bw = Math.max(8, Math.min(28, Math.floor(900 / n))), rh = 70, left = 60;
  const width = left + n * bw + 10, height = rows.length * (rh + 8) + 90;
  const svg = el("svg", {id: "step-chart", width, height});
  rows.forEach((row, k) => {
    const y0 = k * (rh + 8) + 4;
    svg.appendChild(el("text", {x: 0, y: y0 + rh / 2}, row.name));
    svg.appendChild(el("line", {x1: left, x2: left + n * bw, y1: y0 + rh, y2: y0 + rh, stroke: "#999"}));
    row.p.forEach((v, j) => {
      const p = v / S, hgt = Math.max(p * rh, 0);
      const bar = el("rect", {x: left + j * bw + 1, y: y0 + rh - hgt, width: bw - 2, height: hgt,
        fill: j === row.gen ? "#d97706" : (row.r === "human" ? "#059669" : "#3b82f6"),
        "data-step": row.r, "data-label": SL[j], "data-prob": p.toFixed(4)});
      bar.appendChild(el("title", {}, `${row.name}: ${SL[j]} ${p.toFixed(4)}`));
      svg.appendChild(bar);
    });
  });
  const yl = rows.length * (rh + 8) + 8;
  SL.forEach((lab, j) => {
    const x = left + j * bw + bw / 2;
    svg.appendChild(el("text", {x, y: yl, transform: `rotate(60 ${x} ${yl})`}, lab));
  });
  return svg;
}

function heatmap(e) {
  // every method's distribution under the human one, one cell per label
  const rows = [{name: "human (eq. 1)", q: e.h}].concat(
    D.methods.map((m, k) => ({name: m.display, q: e.m[k]})));
  const cw = Math.max(10, Math.min(30, Math.floor(900 / L.length))), ch = 16, left = 210;
  const svg = el("svg", {id: "method-heatmap", width: left + L.length * cw + 10,
    height: rows.length * ch + 90});
  rows.forEach((row, k) => {
    svg.appendChild(el("text", {x: 0, y: k * ch + 12}, row.name.slice(0, 32)));
    L.forEach((lab, j) => {
      const p = row.q ? row.q[j] / S : null;
      const cell = el("rect", {x: left + j * cw, y: k * ch, width: cw - 1, height: ch - 1,
        fill: p === null ? "#eee" : `rgba(37,99,235,${p.toFixed(3)})`,
        "data-method": row.name, "data-label": lab, "data-prob": p === null ? "" : p.toFixed(4)});
      cell.appendChild(el("title", {}, `${row.name}: ${lab} ${p === null ? "–" : p.toFixed(4)}`));
      svg.appendChild(cell);
    });
  });
  const yl = rows.length * ch + 8;
  L.forEach((lab, j) => {
    const x = left + j * cw + cw / 2;
    svg.appendChild(el("text", {x, y: yl, transform: `rotate(60 ${x} ${yl})`}, lab));
  });
  return svg;
}

function topLabels(q) {
  if (!q) return "–";
  return q.map((v, j) => [v / S, L[j]]).sort((a, b) => b[0] - a[0]).slice(0, 3)
    .filter((x) => x[0] > 0).map((x) => `${esc(x[1])} ${x[0].toFixed(2)}`).join(", ");
}

function select(i) {
  selected = i;
  document.querySelectorAll("#list li").forEach((li) =>
    li.classList.toggle("sel", Number(li.dataset.index) === i));
  const e = EX[i];
  const chips = (idx) => idx.length ? idx.map((k) => `<span class="chip">${esc(L[k])}</span>`).join("") : "<i>none</i>";
  const segs = e.segs.map(([t, r]) => r < 0 ? esc(t) :
    `<mark data-step="${r}" title="label step ${r} (generated token ${e.steps[r - 1].step})">${esc(t)}<sup>${r}</sup></mark>`).join("");
  const humanTop = e.h.map((v, k) => [v, k]).filter((x) => x[0] > 0).sort((a, b) => b[0] - a[0])
    .map(([v, k]) => `${esc(L[k])} ${(v / S).toFixed(2)}`).join(", ") || "<i>all zero</i>";
  let h = `<h2 id="ex-id">${esc(e.id)}</h2><div class="box" id="ex-text">${esc(e.text)}</div>` +
    `<p>Gold labels: <span id="ex-gold">${chips(e.gold)}</span></p>` +
    `<p>${e.ref === "human" ? "Human distribution (eq. 1)" : "No annotators: gold labels stand in"}: ` +
    `${humanTop}; disagreement ${fmt(e.dis, 2)}.</p>` +
    `<h2>Generated output</h2><div class="box" id="ex-out">${segs || "<i>(empty)</i>"}</div>` +
    `<p>${e.parsed ? `Parsed labels: ${e.pred.map(esc).join(", ") || "<i>none</i>"}` : "<b>Parse failure.</b>"}` +
    ` Example-F1 of the output: <span id="ex-f1">${fmt(e.f1, 3)}</span>` +
    `${e.never2 ? "; a second-highest label is never predicted" : ""}.</p>` +
    `<h2>Label distribution at every generation step</h2>`;
  $("detail").innerHTML = h;
  if (e.steps.length) $("detail").appendChild(stepChart(e));
  else $("detail").insertAdjacentHTML("beforeend", '<p class="note">No counted label step.</p>');
  let t = "<h2>Methods against the human distribution</h2>";
  if (D.methods.length) {
    t += '<table id="method-table"><tr><th class="t">method</th><th>NLL ↓</th><th>L1 ↓</th>' +
      '<th>example-F1 ↑</th><th class="t">top labels</th></tr>' +
      `<tr data-method="human"><td class="t">human (eq. 1)</td><td></td><td></td><td></td>` +
      `<td class="t">${topLabels(e.h)}</td></tr>`;
    D.methods.forEach((m, k) => {
      const s = e.s[k] || [null, null, null];
      t += `<tr data-method="${esc(m.name)}"><td class="t">${esc(m.display)}</td>` +
        `<td class="nll">${fmt(s[0])}</td><td class="l1">${fmt(s[1])}</td>` +
        `<td class="f1">${fmt(s[2])}</td><td class="t">${topLabels(e.m[k])}</td></tr>`;
    });
    t += "</table>";
  } else {
    t += '<p class="note">No distribution method was scored on this run.</p>';
  }
  $("detail").insertAdjacentHTML("beforeend", t);
  if (D.methods.length) $("detail").appendChild(heatmap(e));
}

summary();
renderList();
$("list").addEventListener("click", (ev) => {
  const li = ev.target.closest("li");
  if (li) select(Number(li.dataset.index));
});
for (const id of ["search", "sort", "f-dis", "f-f1", "f-nlab", "f-never", "f-fail"]) {
  $(id).addEventListener("input", renderList);
  $(id).addEventListener("change", renderList);
}
"""
