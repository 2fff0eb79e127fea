"""The workflow's grid: every path, input list, param and target the Snakemake rules need.

``WorkflowDag(config, studies)`` wraps a composed config
(multilabel_llm.workflow.config.load_config) and its resolved studies
(multilabel_llm.workflow.studies.resolve_studies); rules/*.smk call its methods as input
functions (``unpack(dag.inference_inputs)``), param builders and target lists. Nothing here
imports Snakemake: the rules turn a ``DagError`` into a ``WorkflowError``, and the grid can be
built and tested in a plain Python process.

Wildcards are read by attribute (``wc.dataset``), so a ``types.SimpleNamespace`` stands in for
Snakemake's wildcards object in tests.

One module per stage, named after the rule file it serves, over a shared core
(``core.DagCore``: the constructor, config slots, the studies' cells, shared paths, decision
files):

- ``models.ModelStage``: rules/models.smk and rules/standins.smk, and the params, resources
  and files of every model-bound rule;
- ``data.DataStage``: rules/data.smk;
- ``inference.InferenceStage``: rules/inference.smk (engine services, inference jobs);
- ``estimators.EstimatorStage``: rules/estimators.smk (distribution writers, what a method
  kind reads);
- ``metrics.MetricsStage``: rules/metrics.smk;
- ``supervised.SupervisedStage``: rules/probes.smk (rules/sft.smk and rules/demux.smk read
  shared methods only);
- ``analyses.AnalysisStage``: rules/analyses.smk;
- ``figures.FigureStage``: rules/figures.smk (the FIGURES registry);
- ``explorer.ExplorerStage``: rules/explorer.smk;
- ``report.ReportStage``: rules/report.smk and the Snakefile's rule all;
- ``paper_comparison.PaperComparisonStage``: rules/paper_comparison.smk.

Each stage module imports only ``core`` of this package; a stage that needs another's answer
asks the composed grid through ``self``: inference jobs read ModelStage's params and decision
file, the explorer reads EstimatorStage's ``method_kind_inputs`` and ``trace_model``, the
report and the paper comparison gather the figures, explorer pages, binary-bias cells,
alignment tables and AnalysisStage's ``mechanism_tables``.

Slot contracts made explicit here:

- ``{model}-sft`` slots are synthesised (``DagCore.model``): slot ``<m>`` with the LoRA adapter
  that rules/sft.smk trains per dataset, its path keeping a ``{dataset}`` placeholder;
- the writer of ``distributions/.../{method}.parquet`` follows from the method's ``kind`` alone
  (``EstimatorStage.methods_written_by``; multilabel_llm.methods.registry
  .DISTRIBUTION_PRODUCERS), never from its slot name: each rule writing such a file constrains
  ``{method}`` to its own producer's methods.
"""

from __future__ import annotations

from multilabel_llm.workflow.dag.analyses import AnalysisStage
from multilabel_llm.workflow.dag.core import DagError, put_this_python_first_on_path
from multilabel_llm.workflow.dag.data import DataStage
from multilabel_llm.workflow.dag.estimators import EstimatorStage
from multilabel_llm.workflow.dag.explorer import ExplorerStage
from multilabel_llm.workflow.dag.figures import FigureStage
from multilabel_llm.workflow.dag.inference import InferenceStage
from multilabel_llm.workflow.dag.metrics import MetricsStage
from multilabel_llm.workflow.dag.models import ModelStage
from multilabel_llm.workflow.dag.paper_comparison import PaperComparisonStage
from multilabel_llm.workflow.dag.report import ReportStage
from multilabel_llm.workflow.dag.supervised import SupervisedStage

__all__ = ["DagError", "WorkflowDag", "put_this_python_first_on_path"]


class WorkflowDag(
    ModelStage,
    DataStage,
    InferenceStage,
    EstimatorStage,
    MetricsStage,
    SupervisedStage,
    AnalysisStage,
    FigureStage,
    ExplorerStage,
    ReportStage,
    PaperComparisonStage,
):
    """Paths, inputs, params and targets of the experiment's jobs (see the package docstring)."""
