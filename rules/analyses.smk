# Mechanism analyses of paper §4/§D: traces → one CSV per analysis (docs/analyses.md), and the
# paper tables built from them (Tables 4, 6, 7 and the "% second predicted next" numbers).
# Which runs each table reads is decided by the study listing it (config `studies:`;
# multilabel_llm.workflow.dag.analyses.MECHANISM_TABLES); settings: config `analyses:`.
# Its dag methods: multilabel_llm.workflow.dag.analyses (AnalysisStage).


rule analyze_traces:
    input:
        traces=f"{dag.trace_dir}/traces.jsonl.gz",
        examples=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
    output:
        **{
            name: f"{RESULTS}/analyses/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{name}.csv"
            for name in dag.trace_analyses
        },
    log:
        "logs/analyze_traces/{dataset}/{model}/{prompt}/{testset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        multilabel_ratio=lambda w: float(dag.prompt_setting(w, "multilabel_ratio", 0.5)),
        label_order=lambda w: dag.prompt_setting(w, "label_order", "dataset"),
        seed=lambda w: int(dag.prompt_setting(w, "seed", 0)),
    script:
        "../workflow/scripts/analyze_traces.py"


rule analyze_attention:
    input:
        attention=f"{dag.trace_dir}/attention.csv",
    output:
        f"{RESULTS}/analyses/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/attention_summary.csv",
    log:
        "logs/analyze_attention/{dataset}/{model}/{prompt}/{testset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        min_step=None,  # the engine's file already holds only the second and later labels
    script:
        "../workflow/scripts/analyze_attention.py"


# Tables 4, 6, 7 and second_next: the per-run analysis CSVs of the study listing the table,
# stacked with the run's dataset and model (and prompt, for the label-order sweep).
rule mechanism_table:
    input:
        dag.mechanism_table_inputs,
    output:
        f"{RESULTS}/tables/{{table}}.csv",
    log:
        "logs/mechanism_table/{table}.log",
    wildcard_constraints:
        table="|".join(dag.mechanism_tables),
    conda:
        "../envs/analysis.yaml"
    params:
        table=lambda wc: dag.mechanism_tables[wc.table][0],
        run_keys=dag.mechanism_table_keys,
    script:
        "../workflow/scripts/collect_table.py"
