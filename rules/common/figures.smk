# Helpers of rules/figures.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

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
    note = f"Shown: {shown} on {', '.join(mechanism_datasets())}"
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
        for d in mechanism_datasets()
        for m in models
    ]
