# Mechanism analyses of paper §4/§D: traces → one CSV per analysis (docs/analyses.md), and the
# paper tables built from them (Tables 4, 6, 7 and the "% second predicted next" numbers).
# Settings live under `analyses:` in the config; every key has a default here so an
# experiment without that block still runs.
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


def analysis_csv(name, dataset, model, prompt, testset):
    return f"{RESULTS}/analyses/{dataset}/{model}/{prompt}/{testset}/{name}.csv"


def mechanism_runs(models=None):
    """(dataset, model) pairs of the mechanism analyses, restricted to ``models``."""
    models = MODELS if models is None else models
    return [(d, m) for d in DATASETS for m in models]


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
        for d in DATASETS
        for m in MODELS
        for p in sweep_prompts(key)
    ]


def sweep_keys(key):
    return [
        {"dataset": d, "model": m, "prompt": p}
        for d in DATASETS
        for m in MODELS
        for p in sweep_prompts(key)
    ]


def attention_runs():
    """(dataset, model) pairs whose traces were extracted with attention (Table 6)."""
    models = analyses_cfg("attention_models", [])
    return [(d, m) for d in DATASETS for m in models]


rule analyze_traces:
    input:
        traces=f"{RESULTS}/traces/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/traces.jsonl.gz",
        examples=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
    output:
        **{
            name: f"{RESULTS}/analyses/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{name}.csv"
            for name in TRACE_ANALYSES
        },
    log:
        "logs/analyze_traces/{dataset}/{model}/{prompt}/{testset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        multilabel_ratio=lambda w: float(prompt_setting(w, "multilabel_ratio", 0.5)),
        label_order=lambda w: prompt_setting(w, "label_order", "dataset"),
        seed=lambda w: int(prompt_setting(w, "seed", 0)),
    script:
        "../workflow/scripts/analyze_traces.py"


rule analyze_attention:
    input:
        attention=f"{RESULTS}/traces/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/attention.csv",
    output:
        f"{RESULTS}/analyses/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/attention_summary.csv",
    log:
        "logs/analyze_attention/{dataset}/{model}/{prompt}/{testset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        min_step=None,  # the engine's file already holds only the second and later labels
    script:
        "../workflow/scripts/analyze_attention.py"


rule table4_second_never:
    input:
        mechanism_inputs("second_never"),
    output:
        f"{RESULTS}/tables/table4_second_never.csv",
    log:
        "logs/table4_second_never/table4.log",
    conda:
        "../envs/analysis.yaml"
    params:
        table="table4",
        run_keys=mechanism_keys(),
    script:
        "../workflow/scripts/collect_table.py"


rule table_second_next:
    input:
        mechanism_inputs("second_next"),
    output:
        f"{RESULTS}/tables/second_next.csv",
    log:
        "logs/table_second_next/second_next.log",
    conda:
        "../envs/analysis.yaml"
    params:
        table="second_next",
        run_keys=mechanism_keys(),
    script:
        "../workflow/scripts/collect_table.py"


rule table6_attention:
    input:
        [
            analysis_csv(
                "attention_summary", d, m, mechanism_prompt(), mechanism_testset()
            )
            for d, m in attention_runs()
        ],
    output:
        f"{RESULTS}/tables/table6_attention.csv",
    log:
        "logs/table6_attention/table6.log",
    conda:
        "../envs/analysis.yaml"
    params:
        table="table6",
        run_keys=[{"dataset": d, "model": m} for d, m in attention_runs()],
    script:
        "../workflow/scripts/collect_table.py"


rule table7_label_order:
    input:
        sweep_inputs("label_order", "order_prompts"),
    output:
        f"{RESULTS}/tables/table7_label_order.csv",
    log:
        "logs/table7_label_order/table7.log",
    conda:
        "../envs/analysis.yaml"
    params:
        table="table7",
        run_keys=sweep_keys("order_prompts"),
    script:
        "../workflow/scripts/collect_table.py"
