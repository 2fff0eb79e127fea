"""The typed model spec (dtype, device, quantisation, batch size, errors naming the key) and
the loader's source handling (GGUF cache keyed by the source file, unknown hub ids offline)."""

from __future__ import annotations

import os

import pytest
import torch

from multilabel_llm.engine import loading
from multilabel_llm.engine import model_spec as ms
from multilabel_llm.engine.model_spec import DEFAULT_BATCH_SIZE, ModelSpec, ModelSpecError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _fake_gpus(monkeypatch, n: int = 1, free: int = 80 * 10**9, bnb: bool = True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ms, "visible_gpus", lambda: n)
    monkeypatch.setattr(ms, "free_gpu_memory", lambda k: (free,) * k)
    monkeypatch.setattr(ms, "bitsandbytes_available", lambda: bnb)


def test_cpu_spec_is_float32_single_device_with_the_small_default_batch():
    spec = ModelSpec.from_config(
        {"name": "m", "dtype": "bfloat16"}, resources={"gpu": 4, "batch_size": 96}, device="cpu"
    )
    assert spec.dtype is torch.float32  # CPU ignores the GPU dtype
    assert spec.batch_size == DEFAULT_BATCH_SIZE  # and the GPU size class's batch size
    assert spec.gpus == 0 and spec.quantization is None
    assert spec.from_pretrained_kwargs() == {"dtype": torch.float32}


def test_gpu_spec_defaults_to_bf16_and_takes_the_size_class_batch(monkeypatch):
    _fake_gpus(monkeypatch)
    spec = ModelSpec.from_config({"name": "m"}, resources={"gpu": 1, "batch_size": 96})
    assert (spec.device, spec.dtype, spec.batch_size) == ("cuda", torch.bfloat16, 96)
    # the model's own batch size wins over its size class's
    spec = ModelSpec.from_config({"name": "m", "batch_size": 8}, resources={"batch_size": 96})
    assert spec.batch_size == 8
    # resources may also come with the model config (as the workflow passes them)
    spec = ModelSpec.from_config({"name": "m", "resources": {"batch_size": 40}})
    assert spec.batch_size == 40


def test_revision_remote_code_and_attention_reach_from_pretrained(monkeypatch):
    _fake_gpus(monkeypatch)
    cfg = {
        "name": "medusa",
        "dtype": "float16",
        "revision": "abc123",
        "trust_remote_code": True,
        "attn_implementation": "sdpa",
    }
    kwargs = ModelSpec.from_config(cfg).from_pretrained_kwargs()
    assert kwargs == {
        "dtype": torch.float16,
        "revision": "abc123",
        "trust_remote_code": True,
        "attn_implementation": "sdpa",
        "device_map": {"": 0},
    }


def test_4bit_uses_nf4_double_quant_with_the_model_dtype_for_compute(monkeypatch):
    _fake_gpus(monkeypatch)
    spec = ModelSpec.from_config({"name": "m", "quantization": "4bit", "dtype": "bfloat16"})
    quant = spec.from_pretrained_kwargs()["quantization_config"]
    assert quant.load_in_4bit and not quant.load_in_8bit
    assert quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("cfg", "device", "needles"),
    [
        ({"quantization": "3bit"}, "cpu", ["'quantization'", "'3bit'", "8bit", "4bit"]),
        ({"quantization": "8bit"}, "cpu", ["'quantization'", "CUDA", "CUDA_VISIBLE_DEVICES"]),
        ({"trust_remote_code": "yes"}, "cpu", ["'trust_remote_code'", "true or false"]),
        ({"batch_size": 0}, "cpu", ["'batch_size'", "positive integer"]),
        ({"revision": 3}, "cpu", ["'revision'", "string"]),
        ({"device": "tpu"}, None, ["'device'", "'tpu'", "cpu, cuda, auto"]),
    ],
)
def test_bad_values_name_the_key(cfg, device, needles):
    with pytest.raises(ModelSpecError) as err:
        ModelSpec.from_config({"name": "m", **cfg}, device=device)
    for needle in needles:
        assert needle in str(err.value)


def test_errors_name_the_slot_when_known():
    with pytest.raises(ModelSpecError, match=r"config key 'models\.big\.quantization'"):
        ModelSpec.from_config({"name": "m", "slot": "big", "quantization": "2bit"}, device="cpu")


def test_quantization_without_bitsandbytes_is_an_error_not_a_fallback(monkeypatch):
    _fake_gpus(monkeypatch, bnb=False)
    with pytest.raises(ModelSpecError) as err:
        ModelSpec.from_config({"name": "m", "quantization": "8bit"})
    assert "bitsandbytes" in str(err.value) and "multilabel-llm[gpu]" in str(err.value)


def test_cuda_device_without_cuda_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelSpecError, match="no CUDA device"):
        ModelSpec.from_config({"name": "m", "device": "cuda"})


def test_fewer_gpus_of_a_bigger_machine_when_the_size_class_says_so(monkeypatch):
    _fake_gpus(monkeypatch, n=8)
    spec = ModelSpec.from_config({"name": "m"}, resources={"gpu": 2, "gpu_mem_mb": 40_000})
    assert spec.gpus == 2 and spec.several_gpus
    assert spec.gpu_memory == (40_000 * 2**20,) * 2  # the stated per-GPU memory caps it


# --- loading: GGUF conversion cache and hub errors ---------------------------------------------


def test_gguf_conversion_is_keyed_by_the_source_file(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.CACHE_ENV, str(tmp_path / "cache"))
    converted = []

    def fake_convert(model_cfg, target):
        converted.append((model_cfg["gguf"]["path"], target))
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(loading, "_convert_gguf", fake_convert)
    a, b = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for path, payload in ((a, b"GGUF-a"), (b, b"GGUF-b")):
        path.parent.mkdir()
        path.write_bytes(payload)
    cfg = {"name": "same-name", "gguf": {"path": str(a)}}
    first = loading.resolve_checkpoint(cfg)
    assert loading.resolve_checkpoint(cfg) == first and len(converted) == 1  # cached
    # same model name, another file: converts again, into another directory
    other = loading.resolve_checkpoint({"name": "same-name", "gguf": {"path": str(b)}})
    assert other != first and len(converted) == 2
    # the file itself replaced (size and mtime change): converts again
    a.write_bytes(b"GGUF-a, a newer and longer version")
    os.utime(a, ns=(1, 2_000_000_000_000_000_000))
    assert loading.resolve_checkpoint(cfg) not in (first, other) and len(converted) == 3
    # a model sharing the file (its -sft variant) shares the conversion
    sft = {"name": "same-name-sft", "gguf": {"path": str(b)}}
    assert loading.resolve_checkpoint(sft) == other and len(converted) == 3


def test_missing_gguf_path_names_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"gguf\.path .*nope\.gguf is not a file"):
        loading.resolve_checkpoint({"name": "m", "gguf": {"path": str(tmp_path / "nope.gguf")}})


def test_unknown_hf_id_offline_names_slot_id_and_hf_hub_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cfg = {"name": "ghost", "slot": "ghost_slot", "hf_id": "nosuch-org/nosuch-model-7b"}
    with pytest.raises(ValueError) as err:
        loading.load_model(cfg, device="cpu")
    msg = str(err.value)
    assert "models.ghost_slot.hf_id" in msg and "'nosuch-org/nosuch-model-7b'" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "path" in msg
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1"):
        loading.load_tokenizer(cfg)


def test_config_time_check_quantization_needs_a_gpu_size_class():
    from multilabel_llm.workflow.config import _cross_checks

    cfg = {
        "resources": {"size_classes": {"tiny": {"gpu": 0}, "b70": {"gpu": 4}}},
        "models": {
            "cpu_slot": {"size_class": "tiny", "quantization": "8bit"},
            "gpu_slot": {"size_class": "b70", "quantization": "8bit"},
        },
    }
    problems = [p for p in _cross_checks(cfg) if "quantization" in p]
    assert len(problems) == 1
    assert "models.cpu_slot.quantization" in problems[0] and "'tiny' has gpu: 0" in problems[0]
