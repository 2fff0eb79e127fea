"""Adapter for rule download_models: fetch the experiment's hub models into HF_HOME."""

import logging
import os
import sys

# The one online step: rules/common.smk sets HF_HUB_OFFLINE=1 for every job, and
# huggingface_hub reads it at import, so clear it before anything imports the hub client.
os.environ["HF_HUB_OFFLINE"] = "0"

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from multilabel_llm.workflow.model_download import download_from_params  # noqa: E402

fetched = download_from_params(snakemake.params.downloads, snakemake.output.manifest)
print(f"fetched {len(fetched)} repos into the Hugging Face cache", file=sys.stderr)
