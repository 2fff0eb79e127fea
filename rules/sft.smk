# SFT (paper §5.2.3, §A.5): LoRA on the train split with the experiment's first prompt (the
# main prompt) minus demonstrations, once per (dataset, model): every prompt variant's
# "<model>-sft" traces apply the same adapter (the slot dag.model("<model>-sft") synthesises).
# Library: src/multilabel_llm/supervised/sft.py. Checkpoints live beside the adapter but are NOT outputs:
# Snakemake deletes a job's outputs before rerunning it, which would defeat resuming. They
# carry a fingerprint (training config, base model, data, prompt): a rerun resumes only its
# own run's checkpoints and retrains after any change.
# Early stopping sees no evaluated example: the dev loss leaves out the ids of every test set
# some run of the experiment evaluates (the same list as the shared demo pool, rules/data.smk;
# GoEmotions and SemEval test sets come from dev).
# Its dag methods: shared ones of multilabel_llm.workflow.dag (no stage module of its own;
# models: the model's params, files and resources; data: evaluated_testsets).


rule train_sft:
    input:
        unpack(lambda wc: dag.model_files(wc.model)),
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        testsets=dag.evaluated_ids,
    output:
        adapter=directory(f"{RESULTS}/sft/{{dataset}}/{{model}}/adapter"),
        log_csv=f"{RESULTS}/sft/{{dataset}}/{{model}}/train_log.csv",
    log:
        "logs/train_sft/{dataset}/{model}.log",
    benchmark:
        "benchmarks/train_sft/{dataset}/{model}.tsv"
    conda:
        "../envs/training.yaml"
    threads: dag.model_threads
    resources:
        **dag.model_resources({"gpu": 0, "gpu_model": ""}),
        mem_mb=dag.training["sft"]["resources"]["mem_mb"],
        runtime=dag.training["sft"]["resources"]["runtime"],
    params:
        model=lambda wc: dag.model_params(wc.model),
        prompt=dag.prompt(dag.prompts[0]),
        loader=dag.loader,
        testsets=lambda wc: dag.evaluated_testsets(wc.dataset),
        sft={k: v for k, v in dag.training["sft"].items() if k != "resources"},
        checkpoints=lambda wc: f"{RESULTS}/sft/{wc.dataset}/{wc.model}/checkpoints",
    script:
        "../workflow/scripts/train_sft.py"
