# Helpers of rules/metrics.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).


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
