# Linear probes (paper §5.2.3, §5.4, Fig. 7/15): hidden state at the first generated label token.
# Library: src/multilabel_llm/probes.py. Needs extract_traces with hidden states for the probe
# train and eval test sets (training.probes.train_testset / eval_testset) and any test set
# whose distribution is asked for.
# Helper functions and target lists: rules/common/probes.smk.


rule train_probes:
    input:
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        train_hidden=f"{RESULTS}/traces/{{dataset}}/{{model}}/{{prompt}}/{PROBES_TRAIN}/hidden.npz",
        train_traces=f"{RESULTS}/traces/{{dataset}}/{{model}}/{{prompt}}/{PROBES_TRAIN}/traces.jsonl.gz",
        eval_hidden=f"{RESULTS}/traces/{{dataset}}/{{model}}/{{prompt}}/{PROBES_EVAL}/hidden.npz",
        eval_traces=f"{RESULTS}/traces/{{dataset}}/{{model}}/{{prompt}}/{PROBES_EVAL}/traces.jsonl.gz",
    output:
        probes=f"{RESULTS}/probes/{{dataset}}/{{model}}/{{prompt}}/probes.joblib",
        scores=f"{RESULTS}/probes/{{dataset}}/{{model}}/{{prompt}}/probe_scores.csv",
    log:
        "logs/train_probes/{dataset}/{model}/{prompt}.log",
    benchmark:
        "benchmarks/train_probes/{dataset}/{model}/{prompt}.tsv"
    conda:
        "../envs/training.yaml"
    threads: 1
    resources:
        mem_mb=training_cfg()["probes"]["resources"]["mem_mb"],
        runtime=training_cfg()["probes"]["resources"]["runtime"],
        gpu=training_cfg()["probes"]["resources"]["gpu"],
    params:
        probes={k: v for k, v in training_cfg()["probes"].items() if k != "resources"},
    script:
        "../workflow/scripts/train_probes.py"


rule probe_distribution:
    input:
        probes=f"{RESULTS}/probes/{{dataset}}/{{model}}/{{prompt}}/probes.joblib",
        hidden=f"{RESULTS}/traces/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/hidden.npz",
        ids=f"{RESULTS}/data/{{dataset}}/testsets/{{testset}}.txt",
    output:
        dist=f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/probes.parquet",
    log:
        "logs/probe_distribution/{dataset}/{model}/{prompt}/{testset}.log",
    conda:
        "../envs/training.yaml"
    resources:
        mem_mb=training_cfg()["probes"]["resources"]["mem_mb"],
    script:
        "../workflow/scripts/probe_distributions.py"
