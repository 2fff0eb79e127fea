"""`chat_template: true` prompts: instruction + demos + query as one user turn in the
tokenizer's chat template (the bundled SmolLM2 has one), with the shared prefix intact."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

from multilabel_llm.data.prompts import PromptBuilder, resolve_prompt
from multilabel_llm.engine.hf.tracer import TraceEngine, reference_trace
from multilabel_llm.engine.run import plan_run
from tests.builders import TOY_PROMPT_CFG, tiny_model, toy_dataset

CHAT_CFG = {**TOY_PROMPT_CFG, "chat_template": True, "n_shots": 4}


@pytest.fixture(scope="module")
def tok():
    return tiny_model()[1]


def _builder(cfg, tok=None):
    ds = toy_dataset()
    builder = PromptBuilder.from_dataset(resolve_prompt(cfg, ds.name), ds)
    return builder.attach_tokenizer(tok) if tok is not None else builder


def test_prompt_is_one_user_turn_with_the_generation_prompt(tok):
    chat, plain = _builder(CHAT_CFG, tok), _builder({**CHAT_CFG, "chat_template": False})
    query = "I love this so much, thank you!"
    text = chat.prompt(query)
    body = plain.prompt(query)
    # SmolLM2's template: its default system turn, then the plain prompt as the user turn
    assert text.startswith("<|im_start|>system\n")
    assert f"<|im_start|>user\n{body}<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert plain.prompt(query) == body and "<|im_start|>" not in body  # default: plain


def test_prefix_is_the_fixed_head_and_every_prompt_extends_it(tok):
    chat = _builder(CHAT_CFG, tok)
    prefix = chat.prefix()
    for query in ("Can I speak to the manager?", "Nothing much to say really."):
        prompt = chat.prompt(query)
        assert prompt.startswith(prefix)
        assert prompt[len(prefix) :].startswith(f"Input: {query}")
    assert prefix.startswith("<|im_start|>system") and chat.demos[-1][0] in prefix


def test_run_plan_shares_the_template_head_and_demos(tok):
    ds = toy_dataset()
    ids = ds.split("dev")["id"].tolist()[:3]
    plan = plan_run(ds, ids, tok, CHAT_CFG, model_name="tiny")
    prefix_text = tok.decode(plan.prefix_ids)
    assert prefix_text.startswith("<|im_start|>system") and "Input:" in prefix_text
    for prompt in plan.prompts:
        assert prompt[: len(plan.prefix_ids)] == plan.prefix_ids
        # only the query and the template's closing turn are outside the shared prefix
        assert len(prompt) - len(plan.prefix_ids) < 40 < len(plan.prefix_ids)
    assert tok.decode(plan.prompts[0]).endswith("<|im_start|>assistant\n")
    # the budget counts the answer alone: no stripped newline comes back in the assistant turn
    assert plan.builder.completion(["joy"]) == '{"label": ["joy"]}\n'


def test_engine_over_the_chat_prefix_equals_generate(tok):
    model = tiny_model()[0]
    ds = toy_dataset()
    plan = plan_run(ds, ds.split("dev")["id"].tolist()[:2], tok, CHAT_CFG, model_name="tiny")
    engine = TraceEngine(model, tok, plan.label_tokens, plan.stop_rule, 4, batch_size=2)
    engine.set_prefix(plan.prefix_ids)
    for prompt, got in zip(plan.prompts, engine.run(plan.prompts), strict=True):
        ref, _ = reference_trace(model, tok, prompt, plan.label_tokens, plan.stop_rule, 4)
        assert got.gen_ids == ref.gen_ids
        np.testing.assert_allclose(got.form_logits, ref.form_logits, atol=1e-3)


def test_tokenizer_without_a_chat_template_fails_clearly(tok):
    bare = copy.copy(tok)
    bare.chat_template = None
    with pytest.raises(ValueError, match="has no chat template; set chat_template: false"):
        _builder(CHAT_CFG, bare)
    with pytest.raises(ValueError, match="needs the run's tokenizer"):
        _builder(CHAT_CFG).prompt("x")
    with pytest.raises(ValueError, match="chat_template must be true or false"):
        resolve_prompt({**CHAT_CFG, "chat_template": "yes"}, "goemotions")


class _BosTokenizer:
    """A tokenizer whose template writes the BOS that tokenising adds as well (Llama 3)."""

    bos_token, bos_token_id, chat_template = "<s>", 1, "llama-like"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return f"<s>[user]{messages[0]['content']}[/user][assistant]"

    def __call__(self, text, **kwargs):
        return SimpleNamespace(input_ids=[1] + [ord(c) for c in text])


def test_bos_written_by_the_template_is_not_doubled():
    chat = _builder(CHAT_CFG, _BosTokenizer())
    text = chat.prompt("hello")
    assert text.startswith("[user]Classify") and text.endswith("Input: hello[/user][assistant]")
    assert chat.prefix().startswith("[user]") and text.startswith(chat.prefix())
