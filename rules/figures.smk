# Paper figures from the analysis CSVs, results/figures/{figure}.{png,pdf}: one rule over the
# registry multilabel_llm.workflow.dag.figures.FIGURES (each a Figure: plot, source, subcategory,
# content), so adding a figure is one entry there, its plot kind (report/figure_registry.py), a
# study kind listing it (workflow/studies.py KINDS) and its caption block in workflow/report/figures.rst.
# Every figure is drawn even when part of its data is not configured (a "no data for this
# setting" panel); the caption says what was shown.
# Its dag methods: multilabel_llm.workflow.dag.figures (FigureStage).


rule figure:
    input:
        dag.figure_inputs,
    output:
        png=report(
            f"{RESULTS}/figures/{{figure}}.png",
            caption="../workflow/report/figures.rst",
            category=lambda wc: dag.figure_category(wc.figure),
            subcategory=lambda wc: dag.figures[wc.figure].subcategory,
            labels=lambda wc: dag.figure_label(wc.figure),
        ),
        pdf=f"{RESULTS}/figures/{{figure}}.pdf",
    log:
        "logs/figures/{figure}.log",
    wildcard_constraints:
        figure="|".join(dag.figures),
    conda:
        "../envs/analysis.yaml"
    params:
        **dag.figure_params(),
    script:
        "../workflow/scripts/plot_figure.py"
