"""Shared test setup: the suite runs offline, headless, and from any working directory.

Test modules sit in folders that mirror the package (tests/engine for multilabel_llm.engine,
...); tests/e2e runs the real Snakefile. Builders of toy datasets and tiny models live in
tests/builders.py, never in the library.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before any test module imports transformers: nothing in the suite may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The test-only configs (stand-ins, smoke fixtures, tiny/paper_smoke/slurm_test): a second tree.
os.environ.setdefault("MULTILABEL_LLM_CONFIG_PATH", str(Path(__file__).resolve().parent / "config"))

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository checkout the tests run against."""
    return ROOT
