"""Batched marginalisation (many examples' searches per forward, shared-prefix KV) explores
the same paths with the same masses as the per-example reference search."""

import pytest
import torch

from multilabel_llm.engine.hf.marginalization import batched_marginals, marginal_label_probs
from multilabel_llm.engine.hf.search_settings import SearchSettings


class CharTokenizer:
    """One id per character of 'ab, ', then EOS (id 4)."""

    vocab = ["a", "b", ",", " "]
    eos_token_id = 4
    pad_token_id = None

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [self.vocab.index(ch) for ch in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.vocab[i] for i in ids if i != self.eos_token_id)


def parse_chars(text):
    if text.strip() == "":
        return []
    parts = [p.strip() for p in text.split(",")]
    return parts if all(p in ("a", "b") for p in parts) else None


@pytest.fixture(scope="module")
def char_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        eos_token_id=4,
        bos_token_id=None,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # sharper: paths differ in mass, searches branch
    return model


def reference(model, tok, prompts, settings, **kw):
    fields = {f: getattr(settings, f) for f in SearchSettings.__dataclass_fields__}
    return [
        marginal_label_probs(model, tok, "", ["a", "b"], parse_chars, prompt_ids=p, **fields, **kw)
        for p in prompts
    ]


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        # the same paths in the same order (exact tokens), masses within 1e-5
        assert [p.tokens for p in g.paths] == [p.tokens for p in w.paths]
        assert [p.labels for p in g.paths] == [p.labels for p in w.paths]
        assert [p.mass for p in g.paths] == pytest.approx([p.mass for p in w.paths], abs=1e-5)
        assert g.n_expansions == w.n_expansions
        assert g.lower == pytest.approx(w.lower, abs=1e-5)
        assert g.explored_mass == pytest.approx(w.explored_mass, abs=1e-5)
        assert g.unexplored_mass == pytest.approx(w.unexplored_mass, abs=1e-5)
        assert g.unparsed_mass == pytest.approx(w.unparsed_mass, abs=1e-5)


PROMPTS = ["ab, a, b\nb", "ab, a, b\nab", "ab, a, b\na, b, ", "ab, a, b\n b,a", "ab, a, b\nbb"]


@pytest.mark.parametrize(
    "settings",
    [
        SearchSettings(max_paths=4, max_expansions=24, max_new_tokens=8),  # the demo's budget
        SearchSettings(max_paths=12, max_new_tokens=6, top_k=None, top_p=0.999),
        SearchSettings(max_paths=6, max_new_tokens=5, strategy="best_first", top_p=0.95),
    ],
    ids=["demo-budget", "wide", "best-first"],
)
def test_batched_equals_per_example_search(char_llama, settings):
    tok = CharTokenizer()
    prompts = [tok(p.replace("\n", " "))["input_ids"] for p in PROMPTS]
    want = reference(char_llama, tok, prompts, settings)
    assert sum(w.n_paths for w in want) > len(prompts)  # the searches really branch
    # batch_size 2: three waves, the last one short; every wave's queries differ in length
    got = batched_marginals(
        char_llama, tok, prompts, ["a", "b"], parse_chars, settings, batch_size=2
    )
    assert_same(got, want)
    assert all(g.seconds > 0 for g in got)


def test_prefix_copied_per_row_for_models_that_cannot_share_it(char_llama, monkeypatch):
    """The path for sliding-window and other models outside the shared-prefix attention:
    each row's cache starts with a copy of the prefix; the same search results."""
    from multilabel_llm.engine.hf import shared_prefix

    monkeypatch.setattr(shared_prefix, "supports_shared_prefix", lambda model: False)
    tok = CharTokenizer()
    prompts = [tok(p.replace("\n", " "))["input_ids"] for p in PROMPTS]
    settings = SearchSettings(max_paths=4, max_expansions=24, max_new_tokens=8)
    got = batched_marginals(
        char_llama, tok, prompts, ["a", "b"], parse_chars, settings, batch_size=2
    )
    assert_same(got, reference(char_llama, tok, prompts, settings))


def test_stop_rule_and_no_shared_prefix(char_llama):
    tok = CharTokenizer()
    # the prompts share no first token: nothing to cache, every row holds its whole prompt
    prompts = [tok("ab, b")["input_ids"], tok("ba, a, ")["input_ids"], tok(" a")["input_ids"]]
    settings = SearchSettings(max_paths=8, max_new_tokens=6)
    kw = {"is_complete": lambda text: "," in text, "finalize_text": lambda text: text.split(",")[0]}
    want = reference(char_llama, tok, prompts, settings, **kw)
    got = batched_marginals(
        char_llama, tok, prompts, ["a", "b"], parse_chars, settings, batch_size=8, **kw
    )
    assert_same(got, want)
    assert any("," in tok.decode(p.tokens) for w in want for p in w.paths)  # is_complete ran


def test_real_tokenizer_rows(tmp_path):
    from tests.builders import tiny_random_llama

    model, tok = tiny_random_llama(seed=3)
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0)
    prefix = 'Input: the day was long\n{"labels": ["joy"]}\nInput: '
    prompts = [tok(prefix + q + "\n").input_ids for q in ("so happy", "scared of it all", "eh")]
    settings = SearchSettings(max_paths=3, max_expansions=12, max_new_tokens=6)

    def parse(text):
        return [w for w in ("joy", "fear") if w in text]

    fields = {f: getattr(settings, f) for f in SearchSettings.__dataclass_fields__}
    want = [
        marginal_label_probs(model, tok, "", ["joy", "fear"], parse, prompt_ids=p, **fields)
        for p in prompts
    ]
    got = batched_marginals(model, tok, prompts, ["joy", "fear"], parse, settings, batch_size=3)
    assert_same(got, want)


def test_bad_input_is_named(char_llama):
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="prompt 1 tokenised to zero tokens"):
        batched_marginals(char_llama, tok, [[0, 1], []], ["a"], parse_chars)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        batched_marginals(char_llama, tok, [[0, 1]], ["a"], parse_chars, batch_size=0)
    assert batched_marginals(char_llama, tok, [], ["a"], parse_chars) == []


def test_unknown_setting_is_named():
    assert SearchSettings.from_params({"max_paths": 4}).max_paths == 4
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['max_path'\]; allowed: .*max_paths"):
        SearchSettings.from_params({"max_path": 4})
