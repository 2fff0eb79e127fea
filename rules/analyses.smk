# Mechanism analyses of paper §4/§D: traces → one CSV per analysis (docs/analyses.md), and the
# paper tables built from them (Tables 4, 6, 7 and the "% second predicted next" numbers).
# Which runs each table reads is decided by the study listing it (config `studies:`); the
# few settings under `analyses:` have defaults here.
# Helper functions and target lists: rules/common/analyses.smk.


rule analyze_traces:
    input:
        traces=f"{RESULTS}/traces/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/traces.jsonl.gz",
        examples=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
    output:
        **{
            name: f"{RESULTS}/analyses/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/{name}.csv"
            for name in TRACE_ANALYSES
        },
    log:
        "logs/analyze_traces/{dataset}/{model}/{prompt}/{testset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        multilabel_ratio=lambda w: float(prompt_setting(w, "multilabel_ratio", 0.5)),
        label_order=lambda w: prompt_setting(w, "label_order", "dataset"),
        seed=lambda w: int(prompt_setting(w, "seed", 0)),
    script:
        "../workflow/scripts/analyze_traces.py"


rule analyze_attention:
    input:
        attention=f"{RESULTS}/traces/{{dataset}}/{{model}}/{{prompt}}/{{testset}}/attention.csv",
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


rule table4_second_never:
    input:
        artifact_inputs("second_never", "table4"),
    output:
        f"{RESULTS}/tables/table4_second_never.csv",
    log:
        "logs/table4_second_never/table4.log",
    conda:
        "../envs/analysis.yaml"
    params:
        table="table4",
        run_keys=artifact_keys("table4"),
    script:
        "../workflow/scripts/collect_table.py"


rule table_second_next:
    input:
        artifact_inputs("second_next", "second_next"),
    output:
        f"{RESULTS}/tables/second_next.csv",
    log:
        "logs/table_second_next/second_next.log",
    conda:
        "../envs/analysis.yaml"
    params:
        table="second_next",
        run_keys=artifact_keys("second_next"),
    script:
        "../workflow/scripts/collect_table.py"


rule table6_attention:
    input:
        artifact_inputs("attention_summary", "table6"),
    output:
        f"{RESULTS}/tables/table6_attention.csv",
    log:
        "logs/table6_attention/table6.log",
    conda:
        "../envs/analysis.yaml"
    params:
        table="table6",
        run_keys=artifact_keys("table6"),
    script:
        "../workflow/scripts/collect_table.py"


rule table7_label_order:
    input:
        artifact_inputs("label_order", "table7"),
    output:
        f"{RESULTS}/tables/table7_label_order.csv",
    log:
        "logs/table7_label_order/table7.log",
    conda:
        "../envs/analysis.yaml"
    params:
        table="table7",
        run_keys=artifact_keys("table7", sweep=True),
    script:
        "../workflow/scripts/collect_table.py"
