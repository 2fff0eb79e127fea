"""The method-kind registry: every entry well formed, every derived place current."""

import ast
import importlib.util
import inspect
import subprocess
import sys

import pytest

from multilabel_llm.methods import registry
from multilabel_llm.methods.registry import (
    DISTRIBUTION_PRODUCERS,
    ESTIMATED_KINDS,
    INPUTS,
    METHOD_KINDS,
    PRODUCER_OF_KIND,
    implementation,
    method_inputs,
)

PRODUCERS = ("estimate", "estimate_binary", "marginalize", "probes", "demux")


def test_every_kind_has_one_known_producer_inputs_and_a_description():
    assert list(DISTRIBUTION_PRODUCERS) == list(PRODUCERS)
    kinds = [k for ks in DISTRIBUTION_PRODUCERS.values() for k in ks]
    assert sorted(kinds) == sorted(METHOD_KINDS) == sorted(PRODUCER_OF_KIND)
    for kind, entry in METHOD_KINDS.items():
        assert entry.description and "\n" not in entry.description, kind
        assert set(method_inputs(kind, {"orders": "both"})) <= set(INPUTS), kind
        for _, param, _ in entry.inputs_when:
            assert param in entry.params, kind


def test_estimated_kinds_resolve_to_functions_with_the_dispatch_signature():
    signature = ["kind", "params", "ids", "labels", "multilabel", "inputs", "source"]
    for kind in ESTIMATED_KINDS:
        assert list(inspect.signature(implementation(kind)).parameters) == signature, kind


def test_other_kinds_name_a_function_that_exists_without_importing_it():
    """marginalization, probes, demux: their modules import torch, so read their source."""
    for kind, entry in METHOD_KINDS.items():
        if kind in ESTIMATED_KINDS:
            continue
        module, _, name = entry.function.partition(":")
        tree = ast.parse(open(importlib.util.find_spec(module).origin, encoding="utf-8").read())
        assert name in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, kind


def test_binary_reads_the_reversed_scores_only_with_both_orders():
    assert method_inputs("binary", {}) == ("binary",)
    assert method_inputs("binary", {"orders": "both"}) == ("binary", "binary_reversed")
    assert method_inputs("compare_to_none_platt")[0] == "traces"


def test_generated_schema_and_docs_blocks_are_current():
    """Run ``python -m multilabel_llm.methods.registry --write`` after editing an entry."""
    for path, text in registry.generated_files().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is out of date"


def test_registry_imports_nothing_heavy():
    code = (
        "import sys, multilabel_llm.methods.registry; "
        "heavy = {'pandas', 'numpy', 'scipy', 'torch', 'yaml'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_kind_names_the_estimated_kinds():
    from multilabel_llm.methods.estimators import estimate

    with pytest.raises(ValueError, match=r"unknown method kind 'probes'; known kinds: \["):
        estimate("probes", {}, ["a"], ["x"], True)
