"""Adapter for rule download_models: fetch the experiment's hub models into HF_HOME."""

from multilabel_llm.workflow.adapter import run_job

# The one online step: rules/common.smk sets HF_HUB_OFFLINE=1 for every job, and
# huggingface_hub reads it at import, so it is cleared before anything imports the hub client.
run_job(
    snakemake,
    "multilabel_llm.workflow.jobs:download_models",
    snakemake.params.downloads,
    snakemake.output.manifest,
    environ={"HF_HUB_OFFLINE": "0"},
)
