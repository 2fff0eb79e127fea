# Datasets: published files -> canonical table -> test-set id lists; Table 1 over all datasets;
# the shared demo pool (the demo split minus every evaluated test set), read by every run.
# Library: src/multilabel_llm/data/ (loaders, testsets.py, dataset_stats.py, jobs.py); paths: dag.data().
# Its dag methods: multilabel_llm.workflow.dag.data (DataStage).


rule prepare_dataset:
    input:
        # only files that exist: a missing one fails in the loader, naming its source
        files=dag.dataset_files,
        # the config and raw-file digests that decide the table (rewritten when they change)
        decided=dag.decided_dataset,
    output:
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
    log:
        "logs/prepare_dataset/{dataset}.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=8000,
    params:
        cfg=lambda wc: dag.dataset(wc.dataset),
    script:
        "../workflow/scripts/prepare_dataset.py"


rule build_testsets:
    input:
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids_file=dag.testset_files,
        decided=dag.decided_testset,
    output:
        ids=f"{RESULTS}/data/{{dataset}}/testsets/{{testset}}.txt",
    log:
        "logs/build_testsets/{dataset}/{testset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        cfg=dag.testset_cfg,
    script:
        "../workflow/scripts/build_testsets.py"


rule demo_pool:
    input:
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids=dag.evaluated_ids,
    output:
        f"{RESULTS}/data/{{dataset}}/demo_pool.txt",
    log:
        "logs/demo_pool/{dataset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        testsets=lambda wc: dag.evaluated_testsets(wc.dataset),
        demo_split=dag.demo_split,
        need=dag.demo_shots_needed,
        need_from=dag.demo_shots_source,
    script:
        "../workflow/scripts/demo_pool.py"


rule dataset_stats:
    input:
        tables=[dag.data(d, "examples.parquet") for d in dag.datasets],
        metas=[dag.data(d, "meta.json") for d in dag.datasets],
    output:
        csv=f"{RESULTS}/tables/table1_datasets.csv",
        md=f"{RESULTS}/tables/table1_datasets.md",
    log:
        "logs/dataset_stats/table1.log",
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow/scripts/dataset_stats.py"
