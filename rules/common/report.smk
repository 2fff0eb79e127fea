# Helpers of rules/report.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

REPORT_TABLES = {
    "table1_datasets": dict(
        title="Table 1: annotation statistics and label distributions",
        caption=(
            "Annotators (mean per example), agreement and the share of examples with 0, 1, 2 "
            "and 3+ aggregate labels, per dataset."
        ),
        subcategory="Datasets (§3)",
    ),
    "table4_second_never": dict(
        title="Table 4: second-highest label never predicted later (%)",
        caption=(
            "Among intermediate generation steps whose second-highest label is not predicted at "
            "the next step, the % where it is not predicted at any later step."
        ),
        subcategory="Mechanisms (§4, §D)",
        digits=1,
        pivot=dict(index="dataset", columns="model", values="pct_never"),
    ),
    "second_next": dict(
        title="Second-highest label predicted next (%)",
        caption=(
            "Per generation step r (and over all intermediate steps, 'all'): the % of cases the "
            "second-highest label at r is the label predicted at r+1 (the numbers of Fig. 3)."
        ),
        subcategory="Mechanisms (§4, §D)",
        digits=1,
    ),
    "table6_attention": dict(
        title="Table 6: average attention (%) to input and label tokens",
        caption=(
            "Average per-token attention (%) from the first token of the second and later labels "
            "to the input, to the label tokens, and to the labels' first tokens (pct_per_token_*), "
            "and the cumulative share of attention (share_*). Empty when no model was run with "
            "attention capture (analyses.attention_models)."
        ),
        subcategory="Mechanisms (§4, §D)",
        digits=3,
    ),
    "table7_label_order": dict(
        title="Table 7: outputs following alphabetical / prompt label order (%)",
        caption=(
            "Share of multi-label outputs whose labels appear in alphabetical order and in the "
            "order the instruction lists them, per label-order setting, pooled over models, "
            "datasets and seeds; '–' where prompt order is alphabetical."
        ),
        subcategory="Mechanisms (§4, §D)",
        digits=1,
    ),
    **{
        f"alignment_{d}": dict(
            title=f"Tables 2/5: distribution alignment on {d}",
            caption=(
                "NLL, L1 and example-F1 between LLM-derived and human distributions per model "
                "and method (Table 2: the large instruct model; Table 5: the smaller one)."
            ),
            subcategory="Alignment (§5, §D)",
            digits=2,
            columns=[
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
            ],
        )
        for d in DATASETS
    },
    # Tables 2/5 as rules/metrics.smk lays them out, when it defines them
    **{
        name: dict(
            title=globals().get("PAPER_TABLE_TITLES", {}).get(name, name),
            caption=(
                "NLL, L1 and example-F1 between LLM-derived and human distributions, laid out "
                "as in the paper (rows: methods; columns: datasets × metrics)."
            ),
            subcategory="Alignment (§5, §D)",
            digits=2,
        )
        for name in globals().get("PAPER_ALIGNMENT_TABLES", {})
    },
    # the position-bias table (rules/common/estimators.smk), when the workflow includes it
    **globals().get("BINARY_BIAS_REPORT_TABLES", {}),
}


def report_table_names():
    """Table 1, and each table some study of the experiment lists."""
    names = ["table1_datasets"]
    for artifact, table in (
        ("table4", "table4_second_never"),
        ("second_next", "second_next"),
        ("table6", "table6_attention"),
        ("table7", "table7_label_order"),
    ):
        if study_of(artifact) is not None:
            names.append(table)
    names += [f"alignment_{d}" for d in align_datasets()]
    names += list(globals().get("PAPER_ALIGNMENT_TABLES", {}))
    if "binary_bias_report_tables" in globals():
        names += binary_bias_report_tables()
    return names


REPORT_TARGETS = (
    [f"{RESULTS}/figures/{name}.png" for name in figure_names()]
    + [f"{RESULTS}/report/tables/{name}.html" for name in report_table_names()]
    # the side-by-side page (rules/paper_comparison.smk), when the workflow includes it
    + ([PAPER_COMPARISON_REPORT] if "PAPER_COMPARISON_REPORT" in globals() else [])
    # one example explorer per traced run (rules/explorer.smk), when the workflow includes it
    + globals().get("EXPLORER_TARGETS", [])
)
