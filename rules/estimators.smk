# Distribution methods (paper §5.2): traces / breakdown scores → id × label probabilities.
# Library: src/multilabel_llm/estimators.py (+ bradley_terry.py, platt.py, marginalization.py).
# The method config's `kind` decides the inputs; `external` methods (probes, demux) are
# written by their own rules, so `estimate` only claims the kinds it computes.
from multilabel_llm.estimators import KINDS as ESTIMATOR_KINDS
from multilabel_llm.estimators import TRACE_KINDS as ESTIMATOR_TRACE_KINDS


def est_kind(method):
    return method_cfg(method)["kind"]


def est_params(method):
    return dict(method_cfg(method).get("params") or {})


ESTIMATED_METHODS = [m for m in METHODS if est_kind(m) in ESTIMATOR_KINDS]
MARGINALIZED_METHODS = [m for m in METHODS if est_kind(m) == "marginalization"]


def est_traces(dataset, model, prompt, testset):
    return f"{RESULTS}/traces/{dataset}/{model}/{prompt}/{testset}/traces.jsonl.gz"


def est_trace_model(wildcards):
    """Model slot whose traces a method reads: the row's model, or e.g. "{model}-sft"."""
    return (
        est_params(wildcards.method)
        .get("traces_from", "{model}")
        .format(model=wildcards.model)
    )


def estimate_inputs(wildcards):
    kind = est_kind(wildcards.method)
    params = est_params(wildcards.method)
    data = f"{RESULTS}/data/{wildcards.dataset}"
    inputs = {
        "meta": f"{data}/meta.json",
        "ids": f"{data}/testsets/{wildcards.testset}.txt",
    }
    model = est_trace_model(wildcards)
    if kind in ESTIMATOR_TRACE_KINDS:
        inputs["traces"] = est_traces(
            wildcards.dataset, model, wildcards.prompt, wildcards.testset
        )
    if kind == "compare_to_none_platt":
        calib = params["calibration_testset"]
        inputs["examples"] = f"{data}/examples.parquet"
        inputs["calibration_ids"] = f"{data}/testsets/{calib}.txt"
        inputs["calibration_traces"] = est_traces(
            wildcards.dataset, model, wildcards.prompt, calib
        )
    if kind in ("unary", "binary"):
        breakdown = f"{RESULTS}/breakdown/{wildcards.dataset}/{wildcards.model}/{wildcards.prompt}"
        inputs[kind] = f"{breakdown}/{wildcards.testset}/{kind}.parquet"
    return inputs


rule estimate:
    input:
        unpack(estimate_inputs),
    output:
        f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.parquet",
    log:
        "logs/estimate/{dataset}/{model}/{prompt}/{testset}/{method}.log",
    benchmark:
        "benchmarks/estimate/{dataset}/{model}/{prompt}/{testset}/{method}.tsv"
    wildcard_constraints:
        method="|".join(ESTIMATED_METHODS) or "NONE",
    conda:
        "../envs/analysis.yaml"
    params:
        kind=lambda wc: est_kind(wc.method),
        settings=lambda wc: est_params(wc.method),
    script:
        "../workflow/scripts/estimate.py"


rule marginalize:
    input:
        examples=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids=f"{RESULTS}/data/{{dataset}}/testsets/{{testset}}.txt",
    output:
        dist=f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.parquet",
        stats=f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.paths.parquet",
    log:
        "logs/marginalize/{dataset}/{model}/{prompt}/{testset}/{method}.log",
    benchmark:
        "benchmarks/marginalize/{dataset}/{model}/{prompt}/{testset}/{method}.tsv"
    wildcard_constraints:
        method="|".join(MARGINALIZED_METHODS) or "NONE",
    conda:
        "../envs/inference.yaml"
    threads: model_threads
    resources:
        mem_mb=lambda wc: model_resources(wc.model)["mem_mb"],
        runtime=lambda wc: model_resources(wc.model)["runtime"],
        gpu=lambda wc: model_resources(wc.model).get("gpu", 0),
        gpu_model=lambda wc: model_resources(wc.model).get("gpu_model") or "",
    params:
        settings=lambda wc: est_params(wc.method),
        model=lambda wc: model_params(wc.model),
        prompt=lambda wc: prompt_cfg(wc.prompt),
        demo_split=lambda wc: dataset_cfg(wc.dataset).get("demo_split", "train"),
        loader=lambda wc: dataset_cfg(wc.dataset).get("loader"),
    script:
        "../workflow/scripts/marginalize.py"
