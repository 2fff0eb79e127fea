"""Placement of large models over GPUs (computed on the meta device) and the trace engine on a
model dispatched with accelerate hooks (part of it offloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from multilabel_llm.core.traces import LabelStep, Trace
from multilabel_llm.engine import model_spec as ms
from multilabel_llm.engine.hf.attention import label_step_attention
from multilabel_llm.engine.hf.tracer import TraceEngine
from multilabel_llm.engine.label_tokens import detect_label_tokens
from multilabel_llm.engine.loading import input_device, load_model
from multilabel_llm.engine.model_spec import (
    ModelSpec,
    PlacementError,
    gpu_budgets,
    load_arch_config,
    plan_placement,
)
from multilabel_llm.engine.tracing import StopRule
from tests.builders import TOY_LABELS, save_tiny_checkpoint, toy_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CONFIGS = Path(__file__).parents[1] / "fixtures" / "model_configs"
LARGE = ["llama_3_1_70b", "llama_3_3_70b_instruct", "qwen2_5_72b", "llama_2_70b"]
GB80 = 80 * 10**9


def _layers_on(plan, n_layers: int) -> dict[int, object]:
    """Device of every decoder layer (a map entry may cover several layers or all of them)."""
    where = {}
    for i in range(n_layers):
        name = f"model.layers.{i}"
        keys = [k for k in plan.device_map if k == "" or name == k or name.startswith(k + ".")]
        keys += [k for k in plan.device_map if k in ("model", "model.layers")]
        assert keys, f"{name} is in no device-map entry"
        where[i] = plan.device_map[max(keys, key=len)]
    return where


@pytest.mark.parametrize("arch", LARGE)
def test_70b_bf16_on_four_80gb_gpus_puts_every_layer_on_a_gpu(arch):
    config = load_arch_config(CONFIGS / f"{arch}.json")
    assert config.num_hidden_layers == 80 and config.hidden_size == 8192
    plan = plan_placement(config, gpu_budgets([GB80] * 4), dtype=torch.bfloat16)
    where = _layers_on(plan, config.num_hidden_layers)
    assert set(where.values()) == {0, 1, 2, 3}  # balanced over all four
    assert all(isinstance(d, int) for d in plan.device_map.values())  # nothing on cpu/disk
    assert plan.offloaded == []
    assert 130e9 < plan.model_bytes < 150e9  # ~70B parameters x 2 bytes
    # balanced: no GPU holds more than a third of the weights
    assert max(plan.device_bytes.values()) < plan.model_bytes / 3
    assert all(plan.device_bytes[d] <= 0.8 * GB80 for d in range(4))


@pytest.mark.parametrize("arch", LARGE)
def test_70b_8bit_on_two_80gb_gpus_puts_every_layer_on_a_gpu(arch):
    config = load_arch_config(CONFIGS / f"{arch}.json")
    plan = plan_placement(
        config, gpu_budgets([GB80] * 2), dtype=torch.bfloat16, quantization="8bit"
    )
    where = _layers_on(plan, config.num_hidden_layers)
    assert set(where.values()) == {0, 1}
    assert plan.offloaded == []
    # ~1 byte per linear weight, bf16 embeddings and lm_head
    assert 65e9 < plan.model_bytes < 80e9
    assert all(plan.device_bytes[d] <= 0.8 * 0.9 * GB80 for d in range(2))


def test_70b_bf16_does_not_fit_one_80gb_gpu_and_says_what_helps():
    config = load_arch_config(CONFIGS / "llama_3_1_70b.json")
    with pytest.raises(PlacementError) as err:
        plan_placement(config, gpu_budgets([GB80]), dtype=torch.bfloat16, name="llama-3.1-70b")
    msg = str(err.value)
    assert "llama-3.1-70b" in msg and "141.1 GB" in msg and "1 GPU(s)" in msg
    assert "quantization: 8bit" in msg and "gpu" in msg
    # 4-bit fits one 80 GB GPU (as the paper's code ran large models)
    plan = plan_placement(config, gpu_budgets([GB80]), dtype=torch.bfloat16, quantization="4bit")
    assert set(plan.device_map.values()) == {0} and plan.model_bytes < 45e9


def _fake_gpus(monkeypatch, n: int, free: int = GB80, bnb: bool = False):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ms, "visible_gpus", lambda: n)
    monkeypatch.setattr(ms, "free_gpu_memory", lambda k: (free,) * k)
    monkeypatch.setattr(ms, "bitsandbytes_available", lambda: bnb)


def test_spec_places_a_70b_over_the_size_class_gpus(monkeypatch):
    _fake_gpus(monkeypatch, 4)
    cfg = {"name": "llama-3.1-70b", "hf_id": "meta-llama/Llama-3.1-70B", "dtype": "bfloat16"}
    spec = ModelSpec.from_config(cfg, resources={"gpu": 4, "batch_size": 48})
    assert (spec.device, spec.gpus, spec.several_gpus, spec.batch_size) == ("cuda", 4, True, 48)
    kwargs = spec.from_pretrained_kwargs(load_arch_config(CONFIGS / "llama_3_1_70b.json"))
    assert kwargs["dtype"] is torch.bfloat16
    assert set(kwargs["device_map"].values()) == {0, 1, 2, 3}
    assert "quantization_config" not in kwargs and "offload_folder" not in kwargs


def test_spec_uses_one_gpu_when_the_model_fits_and_several_are_not_asked(monkeypatch):
    _fake_gpus(monkeypatch, 4)
    spec = ModelSpec.from_config({"name": "llama-3.1-8b", "dtype": "bfloat16"})
    kwargs = spec.from_pretrained_kwargs(load_arch_config(CONFIGS / "llama_3_1_8b.json"))
    assert kwargs["device_map"] == {"": 0}
    # a 70B on the same machine does not fit one GPU: spread over the visible four
    kwargs = spec.from_pretrained_kwargs(load_arch_config(CONFIGS / "qwen2_5_72b.json"))
    assert set(kwargs["device_map"].values()) == {0, 1, 2, 3}


def test_spec_8bit_on_two_gpus_passes_bitsandbytes_config(monkeypatch):
    _fake_gpus(monkeypatch, 2, bnb=True)
    cfg = {"name": "llama-2-70b", "dtype": "bfloat16", "quantization": "8bit"}
    spec = ModelSpec.from_config(cfg, resources={"gpu": 2})
    kwargs = spec.from_pretrained_kwargs(load_arch_config(CONFIGS / "llama_2_70b.json"))
    assert kwargs["quantization_config"].load_in_8bit is True
    assert set(kwargs["device_map"].values()) == {0, 1}


def test_spec_70b_on_one_gpu_is_an_error_not_an_offload(monkeypatch):
    _fake_gpus(monkeypatch, 1)
    spec = ModelSpec.from_config({"name": "llama-3.3-70b-instruct", "dtype": "bfloat16"})
    with pytest.raises(PlacementError, match="do not fit 1 GPU"):
        spec.from_pretrained_kwargs(load_arch_config(CONFIGS / "llama_3_3_70b_instruct.json"))


# --- the trace engine on a model dispatched with accelerate hooks ------------------------------


class _StopAfter(StopRule):
    """Rows stop after 2-5 tokens (by their first token), so finished rows leave the batch
    and the split cache is re-indexed mid-decode."""

    def __init__(self):
        self.stop, self.eos_ids = [], set()

    def done(self, gen_ids):
        return len(gen_ids) >= 2 + gen_ids[0] % 4


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", seed=3, layers=4)


def test_trace_engine_on_offloaded_model_equals_single_device(tiny_ckpt, tmp_path):
    plain, tok = load_model(tiny_ckpt, device="cpu")
    # CPU budget: embeddings, two layers, and room for the largest offloaded module
    # (accelerate reserves it); the rest (layers 2-3, norm, lm_head) goes to disk.
    sizes = ms._module_sizes(plain, torch.float32, None)
    budget = sizes["model.embed_tokens"] + sizes["lm_head"] + int(2.5 * sizes["model.layers.0"])
    spec = ModelSpec.from_config(
        tiny_ckpt, device="cpu", max_memory={"cpu": budget}, offload_folder=str(tmp_path / "off")
    )
    split, _ = load_model(tiny_ckpt, spec=spec)
    placed = split.hf_device_map
    assert {"cpu", "disk"} <= set(placed.values()), placed
    assert placed["lm_head"] == "disk" and placed["model.layers.3"] == "disk"
    assert any(p.device.type == "meta" for p in split.parameters())  # really offloaded
    assert input_device(split) == torch.device("cpu")

    data = toy_dataset()
    texts = data.examples.query("split == 'dev'")["text"].tolist()
    prefix = tok("Classify the emotions of each input.\nInput: I am happy\n{joy}\n").input_ids
    prompts = [prefix + tok(f"Input: {t}\n", add_special_tokens=False).input_ids for t in texts]
    tokens = detect_label_tokens(tok, TOY_LABELS, "json")
    runs = []
    for model in (plain, split):
        engine = TraceEngine(model, tok, tokens, _StopAfter(), max_new_tokens=6, batch_size=3)
        engine.set_prefix(prefix)
        runs.append(engine.run(prompts))
    lengths = {len(r.gen_ids) for r in runs[0]}
    assert len(lengths) > 1  # rows finished at different steps
    for a, b in zip(*runs, strict=True):
        assert a.gen_ids == b.gen_ids
        np.testing.assert_allclose(a.form_logits, b.form_logits, atol=1e-3, rtol=0)

    # the attention pass (Table 6) on the offloaded model equals the plain one too
    traces = [
        Trace(
            id=f"q{i}",
            text_out="",
            pred_labels=TOY_LABELS[:3],
            label_steps=[LabelStep(step=s, label=TOY_LABELS[s]) for s in range(3)],
            step_logits=[],
            step_probs=[],
            extra={"gen_ids": raw.gen_ids},
        )
        for i, raw in enumerate(runs[0][:3])
    ]
    by_id = {f"q{i}": p for i, p in enumerate(prompts)}
    frames = [label_step_attention(m, tok, by_id, traces) for m in (plain, split)]
    assert len(frames[0]) == 6  # label steps 1 and 2 of three traces
    cols = ["input_mass", "label_mass", "first_mass"]
    np.testing.assert_allclose(frames[0][cols], frames[1][cols], atol=1e-5)
