# Helpers of rules/paper_comparison.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

# The paper's own numbers, shipped with the workflow (data/paper_reference/README.md); found
# from the Snakefile's folder so that a run in another working directory still finds them.
PAPER_REFERENCE_FILES = sorted(
    str(p) for p in (Path(workflow.basedir) / "data" / "paper_reference").glob("*.csv")
)


PAPER_COMPARISON_TARGETS = [
    f"{RESULTS}/tables/paper_comparison.{ext}" for ext in ("csv", "md", "html")
]
# the page the HTML report shows
PAPER_COMPARISON_REPORT = f"{RESULTS}/tables/paper_comparison.html"


def paper_comparison_inputs():
    """{paper table: produced CSV} for every paper table this experiment produces; keys as in
    multilabel_llm.paper_reference.TABLES. Paths come from the producing rules, so call this
    after rules/data.smk, rules/metrics.smk and rules/analyses.smk are included."""
    tables = {"table1": rules.dataset_stats.output.csv}
    for name in PAPER_ALIGNMENT_TABLES:  # roles.table2 / roles.table5
        tables[name] = expand(rules.alignment_paper_tables.output.csv, table=name)[0]
    # the mechanism tables exist when a study of the experiment lists them
    if study_of("table4") is not None:
        tables["table4"] = rules.table4_second_never.output[0]
    if study_of("table6") is not None:
        tables["table6"] = rules.table6_attention.output[0]
    if study_of("table7") is not None:
        tables["table7"] = rules.table7_label_order.output[0]
    return tables


def paper_comparison_datasets():
    """Dataset slot -> the names the comparison maps onto the paper's datasets."""
    return {
        d: {
            "name": dataset_cfg(d).get("name", d),
            "display_name": dataset_cfg(d).get("display_name"),
        }
        for d in DATASETS
    }


def paper_comparison_models():
    """Model slot -> the ids the comparison maps onto the paper's models (Tables 4, 6)."""
    return {
        m: {"hf_id": model_cfg(m).get("hf_id"), "name": model_cfg(m).get("name")}
        for m in MODELS
    }
