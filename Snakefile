# Multi-label LLM pipeline: datasets -> traces -> distributions -> alignment, analyses, report.
# The config is a Hydra tree (config/); rules/common.smk composes and validates it.
from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


include: "rules/common.smk"


# Slot names from the composed config; {model} also matches "<slot>-sft".
wildcard_constraints:
    dataset="|".join(DATASETS) or "NONE",
    model="[^/]+",
    prompt="|".join(PROMPTS) or "NONE",
    testset="[^/]+",
    method="[^/]+",


include: "rules/models.smk"
include: "rules/standins.smk"
include: "rules/data.smk"
include: "rules/inference.smk"
include: "rules/estimators.smk"
include: "rules/metrics.smk"
include: "rules/sft.smk"
include: "rules/probes.smk"
include: "rules/demux.smk"
include: "rules/analyses.smk"
include: "rules/figures.smk"
include: "rules/explorer.smk"
include: "rules/report.smk"
include: "rules/paper_comparison.smk"


# Small jobs (tables, figures, id lists) stay on the submitting host under a cluster executor.
localrules:
    all,
    # the login node has the network; compute nodes run offline (rules/models.smk)
    download_models,
    build_testsets,
    demo_pool,
    dataset_stats,
    score_alignment,
    score_token_level,
    alignment_paper_tables,
    demux_method_row,
    analyze_traces,
    analyze_attention,
    table4_second_never,
    table_second_next,
    table6_attention,
    table7_label_order,
    render_table,
    report_inputs,
    write_explorer,
    compare_to_paper,
    # one rule per entry of FIGURES (rules/common/figures.smk)
    figure_fig1,
    figure_fig2,
    figure_fig3,
    figure_fig4,
    figure_fig5,
    figure_fig6,
    figure_fig7,
    figure_fig8,
    figure_fig9,
    figure_fig10,
    figure_fig11,
    figure_fig12,
    figure_fig13,
    figure_fig14,
    figure_fig15,
    figure_fig16,


rule all:
    default_target: True
    input:
        final_outputs(),
