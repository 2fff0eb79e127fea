# Helpers of rules/explorer.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint). Needs the metrics,
# estimators and analyses helpers first; rules/common/report.smk lists EXPLORER_TARGETS.

from multilabel_llm.studies import TRACE_KINDS as STUDY_TRACE_KINDS


def explorer_trace_model(run):
    """Model slot whose traces an alignment run's method reads ("{model}-sft" for SFT)."""
    return (
        est_params(run["method"])
        .get("traces_from", "{model}")
        .format(model=run["model"])
    )


def explorer_cells():
    """Every traced run {dataset, model, prompt, testset} a study asks for: the runs whose
    traces an alignment method reads, and the cells of the trace-analysis studies."""
    cells = []
    for dataset in align_datasets():
        for run in align_runs(dataset):
            if est_kind(run["method"]) in ESTIMATOR_TRACE_KINDS:
                cells.append(
                    {
                        "dataset": dataset,
                        "model": explorer_trace_model(run),
                        "prompt": run["prompt"],
                        "testset": run["testset"],
                    }
                )
    for study in STUDIES.values():
        if study.kind in STUDY_TRACE_KINDS:
            cells += study.trace_runs()
    unique = {tuple(c.values()): c for c in cells}
    return list(unique.values())


def explorer_methods(wildcards):
    """The alignment runs shown beside a traced run: same dataset, prompt and test set, and
    the traced model is the one the method reads (its own for non-trace methods)."""
    if wildcards.dataset not in align_datasets():
        return []
    return [
        {
            "method": run["method"],
            "model": run["model"],
            "display_name": method_cfg(run["method"]).get(
                "display_name", run["method"]
            ),
            "path": align_distribution(wildcards.dataset, run),
        }
        for run in align_runs(wildcards.dataset)
        if run["prompt"] == wildcards.prompt
        and run["testset"] == wildcards.testset
        and explorer_trace_model(run) == wildcards.model
    ]


def explorer_inputs(wildcards):
    methods = explorer_methods(wildcards)
    data = f"{RESULTS}/data/{wildcards.dataset}"
    return {
        "traces": est_traces(
            wildcards.dataset, wildcards.model, wildcards.prompt, wildcards.testset
        ),
        "examples": f"{data}/examples.parquet",
        "meta": f"{data}/meta.json",
        "dists": [m["path"] for m in methods],
        # the summary strip repeats the run's rows of the dataset's alignment table
        "alignment": (
            [f"{RESULTS}/tables/alignment_{wildcards.dataset}.csv"] if methods else []
        ),
    }


def explorer_html(cell):
    return (
        f"{RESULTS}/explorer/{cell['dataset']}/{cell['model']}/{cell['prompt']}/"
        f"{cell['testset']}.html"
    )


EXPLORER_TARGETS = [explorer_html(c) for c in explorer_cells()]
