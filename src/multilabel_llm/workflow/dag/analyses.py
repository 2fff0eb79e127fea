"""The mechanism-analysis stage of the grid (rules/analyses.smk): the per-run analysis CSVs of
analyze_traces and the mechanism tables stacked from them (MECHANISM_TABLES)."""

from __future__ import annotations

from multilabel_llm.workflow.dag.core import DagCore

# mechanism table -> (the study artifact listing it, the per-run analysis CSV it stacks, whether
# its rows also carry the prompt: the label-order sweep)
MECHANISM_TABLES = {
    "table4_second_never": ("table4", "second_never", False),
    "second_next": ("second_next", "second_next", False),
    "table6_attention": ("table6", "attention_summary", False),
    "table7_label_order": ("table7", "label_order", True),
}


class AnalysisStage(DagCore):
    """Trace analyses and mechanism tables."""

    mechanism_tables = MECHANISM_TABLES

    @property
    def trace_analyses(self) -> tuple[str, ...]:
        """The per-run CSVs of rule analyze_traces
        (multilabel_llm.analyses.run_tables.TRACE_ANALYSES)."""
        # the analyses pull in pandas: not imported at every parse
        from multilabel_llm.analyses.run_tables import TRACE_ANALYSES

        return TRACE_ANALYSES

    def prompt_setting(self, wc, key: str, default):
        """A prompt setting as the engine resolves it for this dataset (same template choice:
        the dataset's loader, then its name, then ``default``)."""
        from multilabel_llm.data.prompts import pick_template, resolve_prompt

        cfg = self.prompt(wc.prompt)
        data = self.dataset(wc.dataset)
        name = data.get("name", wc.dataset)
        try:
            spec = resolve_prompt(cfg, name, pick_template(cfg, data.get("loader"), name))
            return getattr(spec, key)
        except (ValueError, TypeError):
            # a prompt without templates (tests, minimal configs): its top-level value
            return cfg.get(key, default)

    def mechanism_table_inputs(self, wc) -> list[str]:
        """Per-run analysis CSVs a mechanism table (MECHANISM_TABLES) stacks."""
        artifact, analysis, _ = MECHANISM_TABLES[wc.table]
        return [self.analysis_csv(analysis, c) for c in self.artifact_cells(artifact)]

    def mechanism_table_keys(self, wc) -> list[dict]:
        """Columns each stacked CSV gets: dataset and model, plus the prompt for the sweep."""
        artifact, _, sweep = MECHANISM_TABLES[wc.table]
        keys = ("dataset", "model", "prompt") if sweep else ("dataset", "model")
        return [{k: c[k] for k in keys} for c in self.artifact_cells(artifact)]
