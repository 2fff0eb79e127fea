# Helpers of rules/standins.smk; included by rules/common.smk so that rule files hold rules
# only (snakemake --lint). A model config with a `standin:` block (experiment paper_smoke)
# points its `path` at resources/standins/<name>, which rule build_standin writes.

from multilabel_llm.prompts import prompt_formats as standin_prompt_formats


def standin_slot(standin):
    """The model slot whose stand-in directory is resources/standins/<standin>."""
    for slot in MODELS:
        cfg = model_cfg(slot)
        if cfg.get("standin") and Path(cfg.get("path") or "").name == standin:
            return slot
    raise WorkflowError(f"no model slot builds the stand-in {standin!r}")


def standin_spec(standin):
    """The stand-in's spec: its config block, its name, and the experiment's prompts (the
    formats it learns to answer in; multilabel_llm.engine.standins)."""
    cfg = model_cfg(standin_slot(standin))
    return {
        **cfg["standin"],
        "name": cfg["name"],
        # only what shapes the prompt text: a label order or hidden-state switch rebuilds nothing
        "prompts": standin_prompt_formats([prompt_cfg(p) for p in PROMPTS]),
    }


def model_files(model):
    """Files a job of ``model`` reads besides the config: its stand-in directory, if any."""
    cfg = model_cfg(model)
    return {"standin": cfg["path"]} if cfg.get("standin") else {}
