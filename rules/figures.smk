# Paper figures from the analysis CSVs: one rule per figure, results/figures/{figure}.{png,pdf}.
# Every figure is drawn even when part of its data is not configured (a "no data for this
# setting" panel); the caption says what was shown and what was not configured.
# Needs rules/analyses.smk (analyses_cfg, mechanism_inputs, …) included first.
# Helper functions and target lists: rules/common/figures.smk.


# ---- per-step probability figures (2, 3, 9, 10) and their family replicas (13, 14, 16) ----


rule fig2_top_probabilities:
    input:
        mechanism_inputs("step_stats", main_models()),
    output:
        **figure_outputs("fig2"),
    log:
        "logs/figures/fig2.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig2",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig3_second_probabilities:
    input:
        mechanism_inputs("step_stats", main_models()),
    output:
        **figure_outputs("fig3"),
    log:
        "logs/figures/fig3.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig3",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig9_top_two_box:
    input:
        mechanism_inputs("step_stats", main_models()),
    output:
        **figure_outputs("fig9"),
    log:
        "logs/figures/fig9.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig9",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig10_entropy:
    input:
        mechanism_inputs("step_stats", main_models()),
    output:
        **figure_outputs("fig10"),
    log:
        "logs/figures/fig10.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig10",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig13_top_probabilities_family:
    input:
        mechanism_inputs("step_stats", family_models(FAMILY_FIGURES["fig13"])),
    output:
        **figure_outputs("fig13"),
    log:
        "logs/figures/fig13.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig2",
        run_keys=mechanism_keys(family_models(FAMILY_FIGURES["fig13"])),
        models=family_models(FAMILY_FIGURES["fig13"]),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(family_models(FAMILY_FIGURES["fig13"])),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig14_second_probabilities_family:
    input:
        mechanism_inputs("step_stats", family_models(FAMILY_FIGURES["fig14"])),
    output:
        **figure_outputs("fig14"),
    log:
        "logs/figures/fig14.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig3",
        run_keys=mechanism_keys(family_models(FAMILY_FIGURES["fig14"])),
        models=family_models(FAMILY_FIGURES["fig14"]),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(family_models(FAMILY_FIGURES["fig14"])),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig16_top_two_family:
    input:
        mechanism_inputs("step_stats", family_models(FAMILY_FIGURES["fig16"])),
    output:
        **figure_outputs("fig16"),
    log:
        "logs/figures/fig16.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig9",
        run_keys=mechanism_keys(family_models(FAMILY_FIGURES["fig16"])),
        models=family_models(FAMILY_FIGURES["fig16"]),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(family_models(FAMILY_FIGURES["fig16"])),
    script:
        "../workflow/scripts/plot_figure.py"


# ---- first-step distribution, label order, ICL sweep, second-highest position ----


rule fig4_first_step_sorted:
    input:
        mechanism_inputs("first_step_sorted", main_models()),
    output:
        **figure_outputs("fig4"),
    log:
        "logs/figures/fig4.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig4",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig5_label_position_accuracy:
    input:
        mechanism_inputs("label_position_accuracy", main_models()),
    output:
        **figure_outputs("fig5"),
    log:
        "logs/figures/fig5.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig5",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig6_multilabel_icl:
    input:
        sweep_inputs("multilabel_rate", "icl_prompts"),
    output:
        **figure_outputs("fig6"),
    log:
        "logs/figures/fig6.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig6",
        run_keys=sweep_keys("icl_prompts"),
        models=MODELS,
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=(
            f"Prompt variants of the sweep: {', '.join(sweep_prompts('icl_prompts'))}; "
            "each point is one prompt's share of multi-label demonstrations."
        ),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig11_second_position:
    input:
        mechanism_inputs("second_position", main_models()),
    output:
        **figure_outputs("fig11"),
    log:
        "logs/figures/fig11.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig11",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


# ---- alignment-side figures: probes (7, 15) and base vs instruct (12) ----


rule fig7_probes:
    input:
        probe_inputs(main_models()),
    output:
        **figure_outputs("fig7"),
    log:
        "logs/figures/fig7.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig7",
        run_keys=mechanism_keys(main_models()),
        models=main_models(),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(main_models()),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig15_probes_family:
    input:
        probe_inputs(family_models(FAMILY_FIGURES["fig15"])),
    output:
        **figure_outputs("fig15"),
    log:
        "logs/figures/fig15.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig7",
        run_keys=mechanism_keys(family_models(FAMILY_FIGURES["fig15"])),
        models=family_models(FAMILY_FIGURES["fig15"]),
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        note=coverage_note(family_models(FAMILY_FIGURES["fig15"])),
    script:
        "../workflow/scripts/plot_figure.py"


rule fig12_base_vs_instruct:
    input:
        [f"{RESULTS}/tables/alignment_{d}.csv" for d in mechanism_datasets()],
    output:
        **figure_outputs("fig12"),
    log:
        "logs/figures/fig12.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kind="fig12",
        run_keys=[{"dataset": d} for d in mechanism_datasets()],
        models=MODELS,
        datasets=mechanism_datasets(),
        max_step=analyses_cfg("max_step", 2),
        model_info={
            m: {"family": family_of(m), "instruct": bool(model_cfg(m).get("instruct"))}
            for m in MODELS
        },
        note=coverage_note(MODELS, traces=False),
    script:
        "../workflow/scripts/plot_figure.py"
