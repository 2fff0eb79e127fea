# Distribution alignment (paper §5.1.2, Tables 2 and 5): every distribution of the experiment
# scored against the human distribution, with seeded bootstrap CIs (docs/metrics.md); one
# long-format table of every score, of which Tables 2/5 are a view.
# Library: src/multilabel_llm/core/metrics.py, scoring/ (alignment.py, tables.py). Settings: config `alignment:`
# (defaults: config/alignment/default.yaml).
# Its dag methods: multilabel_llm.workflow.dag.metrics (MetricsStage).


rule score_alignment:
    input:
        unpack(dag.scoring_inputs),
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
        **dag.scoring_params(),
        metric=dag.alignment_metric(),
        bootstrap={
            "n": config["alignment"]["bootstrap_n"],
            "seed": config["alignment"]["bootstrap_seed"],
            "alpha": config["alignment"]["bootstrap_alpha"],
        },
        digits=config["alignment"]["digits"],
    script:
        "../workflow/scripts/score_alignment.py"


# The metrics of Token-Level Marginalization for Multi-Label LLM Classifiers (Praharaj &
# Kasundra 2025) beside ours, for the same distributions; only when
# alignment.token_level_threshold is set (docs/metrics.md).
rule score_token_level:
    input:
        unpack(dag.scoring_inputs),
    output:
        csv=f"{RESULTS}/tables/token_level_{{dataset}}.csv",
        md=f"{RESULTS}/tables/token_level_{{dataset}}.md",
    log:
        "logs/score_token_level/{dataset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        **dag.scoring_params(),
        threshold=config["alignment"]["token_level_threshold"],
        digits=config["alignment"]["digits"],
    script:
        "../workflow/scripts/score_token_level.py"


# Every score of the experiment in long format (dataset, model, prompt, testset, method,
# metric, value, ci_low, ci_high): the table every report table is a view of.
rule results_long:
    input:
        alignment=dag.alignment_tables(),
        token_level=dag.token_level_tables(),
    output:
        f"{RESULTS}/tables/results_long.csv",
    log:
        "logs/results_long/results_long.log",
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow/scripts/results_long.py"


rule alignment_paper_tables:
    input:
        results=f"{RESULTS}/tables/results_long.csv",
        metas=[dag.data(d, "meta.json") for d in dag.scored_datasets()],
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
        datasets=dag.scored_datasets(),
        display_names={d: dag.dataset_display(d) for d in dag.scored_datasets()},
        spec=lambda wc: dag.paper_alignment_tables[wc.table],
        methods=dag.method_rows(),
        title=lambda wc: dag.paper_table_title(wc.table),
        digits=config["alignment"]["digits"],
    script:
        "../workflow/scripts/alignment_tables.py"
