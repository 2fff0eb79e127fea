"""The example explorer (multilabel_llm.report.explorer): data assembled from the hand-built traces of
tests/fixtures/traces (known answers in its README), and the page driven in headless Chromium
from file://. No model, no Snakemake."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multilabel_llm.core.metrics import example_f1_per_example, l1_per_example, nll_per_example
from multilabel_llm.core.traces import read_traces
from multilabel_llm.data.canonical import CanonicalDataset
from multilabel_llm.report.explorer import (
    SCALE,
    MethodDistribution,
    disagreement,
    explorer_data,
    marked_output,
    render_explorer,
    write_explorer,
)
from tests._browser import By, headless_chromium
from tests._dag import run_snakemake, scratch_workdir

FIXTURES = Path(__file__).parents[1] / "fixtures" / "traces"
LABELS = ["anger", "joy", "sadness"]
GOLD = {"a": ["joy", "sadness"], "b": ["sadness"], "c": ["anger"], "d": ["joy", "anger"], "e": []}
# eq. 1 per example; e has no annotators (NaN): its gold labels stand in
HUMAN = {
    "a": [0.0, 1.0, 0.5],
    "b": [0.25, 0.0, 1.0],
    "c": [1.0, 0.0, 0.0],
    "d": [0.5, 0.5, 0.0],
    "e": [float("nan")] * 3,
}
RUN = {"dataset": "toyemo", "model": "toy", "prompt": "p", "testset": "t"}


def toy_dataset() -> CanonicalDataset:
    examples = pd.DataFrame(
        {
            "id": list(GOLD),
            "split": "dev",
            "text": [f"text of {i} </script> <b>" for i in GOLD],
            "labels": [GOLD[i] for i in GOLD],
            "annotators": [["r1", "r2"]] * 4 + [[]],
            "annotator_labels": [[GOLD[i]] for i in GOLD],
            "n_annotators": [2, 2, 2, 2, 0],
            **{f"h_{lab}": [HUMAN[i][k] for i in GOLD] for k, lab in enumerate(LABELS)},
        }
    )
    return CanonicalDataset("toyemo", LABELS, True, examples)


def toy_traces(tmp_path):
    path = tmp_path / "traces.jsonl.gz"
    with open(FIXTURES / "toy.jsonl", "rb") as src, gzip.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return read_traces(path)


def toy_methods() -> list[MethodDistribution]:
    ids = list(GOLD)
    first = pd.DataFrame(
        [[0.2, 0.7, 0.05], [0.15, 0.8, 0.03], [0.95, 0.02, 0.02], [0.3, 0.5, 0.15], [0.1] * 3],
        columns=LABELS,
    ).assign(id=ids)
    # a method without a row for e: the page shows dashes there
    partial = pd.DataFrame(
        [[0.6, 0.7, 0.9], [0.15, 0.8, 0.85], [0.95, 0.02, 0.02], [0.8, 0.5, 0.7]], columns=LABELS
    ).assign(id=ids[:4])
    return [
        MethodDistribution("first_step", "First step", first, "first_step.parquet"),
        MethodDistribution("max_steps", "Max over steps", partial, "max_steps.parquet"),
    ]


def toy_alignment() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["toy", "toy", "other"],
            "prompt": "p",
            "testset": "t",
            "method": ["first_step", "max_steps", "first_step"],
            "display_name": ["First step", "Max over steps", "First step"],
            "n_examples": 5,
            "nll": [1.23, 4.56, 9.0],
            "nll_ci_low": [1.0, 4.0, 8.0],
            "nll_ci_high": [1.5, 5.0, 10.0],
            "l1": [0.7, 0.9, 2.0],
            "example_f1": [0.61, 0.55, 0.1],
        }
    )


@pytest.fixture
def toy(tmp_path):
    meta, traces = toy_traces(tmp_path)
    data = explorer_data(
        meta, traces, toy_dataset(), toy_methods(), RUN, toy_alignment(), source="toy"
    )
    return meta, traces, data


def test_steps_labels_and_flags_follow_the_traces(toy):
    _, traces, data = toy
    ex = {e["id"]: e for e in data["examples"]}
    assert data["scoreLabels"] == [*LABELS, "none"]
    # a: counted steps at generated steps 1, 3, 5 (joy, anger, sadness), P as in the trace
    a = ex["a"]
    assert [(s["step"], data["scoreLabels"][s["label"]]) for s in a["steps"]] == [
        (1, "joy"),
        (3, "anger"),
        (5, "sadness"),
    ]
    by_id = {t.id: t for t in traces}
    for s in a["steps"]:
        assert s["p"] == [round(p * SCALE) for p in by_id["a"].step_probs[s["step"]]]
    assert a["steps"][1]["p"] == [6000, 500, 3000, 500]
    assert [(t, r) for t, r in a["segs"] if r > 0] == [("joy", 1), ("anger", 2), ("sadness", 3)]
    assert "".join(t for t, _ in a["segs"]) == by_id["a"].text_out
    # generated labels, parse failures, the model's own example-F1 against gold
    assert {i: e["nLab"] for i, e in ex.items()} == {"a": 3, "b": 2, "c": 1, "d": 3, "e": None}
    assert [i for i, e in ex.items() if not e["parsed"]] == ["e"]
    assert ex["a"]["f1"] == pytest.approx(0.8) and ex["b"]["f1"] == pytest.approx(2 / 3, abs=1e-4)
    assert ex["e"]["f1"] == 1.0 and ex["e"]["steps"] == []  # no labels, none in gold
    # Table 4's cases: b1's second-highest (anger) is never predicted; d1's is, at step 3
    assert [i for i, e in ex.items() if e["never2"]] == ["b"]
    # human distribution, its fallback to gold, and the disagreement it implies
    assert ex["a"]["h"] == [0, 10000, 5000] and ex["a"]["ref"] == "human"
    assert ex["e"]["h"] == [0, 0, 0] and ex["e"]["ref"] == "gold"
    assert ex["a"]["dis"] == pytest.approx(0.5) and ex["d"]["dis"] == pytest.approx(1.0)
    assert ex["b"]["dis"] == pytest.approx(0.25) and ex["c"]["dis"] == 0.0
    summary = data["summary"]
    assert (summary["n"], summary["nMulti"], summary["nFailed"]) == (5, 3, 1)
    assert summary["shareMulti"] == pytest.approx(0.6)


def test_method_scores_are_the_metrics_per_example(toy):
    _, _, data = toy
    ex = {e["id"]: e for e in data["examples"]}
    h = np.array([HUMAN[i] for i in "abcd"])
    gold = np.array([[float(lab in GOLD[i]) for lab in LABELS] for i in "abcd"])
    for k, method in enumerate(toy_methods()):
        q = method.frame.set_index("id").loc[list("abcd"), LABELS].to_numpy()
        nll = nll_per_example(q, h, True)
        l1 = l1_per_example(q, h)
        f1 = example_f1_per_example((q >= 0.5).astype(int), gold)
        for j, i in enumerate("abcd"):
            assert ex[i]["s"][k] == pytest.approx([nll[j], l1[j], f1[j]], abs=1e-4)
            assert ex[i]["m"][k] == [round(v * SCALE) for v in q[j]]
    assert ex["e"]["m"][1] is None and ex["e"]["s"][1] is None
    # e falls back to its (empty) gold labels: q = 0.1 everywhere
    assert ex["e"]["s"][0][1] == pytest.approx(0.3)
    # the summary keeps this run's alignment rows, in method order
    rows = data["summary"]["rows"]
    assert [(r["method"], r["nll"], r["nll_ci_low"]) for r in rows] == [
        ("first_step", 1.23, 1.0),
        ("max_steps", 4.56, 4.0),
    ]
    assert "l1_ci_low" not in rows[0]  # absent columns stay absent (shown as dashes)


def test_bad_inputs_name_the_file(tmp_path):
    meta, traces = toy_traces(tmp_path)
    dataset = toy_dataset()
    dataset.examples = dataset.examples[dataset.examples["id"] != "c"]
    with pytest.raises(ValueError, match=r"run\.jsonl\.gz: 1 trace ids are not in.*'c'"):
        explorer_data(meta, traces, dataset, source="run.jsonl.gz")
    broken = toy_methods()[0]
    broken.frame = broken.frame.drop(columns="joy")
    with pytest.raises(ValueError, match=r"first_step\.parquet: distribution lacks.*joy"):
        explorer_data(meta, traces, toy_dataset(), [broken])
    with pytest.raises(ValueError, match="alignment table lacks columns"):
        explorer_data(
            meta, traces, toy_dataset(), toy_methods(), RUN, toy_alignment().drop(columns="prompt")
        )


def test_single_label_run_with_an_unparsed_all_zero_row(tmp_path):
    # hard predictions of an unparsed single-label output are an all-zero row: scored (as the
    # alignment tables do), not refused for not summing to 1
    meta, traces = toy_traces(tmp_path)
    dataset = toy_dataset()
    dataset.multilabel = False
    zero = toy_methods()[0]
    zero.frame.loc[zero.frame["id"] == "b", LABELS] = 0.0
    data = explorer_data(meta, traces, dataset, [zero])
    assert data["methods"][0]["name"] == "first_step"


def test_marked_output_and_disagreement():
    text = '{"label": ["Joy", "anger", "joy"]}'
    segs = marked_output(text, ["joy", "anger", "sadness"])
    assert [s for s in segs if s[1] > 0] == [["Joy", 1], ["anger", 2]]
    assert "".join(s[0] for s in segs) == text
    assert marked_output("", ["joy"]) == []
    assert disagreement([[0.2, 0.7, 0.1]], multilabel=False) == pytest.approx([0.3])


def test_page_inlines_everything_and_escapes_script_ends(toy):
    _, _, data = toy
    page = render_explorer(data)
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "<script src" not in page
    # the example texts hold "</script>": the data block must not end early
    blob = page.split('<script type="application/json" id="data">', 1)[1].split("</script>")[0]
    assert json.loads(blob)["examples"][0]["text"] == "text of a </script> <b>"


def test_page_in_headless_chromium(toy, tmp_path):
    _, traces, data = toy
    page = tmp_path / "explorer.html"
    write_explorer(page, data)
    by_id = {t.id: t for t in traces}
    with headless_chromium() as driver:
        driver.get(page.as_uri())
        time.sleep(0.3)
        items = driver.find_elements(By.CSS_SELECTOR, "#list li")
        assert [li.get_attribute("data-id") for li in items] == list(GOLD)
        summary = driver.find_element(By.ID, "summary").text
        assert "multi-label outputs: 3 (60.0%)" in summary and "1.23" in summary

        driver.find_element(By.CSS_SELECTOR, "#list li[data-id='d']").click()
        time.sleep(0.2)
        assert driver.find_element(By.ID, "ex-id").text == "d"
        # the per-step chart: each bar is the trace's probability at that counted step
        bars = driver.find_elements(By.CSS_SELECTOR, "#step-chart rect")
        shown = {
            (b.get_attribute("data-step"), b.get_attribute("data-label")): float(
                b.get_attribute("data-prob")
            )
            for b in bars
        }
        steps = [s.step for s in by_id["d"].label_steps]
        for r, step in enumerate(steps, start=1):
            for lab, p in zip([*LABELS, "none"], by_id["d"].step_probs[step], strict=True):
                assert shown[(str(r), lab)] == pytest.approx(p, abs=1e-4)
        assert shown[("human", "anger")] == 0.5 and len(bars) == 3 * 4 + 3
        marks = driver.find_elements(By.CSS_SELECTOR, "#ex-out mark")
        assert [m.text for m in marks] == ["joy1", "sadness2", "anger3"]
        # the method table: d's per-example NLL / L1 / example-F1 of every method
        ex_d = next(e for e in data["examples"] if e["id"] == "d")
        for k, method in enumerate(("first_step", "max_steps")):
            row = driver.find_element(By.CSS_SELECTOR, f"#method-table tr[data-method='{method}']")
            cells = [float(row.find_element(By.CLASS_NAME, c).text) for c in ("nll", "l1", "f1")]
            assert cells == pytest.approx(ex_d["s"][k], abs=5e-4)
        cell = driver.find_element(
            By.CSS_SELECTOR, "#method-heatmap rect[data-method='Max over steps'][data-label='joy']"
        )
        assert float(cell.get_attribute("data-prob")) == 0.5

        # filters change the list
        def listed():
            return [
                li.get_attribute("data-id")
                for li in driver.find_elements(By.CSS_SELECTOR, "#list li")
            ]

        driver.find_element(By.ID, "f-never").click()
        assert listed() == ["b"]
        driver.find_element(By.ID, "f-never").click()
        driver.find_element(By.ID, "f-fail").click()
        assert listed() == ["e"]
        driver.find_element(By.ID, "f-fail").click()
        driver.execute_script(
            "const s = document.getElementById('f-nlab'); s.value = '3';"
            "s.dispatchEvent(new Event('change'));"
        )
        assert listed() == ["a", "d"]
        driver.execute_script(
            "const s = document.getElementById('sort'); s.value = 'dis';"
            "s.dispatchEvent(new Event('change'));"
        )
        assert listed() == ["d", "a"]  # disagreement 1.0 before 0.5
        search = driver.find_element(By.ID, "search")
        search.send_keys("of a")
        assert listed() == ["a"]
        assert driver.find_element(By.ID, "count").text == "1 of 5 examples"

        # the unparsed example opens too, with its dashes for the method without a row
        search.clear()
        driver.execute_script(
            "const s = document.getElementById('f-nlab'); s.value = 'any';"
            "s.dispatchEvent(new Event('change'));"
        )
        driver.find_element(By.CSS_SELECTOR, "#list li[data-id='e']").click()
        row = driver.find_element(By.CSS_SELECTOR, "#method-table tr[data-method='max_steps']")
        assert row.find_element(By.CLASS_NAME, "nll").text == "–"
        assert "Parse failure" in driver.find_element(By.ID, "detail").text

        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors


def test_demo_plans_an_explorer_per_traced_run_in_the_report(tmp_path):
    """Dry run of the demo: one write_explorer job per traced run in the default target
    (REPORT_TARGETS), each reading the distributions of the methods it shows."""
    work = scratch_workdir(tmp_path, "data")
    proc = run_snakemake(work, "-n", "--config", "experiment=demo", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [block for block in proc.stdout.split("\n\n") if "rule write_explorer:" in block]
    outputs = sorted(
        line.split("output: ")[1]
        for block in jobs
        for line in block.splitlines()
        if "output: " in line
    )
    base = "results/explorer/goemotions/smollm2"
    assert f"{base}/json10/main_test_set.html" in outputs
    assert f"{base}-sft/json10/main_test_set.html" in outputs  # SFT methods read these
    assert "results/explorer/hatexplain/smollm2/json10/main_test_set.html" in outputs
    for prompt in ("alphabetical", "reverse", "icl00", "icl100", "json10"):
        assert f"{base}/{prompt}/train_excerpt.html" in outputs  # the mechanism studies
    assert len(outputs) == len(set(outputs)) == 10
    main = next(b for b in jobs if f"{base}/json10/main_test_set.html" in b)
    assert "distributions/goemotions/smollm2/json10/main_test_set/constant.parquet" in main
    assert "tables/alignment_goemotions.csv" in main
    assert "sft_outputs.parquet" not in main  # shown on the -sft run's page instead
