# Distribution alignment (paper §5.1.2, Tables 2 and 5): every distribution of the experiment
# scored against the human distribution, with seeded bootstrap CIs (docs/metrics.md).
# Library: src/multilabel_llm/metrics.py, alignment_tables.py. Settings live under
# `alignment:` in the config; every key has a default here.
# Needs rules/estimators.smk first.
# Helper functions and target lists: rules/common/metrics.smk.


rule score_alignment:
    input:
        examples=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids=lambda wc: expand(
            f"{RESULTS}/data/{wc.dataset}/testsets/{{testset}}.txt",
            testset=align_testsets(wc.dataset),
        ),
        dists=lambda wc: [
            align_distribution(wc.dataset, run) for run in align_runs(wc.dataset)
        ],
    output:
        csv=f"{RESULTS}/tables/alignment_{{dataset}}.csv",
        md=f"{RESULTS}/tables/alignment_{{dataset}}.md",
        tex=f"{RESULTS}/tables/alignment_{{dataset}}.tex",
    log:
        "logs/score_alignment/{dataset}.log",
    benchmark:
        "benchmarks/score_alignment/{dataset}.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        runs=lambda wc: align_runs(wc.dataset),
        testsets=lambda wc: align_testsets(wc.dataset),
        methods=align_methods(),
        display_name=lambda wc: align_dataset_display(wc.dataset),
        metric={
            "epsilon": align_cfg("epsilon", 1e-8),
            "threshold": align_cfg("threshold", 0.5),
        },
        bootstrap={
            "n": align_cfg("bootstrap_n", 1000),
            "seed": align_cfg("bootstrap_seed", 0),
            "alpha": align_cfg("bootstrap_alpha", 0.05),
        },
        digits=align_cfg("digits", 2),
    script:
        "../workflow/scripts/score_alignment.py"


# The metrics of Token-Level Marginalization for Multi-Label LLM Classifiers (Praharaj &
# Kasundra 2025) beside ours, for the same distributions; only when
# alignment.token_level_threshold is set (docs/metrics.md).
rule score_token_level:
    input:
        examples=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids=lambda wc: expand(
            f"{RESULTS}/data/{wc.dataset}/testsets/{{testset}}.txt",
            testset=align_testsets(wc.dataset),
        ),
        dists=lambda wc: [
            align_distribution(wc.dataset, run) for run in align_runs(wc.dataset)
        ],
    output:
        csv=f"{RESULTS}/tables/token_level_{{dataset}}.csv",
        md=f"{RESULTS}/tables/token_level_{{dataset}}.md",
    log:
        "logs/score_token_level/{dataset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        runs=lambda wc: align_runs(wc.dataset),
        testsets=lambda wc: align_testsets(wc.dataset),
        methods=align_methods(),
        display_name=lambda wc: align_dataset_display(wc.dataset),
        threshold=align_cfg("token_level_threshold", 0.2),
        digits=align_cfg("digits", 2),
    script:
        "../workflow/scripts/score_token_level.py"


rule alignment_paper_tables:
    input:
        alignment=expand(
            f"{RESULTS}/tables/alignment_{{dataset}}.csv", dataset=align_datasets()
        ),
        metas=expand(f"{RESULTS}/data/{{dataset}}/meta.json", dataset=align_datasets()),
    output:
        csv=f"{RESULTS}/tables/{{table}}.csv",
        md=f"{RESULTS}/tables/{{table}}.md",
        tex=f"{RESULTS}/tables/{{table}}.tex",
    log:
        "logs/alignment_paper_tables/{table}.log",
    wildcard_constraints:
        table="table2|table5",
    conda:
        "../envs/analysis.yaml"
    params:
        datasets=align_datasets(),
        display_names={d: align_dataset_display(d) for d in align_datasets()},
        spec=lambda wc: PAPER_ALIGNMENT_TABLES[wc.table],
        methods=align_methods(),
        title=lambda wc: PAPER_TABLE_TITLES[wc.table],
        digits=align_cfg("digits", 2),
    script:
        "../workflow/scripts/alignment_tables.py"
