# The HTML report: every table rendered to a standalone HTML page (Snakemake's report shows
# .html results in a frame) plus the figures of rules/figures.smk. `REPORT_TARGETS` lists
# everything the report holds; `snakemake --report results/report.html --report-after-run`
# builds it at the end of the run. Needs rules/analyses.smk and rules/figures.smk first.

# table → how it is shown: title, caption, report subcategory, digits, pivot, columns
# Helper functions and target lists: rules/common/report.smk.


rule render_table:
    input:
        f"{RESULTS}/tables/{{table}}.csv",
    output:
        report(
            f"{RESULTS}/report/tables/{{table}}.html",
            caption="../workflow/report/table.rst",
            category="Tables",
            subcategory=lambda w: REPORT_TABLES[w.table]["subcategory"],
            labels=lambda w: {"table": REPORT_TABLES[w.table]["title"]},
        ),
    log:
        "logs/render_table/{table}.log",
    wildcard_constraints:
        table="|".join(REPORT_TABLES),
    conda:
        "../envs/analysis.yaml"
    params:
        title=lambda w: REPORT_TABLES[w.table]["title"],
        caption=lambda w: REPORT_TABLES[w.table]["caption"],
        digits=lambda w: REPORT_TABLES[w.table].get("digits", 2),
        pivot=lambda w: REPORT_TABLES[w.table].get("pivot", {}),
        columns=lambda w: REPORT_TABLES[w.table].get("columns", []),
    script:
        "../workflow/scripts/render_table.py"


rule report_inputs:
    """Everything the HTML report shows; `snakemake report_inputs --report …` builds it."""
    input:
        REPORT_TARGETS,
