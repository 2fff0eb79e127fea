# Composes and validates the Hydra config (config/) and builds the grid every rule reads:
# `dag` (multilabel_llm.workflow.dag.WorkflowDag: one module per rule file over a shared core)
# holds the paths, input functions, params and target lists; the rule files hold rules only
# (snakemake --lint).
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from multilabel_llm.workflow.dag import (
    DagError,
    WorkflowDag,
    put_this_python_first_on_path,
)
from multilabel_llm.workflow.run_locks import keep_other_runs_locks

# two runs in one project folder (two results folders): the first to end keeps the other's locks
keep_other_runs_locks()

try:
    dag = WorkflowDag.compose(config, basedir=workflow.basedir)
    # rule download_models' params; a malformed revision stops the run before any job starts
    MODEL_DOWNLOADS = dag.model_downloads()
except DagError as err:
    # A bad key or value stops the run before any job starts.
    raise WorkflowError(str(err)) from None

config.clear()
config.update(dag.config)

RESULTS = dag.results
# Jobs that run a module with `python` (rule engine_service) get Snakemake's own Python, as the
# script directive does; under --sdm conda the rule's env comes first on PATH when activated.
put_this_python_first_on_path()

# Jobs load models from the local hub cache only; rule download_models (rules/models.smk) is
# the one step that goes online. An explicit HF_HUB_OFFLINE=0 in the environment wins.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
