"""File front ends of the workflow's own jobs: the hub download (rule ``download_models``,
the one online step) and the CPU stand-in models of experiment paper_smoke (rule
``build_standin``)."""

from __future__ import annotations

import logging
import os
import sys

from multilabel_llm.workflow.model_download import download_from_params

log = logging.getLogger(__name__)


def download_models(downloads: list[dict], manifest: str | os.PathLike) -> list:
    """Fetch the experiment's hub models into HF_HOME; ``manifest`` records what came."""
    fetched = download_from_params(downloads, manifest)
    print(f"fetched {len(fetched)} repos into the Hugging Face cache", file=sys.stderr)
    return fetched


def build_standin(
    spec: dict, output: str | os.PathLike, *, name: str, threads: int | None = None
) -> dict:
    """Build stand-in ``name`` of ``spec`` into the directory ``output``; return its record."""
    from multilabel_llm.engine.run import set_threads  # torch: off the download's light path
    from multilabel_llm.workflow.standins import write_standin

    set_threads(threads)  # the job's share of cores, not all of them
    record = write_standin(dict(spec), output)
    log.info("%s: digest %s, training %s", name, record["digest"], record["training"])
    return record
