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


include: "rules/data.smk"
include: "rules/inference.smk"
include: "rules/estimators.smk"
include: "rules/metrics.smk"
include: "rules/sft.smk"
include: "rules/probes.smk"
include: "rules/demux.smk"
include: "rules/analyses.smk"
include: "rules/figures.smk"
include: "rules/report.smk"


# Small jobs (tables, figures, id lists) stay on the submitting host under a cluster executor.
localrules:
    all,
    build_testsets,
    dataset_stats,
    score_alignment,
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
    fig2_top_probabilities,
    fig3_second_probabilities,
    fig4_first_step_sorted,
    fig5_label_position_accuracy,
    fig6_multilabel_icl,
    fig7_probes,
    fig9_top_two_box,
    fig10_entropy,
    fig11_second_position,
    fig12_base_vs_instruct,
    fig13_top_probabilities_family,
    fig14_second_probabilities_family,
    fig15_probes_family,
    fig16_top_two_family,


rule all:
    default_target: True
    input:
        final_outputs(),
