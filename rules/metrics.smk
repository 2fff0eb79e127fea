# Distribution alignment (paper §5.1.2, Tables 2 and 5): every distribution of the experiment
# scored against the human distribution, with seeded bootstrap CIs (docs/metrics.md).
# Library: src/multilabel_llm/metrics.py, alignment_tables.py. Settings live under
# `alignment:` in the config; every key has a default here.
# Needs rules/estimators.smk first.


def align_cfg(key, default=None):
    value = (config.get("alignment") or {}).get(key)
    return default if value is None else value


def align_testsets():
    """Test sets to score: the experiment's, minus the held-out Platt calibration sets."""
    held_out = {est_params(m).get("calibration_testset") for m in METHODS}
    return [t for t in align_cfg("testsets", TESTSETS) if t not in held_out]


def align_runs():
    return [
        {"model": mo, "prompt": p, "testset": t, "method": me}
        for mo in MODELS
        for p in PROMPTS
        for t in align_testsets()
        for me in METHODS
    ]


def align_distribution(dataset, run):
    return (
        f"{RESULTS}/distributions/{dataset}/{run['model']}/{run['prompt']}/"
        f"{run['testset']}/{run['method']}.parquet"
    )


def align_methods():
    """Row names and placement of every method slot (config/method/*.yaml)."""
    keys = ("display_name", "group", "order", "applies_to")
    return {
        m: {k: method_cfg(m)[k] for k in keys if k in method_cfg(m)} for m in METHODS
    }


def align_dataset_display(dataset):
    return dataset_cfg(dataset).get("display_name", dataset)


rule score_alignment:
    input:
        examples=f"{RESULTS}/data/{{dataset}}/examples.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
        ids=lambda wc: expand(
            f"{RESULTS}/data/{wc.dataset}/testsets/{{testset}}.txt",
            testset=align_testsets(),
        ),
        dists=lambda wc: [align_distribution(wc.dataset, run) for run in align_runs()],
    output:
        csv=report(f"{RESULTS}/tables/alignment_{{dataset}}.csv", category="Alignment"),
        md=f"{RESULTS}/tables/alignment_{{dataset}}.md",
        tex=f"{RESULTS}/tables/alignment_{{dataset}}.tex",
    log:
        "logs/score_alignment/{dataset}.log",
    benchmark:
        "benchmarks/score_alignment/{dataset}.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        runs=align_runs(),
        testsets=align_testsets(),
        methods=align_methods(),
        display_name=lambda wc: align_dataset_display(wc.dataset),
        metric={
            "epsilon": align_cfg("epsilon", 1e-8),
            "threshold": align_cfg("threshold", 0.5),
        },
        bootstrap={
            "n": align_cfg("bootstrap_n", 1000),
            "seed": align_cfg("bootstrap_seed", 0),
            "alpha": align_cfg("bootstrap_alpha", 0.05),
        },
        digits=align_cfg("digits", 2),
    script:
        "../workflow/scripts/score_alignment.py"


def align_paper_tables():
    """table2 / table5 -> {model, prompt, testset} from `roles:` (a slot name or a mapping)."""
    roles = config.get("roles") or {}
    tables = {}
    for table in ("table2", "table5"):
        role = roles.get(table)
        if not role:
            continue
        spec = {"model": role} if isinstance(role, str) else dict(role)
        if spec.get("model") not in MODELS:
            raise WorkflowError(
                f"config key 'roles.{table}': model {spec.get('model')!r} is not a model slot "
                f"of the experiment; slots: {MODELS}"
            )
        tables[table] = spec
    return tables


PAPER_ALIGNMENT_TABLES = align_paper_tables()
ALIGNMENT_TARGETS = expand(
    f"{RESULTS}/tables/alignment_{{dataset}}.{{ext}}",
    dataset=DATASETS,
    ext=["csv", "md", "tex"],
)
PAPER_TABLE_TARGETS = expand(
    f"{RESULTS}/tables/{{table}}.{{ext}}",
    table=list(PAPER_ALIGNMENT_TABLES),
    ext=["csv", "md", "tex"],
)
PAPER_TABLE_TITLES = {
    "table2": "Table 2, distribution alignment (paper: Llama3 70B Instruct)",
    "table5": "Table 5, distribution alignment (paper: Llama3 8B)",
}


rule alignment_paper_tables:
    input:
        alignment=expand(
            f"{RESULTS}/tables/alignment_{{dataset}}.csv", dataset=DATASETS
        ),
        metas=expand(f"{RESULTS}/data/{{dataset}}/meta.json", dataset=DATASETS),
    output:
        csv=report(f"{RESULTS}/tables/{{table}}.csv", category="Alignment"),
        md=f"{RESULTS}/tables/{{table}}.md",
        tex=f"{RESULTS}/tables/{{table}}.tex",
    log:
        "logs/alignment_paper_tables/{table}.log",
    wildcard_constraints:
        table="table2|table5",
    conda:
        "../envs/analysis.yaml"
    params:
        datasets=DATASETS,
        display_names={d: align_dataset_display(d) for d in DATASETS},
        spec=lambda wc: PAPER_ALIGNMENT_TABLES[wc.table],
        methods=align_methods(),
        title=lambda wc: PAPER_TABLE_TITLES[wc.table],
        digits=align_cfg("digits", 2),
    script:
        "../workflow/scripts/alignment_tables.py"
