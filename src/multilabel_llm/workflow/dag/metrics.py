"""The alignment-scoring stage of the grid (rules/metrics.smk): what scoring a dataset's
distributions reads, the method rows of its tables, and the alignment and paper tables it
writes (Tables 2/5)."""

from __future__ import annotations

from multilabel_llm.workflow.dag.core import DagCore

PAPER_TABLE_TITLES = {
    "table2": "Table 2, distribution alignment (paper: Llama3 70B Instruct)",
    "table5": "Table 5, distribution alignment (paper: Llama3 8B)",
}


class MetricsStage(DagCore):
    """Alignment scoring and its tables."""

    def method_rows(self) -> dict:
        """Row names and placement of every method slot (config/method/*.yaml)."""
        keys = ("display_name", "group", "order", "applies_to")
        return {
            m: {k: self.method(m)[k] for k in keys if k in self.method(m)} for m in self.methods
        }

    def dataset_display(self, dataset: str) -> str:
        return self.dataset(dataset).get("display_name", dataset)

    def scoring_inputs(self, wc) -> dict:
        """What scoring a dataset's distributions reads (alignment and token-level tables)."""
        return {
            "examples": self.data(wc.dataset, "examples.parquet"),
            "meta": self.data(wc.dataset, "meta.json"),
            "ids": [self.testset_ids(wc.dataset, t) for t in self.scored_testsets(wc.dataset)],
            "dists": [self.distribution(wc.dataset, run) for run in self.scored_runs(wc.dataset)],
            "decided": self.decided("scoring", "alignment", self.config["alignment"]),
        }

    def scoring_params(self) -> dict:
        """Params both scoring rules share: the runs, test sets, method rows, dataset name."""
        return {
            "runs": lambda wc: self.scored_runs(wc.dataset),
            "testsets": lambda wc: self.scored_testsets(wc.dataset),
            "methods": self.method_rows(),
            "display_name": lambda wc: self.dataset_display(wc.dataset),
        }

    def alignment_metric(self) -> dict:
        """The metric settings of the alignment tables and the explorer (config `alignment:`)."""
        alignment = self.config["alignment"]
        return {"nll_clip": alignment["nll_clip"], "threshold": alignment["threshold"]}

    def paper_table_title(self, table: str) -> str:
        return PAPER_TABLE_TITLES.get(table, table)

    def alignment_tables(self, ext: str = "csv") -> list[str]:
        return [f"{self.results}/tables/alignment_{d}.{ext}" for d in self.scored_datasets()]

    def token_level_tables(self, ext: str = "csv") -> list[str]:
        """The second paper's tables (rule score_token_level), when the experiment asks."""
        if self.config["alignment"]["token_level_threshold"] is None:
            return []
        return [f"{self.results}/tables/token_level_{d}.{ext}" for d in self.scored_datasets()]
