# The HTML report: every table rendered to a standalone HTML page (Snakemake's report shows
# .html results in a frame) plus the figures of rules/figures.smk. dag.report_targets() lists
# everything the report holds; `snakemake --report results/report.html --report-after-run`
# builds it at the end of the run. How each table is shown: dag.report_tables.
# Its dag methods: multilabel_llm.workflow.dag.report (ReportStage).


rule render_table:
    input:
        f"{RESULTS}/tables/{{table}}.csv",
    output:
        report(
            f"{RESULTS}/report/tables/{{table}}.html",
            caption="../workflow/report/table.rst",
            category="Tables",
            subcategory=lambda w: dag.report_tables[w.table]["subcategory"],
            labels=lambda w: {"table": dag.report_tables[w.table]["title"]},
        ),
    log:
        "logs/render_table/{table}.log",
    wildcard_constraints:
        table="|".join(dag.report_tables),
    conda:
        "../envs/analysis.yaml"
    params:
        title=lambda w: dag.report_tables[w.table]["title"],
        caption=lambda w: dag.report_tables[w.table]["caption"],
        digits=lambda w: dag.report_tables[w.table].get("digits", 2),
        pivot=lambda w: dag.report_tables[w.table].get("pivot", {}),
        columns=lambda w: dag.report_tables[w.table].get("columns", []),
    script:
        "../workflow/scripts/render_table.py"


rule report_inputs:
    """Everything the HTML report shows; `snakemake report_inputs --report …` builds it."""
    input:
        dag.report_targets(),
