"""Token-level marginalisation: exact values on a hand-made path tree, the search bounds,
and the KV-cached HF stepper against brute-force enumeration with a tiny random Llama."""

import itertools
import math

import numpy as np
import pytest

from multilabel_llm.engine.hf.marginalization import HFStepper, marginal_label_probs
from multilabel_llm.engine.hf.path_search import search_paths
from multilabel_llm.engine.hf.search_settings import SearchSettings, nucleus

# vocabulary of the hand-made tree: 0 'a', 1 'b', 2 ',', 3 EOS
CHARS = {0: "a", 1: "b", 2: ","}
EOS = 3
TREE = {  # generated prefix -> next-token probabilities
    "": {0: 0.6, 1: 0.3, EOS: 0.1},
    "a": {EOS: 0.5, 2: 0.5},
    "a,": {1: 1.0},
    "a,b": {EOS: 1.0},
    "b": {EOS: 0.8, 2: 0.2},
    "b,": {0: 1.0},
    "b,a": {EOS: 1.0},
}


def decode(ids):
    return "".join(CHARS[i] for i in ids if i != EOS)


def tree_step(suffix):
    dist = TREE[decode(suffix)]
    logp = np.full(4, -1e9)
    for tok, p in dist.items():
        logp[tok] = math.log(p)
    return logp


def parse(text):
    if text == "":
        return []
    parts = text.split(",")
    return parts if all(p in ("a", "b") for p in parts) else None


def run(**kw):
    # these tests pin the search's cuts as such; keep_greedy (on by default) has its own tests
    kw.setdefault("keep_greedy", False)
    return search_paths(tree_step, decode, {EOS}, parse, ["a", "b"], SearchSettings(**kw))


def test_exhaustive_search_gives_exact_marginals():
    # paths: "" .1, "a" .3, "a,b" .3, "b" .24, "b,a" .06
    res = run(top_p=1.0, max_paths=100, max_new_tokens=10)
    assert res.n_paths == 5
    assert res.explored_mass == pytest.approx(1.0)
    assert res.unexplored_mass == pytest.approx(0.0, abs=1e-12)
    assert res.lower == pytest.approx([0.66, 0.60])
    assert res.normalized == pytest.approx([0.66, 0.60])
    # the first-step view would say P(a) = .6, P(b) = .3: marginalising finds the later labels
    assert sorted(p.text for p in res.paths) == ["", "a", "a,b", "b", "b,a"]


def test_top_p_leaves_mass_unexplored_and_bounds_hold():
    # root nucleus at .85 keeps a (.6) and b (.3): EOS (.1) is unexplored
    res = run(top_p=0.85, max_paths=100, max_new_tokens=10)
    assert res.unexplored_mass == pytest.approx(0.1)
    assert res.explored_mass == pytest.approx(0.9)
    assert res.lower == pytest.approx([0.66, 0.60])
    assert res.upper == pytest.approx([0.76, 0.70])
    assert res.normalized == pytest.approx([0.66 / 0.9, 0.60 / 0.9])


def test_best_first_order_and_path_budget():
    # pop root -> complete "" (.1); pop "a" (.6) -> complete "a" (.3): two paths, stop
    res = run(top_p=1.0, max_paths=2, max_new_tokens=10, strategy="best_first")
    assert [p.text for p in res.paths] == ["", "a"]
    assert res.n_expansions == 2
    assert res.lower == pytest.approx([0.3, 0.0])
    # frontier left: "b" (.3) and "a," (.3)
    assert res.unexplored_mass == pytest.approx(0.6)
    assert res.explored_mass + res.unexplored_mass == pytest.approx(1.0)


def test_rollout_completes_a_path_per_pop():
    # pop root: "" completes (.1); roll out "a" (.6): "a" completes (.3) on the way, ","
    # (tied with EOS, lower id first) is followed to "a,b" (.3). Three paths >= 2: stop.
    res = run(top_p=1.0, max_paths=2, max_new_tokens=10)
    assert [p.text for p in res.paths] == ["", "a", "a,b"]
    assert res.n_expansions == 4  # root, "a", "a,", "a,b"
    assert res.lower == pytest.approx([0.6, 0.3])
    assert res.unexplored_mass == pytest.approx(0.3)  # "b" is still on the frontier
    assert res.normalized == pytest.approx([0.6 / 0.7, 0.3 / 0.7])
    # an expansion budget stops mid-rollout and keeps the mass accounted
    cut = run(top_p=1.0, max_paths=10, max_new_tokens=10, max_expansions=2)
    assert cut.n_expansions == 2
    assert cut.explored_mass + cut.unexplored_mass == pytest.approx(1.0)


def test_max_new_tokens_and_min_mass_cut_paths():
    res = run(top_p=1.0, max_paths=100, max_new_tokens=2)  # "a,b" stops at "a,"
    texts = {p.text: p for p in res.paths}
    assert texts["a,"].labels is None  # "a," does not parse
    assert res.unparsed_mass == pytest.approx(0.3 + 0.06)
    pruned = run(top_p=1.0, max_paths=100, max_new_tokens=10, min_path_mass=0.07)
    # "b," (.06) is not expanded
    assert pruned.unexplored_mass == pytest.approx(0.06)
    assert pruned.explored_mass + pruned.unexplored_mass == pytest.approx(1.0)


def test_nucleus():
    ids, probs = nucleus(np.log(np.array([0.1, 0.6, 0.3])), 0.85, None)
    assert ids.tolist() == [1, 2] and probs == pytest.approx([0.6, 0.3])
    ids, _ = nucleus(np.log(np.array([0.1, 0.6, 0.3])), 0.99, 1)
    assert ids.tolist() == [1]
    with pytest.raises(ValueError, match="top_p"):
        SearchSettings(top_p=0.0)


class CharTokenizer:
    """Minimal tokenizer: one id per character of 'ab, ', then EOS."""

    vocab = ["a", "b", ",", " "]
    eos_token_id = 4

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [self.vocab.index(ch) for ch in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.vocab[i] for i in ids if i != self.eos_token_id)


@pytest.fixture(scope="module")
def tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        eos_token_id=4,
        bos_token_id=None,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    # sharpen the random model a little so paths differ in mass
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model


def full_logprobs(model, ids):
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]))
    return torch.log_softmax(out.logits[0, -1].float(), dim=-1).numpy()


def test_hf_stepper_matches_full_forward(tiny_llama):
    prompt = [0, 2, 3, 1]
    stepper = HFStepper(tiny_llama, prompt)
    # an order that exercises extend, branch and shrink of the cached suffix
    for suffix in ([], [0], [0, 1], [0, 1, 2], [1], [1, 0], [0], [0, 1, 3, 3]):
        got = stepper(list(suffix))
        want = full_logprobs(tiny_llama, prompt + list(suffix))
        assert got == pytest.approx(want, abs=1e-4), suffix


def parse_chars(text):
    parts = [p.strip() for p in text.split(",")]
    if text.strip() == "":
        return []
    return parts if all(p in ("a", "b") for p in parts) else None


def test_marginals_equal_brute_force_enumeration(tiny_llama):
    tok = CharTokenizer()
    prompt = "ab, a"
    depth = 3
    res = marginal_label_probs(
        tiny_llama,
        tok,
        prompt,
        ["a", "b"],
        parse_chars,
        top_p=1.0,
        max_paths=10_000,
        max_new_tokens=depth,
        top_k=None,
        min_path_mass=0.0,
    )
    assert res.explored_mass == pytest.approx(1.0, abs=1e-6)
    # brute force: every sequence of up to `depth` tokens, stopping at EOS
    prompt_ids = tok(prompt)["input_ids"]
    want = np.zeros(2)
    for n in range(1, depth + 1):
        for seq in itertools.product(range(5), repeat=n):
            if EOS_ in seq[:-1]:
                continue
            if n < depth and seq[-1] != EOS_:
                continue
            mass = 1.0
            for k in range(n):
                mass *= math.exp(full_logprobs(tiny_llama, prompt_ids + list(seq[:k]))[seq[k]])
            labels = parse_chars(tok.decode([t for t in seq if t != EOS_]))
            for j, lab in enumerate(["a", "b"]):
                if labels and lab in labels:
                    want[j] += mass
    assert res.lower == pytest.approx(want, abs=1e-5)


EOS_ = CharTokenizer.eos_token_id
