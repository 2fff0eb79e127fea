# SFT (paper §5.2.3, §A.5): LoRA on the train split with the experiment's first prompt (the
# main prompt) minus demonstrations, once per (dataset, model): every prompt variant's
# "<model>-sft" traces apply the same adapter.
# Library: src/multilabel_llm/sft.py. Checkpoints live beside the adapter but are NOT outputs:
# Snakemake deletes a job's outputs before rerunning it, which would defeat resuming. They
# carry a fingerprint (training config, base model, data, prompt): a rerun resumes only its
# own run's checkpoints and retrains after any change.
# Early stopping sees no evaluated example: the dev loss leaves out the ids of every test set
# some run of the experiment evaluates (the same list as the shared demo pool, rules/data.smk;
# GoEmotions and SemEval test sets come from dev).
# Inference with the adapter is the engine's extract_traces on model slot "{model}-sft".


rule train_sft:
    input:
        unpack(lambda wc: model_files(wc.model)),
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        testsets=lambda wc: expand(
            f"{RESULTS}/data/{wc.dataset}/testsets/{{testset}}.txt",
            testset=pool_testsets(wc.dataset),
        ),
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
        testsets=lambda wc: pool_testsets(wc.dataset),
        sft={k: v for k, v in training_cfg()["sft"].items() if k != "resources"},
        checkpoints=lambda wc: f"{RESULTS}/sft/{wc.dataset}/{wc.model}/checkpoints",
    script:
        "../workflow/scripts/train_sft.py"
