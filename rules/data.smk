# Datasets: published files -> canonical table -> test-set id lists; Table 1 over all datasets;
# the shared demo pool (the demo split minus every evaluated test set), read by every run.
# Library: src/multilabel_llm/datasets/, testsets.py, dataset_stats.py.
# Helper functions and target lists: rules/common/data.smk.


rule prepare_dataset:
    input:
        # only files that exist: a missing one fails in the loader, naming its source
        files=lambda wc: dataset_input_files(dataset_cfg(wc.dataset)),
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
        cfg=lambda wc: dataset_cfg(wc.dataset),
    script:
        "../workflow/scripts/prepare_dataset.py"


rule build_testsets:
    input:
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids_file=lambda wc: testset_input_files(dataset_cfg(wc.dataset), wc.testset),
    output:
        ids=f"{RESULTS}/data/{{dataset}}/testsets/{{testset}}.txt",
    log:
        "logs/build_testsets/{dataset}/{testset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        cfg=lambda wc: get_testset_cfg(dataset_cfg(wc.dataset), wc.testset),
    script:
        "../workflow/scripts/build_testsets.py"


rule demo_pool:
    input:
        table=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids=lambda wc: expand(
            f"{RESULTS}/data/{wc.dataset}/testsets/{{testset}}.txt",
            testset=pool_testsets(wc.dataset),
        ),
    output:
        f"{RESULTS}/data/{{dataset}}/demo_pool.txt",
    log:
        "logs/demo_pool/{dataset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        testsets=lambda wc: pool_testsets(wc.dataset),
        demo_split=lambda wc: dataset_cfg(wc.dataset).get("demo_split", "train"),
        need=demo_shots_needed(),
    script:
        "../workflow/scripts/demo_pool.py"


rule dataset_stats:
    input:
        tables=expand(f"{RESULTS}/data/{{dataset}}/examples.parquet", dataset=DATASETS),
        metas=expand(f"{RESULTS}/data/{{dataset}}/meta.json", dataset=DATASETS),
    output:
        csv=f"{RESULTS}/tables/table1_datasets.csv",
        md=f"{RESULTS}/tables/table1_datasets.md",
    log:
        "logs/dataset_stats/table1.log",
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow/scripts/dataset_stats.py"
