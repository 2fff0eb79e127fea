"""The backend registry and the engine decision (engine/backend.py): no model, no vLLM."""

import pytest

from multilabel_llm.engine.backend import BACKENDS, backend_class, engine_for, engine_key_problems
from multilabel_llm.workflow.config import ConfigError, load_config


def test_registry_imports_lazily_by_name():
    assert set(BACKENDS) >= {"hf", "vllm"}
    assert backend_class("hf").__name__ == "HFBackend"
    assert backend_class("vllm").name == "vllm"
    with pytest.raises(ValueError, match="expected one of"):
        backend_class("tgi")


def test_engine_for_falls_back_to_hf_for_what_vllm_cannot_do():
    vllm = {"backend": "vllm"}
    assert engine_for(vllm) == "vllm"
    for need in ("hidden_states", "attention", "lookahead", "marginalization", "training"):
        assert engine_for(vllm, need) == "hf"
    assert engine_for({}) == "hf" and engine_for({}, "attention") == "hf"
    with pytest.raises(ValueError, match="models.m.backend"):
        engine_for({"backend": "tgi", "slot": "m"})


def test_engine_keys_that_contradict_are_named():
    gpu4 = {"gpu": 4}
    assert (
        engine_key_problems("m", {"backend": "vllm", "vllm": {"tensor_parallel_size": 4}}, gpu4)
        == []
    )
    (msg,) = engine_key_problems("m", {"backend": "hf", "vllm": {"enforce_eager": True}}, gpu4)
    assert "models.m.vllm" in msg
    (msg,) = engine_key_problems("m", {"backend": "vllm", "quantization": "8bit"}, gpu4)
    assert "models.m.vllm.quantization" in msg
    (msg,) = engine_key_problems(
        "m", {"backend": "vllm", "vllm": {"quantization": "fp8"}, "size_class": "tiny"}, {"gpu": 0}
    )
    assert "fp8 runs on GPUs only" in msg
    (msg,) = engine_key_problems(
        "m", {"backend": "vllm", "vllm": {"tensor_parallel_size": 8}}, gpu4
    )
    assert "tensor_parallel_size" in msg


def test_config_refuses_fp8_on_a_cpu_model_before_any_job():
    with pytest.raises(ConfigError, match="fp8 runs on GPUs only"):
        load_config(
            {"experiment": "vllm_demo", "overrides": "+models.smollm2.vllm.quantization=fp8"}
        )


def test_model_spec_owns_the_engine_keys():
    from multilabel_llm.engine.model_spec import ModelSpec, ModelSpecError

    cfg = {
        "name": "m",
        "backend": "vllm",
        "max_context": 2048,
        "vllm": {"quantization": "int8_per_channel_weight_only", "cpu_kv_cache_gb": 1},
    }
    spec = ModelSpec.from_config(cfg, device="cpu")
    assert (spec.engine, spec.max_context, spec.tensor_parallel) == ("vllm", 2048, 1)
    assert spec.engine_quantization == "int8_per_channel_weight_only"
    assert spec.enforce_eager and spec.cpu_kv_cache_gb == 1 and spec.memory_share is None
    assert ModelSpec.from_config({"name": "m"}, device="cpu").engine == "hf"
    with pytest.raises(ModelSpecError, match="vllm"):
        ModelSpec.from_config({"name": "m", "vllm": {"enforce_eager": True}}, device="cpu")
