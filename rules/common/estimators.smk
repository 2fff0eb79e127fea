# Helpers of rules/estimators.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

from multilabel_llm.estimators import KINDS as ESTIMATOR_KINDS


from multilabel_llm.estimators import TRACE_KINDS as ESTIMATOR_TRACE_KINDS


def est_kind(method):
    return method_cfg(method)["kind"]


def est_params(method):
    return dict(method_cfg(method).get("params") or {})


# binary methods have their own rule, estimate_binary, which also writes the position bias
ESTIMATED_METHODS = [
    m for m in METHODS if est_kind(m) in ESTIMATOR_KINDS and est_kind(m) != "binary"
]


BINARY_METHODS = [m for m in METHODS if est_kind(m) == "binary"]


MARGINALIZED_METHODS = [m for m in METHODS if est_kind(m) == "marginalization"]


def est_traces(dataset, model, prompt, testset):
    return f"{RESULTS}/traces/{dataset}/{model}/{prompt}/{testset}/traces.jsonl.gz"


def est_trace_model(wildcards):
    """Model slot whose traces a method reads: the row's model, or e.g. "{model}-sft"."""
    return (
        est_params(wildcards.method)
        .get("traces_from", "{model}")
        .format(model=wildcards.model)
    )


def estimate_inputs(wildcards):
    kind = est_kind(wildcards.method)
    params = est_params(wildcards.method)
    data = f"{RESULTS}/data/{wildcards.dataset}"
    inputs = {
        "meta": f"{data}/meta.json",
        "ids": f"{data}/testsets/{wildcards.testset}.txt",
    }
    model = est_trace_model(wildcards)
    if kind in ESTIMATOR_TRACE_KINDS:
        inputs["traces"] = est_traces(
            wildcards.dataset, model, wildcards.prompt, wildcards.testset
        )
    if kind == "compare_to_none_platt":
        calib = params["calibration_testset"]
        inputs["examples"] = f"{data}/examples.parquet"
        inputs["calibration_ids"] = f"{data}/testsets/{calib}.txt"
        inputs["calibration_traces"] = est_traces(
            wildcards.dataset, model, wildcards.prompt, calib
        )
    if kind in ("unary", "binary"):
        breakdown = f"{RESULTS}/breakdown/{wildcards.dataset}/{wildcards.model}"
        inputs[kind] = f"{breakdown}/{wildcards.testset}/{kind}.parquet"
        # orders: both also asks every pair the other way round (rule score_binary_reversed)
        if kind == "binary" and params.get("orders", "one") == "both":
            inputs["binary_reversed"] = (
                f"{breakdown}/{wildcards.testset}/binary_reversed.parquet"
            )
    return inputs


def binary_bias_cells():
    """The alignment cells of binary-breakdown methods, one position-bias row each.

    Breakdown scores do not depend on the prompt variant, so each (dataset, model, test set,
    method) is listed once, with the first prompt that scores it.
    """
    cells = {}
    for d in align_datasets():
        for run in align_runs(d):
            if run["method"] in BINARY_METHODS:
                key = (d, run["model"], run["testset"], run["method"])
                cells.setdefault(key, {"dataset": d, **run})
    return list(cells.values())


def binary_bias_file(cell):
    return (
        f"{RESULTS}/distributions/{cell['dataset']}/{cell['model']}/{cell['prompt']}/"
        f"{cell['testset']}/{cell['method']}.position_bias.csv"
    )


# The report page of the position-bias table (rules/common/report.smk adds it when some
# alignment cell runs a binary method: report_table_names uses binary_bias_report_tables()).
BINARY_BIAS_REPORT_TABLES = {
    "binary_position_bias": dict(
        title="Binary breakdown: answer-position bias",
        caption=(
            "Per binary-breakdown run: mean P('a') over the asked prompts and the share "
            "answered 'a' (0.5 without a position preference), the fitted position term "
            "(logits, > 0 favours 'a'; only with combine: position_term), and the Spearman "
            "correlation between a label's place in the list and its mean Bradley-Terry score "
            "(near 1: later labels win because they are shown as 'b'). orders: one asks each "
            "pair in label order (the paper's method); both asks it both ways."
        ),
        subcategory="Alignment (§5, §D)",
        digits=3,
        columns=[
            "dataset",
            "model",
            "testset",
            "method",
            "orders",
            "combine",
            "mean_p_a",
            "share_a",
            "position_term",
            "score_position_corr",
        ],
    )
}


def binary_bias_report_tables():
    return list(BINARY_BIAS_REPORT_TABLES) if binary_bias_cells() else []
