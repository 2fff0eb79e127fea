"""Estimator 3 (marginal probability at any place, our bounded search) against exhaustive
enumeration on a tiny random model whose whole path space fits: a 5-token vocabulary (EOS,
"a", "b", "c", ",") and 3 new tokens."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from multilabel_llm.engine.hf.marginalization import marginal_label_probs

EOS = 0
PIECES = {1: "a", 2: "b", 3: "c", 4: ","}
LABELS = ["a", "b", "c"]
DEPTH = 3
PROMPT = [1, 4, 2]


class _Tok:
    eos_token_id = EOS

    def decode(self, ids, skip_special_tokens=True):
        return "".join(PIECES.get(int(i), "") for i in ids)


def _parse(text):
    """A comma list of single letters; an empty item or unknown word: unparseable."""
    items = text.split(",")
    if not all(items) and text:
        return None
    return [i for i in items if i]


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    cfg = LlamaConfig(vocab_size=5, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, bos_token_id=None,
                      eos_token_id=EOS, pad_token_id=EOS)  # fmt: skip
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharpen the random logits a little: uneven, not degenerate
        m.lm_head.weight.mul_(8.0)
    return m


def exhaustive(model):
    """Every path (EOS or DEPTH new tokens) with its probability: one batched full forward
    per prefix length, no KV cache, so it shares no code with the search."""
    logprob = {}
    for depth in range(DEPTH):
        prefixes = list(itertools.product(range(1, 5), repeat=depth))
        with torch.no_grad():
            out = model(torch.tensor([PROMPT + list(ids) for ids in prefixes]))
        lp = torch.log_softmax(out.logits[:, -1].double(), -1).numpy()
        logprob.update(zip(prefixes, lp, strict=True))
    marginal, total, unparsed = np.zeros(len(LABELS)), 0.0, 0.0
    frontier = [((), 1.0)]
    while frontier:
        ids, mass = frontier.pop()
        for tok in range(5):
            p = mass * float(np.exp(logprob[ids][tok]))
            child = (*ids, tok)
            if tok != EOS and len(child) < DEPTH:
                frontier.append((child, p))
                continue
            done = ids if tok == EOS else child
            parsed = _parse(_Tok().decode(done))
            total += p
            if parsed is None:
                unparsed += p
                continue
            for k, lab in enumerate(LABELS):
                marginal[k] += p * (lab in parsed)
    return marginal, total, unparsed


@pytest.fixture(scope="module")
def exact(model):
    return exhaustive(model)


def _search(model, **kw):
    return marginal_label_probs(model, _Tok(), "", LABELS, _parse, prompt_ids=PROMPT,
                                max_new_tokens=DEPTH, **kw)  # fmt: skip


def test_unbounded_search_is_exhaustive_enumeration(model, exact):
    exact, total, unparsed = exact
    assert total == pytest.approx(1.0, abs=1e-9)
    assert 0.05 < exact.min() and exact.max() < 0.95  # a non-trivial case
    result = _search(model, top_p=1.0, top_k=None, min_path_mass=0.0, max_paths=10_000,
                     max_expansions=10_000)  # fmt: skip
    np.testing.assert_allclose(result.lower, exact, atol=1e-6)
    assert result.explored_mass == pytest.approx(1.0, abs=1e-6)
    assert result.unexplored_mass == pytest.approx(0.0, abs=1e-6)
    assert result.unparsed_mass == pytest.approx(unparsed, abs=1e-6)
    n_paths = sum(1 for _ in itertools.product(range(1, 5), repeat=DEPTH))
    assert result.n_paths == n_paths + sum(4**d for d in range(DEPTH))  # DEPTH-long + EOS ends


@pytest.mark.parametrize(
    "budget",
    [
        dict(top_p=0.9, top_k=None, min_path_mass=0.0, max_paths=10_000, max_expansions=10_000),
        dict(top_p=0.99, top_k=3, min_path_mass=0.01, max_paths=8, max_expansions=20),
        dict(top_p=0.99, top_k=2, min_path_mass=1e-4, max_paths=3, max_expansions=5,
             strategy="best_first"),
    ],
)  # fmt: skip
def test_bounded_search_brackets_the_exact_marginal(model, exact, budget):
    exact, _, _ = exact
    result = _search(model, **budget)
    assert result.explored_mass + result.unexplored_mass == pytest.approx(1.0, abs=1e-6)
    assert result.unexplored_mass > 1e-3  # the budget really cut something
    assert (result.lower <= exact + 1e-6).all()  # cached vs full forwards: float error
    assert (exact <= result.upper + 1e-6).all()
