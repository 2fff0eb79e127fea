# Demux (Chochlakis et al. 2023), the paper's "BERT" row: an encoder over (label names, text).
# Library: src/multilabel_llm/supervised/demux.py. It does not depend on the LLM: trained and applied once
# per dataset/test set, then copied under every (model, prompt) as the distribution of each
# method of kind `demux` (dag.methods_written_by).
# Its dag methods: shared ones of multilabel_llm.workflow.dag (no stage module of its own;
# data: evaluated_ids; estimators: methods_written_by).


rule train_demux:
    input:
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        # every evaluated test set: their ids are kept out of the dev set early stopping sees
        exclude=dag.evaluated_ids,
    output:
        model=f"{RESULTS}/demux/{{dataset}}/model.pt",
        log_csv=f"{RESULTS}/demux/{{dataset}}/train_log.csv",
    log:
        "logs/train_demux/{dataset}.log",
    benchmark:
        "benchmarks/train_demux/{dataset}.tsv"
    conda:
        "../envs/training.yaml"
    threads: 2
    resources:
        mem_mb=dag.training["demux"]["resources"]["mem_mb"],
        runtime=dag.training["demux"]["resources"]["runtime"],
        gpu=dag.training["demux"]["resources"]["gpu"],
    params:
        demux={k: v for k, v in dag.training["demux"].items() if k != "resources"},
    script:
        "../workflow/scripts/train_demux.py"


rule demux_distribution:
    input:
        model=f"{RESULTS}/demux/{{dataset}}/model.pt",
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids=f"{RESULTS}/data/{{dataset}}/testsets/{{testset}}.txt",
    output:
        dist=f"{RESULTS}/demux/{{dataset}}/{{testset}}/distribution.parquet",
    log:
        "logs/demux_distribution/{dataset}/{testset}.log",
    conda:
        "../envs/training.yaml"
    resources:
        mem_mb=dag.training["demux"]["resources"]["mem_mb"],
    script:
        "../workflow/scripts/demux_distributions.py"


rule demux_method_row:
    input:
        f"{RESULTS}/demux/{{dataset}}/{{testset}}/distribution.parquet",
    output:
        f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.parquet",
    log:
        "logs/demux_method_row/{dataset}/{model}/{prompt}/{testset}/{method}.log",
    wildcard_constraints:
        method=dag.methods_written_by("demux"),
    conda:
        "../envs/training.yaml"
    shell:
        "cp {input} {output} 2> {log}"
