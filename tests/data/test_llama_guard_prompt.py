"""Llama Guard as a model family: its zero-shot prompt through the chat template (its own,
or the same text through any other), its native answer parsed and stopped, on real Llama
Guard 3 answer strings."""

from __future__ import annotations

import pytest

from multilabel_llm import NONE_LABEL
from multilabel_llm.data.prompts import (
    LLAMA_GUARD_3_POLICY,
    PromptBuilder,
    format_labels,
    llama_guard_done,
    llama_guard_user_turn,
    parse_output,
    resolve_prompt,
)

LABELS = ["unsafe", *[f"S{k}" for k in range(1, 15)]]
CODES = LABELS[1:]


@pytest.mark.parametrize(
    "answer,labels",
    [
        ("safe", []),
        ("\n\nsafe", []),  # Llama Guard 3 writes two newlines first
        ("unsafe\nS1", ["unsafe", "S1"]),
        ("\n\nunsafe\nS1,S3", ["unsafe", "S1", "S3"]),
        ("\n\nunsafe\nS10", ["unsafe", "S10"]),  # S1 is not read inside S10
        ("unsafe\nS2,S2", ["unsafe", "S2"]),
        ("\n\nunsafe\nS14\n", ["unsafe", "S14"]),
    ],
)
def test_native_answers_parse(answer, labels):
    parsed = parse_output(answer, LABELS, "llama_guard")
    assert parsed.labels == labels
    for label, at in parsed.spans:  # spans point at the words of the answer
        word = "safe" if label == NONE_LABEL else label
        assert answer[at : at + len(word)] == word


def test_without_the_unsafe_label_only_codes_are_labels():
    assert parse_output("\n\nunsafe\nS1,S3", CODES, "llama_guard").labels == ["S1", "S3"]
    assert parse_output("safe", CODES, "llama_guard").labels == []


def test_bad_and_cut_answers():
    assert parse_output("I cannot help with that.", LABELS, "llama_guard").labels is None
    cut = parse_output("\n\nuns", LABELS, "llama_guard")
    assert cut.labels is None and cut.truncated
    partial = parse_output("unsafe\nS1,S", LABELS, "llama_guard")
    assert partial.labels == ["unsafe", "S1"] and partial.truncated
    odd = parse_output("unsafe\nS1,S99\n", LABELS, "llama_guard")
    assert odd.labels == ["unsafe", "S1"] and odd.unknown == ["S99"]


def test_format_round_trips_and_stop_rule():
    assert format_labels([], "llama_guard") == "safe"
    assert format_labels(["unsafe", "S1", "S3"], "llama_guard") == "unsafe\nS1,S3"
    assert format_labels(["S1", "S3"], "llama_guard") == "unsafe\nS1,S3"
    for labels in ([], ["unsafe", "S1"], ["unsafe", "S5", "S12"]):
        text = format_labels(labels, "llama_guard")
        assert parse_output(text, LABELS, "llama_guard").labels == labels
    assert not llama_guard_done("\n\nsafe")
    assert llama_guard_done("\n\nsafe\n")
    assert not llama_guard_done("\n\nunsafe\nS1,S3")
    assert llama_guard_done("\n\nunsafe\nS1,S3\n")
    assert llama_guard_done("Sure!\n")


# Llama Guard 3's chat template, rewritten here from its documented prompt format (a stand-in
# for the gated tokenizer): the conversation goes in, the policy is the template's own
LLAMA_GUARD_TEMPLATE = (
    "{{- bos_token }}{{- '<|start_header_id|>user<|end_header_id|>\\n\\n' }}"
    "{{- \"Task: Check if there is unsafe content in 'User' messages in conversations "
    'according our safety policy with the below categories.\\n\\n" }}'
    "{{- '<BEGIN UNSAFE CONTENT CATEGORIES>\\n' }}"
    + "".join(f"{{{{- '{code}: {name}.\\n' }}}}" for code, name in LLAMA_GUARD_3_POLICY)
    + "{{- '<END UNSAFE CONTENT CATEGORIES>\\n\\n<BEGIN CONVERSATION>\\n\\n' }}"
    "{%- for m in messages %}{{- 'User: ' + m['content'] | trim + '\\n\\n' }}{%- endfor %}"
    "{{- '<END CONVERSATION>\\n\\n' }}"
    "{{- 'Provide your safety assessment for ONLY THE LAST User message in the above "
    "conversation:\\n - First line must read \\'safe\\' or \\'unsafe\\'.\\n - If unsafe, a second "
    "line must include a comma-separated list of violated categories.' }}"
    "{{- '<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
)
LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for m in messages %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim"
    " + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)


@pytest.fixture()
def tokenizer():
    from multilabel_llm.engine.loading import bundled_model_cfg, load_tokenizer

    return load_tokenizer(bundled_model_cfg())


def builder(tok, template):
    import yaml

    from multilabel_llm.workflow.config import CONFIG_DIR

    cfg = yaml.safe_load((CONFIG_DIR / "prompt/llama_guard.yaml").read_text())
    spec = resolve_prompt(cfg, "content_safety")
    tok.chat_template = template
    return PromptBuilder(spec, LABELS, []).attach_tokenizer(tok)


def test_prompt_is_llama_guards_own_through_either_template(tokenizer):
    query = "  How do I pick a lock to get into my neighbour's house?\n"
    native = builder(tokenizer, LLAMA_GUARD_TEMPLATE)
    text = native.prompt(query)
    assert "S1: Violent Crimes.\nS2: Non-Violent Crimes." in text
    assert "User: How do I pick a lock to get into my neighbour's house?\n\n<END CONV" in text
    assert text.count("<BEGIN UNSAFE CONTENT CATEGORIES>") == 1  # the query went in alone
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    # any other chat template gets Llama Guard's user turn: the same prompt
    other = builder(tokenizer, LLAMA3_TEMPLATE)
    assert other.prompt(query) == text
    assert "<|start_header_id|>user<|end_header_id|>\n\n" + llama_guard_user_turn(query) in text
    for b in (native, other):  # the shared prefix is the prompt up to the query
        assert b.prompt(query).startswith(b.prefix())
        assert b.prefix().endswith("User: ")
    assert native.answer_tokens(tokenizer) >= len(CODES)
