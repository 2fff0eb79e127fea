"""The distribution stage of the grid (rules/estimators.smk): which rule writes a method's
``{method}.parquet`` and what a method reads because of its kind.

The writer of ``distributions/.../{method}.parquet`` follows from the method's ``kind`` alone
(``methods_written_by``; multilabel_llm.methods.registry.DISTRIBUTION_PRODUCERS), never from
its slot name: each rule writing such a file constrains ``{method}`` to its own producer's
methods. What a kind reads (traces, a calibration set, breakdown scores) is decided in one
place, ``method_kind_inputs``; the estimate jobs and the explorer both ask it.
"""

from __future__ import annotations

from multilabel_llm.methods.registry import method_inputs
from multilabel_llm.workflow.dag.core import DagCore
from multilabel_llm.workflow.studies import methods_of_producer


def _constraint(names: list[str]) -> str:
    """A wildcard constraint matching exactly ``names`` ("NONE" when empty)."""
    return "|".join(names) or "NONE"


class EstimatorStage(DagCore):
    """Distribution writers, the method kinds' inputs and the answer-position bias files."""

    def methods_written_by(self, producer: str) -> str:
        """Wildcard constraint of the rule writing ``producer``'s ``{method}.parquet`` files
        (producers: multilabel_llm.methods.registry.DISTRIBUTION_PRODUCERS; one per kind)."""
        return _constraint(methods_of_producer(self.config, producer))

    def distributions_dir(self) -> str:
        return f"{self.results}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}"

    def trace_model(self, method: str, model: str) -> str:
        """Model slot whose traces ``method`` reads for row ``model``: itself, or e.g. the
        "{model}-sft" of the method's ``traces_from``."""
        return self.method_settings(method).get("traces_from", "{model}").format(model=model)

    def method_kind_inputs(
        self, method: str, dataset: str, model: str, prompt: str, testset: str
    ) -> dict[str, str]:
        """The files ``method`` reads for a (dataset, model, prompt, test set) cell because of
        its kind, as multilabel_llm.methods.registry.method_inputs names them: the traces of
        its trace model, a calibration set's ids and traces (Platt), breakdown scores (unary,
        binary). The one place the grid maps a method kind to its input files."""
        kind = self.method_kind(method)
        params = self.method_settings(method)
        trace_model = self.trace_model(method, model)
        breakdown = f"{self.results}/breakdown/{dataset}/{model}/{testset}"
        calibration = params.get("calibration_testset")
        # the registry names what a kind reads; here each name becomes its file. Names not
        # listed (the model, probes, hidden states, the Demux distribution) are read by the
        # kind's own producer rule (rules/inference.smk, probes.smk, demux.smk), not estimate.
        files = {
            "traces": lambda: self.traces(dataset, trace_model, prompt, testset),
            "examples": lambda: self.data(dataset, "examples.parquet"),
            "calibration_ids": lambda: self.testset_ids(dataset, calibration),
            "calibration_traces": lambda: self.traces(dataset, trace_model, prompt, calibration),
            "unary": lambda: f"{breakdown}/unary.parquet",
            "binary": lambda: f"{breakdown}/binary.parquet",
            "binary_reversed": lambda: f"{breakdown}/binary_reversed.parquet",
        }
        return {name: files[name]() for name in method_inputs(kind, params) if name in files}

    def estimate_inputs(self, wc) -> dict:
        """Inputs of a method's estimate: the dataset's meta and ids, the method's decision
        file, and what its kind reads (``method_kind_inputs``)."""
        inputs = {
            "meta": self.data(wc.dataset, "meta.json"),
            "ids": self.testset_ids(wc.dataset, wc.testset),
            "decided_method": self.decided("methods", wc.method, self.method(wc.method)),
        }
        kind_inputs = self.method_kind_inputs(
            wc.method, wc.dataset, wc.model, wc.prompt, wc.testset
        )
        return inputs | kind_inputs

    def binary_bias_cells(self) -> list[dict]:
        """The alignment cells of binary-breakdown methods, one position-bias row each.

        Breakdown scores do not depend on the prompt variant, so each (dataset, model, test
        set, method) is listed once, with the first prompt that scores it.
        """
        cells: dict[tuple, dict] = {}
        for d in self.scored_datasets():
            for run in self.scored_runs(d):
                if self.method_kind(run["method"]) == "binary":
                    key = (d, run["model"], run["testset"], run["method"])
                    cells.setdefault(key, {"dataset": d, **run})
        return list(cells.values())

    def binary_bias_files(self) -> list[str]:
        return [
            f"{self.results}/distributions/{c['dataset']}/{c['model']}/{c['prompt']}/"
            f"{c['testset']}/{c['method']}.position_bias.csv"
            for c in self.binary_bias_cells()
        ]
