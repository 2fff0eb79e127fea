# Distribution methods (paper §5.2): traces / breakdown scores → id × label probabilities.
# Library: src/multilabel_llm/estimators.py (+ bradley_terry.py, platt.py, marginalization.py).
# The method config's `kind` decides the inputs; `external` methods (probes, demux) are
# written by their own rules, so `estimate` only claims the kinds it computes.
# Helper functions and target lists: rules/common/estimators.smk.


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
        unpack(lambda wc: model_files(wc.model)),
        examples=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids=f"{RESULTS}/data/{{dataset}}/testsets/{{testset}}.txt",
        demo_pool=f"{RESULTS}/data/{{dataset}}/demo_pool.txt",
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
