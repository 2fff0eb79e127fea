"""Running the project's real Snakefile in a scratch working directory (end-to-end tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def run_snakemake(work: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """``snakemake -s <repo>/Snakefile -d work ARGS`` offline, with the shared model cache."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        # the converted bundled model is shared with the repo checkout (converted once)
        "MULTILABEL_LLM_CACHE": str(ROOT / "resources" / "models"),
    }
    return subprocess.run(
        [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-d", str(work), *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def scratch_workdir(work: Path, *linked: str) -> Path:
    """A working directory whose repo-relative data paths (``data``, ``tests``…) resolve."""
    for name in linked:
        (work / name).symlink_to(ROOT / name)
    return work
