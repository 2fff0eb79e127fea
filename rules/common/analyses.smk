# Helpers of rules/analyses.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).
# Which runs feed which table or figure is decided by the experiment's studies
# (multilabel_llm.studies): the study that lists an artifact names its cells.

from multilabel_llm.analyses import TRACE_ANALYSES
from multilabel_llm.studies import artifact_owner, mechanism_cells


def analyses_cfg(key, default=None):
    value = (config.get("analyses") or {}).get(key)
    return default if value is None else value


def study_of(artifact):
    """The study producing ``artifact`` (table4, fig2, …), or None when none lists it."""
    return artifact_owner(STUDIES, artifact)


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


def analysis_csv(name, dataset, model, prompt, testset):
    return f"{RESULTS}/analyses/{dataset}/{model}/{prompt}/{testset}/{name}.csv"


def artifact_cells(artifact, models=None):
    """Trace cells {dataset, model, prompt, testset} of the study producing ``artifact``."""
    study = study_of(artifact)
    return [] if study is None else mechanism_cells(study, models)


def artifact_inputs(name, artifact, models=None, file=None):
    """Per-run analysis CSVs (``name``) an artifact reads; ``file`` overrides the path."""
    path = file or analysis_csv
    return [
        path(name, c["dataset"], c["model"], c["prompt"], c["testset"])
        for c in artifact_cells(artifact, models)
    ]


def artifact_keys(artifact, models=None, sweep=False):
    """Columns each stacked CSV gets: dataset and model, plus the prompt for the sweeps."""
    keys = ("dataset", "model", "prompt") if sweep else ("dataset", "model")
    return [{k: c[k] for k in keys} for c in artifact_cells(artifact, models)]


def artifact_datasets(artifact):
    study = study_of(artifact)
    return [] if study is None else study.datasets


def artifact_models(artifact):
    study = study_of(artifact)
    return [] if study is None else study.models


def attention_file(name, dataset, model, prompt, testset):
    return analysis_csv("attention_summary", dataset, model, prompt, testset)
