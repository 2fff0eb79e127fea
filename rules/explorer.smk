# The example explorer (docs/explorer.md): one self-contained HTML page per traced run with
# each example's text, human distribution, generated output, per-step label distribution
# and every method's distribution with its NLL / L1 / example-F1; linked from the report.
# Library: src/multilabel_llm/report/explorer.py; pages: dag.explorer_pages().
# Its dag methods: multilabel_llm.workflow.dag.explorer (ExplorerStage).


rule write_explorer:
    input:
        unpack(dag.explorer_inputs),
    output:
        html=report(
            f"{RESULTS}/explorer/{{dataset}}/{{model}}/{{prompt}}/{{testset}}.html",
            category="Examples",
            subcategory=lambda w: w.dataset,
            labels=lambda w: {
                "run": f"{w.dataset} / {w.model} / {w.prompt} / {w.testset}"
            },
        ),
    log:
        "logs/write_explorer/{dataset}/{model}/{prompt}/{testset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        run=lambda w: {k: w[k] for k in ("dataset", "model", "prompt", "testset")},
        methods=lambda w: [
            {k: m[k] for k in ("method", "model", "display_name")}
            for m in dag.explorer_methods(w)
        ],
        metric=dag.alignment_metric(),
    script:
        "../workflow/scripts/write_explorer.py"
