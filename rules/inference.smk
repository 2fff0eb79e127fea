# LLM inference (paper §3-4, §5.2.2, §D.6): per-step label traces, breakdown scores, attention.
# Library: src/multilabel_llm/engine/ (run.py drives; tracing.py, breakdown.py, attention.py).
# Traces are written in resumable shards under .../{testset}/shards/ (not a declared output:
# Snakemake keeps it when a job dies, so a rerun skips the finished shards). Its manifest
# fingerprints checkpoint, adapter, dtype, prompt, ids and shard layout: shards written under
# other inputs are discarded, never mixed in. Each traces.jsonl.gz (one JSON line per trace,
# `pd.read_json(path, lines=True)`) has its meta in traces.meta.json beside it. Prompts with
# `hidden_states: true` also write hidden.npz.
# One engine per (dataset, model, engine): with `engine_service: true` (config/config.yaml) the
# model-bound jobs below are clients of an engine_service job that holds the loaded model and
# runs their work (multilabel_llm.engine.service). Snakemake starts the service with the clients
# that need to run, as one group (on SLURM: one allocation with the service's GPUs), and stops
# it when they are done; each client keeps its own outputs, log, shards and --cache entry.
# Traces and breakdown scores may come from Snakemake's between-workflow cache (`--cache`), so
# those rules carry no benchmark directive (a cached result has no timing); the job log
# records the seconds each run took.
# Its dag methods: multilabel_llm.workflow.dag.inference (InferenceStage); model
# params and resources: multilabel_llm.workflow.dag.models (ModelStage).


rule engine_service:
    input:
        unpack(dag.model_inputs),
    output:
        service(f"{RESULTS}/engines/{{dataset}}/{{model}}/{{engine}}.json"),
    log:
        "logs/engine_service/{dataset}/{model}/{engine}.log",
    wildcard_constraints:
        engine=dag.engine_names,
    conda:
        "../envs/inference.yaml"
    threads: dag.model_threads
    resources:
        **dag.engine_service_resources(),
    shell:
        # The address file exists at once with the service's pid ($$: exec keeps it), so the
        # clients never wait on Snakemake's latency-wait; they poll it for the socket. `python`:
        # rules/common.smk puts Snakemake's own first on PATH (a param naming it would put this
        # machine's venv path into the --cache keys of the clients' outputs).
        "echo '{{\"pid\": '$$'}}' > {output:q} && "
        "exec python -m multilabel_llm.engine.service {output:q} --threads {threads} 2> {log:q}"


rule extract_traces:
    input:
        unpack(dag.inference_inputs),
        engine=dag.engine_service_input("extract_traces"),
    output:
        traces=f"{dag.trace_dir}/traces.jsonl.gz",
        meta=f"{dag.trace_dir}/traces.meta.json",
    log:
        "logs/extract_traces/{dataset}/{model}/{prompt}/{testset}.log",
    wildcard_constraints:
        prompt="|".join(dag.plain_prompts) or "NONE",
    cache: "omit-software"
    conda:
        "../envs/inference.yaml"
    threads: dag.served_threads
    resources:
        **dag.served_resources(),
    params:
        **dag.inference_params(),
        software=dag.software,  # torch/transformers versions: part of the --cache key
        engine=dag.engine_version,  # engine/version.py: reruns when the engine changes
    script:
        "../workflow/scripts/extract_traces.py"


use rule extract_traces as extract_traces_hidden with:
    input:
        unpack(dag.inference_inputs),
        engine=dag.engine_service_input("extract_traces_hidden"),
    output:
        traces=f"{dag.trace_dir}/traces.jsonl.gz",
        meta=f"{dag.trace_dir}/traces.meta.json",
        hidden=f"{dag.trace_dir}/hidden.npz",
    log:
        "logs/extract_traces_hidden/{dataset}/{model}/{prompt}/{testset}.log",
    wildcard_constraints:
        prompt="|".join(dag.hidden_prompts) or "NONE",


rule extract_attention:
    input:
        unpack(dag.inference_inputs),
        traces=f"{dag.trace_dir}/traces.jsonl.gz",
    output:
        f"{dag.trace_dir}/attention.csv",
    log:
        "logs/extract_attention/{dataset}/{model}/{prompt}/{testset}.log",
    benchmark:
        "benchmarks/extract_attention/{dataset}/{model}/{prompt}/{testset}.tsv"
    conda:
        "../envs/inference.yaml"
    threads: dag.model_threads
    resources:
        **dag.model_resources(),
    params:
        **dag.inference_params(),
        engine=dag.engine_version,
    script:
        "../workflow/scripts/extract_attention.py"


# Breakdown prompts have their own header and demos (config key `breakdown:`), so their scores
# do not depend on the prompt variant: one job per (dataset, model, test set) and kind. Kind
# binary_reversed asks every pair the other way round (b first), for binary methods with
# `orders: both` (config/method/binary_breakdown_both_orders.yaml).
rule score_breakdown:
    input:
        unpack(dag.inference_inputs),
        engine=dag.engine_service_input("score_breakdown"),
    output:
        f"{dag.breakdown_dir}/{{kind}}.parquet",
    log:
        "logs/score_{kind}/{dataset}/{model}/{testset}.log",
    wildcard_constraints:
        kind="unary|binary|binary_reversed",
    cache: "omit-software"
    conda:
        "../envs/inference.yaml"
    threads: dag.served_threads
    resources:
        **dag.served_resources(),
    params:
        model=lambda wc: dag.model_params(wc.model),
        prompt={"breakdown": dag.config["breakdown"]},
        kind=lambda wc: wc.kind,
        demo_split=dag.demo_split,
        software=dag.software,  # torch/transformers versions: part of the --cache key
        engine=dag.engine_version,  # engine/version.py: reruns when the engine changes
    script:
        "../workflow/scripts/score_breakdown.py"
