# Distribution methods (paper §5.2): traces / breakdown scores → id × label probabilities.
# Library: src/multilabel_llm/estimators.py (+ bradley_terry.py, platt.py, marginalization.py).
# The method config's `kind` decides the inputs; `external` methods (probes, demux) are
# written by their own rules, so `estimate` only claims the kinds it computes; binary
# breakdowns (`estimate_binary`) also write their answer-position bias.
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


rule estimate_binary:
    input:
        unpack(estimate_inputs),
    output:
        dist=f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.parquet",
        bias=f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.position_bias.csv",
    log:
        "logs/estimate/{dataset}/{model}/{prompt}/{testset}/{method}.log",
    benchmark:
        "benchmarks/estimate/{dataset}/{model}/{prompt}/{testset}/{method}.tsv"
    wildcard_constraints:
        method="|".join(BINARY_METHODS) or "NONE",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=lambda wc: est_params(wc.method),
    script:
        "../workflow/scripts/estimate_binary.py"


# Position bias of every binary-breakdown alignment cell, one row each (report table).
rule binary_position_bias_table:
    input:
        [binary_bias_file(c) for c in binary_bias_cells()],
    output:
        f"{RESULTS}/tables/binary_position_bias.csv",
    log:
        "logs/binary_position_bias_table/binary_position_bias.log",
    conda:
        "../envs/analysis.yaml"
    params:
        table="binary_position_bias",
        run_keys=binary_bias_cells(),
    script:
        "../workflow/scripts/collect_table.py"


rule marginalize:
    input:
        unpack(lambda wc: model_files(wc.model)),
        examples=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids=f"{RESULTS}/data/{{dataset}}/testsets/{{testset}}.txt",
        demo_pool=f"{RESULTS}/data/{{dataset}}/demo_pool.txt",
        # an -sft slot's adapter: marginalising it waits for train_sft
        adapter=lambda wc: (model_cfg(wc.model).get("adapter") or "").format(**wc) or [],
    output:
        # resume state (<method>.shards/, fingerprinted) sits beside it between runs
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
