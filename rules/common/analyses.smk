# Helpers of rules/analyses.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

from multilabel_llm.analyses import TRACE_ANALYSES


def analyses_cfg(key, default=None):
    value = (config.get("analyses") or {}).get(key)
    return default if value is None else value


def mechanism_prompt():
    """Prompt slot whose traces feed Figs 2-5, 9-11 and Table 4 (default: the first)."""
    return analyses_cfg("prompt", PROMPTS[0] if PROMPTS else "NONE")


def mechanism_testset():
    """The paper's §4 uses the multi-label-only test set; fall back to the first test set."""
    default = (
        "multilabel"
        if "multilabel" in TESTSETS
        else (TESTSETS[0] if TESTSETS else "NONE")
    )
    return analyses_cfg("testset", default)


def prompt_setting(wildcards, key, default):
    """A prompt setting as the engine resolves it for this dataset (same template choice:
    the dataset's loader, then its name, then `default`)."""
    from multilabel_llm.prompts import pick_template, resolve_prompt

    cfg = prompt_cfg(wildcards.prompt)
    data = dataset_cfg(wildcards.dataset)
    name = data.get("name", wildcards.dataset)
    try:
        spec = resolve_prompt(cfg, name, pick_template(cfg, data.get("loader"), name))
        return getattr(spec, key)
    except (ValueError, TypeError):
        # a prompt without templates (tests, minimal configs): its top-level value
        return cfg.get(key, default)


def mechanism_datasets():
    """§4/§D study multi-label generation: single-label datasets have no label lists to follow."""
    return [d for d in DATASETS if dataset_cfg(d).get("multilabel", True)]


def analysis_csv(name, dataset, model, prompt, testset):
    return f"{RESULTS}/analyses/{dataset}/{model}/{prompt}/{testset}/{name}.csv"


def mechanism_runs(models=None):
    """(dataset, model) pairs of the mechanism analyses, restricted to ``models``."""
    models = MODELS if models is None else models
    return [(d, m) for d in mechanism_datasets() for m in models]


def mechanism_inputs(name, models=None):
    prompt, testset = mechanism_prompt(), mechanism_testset()
    return [
        analysis_csv(name, d, m, prompt, testset) for d, m in mechanism_runs(models)
    ]


def mechanism_keys(models=None):
    return [{"dataset": d, "model": m} for d, m in mechanism_runs(models)]


def sweep_prompts(key):
    """Prompt slots of the ICL-ratio sweep (Fig 6) or label-order settings (Table 7)."""
    return list(analyses_cfg(key, PROMPTS))


def sweep_inputs(name, key):
    testset = mechanism_testset()
    return [
        analysis_csv(name, d, m, p, testset)
        for d in mechanism_datasets()
        for m in MODELS
        for p in sweep_prompts(key)
    ]


def sweep_keys(key):
    return [
        {"dataset": d, "model": m, "prompt": p}
        for d in mechanism_datasets()
        for m in MODELS
        for p in sweep_prompts(key)
    ]


def attention_runs():
    """(dataset, model) pairs whose traces were extracted with attention (Table 6)."""
    models = analyses_cfg("attention_models", [])
    return [(d, m) for d in mechanism_datasets() for m in models]
