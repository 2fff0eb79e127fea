"""Issue 26, item 12: the README's figures for the paper experiment are what the code prints.

Regenerates the block from the paper experiment's dry run and ``make plan``'s cost plan
(``multilabel_llm.workflow.readme_numbers``, one dry run, about 15 s) and compares it with README.md.
"""

import pytest

from multilabel_llm.workflow import readme_numbers


@pytest.fixture(scope="module")
def numbers():
    return readme_numbers.paper_plan()  # two dry runs of the paper experiment


def test_readme_paper_figures_match_make_plan(numbers):
    text = readme_numbers.README.read_text(encoding="utf-8")
    block = readme_numbers.render(numbers)
    assert readme_numbers.replace_block(text, block) == text, (
        "README.md's paper-experiment figures differ from the code's; run "
        "python -m multilabel_llm.workflow.readme_numbers --write\n" + block
    )
    # the figures are the plan's own: cluster jobs and GPU-hours per partition
    assert f"| {numbers['cluster_jobs']:,} |" in block
    assert numbers["jobs"] > numbers["cluster_jobs"] > 0


def test_one_model_load_per_dataset_model_engine(numbers):
    """Issue 27: in the paper experiment's dry run, the jobs that load a model for inference
    on the a100 partition are at most one per (dataset, model, engine): the engine services."""
    a100 = numbers["loads"]["a100"]
    assert a100 and max(a100.values()) == 1, a100
    before = numbers["loads_without_services"]["a100"]
    assert set(before) == set(a100)  # the same pairs, each loaded once instead of per job
    assert sum(before.values()) > 2 * sum(a100.values())
