# Multi-label LLM pipeline: datasets -> traces -> distributions -> alignment, analyses, report.
# The config is a Hydra tree (config/); rules/common.smk composes and validates it.
from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
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


rule all:
    default_target: True
    input:
        final_outputs(),
