"""Two engines, one answer: vLLM (CPU build, `make vllm`) against our Hugging Face engine on
the bundled model, same prompts, through the real drivers (extract_traces, breakdown scoring).

One vLLM engine (with LoRA enabled) serves the whole module: its start-up is ~30 s on CPU.
These tests never skip: `make test` installs the vLLM environment, and a missing one fails
with the install command in the message.
"""

import json

import numpy as np
import pytest

from multilabel_llm.core.traces import read_traces
from multilabel_llm.engine.breakdown import score_binary, score_unary
from multilabel_llm.engine.loading import (
    bundled_model_cfg,
    load_model,
    load_tokenizer,
    resolve_checkpoint,
)
from multilabel_llm.engine.model_spec import ModelSpec
from multilabel_llm.engine.run import extract_traces
from multilabel_llm.engine.vllm.backend import VLLMBackend, engine_settings, stop_strings
from tests.builders import TOY_PROMPT_CFG, bundled_model, toy_dataset

TV_TOL = 1e-4  # total variation between the two engines' label distributions per step
LOGPROB_TOL = 1e-4  # generated tokens' log-probs


@pytest.fixture(scope="module")
def vllm_engine():
    cfg = bundled_model_cfg()
    spec = ModelSpec.from_config(cfg, device="cpu")
    settings = engine_settings(cfg, spec, resolve_checkpoint(cfg), None)
    settings["max_lora_rank"] = 8  # one engine for the base model and the LoRA variant
    backend = VLLMBackend(settings, load_tokenizer(cfg), env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    backend.start()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def lora_adapter(tmp_path_factory):
    """A rank-8 LoRA with random (non-zero) B matrices, so it changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = load_model(bundled_model_cfg(), device="cpu")
    torch.manual_seed(0)
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    peft = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.mul_(0.05)
    path = tmp_path_factory.mktemp("lora") / "adapter"
    peft.save_pretrained(path)
    return str(path)


def _trace_both(tmp_path, hf_model, hf_tok, vllm_engine, n=8, prompt_cfg=None):
    ds = toy_dataset()
    ids = ds.split("dev")["id"].tolist()[:n]
    prompt_cfg = prompt_cfg or TOY_PROMPT_CFG
    out = {}
    for name, model in (("hf", hf_model), ("vllm", vllm_engine)):
        path = tmp_path / name / "traces.jsonl.gz"
        extract_traces(ds, ids, model, hf_tok, prompt_cfg, path, batch_size=4)
        out[name] = read_traces(path)
    return out


def _compare(out) -> dict:
    (meta_hf, hf), (meta_v, vl) = out["hf"], out["vllm"]
    assert meta_hf.info["engine"] == "hf" and meta_v.info["engine"] == "vllm"
    assert meta_v.info["logit_kind"] == "logprob"
    assert [t.id for t in hf] == [t.id for t in vl]
    worst_tv, worst_lp, steps = 0.0, 0.0, 0
    for a, b in zip(hf, vl, strict=True):
        assert a.extra["gen_ids"] == b.extra["gen_ids"], a.id
        assert a.text_out == b.text_out and a.pred_labels == b.pred_labels
        assert [(s.step, s.label) for s in a.label_steps] == [
            (s.step, s.label) for s in b.label_steps
        ]
        pa, pb = np.asarray(a.step_probs), np.asarray(b.step_probs)
        assert pa.shape == pb.shape
        worst_tv = max(worst_tv, float(0.5 * np.abs(pa - pb).sum(axis=1).max()))
        lpa, lpb = np.log(a.extra["gen_probs"]), np.log(b.extra["gen_probs"])
        worst_lp = max(worst_lp, float(np.abs(lpa - lpb).max()))
        steps += len(pa)
    return {"examples": len(hf), "steps": steps, "max_tv": worst_tv, "max_logprob": worst_lp}


def _show(capsys, text: str) -> None:
    """Print past pytest's capture: `make test`'s log shows the equality figures."""
    with capsys.disabled():
        print(f"\n{text}")


def test_traces_equal_hf_engine(tmp_path, vllm_engine, capsys):
    model, tok = bundled_model()
    figures = _compare(_trace_both(tmp_path, model, tok, vllm_engine))
    _show(capsys, f"vLLM vs HF traces (bundled model, json prompt): {json.dumps(figures)}")
    assert figures["max_tv"] < TV_TOL
    assert figures["max_logprob"] < LOGPROB_TOL


def test_comma_format_stop_rule_equal(tmp_path, vllm_engine, capsys):
    """The comma format stops at a line end after the list: no vLLM stop string helps, the
    rule alone cuts (and the answers still match)."""
    model, tok = bundled_model()
    cfg = {**TOY_PROMPT_CFG, "label_format": "comma"}
    figures = _compare(_trace_both(tmp_path, model, tok, vllm_engine, n=4, prompt_cfg=cfg))
    _show(capsys, f"vLLM vs HF traces (comma format): {json.dumps(figures)}")
    assert figures["max_tv"] < TV_TOL


def test_breakdown_scores_equal_hf_engine(vllm_engine, capsys):
    model, tok = bundled_model()
    ds = toy_dataset()
    ids = ds.split("dev")["id"].tolist()[:3]
    worst = {}
    for kind, scorer, col in (
        ("unary", score_unary, "p_reasonable"),
        ("binary", score_binary, "p_a"),
    ):
        hf = scorer(model, tok, ds, ids, n_shots=4)
        vl = scorer(vllm_engine, tok, ds, ids, n_shots=4)
        assert len(hf) == len(vl) > 0
        worst[kind] = float(np.abs(hf[col].to_numpy() - vl[col].to_numpy()).max())
    _show(capsys, f"vLLM vs HF breakdown probabilities, max |diff|: {json.dumps(worst)}")
    assert max(worst.values()) < 1e-4


def test_lora_variant_equals_hf_merged_adapter(tmp_path, vllm_engine, lora_adapter, capsys):
    cfg = bundled_model_cfg()
    merged, tok = load_model(cfg, adapter=lora_adapter, device="cpu")
    base, _ = bundled_model()
    vllm_engine.adapter = lora_adapter  # every request of this test carries the adapter
    try:
        out = _trace_both(tmp_path, merged, tok, vllm_engine, n=4)
    finally:
        vllm_engine.adapter = None
    figures = _compare(out)
    _show(capsys, f"vLLM LoRA vs HF merged adapter: {json.dumps(figures)}")
    assert figures["max_tv"] < TV_TOL
    # the adapter matters: the base model's distributions differ from the adapted ones
    base_out = _trace_both(tmp_path / "base", base, tok, vllm_engine, n=4)
    a = np.asarray(base_out["vllm"][1][0].step_probs[0])
    b = np.asarray(out["vllm"][1][0].step_probs[0])
    assert np.abs(a - b).max() > 1e-3


def test_stop_strings_never_fire_after_the_rule():
    class Rule:
        stop = ["\n\n"]
        label_format = "json"

    assert stop_strings(Rule()) == ["\n\n", "}"]
    Rule.label_format = "comma"
    assert stop_strings(Rule()) == ["\n\n"]


def test_too_many_label_forms_is_a_clear_error(vllm_engine):
    from multilabel_llm.engine.vllm.backend import VLLMTracer

    class Forms:
        form_ids = list(range(129))

    with pytest.raises(ValueError, match="at most 128 ids"):
        VLLMTracer(vllm_engine, Forms(), None, 4)
