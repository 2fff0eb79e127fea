# Helpers of rules/metrics.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

from multilabel_llm.studies import alignment_runs, artifact_owner


def align_cfg(key, default=None):
    value = (config.get("alignment") or {}).get(key)
    return default if value is None else value


def align_runs(dataset):
    """Distribution cells {model, prompt, testset, method} the alignment-side studies score
    for ``dataset`` (multilabel_llm.studies.alignment_runs)."""
    return alignment_runs(config, STUDIES, dataset)


def align_testsets(dataset):
    """Test sets scored for ``dataset``, in first-use order."""
    return list(dict.fromkeys(r["testset"] for r in align_runs(dataset)))


def align_datasets():
    """Datasets with at least one scored distribution (one alignment table each)."""
    return [d for d in DATASETS if align_runs(d)]


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
    """table2 / table5 -> {model, prompt, testset}: the model from `roles:` (a slot name or a
    mapping), prompt and test set from the alignment study unless the role names them."""
    roles = config.get("roles") or {}
    tables = {}
    for table in ("table2", "table5"):
        study = artifact_owner(STUDIES, table)
        role = roles.get(table)
        if not role or study is None:
            continue
        spec = {"model": role} if isinstance(role, str) else dict(role)
        spec.setdefault("prompt", study.prompts[0])
        spec.setdefault("testset", study.testsets[0])
        if spec.get("model") not in study.models:
            raise WorkflowError(
                f"config key 'roles.{table}': model {spec.get('model')!r} is not a model of "
                f"study {study.name!r}; its models: {study.models}"
            )
        tables[table] = spec
    return tables


PAPER_ALIGNMENT_TABLES = align_paper_tables()


ALIGNMENT_TARGETS = expand(
    f"{RESULTS}/tables/alignment_{{dataset}}.{{ext}}",
    dataset=align_datasets(),
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
