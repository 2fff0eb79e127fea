"""The paper-comparison stage of the grid (rules/paper_comparison.smk): the paper's own numbers
and the produced tables that compare_to_paper lays beside them."""

from __future__ import annotations

from multilabel_llm.workflow.dag.core import DagCore


class PaperComparisonStage(DagCore):
    """The inputs and slot names of rule compare_to_paper."""

    def paper_reference_files(self) -> list[str]:
        """The paper's own numbers, shipped with the workflow (data/paper_reference/)."""
        return sorted(str(p) for p in (self.basedir / "data" / "paper_reference").glob("*.csv"))

    def paper_comparison_inputs(self) -> dict[str, str]:
        """{paper table: produced CSV} for every paper table this experiment produces; keys as
        in multilabel_llm.report.paper_reference.TABLES."""
        tables = {"table1": f"{self.results}/tables/table1_datasets.csv"}
        for name in self.paper_alignment_tables:  # roles.table2 / roles.table5
            tables[name] = f"{self.results}/tables/{name}.csv"
        # the mechanism tables exist when a study of the experiment lists them
        for table, (artifact, *_) in self.mechanism_tables.items():
            if artifact in ("table4", "table6", "table7") and self.study_of(artifact):
                tables[artifact] = f"{self.results}/tables/{table}.csv"
        return tables

    def paper_comparison_datasets(self) -> dict:
        """Dataset slot -> the names the comparison maps onto the paper's datasets."""
        return {
            d: {
                "name": self.dataset(d).get("name", d),
                "display_name": self.dataset(d).get("display_name"),
            }
            for d in self.datasets
        }

    def paper_comparison_models(self) -> dict:
        """Model slot -> the ids the comparison maps onto the paper's models (Tables 4, 6)."""
        return {
            m: {"hf_id": self.model(m).get("hf_id"), "name": self.model(m).get("name")}
            for m in self.models
        }
