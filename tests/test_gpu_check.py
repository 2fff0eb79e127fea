"""bench/gpu_check.py cannot rot before a GPU runs it: its CLI and its CPU dry run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_works_without_a_gpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    for flag in ("--device", "--tiny", "--out", "--layers-70b", "--batch-sizes"):
        assert flag in out.stdout


def test_cpu_dry_run_checks_both_models_and_the_split(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    status = _module().main(
        ["--device", "cpu", "--tiny", "--out", str(out), "--workdir", str(tmp_path / "work")]
    )
    report = json.loads(out.read_text())
    assert status == 0 and report["ok"] is True
    assert report["tiny"] and report["dtype"] == "torch.float32"
    assert set(report["models"]) == {"llama-3.1-8b", "llama-3.1-70b-4layers"}
    for model in report["models"].values():
        eq = model["equality"]
        assert eq["same_tokens"] == eq["examples"] == 3 and eq["real_token_differences"] == []
        assert eq["max_abs_logit_diff"] < 1e-3
        assert model["reference"]["ms_per_example"] > 0 and model["fast"]["ms_per_example"] > 0
        assert model["fast"]["best_batch"] in (4, 8)
        assert model["reference"]["ratio_to_floor"] > 0 and model["fast"]["floor_ms"] > 0
    split = report["models"]["llama-3.1-8b"]["split"]
    assert split["ok"] and split["devices"] == ["cpu", "disk"] and split["modules_offloaded"] > 0
    assert split["same_tokens"] == split["examples"] == 8 and split["max_abs_logit_diff"] < 1e-3
    printed = capsys.readouterr().out
    assert "gpu_check on" in printed and "OK" in printed and str(out) in printed
