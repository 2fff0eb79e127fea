# SFT (paper §5.2.3, §A.5): LoRA on the train split with the experiment's first prompt (the
# main prompt) minus demonstrations, once per (dataset, model): every prompt variant's
# "<model>-sft" traces apply the same adapter.
# Library: src/multilabel_llm/sft.py. Checkpoints live beside the adapter but are NOT outputs:
# Snakemake deletes a job's outputs before rerunning it, which would defeat resuming.
# Inference with the adapter is the engine's extract_traces on model slot "{model}-sft".


rule train_sft:
    input:
        unpack(lambda wc: model_files(wc.model)),
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
    output:
        adapter=directory(f"{RESULTS}/sft/{{dataset}}/{{model}}/adapter"),
        log_csv=f"{RESULTS}/sft/{{dataset}}/{{model}}/train_log.csv",
    log:
        "logs/train_sft/{dataset}/{model}.log",
    benchmark:
        "benchmarks/train_sft/{dataset}/{model}.tsv"
    conda:
        "../envs/training.yaml"
    threads: model_threads
    resources:
        mem_mb=training_cfg()["sft"]["resources"]["mem_mb"],
        runtime=training_cfg()["sft"]["resources"]["runtime"],
        gpu=model_resource("gpu", 0),
        gpu_model=model_resource("gpu_model", ""),
    params:
        model=lambda wc: model_params(wc.model),
        prompt=prompt_cfg(PROMPTS[0]),
        loader=lambda wc: dataset_cfg(wc.dataset).get("loader"),
        sft={k: v for k, v in training_cfg()["sft"].items() if k != "resources"},
        checkpoints=lambda wc: f"{RESULTS}/sft/{wc.dataset}/{wc.model}/checkpoints",
    script:
        "../workflow/scripts/train_sft.py"
