# Paper figures from the analysis CSVs: one rule per figure, results/figures/{figure}.{png,pdf}.
# Every figure is drawn even when part of its data is not configured (a "no data for this
# setting" panel); the caption says what was shown and what was not configured.
# Needs rules/analyses.smk (analyses_cfg, mechanism_inputs, …) included first.

FIG_CATEGORY = "Mechanisms (§4, §D)"

# figure → model family it replicates the main figure for (paper §D.7 Qwen, §D.8 Medusa)
FAMILY_FIGURES = {
    "fig13": "qwen2.5",
    "fig14": "qwen2.5",
    "fig15": "qwen2.5",
    "fig16": "medusa",
    **(analyses_cfg("family_figures", {}) or {}),
}


def family_of(model):
    return model_cfg(model).get("family", model)


def family_models(family):
    return [m for m in MODELS if family_of(m) == family]


def main_models():
    """Models of Figs 2-5, 7, 9-11: the configured main families, else every model whose
    family has no figure of its own (else all models)."""
    families = analyses_cfg("main_families")
    if families:
        return [m for m in MODELS if family_of(m) in families]
    others = set(FAMILY_FIGURES.values())
    return [m for m in MODELS if family_of(m) not in others] or list(MODELS)


def model_variant(model):
    cfg = model_cfg(model)
    if cfg.get("sft") or cfg.get("adapter") or "sft" in model.lower():
        return "SFT"
    return "Instruct" if cfg.get("instruct") else "Base"


def coverage_note(models, traces=True):
    """One caption sentence: what is shown and which paper variants are not configured."""
    if not models:
        return "No model of this family is configured, so every panel is empty."
    shown = ", ".join(f"{m} ({model_variant(m)})" for m in models)
    variants = {model_variant(m) for m in models}
    missing = [v for v in ("Base", "Instruct", "SFT") if v not in variants]
    note = f"Shown: {shown} on {', '.join(DATASETS)}"
    if traces:
        note += f" (prompt {mechanism_prompt()}, test set {mechanism_testset()})"
    note += "."
    if missing:
        note += f" Not configured here: {', '.join(missing)} models (the paper also shows them)."
    return note


def figure_outputs(name):
    return {
        "png": report(
            f"{RESULTS}/figures/{name}.png",
            caption=f"../workflow/report/{name}.rst",
            category=(
                FIG_CATEGORY
                if name not in ("fig7", "fig12", "fig15")
                else "Alignment (§5, §D)"
            ),
            subcategory=FIGURE_SUBCATEGORY[name],
            # one label only: the report turns a second two-valued label into a toggle
            labels={"figure": f"Figure {name[3:]}: {FIGURE_CONTENT[name]}"},
        ),
        "pdf": f"{RESULTS}/figures/{name}.pdf",
    }


FIGURE_SUBCATEGORY = {
    "fig2": "Per-step probabilities",
    "fig3": "Per-step probabilities",
    "fig9": "Per-step probabilities",
    "fig10": "Per-step probabilities",
    "fig4": "First-step distribution",
    "fig11": "Second-highest label",
    "fig5": "Label order and ICL",
    "fig6": "Label order and ICL",
    "fig7": "Linear probes",
    "fig12": "Base vs instruct",
    "fig13": "Other families",
    "fig14": "Other families",
    "fig15": "Linear probes",
    "fig16": "Other families",
}
FIGURE_CONTENT = {
    "fig2": "top probabilities per step",
    "fig3": "second-highest probabilities per step",
    "fig4": "sorted first-step probabilities",
    "fig5": "accuracy of 1st vs 2nd label",
    "fig6": "multi-label outputs vs demos",
    "fig7": "probe micro-F1",
    "fig9": "top two probabilities (box plots)",
    "fig10": "entropies per step",
    "fig11": "where the 2nd-highest label is predicted",
    "fig12": "base vs instruct F1 / NLL",
    "fig13": f"top probabilities ({FAMILY_FIGURES['fig13']})",
    "fig14": f"second-highest probabilities ({FAMILY_FIGURES['fig14']})",
    "fig15": f"probe micro-F1 ({FAMILY_FIGURES['fig15']})",
    "fig16": f"top two probabilities ({FAMILY_FIGURES['fig16']})",
}


def figure_names():
    """Figures this experiment draws: the family figures only when that family is configured."""
    names = ["fig2", "fig3", "fig4", "fig5", "fig6", "fig9", "fig10", "fig11", "fig12"]
    if analyses_cfg("probes", True):
        names.append("fig7")
    for name in ("fig13", "fig14", "fig15", "fig16"):
        if family_models(FAMILY_FIGURES[name]) and (
            name != "fig15" or analyses_cfg("probes", True)
        ):
            names.append(name)
    return names


def probe_inputs(models):
    prompt = mechanism_prompt()
    return [
        f"{RESULTS}/probes/{d}/{m}/{prompt}/probe_scores.csv"
        for d in DATASETS
        for m in models
    ]


# ---- per-step probability figures (2, 3, 9, 10) and their family replicas (13, 14, 16) ----


rule fig2_top_probabilities:
    input:
        mechanism_inputs("step_stats", main_models()),
    output:
        **figure_outputs("fig2"),
    log:
        "logs/figures/fig2.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig2",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig3_second_probabilities:
    input:
        mechanism_inputs("step_stats", main_models()),
    output:
        **figure_outputs("fig3"),
    log:
        "logs/figures/fig3.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig3",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig9_top_two_box:
    input:
        mechanism_inputs("step_stats", main_models()),
    output:
        **figure_outputs("fig9"),
    log:
        "logs/figures/fig9.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig9",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig10_entropy:
    input:
        mechanism_inputs("step_stats", main_models()),
    output:
        **figure_outputs("fig10"),
    log:
        "logs/figures/fig10.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig10",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig13_top_probabilities_family:
    input:
        mechanism_inputs("step_stats", family_models(FAMILY_FIGURES["fig13"])),
    output:
        **figure_outputs("fig13"),
    log:
        "logs/figures/fig13.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig2",
        run_keys=mechanism_keys(family_models(FAMILY_FIGURES["fig13"])),
        models=family_models(FAMILY_FIGURES["fig13"]),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(family_models(FAMILY_FIGURES["fig13"])),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig14_second_probabilities_family:
    input:
        mechanism_inputs("step_stats", family_models(FAMILY_FIGURES["fig14"])),
    output:
        **figure_outputs("fig14"),
    log:
        "logs/figures/fig14.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig3",
        run_keys=mechanism_keys(family_models(FAMILY_FIGURES["fig14"])),
        models=family_models(FAMILY_FIGURES["fig14"]),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(family_models(FAMILY_FIGURES["fig14"])),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig16_top_two_family:
    input:
        mechanism_inputs("step_stats", family_models(FAMILY_FIGURES["fig16"])),
    output:
        **figure_outputs("fig16"),
    log:
        "logs/figures/fig16.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig9",
        run_keys=mechanism_keys(family_models(FAMILY_FIGURES["fig16"])),
        models=family_models(FAMILY_FIGURES["fig16"]),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(family_models(FAMILY_FIGURES["fig16"])),
    script:
        "../workflow/scripts/plot_figure.py"


# ---- first-step distribution, label order, ICL sweep, second-highest position ----


rule fig4_first_step_sorted:
    input:
        mechanism_inputs("first_step_sorted", main_models()),
    output:
        **figure_outputs("fig4"),
    log:
        "logs/figures/fig4.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig4",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig5_label_position_accuracy:
    input:
        mechanism_inputs("label_position_accuracy", main_models()),
    output:
        **figure_outputs("fig5"),
    log:
        "logs/figures/fig5.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig5",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig6_multilabel_icl:
    input:
        sweep_inputs("multilabel_rate", "icl_prompts"),
    output:
        **figure_outputs("fig6"),
    log:
        "logs/figures/fig6.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig6",
        run_keys=sweep_keys("icl_prompts"),
        models=MODELS,
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=(
            f"Prompt variants of the sweep: {', '.join(sweep_prompts('icl_prompts'))}; "
            "each point is one prompt's share of multi-label demonstrations."
        ),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig11_second_position:
    input:
        mechanism_inputs("second_position", main_models()),
    output:
        **figure_outputs("fig11"),
    log:
        "logs/figures/fig11.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig11",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


# ---- alignment-side figures: probes (7, 15) and base vs instruct (12) ----


rule fig7_probes:
    input:
        probe_inputs(main_models()),
    output:
        **figure_outputs("fig7"),
    log:
        "logs/figures/fig7.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig7",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig15_probes_family:
    input:
        probe_inputs(family_models(FAMILY_FIGURES["fig15"])),
    output:
        **figure_outputs("fig15"),
    log:
        "logs/figures/fig15.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig7",
        run_keys=mechanism_keys(family_models(FAMILY_FIGURES["fig15"])),
        models=family_models(FAMILY_FIGURES["fig15"]),
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(family_models(FAMILY_FIGURES["fig15"])),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig12_base_vs_instruct:
    input:
        [f"{RESULTS}/tables/alignment_{d}.csv" for d in DATASETS],
    output:
        **figure_outputs("fig12"),
    log:
        "logs/figures/fig12.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig12",
        run_keys=[{"dataset": d} for d in DATASETS],
        models=MODELS,
        datasets=DATASETS,
        max_step=analyses_cfg("max_step", 2),
        model_info={
            m: {"family": family_of(m), "instruct": bool(model_cfg(m).get("instruct"))}
            for m in MODELS
        },
        note=coverage_note(MODELS, traces=False),
    script:
        "../workflow/scripts/plot_figure.py"
