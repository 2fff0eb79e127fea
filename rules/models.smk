# The Hugging Face cluster workflow (docs/cluster.md): compute nodes have no network, so the
# login node fetches every hub model of the experiment into $HF_HOME once, and every job loads
# offline (rules/common.smk sets HF_HUB_OFFLINE=1). A local rule: it never goes to SLURM.
# Library: src/multilabel_llm/workflow/model_download.py. Run: `make download EXPERIMENT=paper`.
# Its dag methods: multilabel_llm.workflow.dag.models (ModelStage.model_downloads, read
# in rules/common.smk).


rule download_models:
    output:
        manifest=f"{RESULTS}/models/hf_downloads.json",
    log:
        "logs/download_models.log",
    conda:
        "../envs/inference.yaml"
    params:
        # repo ids and revisions: pinning a new revision reruns the download
        downloads=MODEL_DOWNLOADS,
    script:
        "../workflow/scripts/download_models.py"
