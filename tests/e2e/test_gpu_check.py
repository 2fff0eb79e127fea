"""bench/gpu_check.py cannot rot before a GPU runs it: its CLI and its CPU dry run."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"
STAGES = ["traces", "unary", "binary", "marginalise", "attention"]


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
    for flag in ("--device", "--tiny", "--out", "--layers-70b", "--batch-sizes", "--stages"):
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
    # make bench's stage table on the 8B checkpoint: every stage, finite numbers, equal paths
    assert "stages" not in report["models"]["llama-3.1-70b-4layers"]
    table = report["models"]["llama-3.1-8b"]["stages"]
    assert list(table["stages"]) == STAGES
    assert table["examples"] == 4 and table["plain_examples"] == 2 and table["prefix_tokens"] > 0
    for name, row in table["stages"].items():
        numbers = [row[k] for k in ("plain_ms_per_example", "fast_ms_per_example")]
        numbers += [row[k] for k in ("speedup", "floor_ms_per_example", "ratio_to_floor")]
        assert all(math.isfinite(x) and x > 0 for x in numbers), (name, row)
        assert row["speedup"] == pytest.approx(
            row["plain_ms_per_example"] / row["fast_ms_per_example"], rel=0.01
        )
        eq = row["equality"]
        assert eq["ok"] is True and eq["tolerance"] == 1e-3, (name, eq)
        assert eq["compared"] >= 2 and 0 <= eq["max_diff"] < 1e-3
        if name in ("traces", "marginalise"):  # float32: identical tokens / explored paths
            assert eq["same"] == eq["compared"], (name, eq)
    # the widened init keeps the 8B's logit spread: the search expands past its root
    expansions = re.search(r"([\d.]+) expansions/example", table["stages"]["marginalise"]["check"])
    assert float(expansions.group(1)) > 5
    printed = capsys.readouterr().out
    assert "gpu_check on" in printed and "OK" in printed and str(out) in printed
    assert "stage table (4 examples fast, 2 plain" in printed
    for name in STAGES:
        assert any(
            line.strip().startswith(name) and "x floor" in line for line in printed.splitlines()
        )


def test_stage_arguments_are_checked():
    module = _module()
    assert module.parse_args(["--tiny", "--stages", "none"]).stages == []
    # the attention pass reads the traced tokens, so traces join it; table order kept
    assert module.parse_args(["--stages", "attention,unary"]).stages == [
        "traces",
        "unary",
        "attention",
    ]
    for bad in (["--stages", "traces,decode"], ["--stage-n", "2", "--stage-ref-n", "3"]):
        with pytest.raises(SystemExit) as stop:
            module.parse_args(bad)
        assert stop.value.code == 2


def test_stage_verdicts_use_the_dtype_tolerance():
    verdict = _module().stage_equality

    def row(same, diff, scale, compared=4):
        return {"equality": {"compared": compared, "same": same, "max_diff": diff, "scale": scale}}

    # float32: identical paths and diff <= 1e-3
    assert verdict("marginalise", row(4, 1e-5, 1.0), {}, None, torch.float32)["ok"]
    assert not verdict("marginalise", row(3, 0.0, 1.0), {}, None, torch.float32)["ok"]
    assert not verdict("unary", row(None, 2e-3, 9.0), {}, None, torch.float32)["ok"]
    # bf16 logits: 2**-4 x max(1, max |logit|); probabilities: 2**-4 x the largest value
    got = verdict("binary", row(None, 0.5, 10.0), {}, None, torch.bfloat16)
    assert got["tolerance"] == 0.625 and got["ok"]
    got = verdict("attention", row(None, 0.01, 0.08), {}, None, torch.bfloat16)
    assert got["tolerance"] == 0.005 and not got["ok"]
    # bf16 ties may change explored paths: counted, not required
    assert verdict("marginalise", row(1, 0.01, 1.0), {}, None, torch.bfloat16)["ok"]
    # nothing compared (NaN) is never a pass
    assert not verdict("unary", row(None, float("nan"), 1.0), {}, None, torch.bfloat16)["ok"]


def test_stage_table_refuses_a_vocabulary_smaller_than_the_tokenizer():
    module = _module()
    config = module.model_config("llama_3_1_8b", None, tiny=True)
    config.vocab_size = 4096
    args = module.parse_args(["--device", "cpu", "--tiny"])
    with pytest.raises(ValueError, match="vocab_size is 4096"):
        module.stage_table(None, config, args, torch.device("cpu"), torch.float32, 1e9)
