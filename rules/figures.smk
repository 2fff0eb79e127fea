# Paper figures from the analysis CSVs, results/figures/{figure}.{png,pdf}: one rule per entry
# of the FIGURES registry (rules/common/figures.smk), so adding a figure is one entry there,
# its caption in workflow/report/ and its name in the Snakefile's localrules. Every figure is
# drawn even when part of its data is not configured (a "no data for this setting" panel);
# the caption says what was shown.
# Needs rules/analyses.smk (analysis CSVs) and rules/metrics.smk (alignment tables) first.


for _figure in FIGURES:

    rule:
        name:
            f"figure_{_figure}"
        input:
            figure_inputs(_figure),
        output:
            **figure_outputs(_figure),
        log:
            f"logs/figures/{_figure}.log",
        conda:
            "../envs/analysis.yaml"
        params:
            **figure_params(_figure),
        script:
            "../workflow/scripts/plot_figure.py"
