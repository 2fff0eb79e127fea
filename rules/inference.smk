# LLM inference (paper §3-4, §5.2.2, §D.6): per-step label traces, breakdown scores, attention.
# Library: src/multilabel_llm/engine/ (run.py drives; tracing.py, breakdown.py, attention.py).
# Traces are written in resumable shards under .../{testset}/shards/ (not a declared output:
# Snakemake keeps it when a job dies, so a rerun skips the finished shards). Its manifest
# fingerprints checkpoint, adapter, dtype, prompt, ids and shard layout: shards written under
# other inputs are discarded, never mixed in. Prompts with `hidden_states: true` also write
# hidden.npz.
# Traces and breakdown scores may come from Snakemake's between-workflow cache (`--cache`), so
# those rules carry no benchmark directive (a cached result has no timing); the job log
# records the seconds each run took.
# Helper functions and target lists: rules/common/inference.smk.


rule extract_traces:
    input:
        unpack(inf_data),
    output:
        traces=f"{TRACE_DIR}/traces.jsonl.gz",
    log:
        "logs/extract_traces/{dataset}/{model}/{prompt}/{testset}.log",
    wildcard_constraints:
        prompt="|".join(PLAIN_PROMPTS) or "NONE",
    cache: "omit-software"
    conda:
        "../envs/inference.yaml"
    threads: model_threads
    resources:
        mem_mb=model_resource("mem_mb", 4000),
        runtime=model_resource("runtime", 60),
        gpu=model_resource("gpu", 0),
        gpu_model=model_resource("gpu_model", ""),
    params:
        model=lambda wc: model_params(wc.model),
        prompt=lambda wc: prompt_cfg(wc.prompt),
        demo_split=lambda wc: dataset_cfg(wc.dataset).get("demo_split", "train"),
        loader=lambda wc: dataset_cfg(wc.dataset).get("loader"),
        software=SOFTWARE,  # torch/transformers versions: part of the --cache key
    script:
        "../workflow/scripts/extract_traces.py"


use rule extract_traces as extract_traces_hidden with:
    output:
        traces=f"{TRACE_DIR}/traces.jsonl.gz",
        hidden=f"{TRACE_DIR}/hidden.npz",
    log:
        "logs/extract_traces_hidden/{dataset}/{model}/{prompt}/{testset}.log",
    wildcard_constraints:
        prompt="|".join(HIDDEN_PROMPTS) or "NONE",


rule extract_attention:
    input:
        unpack(inf_data),
        traces=f"{TRACE_DIR}/traces.jsonl.gz",
    output:
        f"{TRACE_DIR}/attention.csv",
    log:
        "logs/extract_attention/{dataset}/{model}/{prompt}/{testset}.log",
    benchmark:
        "benchmarks/extract_attention/{dataset}/{model}/{prompt}/{testset}.tsv"
    conda:
        "../envs/inference.yaml"
    threads: model_threads
    resources:
        mem_mb=model_resource("mem_mb", 4000),
        runtime=model_resource("runtime", 60),
        gpu=model_resource("gpu", 0),
        gpu_model=model_resource("gpu_model", ""),
    params:
        model=lambda wc: model_params(wc.model),
        prompt=lambda wc: prompt_cfg(wc.prompt),
        demo_split=lambda wc: dataset_cfg(wc.dataset).get("demo_split", "train"),
        loader=lambda wc: dataset_cfg(wc.dataset).get("loader"),
    script:
        "../workflow/scripts/extract_attention.py"


# Breakdown prompts have their own header and demos (config key `breakdown:`), so their scores
# do not depend on the prompt variant: one job per (dataset, model, test set).
rule score_unary:
    input:
        unpack(inf_data),
    output:
        f"{BREAKDOWN_DIR}/unary.parquet",
    log:
        "logs/score_unary/{dataset}/{model}/{testset}.log",
    cache: "omit-software"
    conda:
        "../envs/inference.yaml"
    threads: model_threads
    resources:
        mem_mb=model_resource("mem_mb", 4000),
        runtime=model_resource("runtime", 60),
        gpu=model_resource("gpu", 0),
        gpu_model=model_resource("gpu_model", ""),
    params:
        model=lambda wc: model_params(wc.model),
        prompt={"breakdown": config["breakdown"]},
        kind="unary",
        demo_split=lambda wc: dataset_cfg(wc.dataset).get("demo_split", "train"),
        software=SOFTWARE,  # torch/transformers versions: part of the --cache key
    script:
        "../workflow/scripts/score_breakdown.py"


use rule score_unary as score_binary with:
    output:
        f"{BREAKDOWN_DIR}/binary.parquet",
    log:
        "logs/score_binary/{dataset}/{model}/{testset}.log",
    params:
        model=lambda wc: model_params(wc.model),
        prompt={"breakdown": config["breakdown"]},
        kind="binary",
        demo_split=lambda wc: dataset_cfg(wc.dataset).get("demo_split", "train"),
        software=SOFTWARE,  # torch/transformers versions: part of the --cache key


# Every pair asked the other way round (b first), for binary methods with `orders: both`
# (config/method/binary_breakdown_both_orders.yaml); same header and demonstrations.
use rule score_unary as score_binary_reversed with:
    output:
        f"{BREAKDOWN_DIR}/binary_reversed.parquet",
    log:
        "logs/score_binary_reversed/{dataset}/{model}/{testset}.log",
    params:
        model=lambda wc: model_params(wc.model),
        prompt={"breakdown": config["breakdown"]},
        kind="binary_reversed",
        demo_split=lambda wc: dataset_cfg(wc.dataset).get("demo_split", "train"),
        software=SOFTWARE,  # torch/transformers versions: part of the --cache key
