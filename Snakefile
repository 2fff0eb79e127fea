# Multi-label LLM pipeline: datasets -> traces -> distributions -> alignment, analyses, report.
# The config is a Hydra tree (config/); rules/common.smk composes and validates it into `dag`
# (multilabel_llm.workflow.dag.WorkflowDag), which every rule file reads.
from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


include: "rules/common.smk"


# Slot names from the composed config; {model} also matches "<slot>-sft".
wildcard_constraints:
    dataset="|".join(dag.datasets) or "NONE",
    model="[^/]+",
    prompt="|".join(dag.prompts) or "NONE",
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
    results_long,
    alignment_paper_tables,
    demux_method_row,
    analyze_traces,
    analyze_attention,
    mechanism_table,
    render_table,
    report_inputs,
    write_explorer,
    compare_to_paper,
    figure,


rule all:
    default_target: True
    input:
        dag.final_outputs(),
