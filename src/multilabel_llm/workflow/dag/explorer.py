"""The explorer stage of the grid (rules/explorer.smk): one example-explorer page per traced
run, with the alignment runs shown beside it."""

from __future__ import annotations

from multilabel_llm.workflow.dag.core import DagCore
from multilabel_llm.workflow.studies import TRACED_STUDY_KINDS


class ExplorerStage(DagCore):
    """Explorer pages: which runs get one and what each reads."""

    def explorer_cells(self) -> list[dict]:
        """Every traced run {dataset, model, prompt, testset} a study asks for: the runs whose
        traces an alignment method reads (``method_kind_inputs``), and the cells of the
        trace-analysis studies."""
        cells = []
        for dataset in self.scored_datasets():
            for run in self.scored_runs(dataset):
                kind_inputs = self.method_kind_inputs(
                    run["method"], dataset, run["model"], run["prompt"], run["testset"]
                )
                if "traces" in kind_inputs:
                    cells.append(
                        {
                            "dataset": dataset,
                            "model": self.trace_model(run["method"], run["model"]),
                            "prompt": run["prompt"],
                            "testset": run["testset"],
                        }
                    )
        for study in self.studies.values():
            if study.kind in TRACED_STUDY_KINDS:
                cells += study.trace_runs()
        unique = {tuple(c.values()): c for c in cells}
        return list(unique.values())

    def explorer_methods(self, wc) -> list[dict]:
        """The alignment runs shown beside a traced run: same dataset, prompt and test set, and
        the traced model is the one the method reads (its own for non-trace methods)."""
        if wc.dataset not in self.scored_datasets():
            return []
        return [
            {
                "method": run["method"],
                "model": run["model"],
                "display_name": self.method(run["method"]).get("display_name", run["method"]),
                "path": self.distribution(wc.dataset, run),
            }
            for run in self.scored_runs(wc.dataset)
            if run["prompt"] == wc.prompt
            and run["testset"] == wc.testset
            and self.trace_model(run["method"], run["model"]) == wc.model
        ]

    def explorer_inputs(self, wc) -> dict:
        methods = self.explorer_methods(wc)
        return {
            "traces": self.traces(wc.dataset, wc.model, wc.prompt, wc.testset),
            "examples": self.data(wc.dataset, "examples.parquet"),
            "meta": self.data(wc.dataset, "meta.json"),
            "dists": [m["path"] for m in methods],
            # the summary strip repeats the run's rows of the dataset's alignment table
            "alignment": ([f"{self.results}/tables/alignment_{wc.dataset}.csv"] if methods else []),
        }

    def explorer_pages(self) -> list[str]:
        return [
            f"{self.results}/explorer/{c['dataset']}/{c['model']}/{c['prompt']}/{c['testset']}.html"
            for c in self.explorer_cells()
        ]
