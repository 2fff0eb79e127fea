"""The figure stage of the grid (rules/figures.smk): the registry of paper figures (FIGURES)
and the inputs, params and report labels of rule figure.

Adding a figure is one FIGURES entry, its plot kind (multilabel_llm.report.figure_registry),
a study kind that lists it (multilabel_llm.workflow.studies.KINDS) and its caption block in
workflow/report/figures.rst.
"""

from __future__ import annotations

from dataclasses import dataclass

from multilabel_llm.workflow.dag.core import ALIGNMENT, MECHANISMS, DagCore
from multilabel_llm.workflow.studies import FAMILY_FIGURES, probe_cells


@dataclass(frozen=True)
class Figure:
    """One paper figure of the registry."""

    plot: str  # the plot kind that draws it (multilabel_llm.report.figure_registry)
    # what it reads: an analysis CSV of analyze_traces, "probes" (probe scores) or
    # "alignment" (the alignment tables)
    source: str
    subcategory: str  # its report subcategory
    content: str  # a short description, its report label


# figure name -> Figure; its caption is the figure's block of workflow/report/figures.rst
FIGURES: dict[str, Figure] = {
    "fig1": Figure("fig1", "example_steps", "Per-step probabilities", "one example, step by step"),
    "fig2": Figure("fig2", "step_stats", "Per-step probabilities", "top probabilities per step"),
    "fig3": Figure(
        "fig3", "step_stats", "Per-step probabilities", "second-highest probabilities per step"
    ),
    "fig4": Figure(
        "fig4", "first_step_sorted", "First-step distribution", "sorted first-step probabilities"
    ),
    "fig5": Figure(
        "fig5", "label_position_accuracy", "Label order and ICL", "accuracy of 1st vs 2nd label"
    ),
    "fig6": Figure(
        "fig6", "multilabel_rate", "Label order and ICL", "multi-label outputs vs demos"
    ),
    "fig7": Figure("fig7", "probes", "Linear probes", "probe micro-F1"),
    "fig8": Figure("fig8", "alignment", "Binary breakdown", "binary: probabilities vs outcomes"),
    "fig9": Figure(
        "fig9", "step_stats", "Per-step probabilities", "top two probabilities (box plots)"
    ),
    "fig10": Figure("fig10", "step_stats", "Per-step probabilities", "entropies per step"),
    "fig11": Figure(
        "fig11",
        "second_position",
        "Second-highest label",
        "where the 2nd-highest label is predicted",
    ),
    "fig12": Figure("fig12", "alignment", "Base vs instruct", "base vs instruct F1 / NLL"),
    "fig13": Figure("fig2", "step_stats", "Other families", "top probabilities"),
    "fig14": Figure("fig3", "step_stats", "Other families", "second-highest probabilities"),
    "fig15": Figure("fig7", "probes", "Linear probes", "probe micro-F1"),
    "fig16": Figure("fig9", "step_stats", "Other families", "top two probabilities"),
}


class FigureStage(DagCore):
    """Paper figures: their cells, inputs, params and report labels."""

    figures = FIGURES

    def family_of(self, model: str) -> str:
        return self.model(model).get("family", model)

    def figure_models(self, name: str) -> list[str]:
        """Models a figure shows: its study's, restricted to the family of a family figure."""
        models = self.artifact_models(name)
        family = FAMILY_FIGURES.get(name)
        return [m for m in models if self.family_of(m) == family] if family else models

    def model_variant(self, model: str) -> str:
        cfg = self.model(model)
        if cfg.get("sft") or cfg.get("adapter") or "sft" in model.lower():
            return "SFT"
        return "Instruct" if cfg.get("instruct") else "Base"

    def coverage_note(self, name: str) -> str:
        """One caption sentence: what is shown and which paper variants are not configured."""
        study, models = self.study_of(name), self.figure_models(name)
        if study is None or not models:
            return "No study of this experiment lists this figure, so every panel is empty."
        shown = ", ".join(f"{m} ({self.model_variant(m)})" for m in models)
        variants = {self.model_variant(m) for m in models}
        missing = [v for v in ("Base", "Instruct", "SFT") if v not in variants]
        note = (
            f"Study {study.name}: {shown} on {', '.join(study.datasets)} "
            f"(prompts {', '.join(study.prompts)}"
        )
        if study.testsets:
            note += f"; test sets {', '.join(study.testsets)}"
        note += ")."
        if missing:
            note += (
                f" Not configured here: {', '.join(missing)} models (the paper also shows them)."
            )
        return note

    def figure_cells(self, name: str) -> list[dict]:
        """The cells a figure reads: its study's datasets (alignment tables), probe cells, or
        trace cells of its models (Fig 1: the first only, one example of one run as in the
        paper)."""
        source, models, study = FIGURES[name].source, self.figure_models(name), self.study_of(name)
        if source == "alignment":
            return [{"dataset": d} for d in self.artifact_datasets(name)]
        if source == "probes":
            return [] if study is None else probe_cells(study, models)
        cells = self.artifact_cells(name, models)
        return cells[:1] if name == "fig1" else cells

    def figure_inputs(self, wc) -> list[str]:
        name, r = wc.figure, self.results
        source, cells = FIGURES[name].source, self.figure_cells(wc.figure)
        if source == "alignment":
            return [f"{r}/tables/alignment_{c['dataset']}.csv" for c in cells]
        if source == "probes":
            return [
                f"{r}/probes/{c['dataset']}/{c['model']}/{c['prompt']}/probe_scores.csv"
                for c in cells
            ]
        return [self.analysis_csv(source, c) for c in cells]

    def figure_run_keys(self, name: str) -> list[dict]:
        """Columns each stacked CSV gets: dataset (and model; the prompt for the Fig 6 sweep)."""
        keys = {"alignment": ("dataset",), "probes": ("dataset", "model")}.get(
            FIGURES[name].source,
            ("dataset", "model", "prompt") if name == "fig6" else ("dataset", "model"),
        )
        return [{k: c[k] for k in keys} for c in self.figure_cells(name)]

    def figure_select(self, name: str) -> dict:
        """Rows of the alignment tables a figure reads: its study's cells only."""
        study = self.study_of(name)
        if FIGURES[name].source != "alignment" or study is None:
            return {}
        methods = study.methods
        if name == "fig8":
            # the paper's variants (one order); both-order ones are in the position-bias table
            methods = [
                m
                for m in methods
                if self.method_kind(m) == "binary"
                and self.method_settings(m).get("orders", "one") == "one"
            ]
        return {
            "model": study.models,
            "prompt": study.prompts,
            "testset": study.testsets,
            "method": methods,
        }

    def figure_note(self, name: str) -> str:
        note = self.coverage_note(name)
        if name == "fig6":
            study = self.study_of(name)
            prompts = study.prompts if study else []
            note += f" Prompt variants of the sweep: {', '.join(prompts)}."
        return note

    def model_info(self, name: str) -> dict:
        """Family and instruct flag of the models of the base-vs-instruct figure (Fig 12)."""
        if name != "fig12":
            return {}
        return {
            m: {"family": self.family_of(m), "instruct": bool(self.model(m).get("instruct"))}
            for m in self.figure_models(name)
        }

    def figure_params(self) -> dict:
        """Params of rule figure (what workflow/scripts/plot_figure.py reads)."""
        return {
            "kind": lambda wc: FIGURES[wc.figure].plot,
            "run_keys": lambda wc: self.figure_run_keys(wc.figure),
            "models": lambda wc: self.figure_models(wc.figure),
            "datasets": lambda wc: self.artifact_datasets(wc.figure),
            "max_step": self.config["analyses"]["max_step"],
            "note": lambda wc: self.figure_note(wc.figure),
            "select": lambda wc: self.figure_select(wc.figure),
            "model_info": lambda wc: self.model_info(wc.figure),
        }

    def figure_category(self, name: str) -> str:
        return ALIGNMENT if FIGURES[name].source in ("probes", "alignment") else MECHANISMS

    def figure_label(self, name: str) -> dict:
        # one label only: the report turns a second two-valued label into a toggle
        content = FIGURES[name].content
        family = FAMILY_FIGURES.get(name)
        if family:
            content = f"{content} ({family})"
        return {"figure": f"Figure {name[3:]}: {content}"}

    def figure_names(self) -> list[str]:
        """Figures this experiment draws: those its studies list."""
        return [name for name in FIGURES if self.study_of(name) is not None]
