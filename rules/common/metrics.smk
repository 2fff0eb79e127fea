# Helpers of rules/metrics.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

from multilabel_llm.studies import alignment_runs, paper_tables


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


# table2 / table5 -> {model, prompt, testset} (roles + the alignment study)
PAPER_ALIGNMENT_TABLES = paper_tables(config, STUDIES)


ALIGNMENT_TARGETS = expand(
    f"{RESULTS}/tables/alignment_{{dataset}}.{{ext}}",
    dataset=align_datasets(),
    ext=["csv", "md", "tex"],
)


# the second paper's metrics (rule score_token_level), when the experiment asks for them
TOKEN_LEVEL_TARGETS = (
    expand(
        f"{RESULTS}/tables/token_level_{{dataset}}.{{ext}}",
        dataset=align_datasets(),
        ext=["csv", "md"],
    )
    if align_cfg("token_level_threshold") is not None
    else []
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
