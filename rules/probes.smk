# Linear probes (paper §5.2.3, §5.4, Fig. 7/15): hidden state at the first generated label token.
# Library: src/multilabel_llm/supervised/probes.py. Needs extract_traces with hidden states for the probe
# train and eval test sets (training.probes.train_testset / eval_testset) and any test set
# whose distribution is asked for.
# Its dag methods: multilabel_llm.workflow.dag.supervised (SupervisedStage).


rule train_probes:
    input:
        **dag.probe_inputs(),
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
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
        mem_mb=dag.training["probes"]["resources"]["mem_mb"],
        runtime=dag.training["probes"]["resources"]["runtime"],
        gpu=dag.training["probes"]["resources"]["gpu"],
    params:
        probes={k: v for k, v in dag.training["probes"].items() if k != "resources"},
    script:
        "../workflow/scripts/train_probes.py"


# the distribution of every method of kind `probes` (dag.methods_written_by)
rule probe_distributions:
    input:
        probes=f"{RESULTS}/probes/{{dataset}}/{{model}}/{{prompt}}/probes.joblib",
        hidden=f"{dag.trace_dir}/hidden.npz",
        ids=f"{RESULTS}/data/{{dataset}}/testsets/{{testset}}.txt",
    output:
        dist=f"{RESULTS}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{{method}}.parquet",
    log:
        "logs/probe_distributions/{dataset}/{model}/{prompt}/{testset}/{method}.log",
    wildcard_constraints:
        method=dag.methods_written_by("probes"),
    conda:
        "../envs/training.yaml"
    resources:
        mem_mb=dag.training["probes"]["resources"]["mem_mb"],
    script:
        "../workflow/scripts/probe_distributions.py"
