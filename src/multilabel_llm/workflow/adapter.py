"""The opening every ``workflow/scripts/*.py`` adapter shares.

A Snakemake script receives its ``snakemake`` object as a global; it hands it here. This
module never imports snakemake (the library must work without it).
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(levelname)s %(message)s"


def start(smk, name: str = "multilabel_llm") -> logging.Logger:
    """Send stderr (warnings, tracebacks, progress bars) to the job's log file and log INFO
    there. Call it before importing anything heavy, so import warnings land in the log too."""
    if smk.log:
        open(smk.log[0], "w").close()  # a new log per run, appended to from here on: an
        # engine service (engine/service.py) writes this job's lines into it too
        sys.stderr = open(smk.log[0], "a")  # noqa: SIM115  (open for the job's lifetime)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=LOG_FORMAT)
    return logging.getLogger(name)


def named(items) -> dict:
    """A Snakemake ``input``/``output``/``params``/``wildcards`` as a plain dict of its named
    entries."""
    return dict(items.items())
