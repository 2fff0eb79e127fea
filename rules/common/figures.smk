# Helpers of rules/figures.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).
# One registry: figure -> what it plots and from which analysis; the study listing the
# figure (config `studies:`) names its datasets, models and prompts.

from multilabel_llm.studies import FAMILY_FIGURES, probe_cells

FIG_CATEGORY = "Mechanisms (§4, §D)"


# figure -> plot kind (workflow/scripts/plot_figure.py), source, subcategory, short content.
# source: an analysis CSV of analyze_traces, "probes" (probe scores) or "alignment" (tables)
FIGURES = {
    "fig1": (
        "fig1",
        "example_steps",
        "Per-step probabilities",
        "one example, step by step",
    ),
    "fig2": (
        "fig2",
        "step_stats",
        "Per-step probabilities",
        "top probabilities per step",
    ),
    "fig3": (
        "fig3",
        "step_stats",
        "Per-step probabilities",
        "second-highest probabilities per step",
    ),
    "fig4": (
        "fig4",
        "first_step_sorted",
        "First-step distribution",
        "sorted first-step probabilities",
    ),
    "fig5": (
        "fig5",
        "label_position_accuracy",
        "Label order and ICL",
        "accuracy of 1st vs 2nd label",
    ),
    "fig6": (
        "fig6",
        "multilabel_rate",
        "Label order and ICL",
        "multi-label outputs vs demos",
    ),
    "fig7": ("fig7", "probes", "Linear probes", "probe micro-F1"),
    "fig8": (
        "fig8",
        "alignment",
        "Binary breakdown",
        "binary: probabilities vs outcomes",
    ),
    "fig9": (
        "fig9",
        "step_stats",
        "Per-step probabilities",
        "top two probabilities (box plots)",
    ),
    "fig10": ("fig10", "step_stats", "Per-step probabilities", "entropies per step"),
    "fig11": (
        "fig11",
        "second_position",
        "Second-highest label",
        "where the 2nd-highest label is predicted",
    ),
    "fig12": ("fig12", "alignment", "Base vs instruct", "base vs instruct F1 / NLL"),
    "fig13": ("fig2", "step_stats", "Other families", "top probabilities"),
    "fig14": ("fig3", "step_stats", "Other families", "second-highest probabilities"),
    "fig15": ("fig7", "probes", "Linear probes", "probe micro-F1"),
    "fig16": ("fig9", "step_stats", "Other families", "top two probabilities"),
}


def family_of(model):
    return model_cfg(model).get("family", model)


def figure_models(name):
    """Models a figure shows: its study's, restricted to the family of a family figure."""
    models = artifact_models(name)
    family = FAMILY_FIGURES.get(name)
    return [m for m in models if family_of(m) == family] if family else models


def model_variant(model):
    cfg = model_cfg(model)
    if cfg.get("sft") or cfg.get("adapter") or "sft" in model.lower():
        return "SFT"
    return "Instruct" if cfg.get("instruct") else "Base"


def coverage_note(name):
    """One caption sentence: what is shown and which paper variants are not configured."""
    study, models = study_of(name), figure_models(name)
    if study is None or not models:
        return "No study of this experiment lists this figure, so every panel is empty."
    shown = ", ".join(f"{m} ({model_variant(m)})" for m in models)
    variants = {model_variant(m) for m in models}
    missing = [v for v in ("Base", "Instruct", "SFT") if v not in variants]
    note = (
        f"Study {study.name}: {shown} on {', '.join(study.datasets)} "
        f"(prompts {', '.join(study.prompts)}"
    )
    if study.testsets:
        note += f"; test sets {', '.join(study.testsets)}"
    note += ")."
    if missing:
        note += f" Not configured here: {', '.join(missing)} models (the paper also shows them)."
    return note


def figure_cells(name):
    """The cells a figure reads: its study's datasets (alignment tables), probe cells, or trace
    cells of its models (Fig 1: the first only, one example of one run as in the paper).
    """
    source, models, study = FIGURES[name][1], figure_models(name), study_of(name)
    if source == "alignment":
        return [{"dataset": d} for d in artifact_datasets(name)]
    if source == "probes":
        return [] if study is None else probe_cells(study, models)
    cells = artifact_cells(name, models)
    return cells[:1] if name == "fig1" else cells


def figure_inputs(name):
    source = FIGURES[name][1]
    if source == "alignment":
        return [
            f"{RESULTS}/tables/alignment_{c['dataset']}.csv" for c in figure_cells(name)
        ]
    if source == "probes":
        return [
            f"{RESULTS}/probes/{c['dataset']}/{c['model']}/{c['prompt']}/probe_scores.csv"
            for c in figure_cells(name)
        ]
    return [
        analysis_csv(source, c["dataset"], c["model"], c["prompt"], c["testset"])
        for c in figure_cells(name)
    ]


def figure_run_keys(name):
    """Columns each stacked CSV gets: dataset (and model; the prompt for the Fig 6 sweep)."""
    keys = {"alignment": ("dataset",), "probes": ("dataset", "model")}.get(
        FIGURES[name][1],
        ("dataset", "model", "prompt") if name == "fig6" else ("dataset", "model"),
    )
    return [{k: c[k] for k in keys} for c in figure_cells(name)]


def figure_select(name):
    """Rows of the alignment tables a figure reads: its study's cells only."""
    study = study_of(name)
    if FIGURES[name][1] != "alignment" or study is None:
        return {}
    methods = study.methods
    if name == "fig8":
        # the paper's variants (one order); both-order ones are in the position-bias table
        methods = [
            m
            for m in methods
            if method_cfg(m)["kind"] == "binary"
            and (method_cfg(m).get("params") or {}).get("orders", "one") == "one"
        ]
    return {
        "model": study.models,
        "prompt": study.prompts,
        "testset": study.testsets,
        "method": methods,
    }


def figure_params(name):
    models = figure_models(name)
    params = {
        "kind": FIGURES[name][0],
        "run_keys": figure_run_keys(name),
        "models": models,
        "datasets": artifact_datasets(name),
        "max_step": analyses_cfg("max_step", 2),
        "note": coverage_note(name),
        "select": figure_select(name),
    }
    if name == "fig12":
        params["model_info"] = {
            m: {"family": family_of(m), "instruct": bool(model_cfg(m).get("instruct"))}
            for m in models
        }
    if name == "fig6":
        prompts = study_of(name).prompts if study_of(name) else []
        params["note"] += f" Prompt variants of the sweep: {', '.join(prompts)}."
    return params


def figure_outputs(name):
    _, source, subcategory, content = FIGURES[name]
    family = FAMILY_FIGURES.get(name)
    if family:
        content = f"{content} ({family})"
    return {
        "png": report(
            f"{RESULTS}/figures/{name}.png",
            caption=f"../workflow/report/{name}.rst",
            category=(
                "Alignment (§5, §D)"
                if source in ("probes", "alignment")
                else FIG_CATEGORY
            ),
            subcategory=subcategory,
            # one label only: the report turns a second two-valued label into a toggle
            labels={"figure": f"Figure {name[3:]}: {content}"},
        ),
        "pdf": f"{RESULTS}/figures/{name}.pdf",
    }


def figure_names():
    """Figures this experiment draws: those its studies list."""
    return [name for name in FIGURES if study_of(name) is not None]
