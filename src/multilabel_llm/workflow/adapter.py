"""The one idiom of every ``workflow/scripts/*.py``: hand the job's slots to one front end.

A Snakemake script receives its ``snakemake`` object as a global; its whole body is one
call, ``run_job(snakemake, "module:function", ...)``, with the paths and plain values read
off ``snakemake.input``/``output``/``params``/``wildcards``/``threads``. :func:`run_job` sends
stderr to the job's log first and only then imports the front end (a ``*/jobs.py`` function:
paths in, files out), so warnings raised while importing land in the log too. The front ends
that an engine service serves (``FRONT_ENDS`` of :mod:`multilabel_llm.engine.service`) go
through :func:`~multilabel_llm.engine.service.run_model_job`: in the service when the job has
an ``engine`` input, else in this process.

This module never imports snakemake (the library must work without it).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping

LOG_FORMAT = "%(levelname)s %(message)s"

# Imported by name, as the front ends are, and only for the engine's front ends: a script's
# imports are its front end's (tests/core/test_packaging.py checks each env against them).
ENGINE_JOBS = "multilabel_llm.engine.jobs"
ENGINE_SERVICE = "multilabel_llm.engine.service"


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


def front_end(target: str):
    """The function ``target`` (``"package.module:function"``) names."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def run_job(smk, target: str, /, *args, environ: Mapping[str, str] | None = None, **kwargs):
    """A workflow script's whole body: :func:`start` the job's log, then call front end
    ``target`` with ``args`` and ``kwargs`` (through the engine service when it serves it).
    ``environ``: variables set before anything is imported (e.g. the one online step's
    ``HF_HUB_OFFLINE``)."""
    os.environ.update(environ or {})
    start(smk)
    if target.partition(":")[0] == ENGINE_JOBS:
        service = importlib.import_module(ENGINE_SERVICE)  # the standard library only
        served = {front: name for name, front in service.FRONT_ENDS.items()}
        if target in served:
            if args:
                raise TypeError(f"{target}: an engine-service front end takes keywords only")
            return service.run_model_job(smk, served[target], **kwargs)
    return front_end(target)(*args, **kwargs)
