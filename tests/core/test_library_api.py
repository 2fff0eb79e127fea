"""The library without Snakemake: the README's Python API example runs as written (trace ->
estimate -> score on the bundled model) in a process that never imports snakemake, and every
module of the package imports with snakemake made unimportable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_SNAKEMAKE = "\nimport sys\nassert 'snakemake' not in sys.modules, 'snakemake was imported'\n"
# makes `import snakemake` (and its plugins) fail, as in an install without the workflow extra
BLOCK_SNAKEMAKE = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0].startswith("snakemake"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, _Block())
"""


def readme_api_example() -> str:
    """The first ```python block under the README's "## Python API" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API", 1)
    assert len(section) == 2, "README.md has no '## Python API' section"
    body = section[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", body, flags=re.S)
    assert block, "README.md's Python API section has no ```python block"
    return block.group(1)


def _run(code: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        # the bundled GGUF is converted once; reuse the repository's cache from any cwd
        "MULTILABEL_LLM_CACHE": str(ROOT / "resources" / "models"),
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_readme_python_api_runs_without_snakemake(tmp_path):
    code = BLOCK_SNAKEMAKE + readme_api_example() + NO_SNAKEMAKE
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    methods = [ln.split()[0] for ln in lines]
    assert methods == ["compare_to_none", "hard_predictions", "max_over_generations"], lines
    for line in lines:
        assert re.search(r"NLL \d+\.\d\d\s+L1 \d+\.\d\d\s+F1 \d\.\d\d", line), line
    assert (tmp_path / "traces.jsonl.gz").is_file()
    assert (tmp_path / "traces.meta.json").is_file()


def test_every_module_imports_without_snakemake(tmp_path):
    code = (
        BLOCK_SNAKEMAKE
        + """
import importlib, pkgutil
import multilabel_llm
names = [m.name for m in pkgutil.walk_packages(multilabel_llm.__path__, "multilabel_llm.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""
        + NO_SNAKEMAKE
    )
    done = _run(code, tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert int(done.stdout.split()[-1]) > 30  # every module, not an empty walk
