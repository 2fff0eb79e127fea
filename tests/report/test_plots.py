"""Figures and report tables from the hand-built traces: files are written, panels hold the
expected data, and missing settings become explicit "no data" panels instead of errors."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from multilabel_llm.analyses import mechanisms as an
from multilabel_llm.analyses import summaries
from multilabel_llm.analyses.run_tables import tag
from multilabel_llm.core.traces import read_traces
from multilabel_llm.data.label_steps import STEP_COLUMNS
from multilabel_llm.report import plots
from multilabel_llm.report.figure_base import NO_DATA
from multilabel_llm.report.html import frame_to_html, read_tables, render_table

FIXTURES = Path(__file__).parents[1] / "fixtures" / "traces"
GOLD = {"a": ["joy", "sadness"], "b": ["sadness"], "c": ["anger"], "d": ["joy", "anger"], "e": []}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("traces") / "traces.jsonl.gz"
    with open(FIXTURES / "toy.jsonl", "rb") as src, gzip.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return read_traces(path)


@pytest.fixture(scope="module")
def steps(toy):
    meta, traces = toy
    one = an.step_statistics(traces, meta.labels)
    return pd.concat(
        [tag(one, dataset=d, model=m) for d in ("goemo", "mfrc") for m in ("base", "instruct")]
    )


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def check_files(plot, tmp_path, name):
    png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
    plot.save(png, pdf)
    with Image.open(png) as image:
        assert image.size[0] > 400 and image.size[1] > 200
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert plot.caption


def test_fig2_grid_and_files(steps, tmp_path):
    plot = plots.figure_step_quantity(steps, "top_prob", datasets=["goemo", "mfrc", "semeval"])
    assert titles(plot.figure) == [
        "goemo — last",
        "goemo — intermediate",
        "mfrc — last",
        "mfrc — intermediate",
        "semeval — last",
        "semeval — intermediate",
    ]
    # the dataset with no traces gets explicit empty panels
    assert texts(plot.figure).count(NO_DATA) == 2
    ax = plot.figure.axes[1]
    # n per model (legend order) under each step
    assert [t.get_text() for t in ax.get_xticklabels()] == ["r=1\nn=3/3", "r=2\nn=2/2"]
    assert ax.get_ylabel() == "top probability (%)"
    legend_labels = [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert legend_labels == ["base", "instruct"]
    check_files(plot, tmp_path, "fig2")


def test_fig3_second_next_text_and_ticks(steps, tmp_path):
    plot = plots.figure_second(steps)
    inter = plot.figure.axes[1]
    ticks = [t.get_text() for t in inter.get_xticklabels()]
    assert ticks[:3] == [
        "second\nr=1\nn=3/3",
        "r+1 pred\nr=1\nn=3/3",
        "interm.@r+1\nr=1\nn=3/3",
    ]
    # fixture: step 1 → 1 of 3 intermediate cases, step 2 → 2 of 2
    assert "base: r=1: 33.3% (n=3), r=2: 100.0% (n=2)" in inter.get_xlabel()
    last = plot.figure.axes[0]
    assert [t.get_text() for t in last.get_xticklabels()] == [
        "second\nr=1\nn=1/1",  # c1 (a and d end at step 3, beyond max_step)
        "second\nr=2\nn=1/1",  # b2
    ]
    check_files(plot, tmp_path, "fig3")


def test_fig9_and_fig10(steps, tmp_path):
    check_files(plots.figure_top_two_box(steps), tmp_path, "fig9")
    entropy = plots.figure_step_quantity(steps, "entropy_bits")
    assert entropy.figure.axes[0].get_ylabel() == "entropy (bits)"
    check_files(entropy, tmp_path, "fig10")
    with pytest.raises(ValueError, match="quantity"):
        plots.figure_step_quantity(steps, "bogus")


def test_empty_step_stats_draw_no_data_panels(tmp_path):
    empty = pd.DataFrame(columns=["dataset", "model", *STEP_COLUMNS])
    for plot in (
        plots.figure_step_quantity(empty, datasets=["goemo"]),
        plots.figure_second(empty, datasets=["goemo"]),
        plots.figure_top_two_box(empty, datasets=["goemo"]),
    ):
        assert set(texts(plot.figure)) == {NO_DATA}
    check_files(plots.figure_second(empty, datasets=["goemo"]), tmp_path, "empty")


def test_fig4_fig5_fig6_fig11(toy, steps, tmp_path):
    meta, traces = toy
    sorted_probs = tag(an.first_step_sorted(traces, meta.labels), dataset="goemo", model="m")
    check_files(plots.figure_first_step_sorted(sorted_probs), tmp_path, "fig4")

    acc = tag(an.label_position_accuracy(traces, GOLD), dataset="goemo", model="m")
    fig5 = plots.figure_label_position_accuracy(acc)
    line = fig5.figure.axes[0].lines[0]
    assert list(line.get_ydata()) == pytest.approx([200 / 3, 100 / 3])  # positions 3+ cut
    check_files(fig5, tmp_path, "fig5")

    rates = pd.concat(
        [
            tag(
                an.multilabel_output_rate(traces, meta.labels),
                dataset="goemo",
                model="m",
                multilabel_ratio=r,
            )
            for r in (0.0, 0.5, 1.0)
        ]
    )
    fig6 = plots.figure_multilabel_icl(rates)
    assert fig6.figure.axes[0].get_xlabel() == "multi-label in-context examples (%)"
    check_files(fig6, tmp_path, "fig6")

    positions = tag(
        an.second_eventual_position(an.step_statistics(traces, meta.labels)),
        dataset="mfrc",
        model="m",
    )
    fig11 = plots.figure_second_position(positions)
    ax = fig11.figure.axes[0]
    assert "never predicted: 1" in ax.get_title()
    assert [p.get_height() for p in ax.patches] == pytest.approx([50.0, 50.0])
    check_files(fig11, tmp_path, "fig11")


def test_fig12_notes_missing_base(tmp_path):
    alignment = pd.DataFrame(
        {
            "dataset": ["g", "g"],
            "method": ["max", "unary"],
            "model": ["chat", "chat"],
            "nll": [3.0, 4.0],
            "example_f1": [0.5, 0.4],
        }
    )
    table = summaries.base_vs_instruct(alignment, {"chat": {"family": "llama", "instruct": True}})
    plot = plots.figure_base_vs_instruct(table)
    assert "no base model configured" in plot.figure.axes[0].get_title()
    check_files(plot, tmp_path, "fig12")
    empty = plots.figure_base_vs_instruct(table.iloc[0:0])
    assert NO_DATA in texts(empty.figure)


def test_fig7_probes(tmp_path):
    scores = summaries.probe_summary(
        pd.DataFrame(
            {
                "dataset": "g",
                "model": "m",
                "variant": ["perf", "gold", "pred", "pred 2+"],
                "micro_f1": [0.5, 0.6, 0.8, 0.3],
            }
        )
    )
    plot = plots.figure_probes(scores, datasets=["g", "mfrc"])
    ax = plot.figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Gold", "Pred", "Pred 2+", "Perf"]
    assert [p.get_height() for p in ax.patches][:4] == pytest.approx([0.6, 0.8, 0.3, 0.5])
    assert NO_DATA in texts(plot.figure)  # mfrc has no probe scores
    check_files(plot, tmp_path, "fig7")


def test_table_html_pivot_and_empty(tmp_path):
    csv = tmp_path / "t4.csv"
    pd.DataFrame(
        {
            "dataset": ["goemo", "goemo", "mfrc"],
            "model": ["8b", "70b", "8b"],
            "pct_never": [99.33, 92.9, 100.0],
        }
    ).to_csv(csv, index=False)
    wide = render_table(
        csv,
        tmp_path / "t4.html",
        "Table 4",
        "caption & <b>",
        digits=1,
        pivot={"index": "dataset", "columns": "model", "values": "pct_never"},
    )
    assert list(wide.columns) == ["dataset", "8b", "70b"]
    page = (tmp_path / "t4.html").read_text()
    assert "<td>99.3</td>" in page and "<td>–</td>" in page  # mfrc has no 70b
    assert "caption &amp; &lt;b&gt;" in page
    (tmp_path / "empty.csv").write_text("")
    render_table(tmp_path / "empty.csv", tmp_path / "empty.html", "T6")
    assert "No rows" in (tmp_path / "empty.html").read_text()
    assert "<table>" in frame_to_html(pd.DataFrame({"a": [1]}), "x")


def test_read_tables_fills_keys_and_skips_empty(tmp_path):
    (tmp_path / "a.csv").write_text("variant,micro_f1\nGold,0.5\n")
    (tmp_path / "b.csv").write_text("")
    (tmp_path / "c.csv").write_text("dataset,variant,micro_f1\nown,Pred,0.7\n")
    frame = read_tables(
        [tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"],
        [
            {"dataset": "g", "model": "m1"},
            {"dataset": "g", "model": "m2"},
            {"dataset": "x", "model": "m3"},
        ],
    )
    assert frame[["dataset", "model", "variant"]].values.tolist() == [
        ["g", "m1", "Gold"],
        ["own", "m3", "Pred"],
    ]
    with pytest.raises(ValueError, match="2 tables but 1 key"):
        read_tables([tmp_path / "a.csv", tmp_path / "c.csv"], [{}])


def synthetic_steps(counts: dict[tuple[str, int], int], value=lambda k: 0.1 * k) -> pd.DataFrame:
    """Step rows of one dataset/model: ``counts[(position, step)]`` rows each."""
    rows = []
    for (position, step), n in counts.items():
        for k in range(n):
            rows.append(
                {
                    "dataset": "goemo",
                    "model": "m",
                    "id": f"{position}{step}-{k}",
                    "step": step,
                    "position": position,
                    "top_prob": 0.5 + 0.04 * k,
                    "entropy_bits": value(k) * (3 if position == "intermediate" else 1),
                }
            )
    return pd.DataFrame(rows)


def test_small_groups_are_drawn_as_points_with_n():
    from matplotlib.collections import PathCollection, PolyCollection

    steps = synthetic_steps({("last", 1): 12, ("last", 2): 3, ("intermediate", 1): 2})
    plot = plots.figure_step_quantity(steps, "top_prob")
    last, inter = plot.figure.axes[0], plot.figure.axes[1]
    assert [t.get_text() for t in last.get_xticklabels()] == ["r=1\nn=12", "r=2\nn=3"]
    # one violin (r=1, n=12); r=2 (n=3) is its three points only
    violins = [c for c in last.collections if isinstance(c, PolyCollection)]
    assert len(violins) == 1
    points = sum(len(c.get_offsets()) for c in last.collections if isinstance(c, PathCollection))
    assert points == 12 + 3
    assert not [c for c in inter.collections if isinstance(c, PolyCollection)]
    assert sum(len(c.get_offsets()) for c in inter.collections) == 2
    assert "fewer than 10" in plot.caption


def test_fig10_panels_share_one_y_range_from_zero():
    steps = synthetic_steps({("last", 1): 12, ("intermediate", 1): 12})
    plot = plots.figure_step_quantity(steps, "entropy_bits")
    last, inter = plot.figure.axes[0], plot.figure.axes[1]
    assert last.get_ylim() == inter.get_ylim()
    low, high = last.get_ylim()
    top = steps["entropy_bits"].max()  # 3.3 bits, in the intermediate panel
    assert low == pytest.approx(-0.02 * top) and high == pytest.approx(1.02 * top)


def test_fig6_pools_runs_by_counts_and_labels_n():
    rates = pd.DataFrame(
        {
            "dataset": ["goemo"] * 3,
            "model": ["m"] * 3,
            "prompt": ["icl50_s0", "icl50_s1", "icl100"],
            "multilabel_ratio": [0.5, 0.5, 1.0],
            "n": [10, 30, 20],
            "n_multilabel": [5, 3, 10],
            "pct_multilabel": [50.0, 10.0, 50.0],
        }
    )
    pooled = plots.pool_multilabel_rates(rates).set_index("demo_pct")
    # 8 of 40 outputs, not the mean of 50% and 10%
    assert pooled.loc[50.0, "pct_multilabel"] == pytest.approx(20.0)
    assert pooled.loc[50.0, ["n", "n_runs"]].tolist() == [40, 2]
    plot = plots.figure_multilabel_icl(rates)
    ax = plot.figure.axes[0]
    data_lines = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_ls() != "--"]
    assert list(data_lines[0].get_ydata()) == pytest.approx([20.0, 50.0])
    assert {t.get_text() for t in ax.texts} == {"n=40 (2 runs)", "n=20"}
    with pytest.raises(ValueError, match="n_multilabel"):
        plots.pool_multilabel_rates(rates.drop(columns="n_multilabel"))


def test_fig11_title_counts_impossible_cases():
    positions = pd.DataFrame(
        {
            "dataset": "goemo",
            "model": "m",
            "from_step": 1,
            "position": ["2", "never", "second_none", "second_generated"],
            "count": [3, 2, 4, 1],
        }
    )
    ax = plots.figure_second_position(positions).figure.axes[0]
    assert "never predicted: 2; impossible (none/generated): 5" in ax.get_title()
    assert [p.get_height() for p in ax.patches] == pytest.approx([100.0])


def test_draw_figure_registry_draws_every_kind_from_empty_tables(tmp_path):
    from multilabel_llm.report.figure_registry import FIGURES, draw_figure

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    params = {
        "run_keys": [{"dataset": "d", "model": "m"}],
        "select": {},
        "models": ["m"],
        "datasets": ["d"],
        "max_step": 2,
        "model_info": {},
    }
    for kind in FIGURES:
        png, pdf = tmp_path / f"{kind}.png", tmp_path / f"{kind}.pdf"
        plot = draw_figure(kind, [empty], params, png, pdf)
        assert png.stat().st_size > 0 and pdf.stat().st_size > 0 and plot.caption
    with pytest.raises(ValueError, match="unknown figure 'fig99'"):
        draw_figure("fig99", [empty], params, tmp_path / "x.png", tmp_path / "x.pdf")
