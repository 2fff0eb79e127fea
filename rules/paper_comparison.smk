# Side by side with the paper: every cell of the paper's Tables 1, 2, 4, 5, 6, 7 beside this
# run's value, its bootstrap interval and whether the paper's value lies in it ("not run" where
# the run did not produce the cell). Library: src/multilabel_llm/report/paper_comparison.py (with
# paper_reference.py, paper_comparison_render.py); the paper's numbers: data/paper_reference/
# (found from the Snakefile's folder).
# Its dag methods: multilabel_llm.workflow.dag.paper_comparison (PaperComparisonStage).


rule compare_to_paper:
    input:
        **dag.paper_comparison_inputs(),
        reference=dag.paper_reference_files(),
    output:
        csv=f"{RESULTS}/tables/paper_comparison.csv",
        md=f"{RESULTS}/tables/paper_comparison.md",
        html=report(
            f"{RESULTS}/tables/paper_comparison.html",
            category="Tables",
            subcategory="Side by side with the paper",
            labels={"table": "Side by side with the paper (its reported numbers)"},
        ),
    log:
        "logs/compare_to_paper/compare_to_paper.log",
    conda:
        "../envs/analysis.yaml"
    params:
        tables=list(dag.paper_comparison_inputs()),
        datasets=dag.paper_comparison_datasets(),
        models=dag.paper_comparison_models(),
        roles=dag.paper_alignment_tables,
    script:
        "../workflow/scripts/compare_to_paper.py"
