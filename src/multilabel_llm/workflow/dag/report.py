"""The report stage of the grid (rules/report.smk, and the Snakefile's rule all): how each
table is shown in the HTML report, everything the report holds, and the default target. It
gathers the other stages' targets (figures, explorer pages, alignment and mechanism tables)."""

from __future__ import annotations

from functools import cached_property

from multilabel_llm.workflow.dag.core import ALIGNMENT, MECHANISMS, DagCore

ALIGNMENT_COLUMNS = [
    "model",
    "prompt",
    "testset",
    "method",
    "display_name",
    "nll",
    "nll_ci_low",
    "nll_ci_high",
    "l1",
    "example_f1",
    "example_f1_ci_low",
    "example_f1_ci_high",
]

BINARY_BIAS_TABLE = {
    "title": "Binary breakdown: answer-position bias",
    "caption": (
        "Per binary-breakdown run: mean P('a') over the asked prompts and the share "
        "answered 'a' (0.5 without a position preference), the fitted position term "
        "(logits, > 0 favours 'a'; only with combine: position_term), and the Spearman "
        "correlation between a label's place in the list and its mean Bradley-Terry score "
        "(near 1: later labels win because they are shown as 'b'). orders: one asks each "
        "pair in label order (the paper's method); both asks it both ways."
    ),
    "subcategory": ALIGNMENT,
    "digits": 3,
    "columns": [
        "dataset",
        "model",
        "testset",
        "method",
        "orders",
        "combine",
        "mean_p_a",
        "share_a",
        "position_term",
        "score_position_corr",
    ],
}


class ReportStage(DagCore):
    """The report's tables and targets, and the workflow's default target."""

    @cached_property
    def report_tables(self) -> dict[str, dict]:
        """table -> how the report shows it: title, caption, subcategory, digits, pivot, columns."""
        return {
            "table1_datasets": dict(
                title="Table 1: annotation statistics and label distributions",
                caption=(
                    "Annotators (mean per example), agreement and the share of examples with "
                    "0, 1, 2 and 3+ aggregate labels, per dataset."
                ),
                subcategory="Datasets (§3)",
            ),
            "table4_second_never": dict(
                title="Table 4: second-highest label never predicted later (%)",
                caption=(
                    "Among intermediate generation steps whose second-highest label is not "
                    "predicted at the next step, the % where it is not predicted at any later "
                    "step."
                ),
                subcategory=MECHANISMS,
                digits=1,
                pivot=dict(index="dataset", columns="model", values="pct_never"),
            ),
            "second_next": dict(
                title="Second-highest label predicted next (%)",
                caption=(
                    "Per generation step r (and over all intermediate steps, 'all'): the % of "
                    "cases the second-highest label at r is the label predicted at r+1 (the "
                    "numbers of Fig. 3)."
                ),
                subcategory=MECHANISMS,
                digits=1,
            ),
            "table6_attention": dict(
                title="Table 6: average attention (%) to input and label tokens",
                caption=(
                    "Average per-token attention (%) from the first token of the second and "
                    "later labels to the input, to the label tokens, and to the labels' first "
                    "tokens (pct_per_token_*), and the cumulative share of attention (share_*). "
                    "Empty when no model was run with attention capture "
                    "(analyses.attention_models)."
                ),
                subcategory=MECHANISMS,
                digits=3,
            ),
            "table7_label_order": dict(
                title="Table 7: outputs following alphabetical / prompt label order (%)",
                caption=(
                    "Share of multi-label outputs whose labels appear in alphabetical order and "
                    "in the order the instruction lists them, per label-order setting, pooled "
                    "over models, datasets and seeds; '–' where prompt order is alphabetical."
                ),
                subcategory=MECHANISMS,
                digits=1,
            ),
            **{
                f"alignment_{d}": dict(
                    title=f"Tables 2/5: distribution alignment on {d}",
                    caption=(
                        "NLL, L1 and example-F1 between LLM-derived and human distributions per "
                        "model and method (Table 2: the large instruct model; Table 5: the "
                        "smaller one)."
                    ),
                    subcategory=ALIGNMENT,
                    digits=2,
                    columns=ALIGNMENT_COLUMNS,
                )
                for d in self.datasets
            },
            # Tables 2/5 as rules/metrics.smk lays them out
            **{
                name: dict(
                    title=self.paper_table_title(name),
                    caption=(
                        "NLL, L1 and example-F1 between LLM-derived and human distributions, "
                        "laid out as in the paper (rows: methods; columns: datasets × metrics)."
                    ),
                    subcategory=ALIGNMENT,
                    digits=2,
                )
                for name in self.paper_alignment_tables
            },
            "binary_position_bias": BINARY_BIAS_TABLE,
        }

    def report_table_names(self) -> list[str]:
        """Table 1, and each table some study of the experiment lists."""
        names = ["table1_datasets"]
        names += [
            t for t, (artifact, *_) in self.mechanism_tables.items() if self.study_of(artifact)
        ]
        names += [f"alignment_{d}" for d in self.scored_datasets()]
        names += list(self.paper_alignment_tables)
        if self.binary_bias_cells():
            names.append("binary_position_bias")
        return names

    def report_targets(self) -> list[str]:
        """Everything the HTML report shows."""
        r = self.results
        return (
            [f"{r}/figures/{name}.png" for name in self.figure_names()]
            + [f"{r}/report/tables/{name}.html" for name in self.report_table_names()]
            + [f"{r}/tables/paper_comparison.html"]
            + self.explorer_pages()
        )

    def final_outputs(self) -> list[str]:
        """The default target: every table (CSV/MD/TeX) and everything the report shows."""
        r = self.results
        return [
            f"{r}/tables/table1_datasets.csv",
            *[t for d in self.alignment_tables() for t in _exts(d, ("csv", "md", "tex"))],
            *[t for d in self.token_level_tables() for t in _exts(d, ("csv", "md"))],
            *[
                f"{r}/tables/{table}.{ext}"
                for table in self.paper_alignment_tables
                for ext in ("csv", "md", "tex")
            ],
            # the long-format table of every score (Tables 2/5 are a view of it)
            *([f"{r}/tables/results_long.csv"] if self.scored_datasets() else []),
            *self.report_targets(),
            *[f"{r}/tables/paper_comparison.{ext}" for ext in ("csv", "md", "html")],
        ]


def _exts(csv: str, exts: tuple[str, ...]) -> list[str]:
    stem = csv.removesuffix(".csv")
    return [f"{stem}.{ext}" for ext in exts]
