"""Benchmark: size of a 2,000-example explorer page and the time headless Chromium takes to
open it from file:// (issue: under 10 MB, under 2 s).

Synthetic run: GoEmotions-sized label set (28 labels + none), 1-4 counted label steps per
output, 30 generated steps, 15 methods, annotator splits. Prints the build time, the size,
the time from navigation to a populated list, and the time to show one example. Needs
chromium + chromedriver (see tests/_browser.py).

    .venv/bin/python bench/bench_explorer.py [--n 2000] [--methods 15] [--keep out.html]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from multilabel_llm.core.traces import LabelStep, Trace, TraceMeta  # noqa: E402
from multilabel_llm.data.canonical import CanonicalDataset  # noqa: E402
from multilabel_llm.report.explorer import MethodDistribution, explorer_data, write_explorer  # noqa: E402
from tests._browser import By, headless_chromium  # noqa: E402

N_LABELS = 28
N_STEPS = 30


def synthetic_run(n: int, n_methods: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = [f"label{k:02d}" for k in range(N_LABELS)]
    ids = [f"ex{i:05d}" for i in range(n)]
    traces, gold_sets, h_rows = [], [], []
    for i, ex_id in enumerate(ids):
        k = int(rng.integers(1, 5))
        chosen = [labels[j] for j in rng.choice(N_LABELS, size=k, replace=False)]
        logits = rng.normal(size=(N_STEPS, N_LABELS + 1)) * 3
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        steps = [LabelStep(step=3 + 4 * r, label=lab) for r, lab in enumerate(chosen)]
        parsed = i % 50 != 0  # a parse failure every 50 outputs
        text = '{"label": [' + ", ".join(f'"{lab}"' for lab in chosen) + "]}"
        traces.append(
            Trace(
                id=ex_id,
                text_out=text if parsed else text[:-3],
                pred_labels=chosen if parsed else None,
                label_steps=steps,
                step_logits=[],  # the explorer reads probabilities only
                step_probs=probs.tolist(),
            )
        )
        gold = [lab for lab in labels if rng.random() < 0.06]
        gold_sets.append(gold)
        h_rows.append([float(rng.integers(0, 5)) / 4 if lab in gold else 0.0 for lab in labels])
    examples = pd.DataFrame(
        {
            "id": ids,
            "split": "test",
            "text": [f"Synthetic example {i}: " + "some words " * 15 for i in range(n)],
            "labels": gold_sets,
            "annotators": [["r1", "r2", "r3", "r4"]] * n,
            "annotator_labels": [[g] for g in gold_sets],
            "n_annotators": 4,
            **{f"h_{lab}": [row[k] for row in h_rows] for k, lab in enumerate(labels)},
        }
    )
    dataset = CanonicalDataset("synthetic", labels, True, examples)
    methods = []
    for m in range(n_methods):
        values = rng.random((n, N_LABELS)) ** 4  # mostly small, as real methods are
        frame = pd.DataFrame(values, columns=labels).assign(id=ids)
        methods.append(MethodDistribution(f"method{m}", f"Method {m}", frame, f"method{m}"))
    meta = TraceMeta(labels=labels, model="synthetic", prompt="p", info={"label_format": "json"})
    return meta, traces, dataset, methods


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--methods", type=int, default=15)
    parser.add_argument("--keep", help="also write the page here")
    args = parser.parse_args(argv)

    meta, traces, dataset, methods = synthetic_run(args.n, args.methods)
    t0 = time.perf_counter()
    data = explorer_data(meta, traces, dataset, methods, {"dataset": "synthetic", "model": "m"})
    t_build = time.perf_counter() - t0
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "explorer.html"
    size = write_explorer(out, data)
    print(f"examples {args.n}, methods {args.methods}, labels {N_LABELS}")
    print(f"build {t_build:.2f} s")
    print(f"size {size / 1e6:.2f} MB")

    with headless_chromium() as driver:
        t0 = time.perf_counter()
        driver.get(out.as_uri())  # returns after the load event: the script has run
        n_listed = len(driver.find_elements(By.CSS_SELECTOR, "#list li"))
        t_open = time.perf_counter() - t0
        assert n_listed == args.n, n_listed
        t0 = time.perf_counter()
        driver.find_elements(By.CSS_SELECTOR, "#list li")[args.n // 2].click()
        driver.find_element(By.ID, "step-chart")
        t_select = time.perf_counter() - t0
        nav = driver.execute_script(
            "const t = performance.getEntriesByType('navigation')[0];"
            "return [t.domContentLoadedEventEnd, t.loadEventEnd];"
        )
    print(f"open {t_open:.2f} s (navigation to a listed page; DOMContentLoaded {nav[0]:.0f} ms)")
    print(f"select one example {t_select:.2f} s")


if __name__ == "__main__":
    main()
