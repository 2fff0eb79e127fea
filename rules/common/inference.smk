# Helpers of rules/inference.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).


def inf_data(wildcards):
    data = f"{RESULTS}/data/{wildcards.dataset}"
    inputs = {
        "examples": f"{data}/examples.parquet",
        "meta": f"{data}/meta.json",
        "ids": f"{data}/testsets/{wildcards.testset}.txt",
        # the dataset's shared demo pool: every run of a prompt shows the same demos
        "demo_pool": f"{data}/demo_pool.txt",
    }
    adapter = model_cfg(wildcards.model).get("adapter")
    if adapter:
        inputs["adapter"] = adapter.format(**wildcards)
    return inputs | model_files(wildcards.model)


HIDDEN_PROMPTS = [p for p in PROMPTS if prompt_cfg(p).get("hidden_states")]


PLAIN_PROMPTS = [p for p in PROMPTS if p not in HIDDEN_PROMPTS]


TRACE_DIR = f"{RESULTS}/traces/{{dataset}}/{{model}}/{{prompt}}/{{testset}}"


BREAKDOWN_DIR = f"{RESULTS}/breakdown/{{dataset}}/{{model}}/{{testset}}"
