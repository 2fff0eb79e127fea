# Helpers of rules/estimators.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

from multilabel_llm.estimators import KINDS as ESTIMATOR_KINDS


from multilabel_llm.estimators import TRACE_KINDS as ESTIMATOR_TRACE_KINDS


def est_kind(method):
    return method_cfg(method)["kind"]


def est_params(method):
    return dict(method_cfg(method).get("params") or {})


ESTIMATED_METHODS = [m for m in METHODS if est_kind(m) in ESTIMATOR_KINDS]


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
    return inputs
