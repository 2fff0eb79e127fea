# LLM inference (paper §3-4, §5.2.2, §D.6): per-step label traces, breakdown scores, attention.
# Library: src/multilabel_llm/engine/ (run.py drives; tracing.py, breakdown.py, attention.py).
# Traces are written in resumable shards under .../{testset}/shards/ (not a declared output:
# Snakemake keeps it when a job dies, so a rerun skips the finished shards; delete it to
# force a full recompute). Prompts with `hidden_states: true` also write hidden.npz.


def inf_data(wildcards):
    data = f"{RESULTS}/data/{wildcards.dataset}"
    inputs = {
        "examples": f"{data}/examples.parquet",
        "meta": f"{data}/meta.json",
        "ids": f"{data}/testsets/{wildcards.testset}.txt",
    }
    adapter = model_cfg(wildcards.model).get("adapter")
    if adapter:
        inputs["adapter"] = adapter.format(**wildcards)
    return inputs


HIDDEN_PROMPTS = [p for p in PROMPTS if prompt_cfg(p).get("hidden_states")]
PLAIN_PROMPTS = [p for p in PROMPTS if p not in HIDDEN_PROMPTS]
TRACE_DIR = RESULTS + "/traces/{dataset}/{model}/{prompt}/{testset}"
BREAKDOWN_DIR = RESULTS + "/breakdown/{dataset}/{model}/{prompt}/{testset}"


rule extract_traces:
    input:
        unpack(inf_data),
    output:
        traces=TRACE_DIR + "/traces.jsonl.gz",
    log:
        "logs/extract_traces/{dataset}/{model}/{prompt}/{testset}.log",
    benchmark:
        "benchmarks/extract_traces/{dataset}/{model}/{prompt}/{testset}.tsv"
    wildcard_constraints:
        prompt="|".join(PLAIN_PROMPTS) or "NONE",
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
        "../workflow/scripts/extract_traces.py"


use rule extract_traces as extract_traces_hidden with:
    output:
        traces=TRACE_DIR + "/traces.jsonl.gz",
        hidden=TRACE_DIR + "/hidden.npz",
    log:
        "logs/extract_traces_hidden/{dataset}/{model}/{prompt}/{testset}.log",
    benchmark:
        "benchmarks/extract_traces_hidden/{dataset}/{model}/{prompt}/{testset}.tsv"
    wildcard_constraints:
        prompt="|".join(HIDDEN_PROMPTS) or "NONE",


rule extract_attention:
    input:
        unpack(inf_data),
        traces=TRACE_DIR + "/traces.jsonl.gz",
    output:
        TRACE_DIR + "/attention.csv",
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


rule score_unary:
    input:
        unpack(inf_data),
    output:
        BREAKDOWN_DIR + "/unary.parquet",
    log:
        "logs/score_unary/{dataset}/{model}/{prompt}/{testset}.log",
    benchmark:
        "benchmarks/score_unary/{dataset}/{model}/{prompt}/{testset}.tsv"
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
        prompt=lambda wc: {"breakdown": prompt_cfg(wc.prompt).get("breakdown") or {}},
        kind="unary",
        demo_split=lambda wc: dataset_cfg(wc.dataset).get("demo_split", "train"),
    script:
        "../workflow/scripts/score_breakdown.py"


use rule score_unary as score_binary with:
    output:
        BREAKDOWN_DIR + "/binary.parquet",
    log:
        "logs/score_binary/{dataset}/{model}/{prompt}/{testset}.log",
    benchmark:
        "benchmarks/score_binary/{dataset}/{model}/{prompt}/{testset}.tsv"
    params:
        model=lambda wc: model_params(wc.model),
        prompt=lambda wc: {"breakdown": prompt_cfg(wc.prompt).get("breakdown") or {}},
        kind="binary",
        demo_split=lambda wc: dataset_cfg(wc.dataset).get("demo_split", "train"),
