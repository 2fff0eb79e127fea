"""Each enum a config schema spells out equals the library registry it names: a loader or an
engine added to one and not the other fails here, not at a user's first run."""

from __future__ import annotations

import yaml

from multilabel_llm.data import LOADERS
from multilabel_llm.engine.backend import CONFIG_ENGINES, DECLARED
from multilabel_llm.workflow.config import SCHEMA_DIR


def _schema(name: str) -> dict:
    return yaml.safe_load((SCHEMA_DIR / f"{name}.schema.yaml").read_text())


def test_dataset_schema_loaders_are_the_registered_loaders():
    assert sorted(_schema("dataset")["properties"]["loader"]["enum"]) == sorted(LOADERS)


def test_model_schema_backends_are_the_registered_engines():
    assert sorted(_schema("model")["properties"]["backend"]["enum"]) == sorted(CONFIG_ENGINES)
    # every engine a config may name has capabilities the DAG reads without importing it
    assert set(CONFIG_ENGINES) == set(DECLARED)
