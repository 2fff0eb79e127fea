"""Every workflow script is one adapter call: ``run_job(snakemake, "module:function", ...)``.

The scripts only read Snakemake's slots; the front end (a ``*/jobs.py`` function) does the
I/O, and :func:`~multilabel_llm.workflow.adapter.run_job` opens the job's log before it is
imported. Checked on the source (ast), so no script or heavy module is run.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from multilabel_llm.workflow.adapter import run_job

SCRIPTS = sorted((Path(__file__).parents[2] / "workflow" / "scripts").glob("*.py"))
ADAPTER = "multilabel_llm.workflow.adapter"
ALLOWED_IMPORTS = {(ADAPTER, "run_job"), (ADAPTER, "named"), ("os", None), ("pathlib", "Path")}
# calls a script may make while reading its slots (all else belongs in the front end)
ALLOWED_CALLS = {"run_job", "named", "dict", "zip", "Path", "get", "items", "dirname"}


def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _defines(target: str) -> bool:
    """``"module:function"`` names a top-level function of an importable module."""
    module, _, function = target.partition(":")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return False
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name == function for n in tree.body)


def test_every_script_is_found():
    assert len(SCRIPTS) >= 28


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_is_one_run_job_call(script):
    tree = ast.parse(script.read_text(encoding="utf-8"))
    body = tree.body[1:] if ast.get_docstring(tree) else tree.body
    imports = [n for n in body if isinstance(n, ast.Import | ast.ImportFrom)]
    rest = [n for n in body if n not in imports]
    for node in imports:
        module = node.module if isinstance(node, ast.ImportFrom) else None
        names = [(module, a.name) if module else (a.name, None) for a in node.names]
        assert set(names) <= ALLOWED_IMPORTS, f"{script.name}: imports {names}"
    assert len(rest) == 1, f"{script.name}: one statement besides the imports, got {len(rest)}"
    call = rest[0].value if isinstance(rest[0], ast.Expr) else None
    assert isinstance(call, ast.Call) and _called(call) == "run_job", script.name
    first, target = call.args[:2]
    assert isinstance(first, ast.Name) and first.id == "snakemake", script.name
    assert isinstance(target, ast.Constant) and _defines(target.value), (script.name, target)
    calls = {_called(n) for n in ast.walk(call) if isinstance(n, ast.Call)}
    assert calls <= ALLOWED_CALLS, f"{script.name}: calls {sorted(calls - ALLOWED_CALLS)}"
    for node in ast.walk(tree):  # no stderr redirection of its own
        assert not (isinstance(node, ast.Attribute) and node.attr == "stderr"), script.name


def record(*args, **kwargs):
    """A front end for the test below: what it was called with, and stderr at that time."""
    print("in the log", file=sys.stderr)
    return args, kwargs, sys.stderr.name


def test_run_job_truncates_the_log_then_calls_the_front_end(tmp_path, monkeypatch):
    log = tmp_path / "job.log"
    log.write_text("an earlier run's log\n")
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # restored after the test
    handlers = list(logging.getLogger().handlers)
    smk = SimpleNamespace(log=[str(log)], input={})
    try:
        args, kwargs, stderr = run_job(smk, f"{__name__}:record", 1, b=2)
        sys.stderr.flush()
    finally:
        if getattr(sys.stderr, "name", None) == str(log):
            sys.stderr.close()  # the log run_job opened
        for handler in set(logging.getLogger().handlers) - set(handlers):
            logging.getLogger().removeHandler(handler)
    assert (args, kwargs, stderr) == ((1,), {"b": 2}, str(log))
    assert log.read_text() == "in the log\n"


def test_run_job_hands_engine_front_ends_to_the_engine_service(tmp_path, monkeypatch):
    import multilabel_llm.engine.service as service

    calls = []
    monkeypatch.setattr(service, "run_model_job", lambda smk, name, **kw: calls.append((name, kw)))
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    handlers = list(logging.getLogger().handlers)
    smk = SimpleNamespace(log=[], input={})
    try:
        run_job(smk, "multilabel_llm.engine.jobs:marginalize_from_files", ids_path="ids.txt")
        with pytest.raises(TypeError, match="keywords only"):
            run_job(smk, "multilabel_llm.engine.jobs:extract_traces_from_files", "positional")
    finally:
        for handler in set(logging.getLogger().handlers) - set(handlers):
            logging.getLogger().removeHandler(handler)
    assert calls == [("marginalize", {"ids_path": "ids.txt"})]
