# Distribution methods (paper §5.2): traces / breakdown scores → id × label probabilities.
# Library: src/multilabel_llm/methods/ (registry.py declares the kinds; estimators.py, token_level.py, breakdown.py).
# Every {method}.parquet under results/distributions/ has one writer, chosen by the method's
# `kind` (multilabel_llm.methods.registry.DISTRIBUTION_PRODUCERS): each writer constrains {method} to
# dag.methods_written_by(<producer>): estimate, estimate_binary (which also writes the
# answer-position bias), marginalize, probes (rules/probes.smk), demux (rules/demux.smk).
# Its dag methods: multilabel_llm.workflow.dag.estimators (EstimatorStage; what a
# method kind reads: method_kind_inputs).


rule estimate:
    input:
        unpack(dag.estimate_inputs),
    output:
        f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.parquet",
    log:
        "logs/estimate/{dataset}/{model}/{prompt}/{testset}/{method}.log",
    benchmark:
        "benchmarks/estimate/{dataset}/{model}/{prompt}/{testset}/{method}.tsv"
    wildcard_constraints:
        method=dag.methods_written_by("estimate"),
    conda:
        "../envs/analysis.yaml"
    params:
        kind=lambda wc: dag.method_kind(wc.method),
        settings=lambda wc: dag.method_settings(wc.method),
    script:
        "../workflow/scripts/estimate.py"


rule estimate_binary:
    input:
        unpack(dag.estimate_inputs),
    output:
        dist=f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.parquet",
        bias=f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.position_bias.csv",
    log:
        "logs/estimate/{dataset}/{model}/{prompt}/{testset}/{method}.log",
    benchmark:
        "benchmarks/estimate/{dataset}/{model}/{prompt}/{testset}/{method}.tsv"
    wildcard_constraints:
        method=dag.methods_written_by("estimate_binary"),
    conda:
        "../envs/analysis.yaml"
    params:
        settings=lambda wc: dag.method_settings(wc.method),
    script:
        "../workflow/scripts/estimate_binary.py"


# Position bias of every binary-breakdown alignment cell, one row each (report table).
rule binary_position_bias_table:
    input:
        dag.binary_bias_files(),
    output:
        f"{RESULTS}/tables/binary_position_bias.csv",
    log:
        "logs/binary_position_bias_table/binary_position_bias.log",
    conda:
        "../envs/analysis.yaml"
    params:
        table="binary_position_bias",
        run_keys=dag.binary_bias_cells(),
    script:
        "../workflow/scripts/collect_table.py"


rule marginalize:
    input:
        unpack(dag.inference_inputs),
        engine=dag.engine_service_input("marginalize"),
    output:
        # resume state (<method>.shards/, fingerprinted) sits beside it between runs
        dist=f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.parquet",
        stats=f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.paths.parquet",
    log:
        "logs/marginalize/{dataset}/{model}/{prompt}/{testset}/{method}.log",
    benchmark:
        "benchmarks/marginalize/{dataset}/{model}/{prompt}/{testset}/{method}.tsv"
    wildcard_constraints:
        method=dag.methods_written_by("marginalize"),
    conda:
        "../envs/inference.yaml"
    threads: dag.served_threads
    resources:
        **dag.served_resources(),
    params:
        **dag.inference_params(),
        settings=lambda wc: dag.method_settings(wc.method),
        engine=dag.engine_version,
    script:
        "../workflow/scripts/marginalize.py"
