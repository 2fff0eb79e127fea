"""The authors' three token-level estimators (``definition: authors``, Praharaj & Kasundra
2025) against a slow reference written from their definition (tests/_authors_reference.py),
on tiny random models with a small vocabulary; their EOS rules, eps pruning and the ``S1``
inside ``S10`` switch on hand-made trees; and ours keeping what greedy decoding names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from multilabel_llm.engine.hf.marginalization import batched_marginals, marginal_label_probs
from multilabel_llm.engine.hf.path_search import search_paths
from multilabel_llm.engine.hf.search_settings import MarginalResult, SearchSettings
from tests import _authors_reference as ref


class PieceTokenizer:
    """Multi-character pieces, so random paths spell labels and ``S1`` can grow into
    ``S10``; the last id is EOS."""

    vocab = ["unsafe", "safe", "\n", "S", "1", "0", "2", "S1", ",", " "]
    eos_token_id = len(vocab)
    pad_token_id = None

    def __call__(self, text, add_special_tokens=True):
        raise NotImplementedError("prompts are given as ids")

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.vocab[i] for i in ids if i != self.eos_token_id)


TOK = PieceTokenizer()
EOS = {TOK.eos_token_id}
LABELS = ["unsafe", "S1", "S10", "S2"]
PROMPTS = [[0, 2, 3, 4], [1, 2], [0, 2, 7, 8, 6], [9, 3, 5, 2, 0], [3, 3, 3]]


def llama(seed: int, sharpness: float):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(TOK.vocab) + 1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        eos_token_id=TOK.eos_token_id,
        bos_token_id=None,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(sharpness)  # peaked: greedy and the DFS branch differently
    return model


def full_forward_probs(model, prompt):
    """The reference's distribution: the whole sequence through the model, no cache."""

    def probs(path):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + path])).logits[0, -1]
        return torch.softmax(logits.double(), dim=-1).tolist()

    return probs


def authors(estimator, **kw):
    base = {"top_p": 0.99, "top_k": None, "min_path_mass": 0.01, "max_new_tokens": 8}
    if estimator != "any_place":
        base["max_new_tokens"] = 12
    return SearchSettings(definition="authors", estimator=estimator, **{**base, **kw})


def reference(model, prompt, settings):
    probs = full_forward_probs(model, prompt)
    credit = settings.credits_suffixes
    if settings.estimator == "any_place":
        return ref.dfs(
            probs,
            TOK.decode,
            EOS,
            LABELS,
            settings.top_p,
            settings.min_path_mass,
            settings.max_new_tokens,
            suffix_credit=credit,
        )
    return ref.walk(
        probs, TOK.decode, EOS, LABELS, settings.max_new_tokens, settings.estimator, credit
    )


@pytest.mark.parametrize("suffix_credit", [None, False], ids=["authors", "no-suffix-credit"])
@pytest.mark.parametrize("seed,sharpness", [(0, 6.0), (1, 10.0), (2, 3.0)])
def test_authors_estimators_equal_the_reference(seed, sharpness, suffix_credit):
    model = llama(seed, sharpness)
    nonzero = 0
    for estimator in ("token_probability", "fixed_place", "any_place"):
        settings = authors(estimator, suffix_credit=suffix_credit)
        # the engine's path (rule marginalize): batched searches over a shared-prefix cache
        got = batched_marginals(model, TOK, PROMPTS, LABELS, lambda text: [], settings)
        for prompt, res in zip(PROMPTS, got, strict=True):
            want = reference(model, prompt, settings)
            np.testing.assert_allclose(res.lower, want, rtol=0, atol=1e-6)
            np.testing.assert_allclose(res.probs("lower"), np.clip(want, 0, 1), atol=1e-6)
            nonzero += int(np.count_nonzero(np.asarray(want) > 1e-9))
        # and the per-example drive
        one = marginal_label_probs(
            model, TOK, "", LABELS, lambda text: [], prompt_ids=PROMPTS[0], **vars(settings)
        )
        np.testing.assert_allclose(one.lower, got[0].lower, atol=1e-6)
    assert nonzero > 0  # the random models do write labels: the comparison is not of zeros


# ------------------------------------------------------------------ hand-made trees

PIECES = {0: "unsafe", 1: "\n", 2: "S1", 3: "0", 4: ",", 5: "S2", 6: "x"}
TEOS = 7


def tdecode(ids):
    return "".join(PIECES[i] for i in ids if i != TEOS)


def tree_search(tree, settings, labels=("unsafe", "S1", "S10", "S2")):
    def step(suffix):
        dist = tree[tuple(suffix)]
        logp = np.full(8, -1e9)
        for tok, p in dist.items():
            logp[tok] = math.log(p)
        return logp

    return search_paths(step, tdecode, {TEOS}, lambda text: [], list(labels), settings)


# "unsafe\nS10" then EOS; S1 is written inside S10
WALK = {
    (): {0: 0.9, 6: 0.1},
    (0,): {1: 0.8, TEOS: 0.2},
    (0, 1): {2: 0.5, 5: 0.4, 6: 0.1},
    (0, 1, 2): {3: 0.6, TEOS: 0.4},
    (0, 1, 2, 3): {TEOS: 0.7, 4: 0.3},
}


def test_walk_credits_suffixes_and_multiplies_every_crediting_step():
    tp = tree_search(WALK, authors("token_probability"))
    fixed = tree_search(WALK, authors("fixed_place"))
    # unsafe .9; S1 at .5 (inside S10, the authors' defect); S10 .6
    assert tp.lower == pytest.approx([0.9, 0.5, 0.6, 0.0])
    assert fixed.lower == pytest.approx([0.9, 0.9 * 0.5, 0.9 * 0.5 * 0.6, 0.0])
    assert tp.paths[0].text == "unsafe\nS10"
    off = tree_search(WALK, authors("token_probability", suffix_credit=False))
    assert off.lower == pytest.approx([0.9, 0.0, 0.6, 0.0])  # S1 went on into S10
    off_fixed = tree_search(WALK, authors("fixed_place", suffix_credit=False))
    assert off_fixed.lower == pytest.approx([0.9, 0.0, 0.9 * 0.6, 0.0])


def test_walk_repeat_overwrites_and_ignores_the_list_end():
    tree = {
        (): {0: 1.0},
        (0,): {1: 1.0},
        (0, 1): {5: 0.9, 6: 0.1},
        (0, 1, 5): {4: 0.8, TEOS: 0.2},
        (0, 1, 5, 4): {5: 0.6, 6: 0.4},  # S2 again
        (0, 1, 5, 4, 5): {1: 0.55, TEOS: 0.45},  # a line end: ours would stop, theirs goes on
        (0, 1, 5, 4, 5, 1): {TEOS: 1.0},
    }
    tp = tree_search(tree, authors("token_probability"))
    fixed = tree_search(tree, authors("fixed_place"))
    assert tp.lower == pytest.approx([1.0, 0.0, 0.0, 0.6])  # the repeat's .6 overwrote .9
    assert fixed.lower == pytest.approx([1.0, 0.0, 0.0, 0.9 * 0.6])  # repeat in the product
    assert tp.n_expansions == 7  # one forward per token, the line end did not stop it
    assert tree_search(tree, authors("token_probability", max_new_tokens=3)).lower == (
        pytest.approx([1.0, 0.0, 0.0, 0.9])
    )


def test_dfs_credits_prefixes_prunes_and_follows_the_eos_rules():
    tree = {
        (): {0: 0.95, 6: 0.05},
        (0,): {1: 0.9, TEOS: 0.1},  # EOS in the nucleus: check 2 children, expand both
        (0, 1): {2: 0.5, 5: 0.3, 6: 0.2},
        (0, 1, 2): {TEOS: 0.75, 3: 0.25},  # EOS >= 0.7 first: the "0" sibling is never seen
        (0, 1, 5): {TEOS: 1.0},
        (0, 1, 6): {TEOS: 1.0},
        (6,): {TEOS: 1.0},
    }
    res = tree_search(tree, authors("any_place"))
    m = 0.95 * 0.9
    assert res.lower == pytest.approx([0.95, m * 0.5, 0.0, m * 0.3])
    assert res.explored_mass + res.unexplored_mass == pytest.approx(1.0)
    # the "0" after S1 (.25) was never looked at: S10 gets nothing
    assert res.unexplored_mass == pytest.approx(m * 0.5 * 0.25)
    # eps 0.3: the "x" branch (.05), "unsafe\nS2" (.2565) and "unsafe\nx" (.171) are pruned
    # before expansion; S2 is still credited where its parent checked it
    cut = tree_search(tree, authors("any_place", min_path_mass=0.3))
    assert cut.lower == pytest.approx([0.95, m * 0.5, 0.0, m * 0.3])
    assert cut.unexplored_mass == pytest.approx(0.05 + m * 0.3 + m * 0.2 + m * 0.5 * 0.25)


def test_dfs_checks_three_expands_two_when_eos_is_in_the_nucleus():
    tree = {
        (): {5: 0.4, 2: 0.3, 0: 0.2, TEOS: 0.1},
        (5,): {TEOS: 1.0},
        (2,): {TEOS: 1.0},
    }
    res = tree_search(tree, authors("any_place"))
    # checked: S2, S1, unsafe (credited, not expanded); EOS itself is 4th: never looked at
    assert res.lower == pytest.approx([0.2, 0.3, 0.0, 0.4])
    assert res.n_expansions == 3


def test_dfs_s1_inside_s10_is_a_switch():
    tree = {
        (): {2: 1.0},
        (2,): {3: 0.6, TEOS: 0.3, 4: 0.1},
        (2, 3): {TEOS: 1.0},
        (2, 4): {TEOS: 1.0},
    }
    on = tree_search(tree, authors("any_place"))
    off = tree_search(tree, authors("any_place", suffix_credit=False))
    assert on.lower == pytest.approx([0.0, 1.0, 0.6, 0.0])  # S1 credited while S10 is written
    assert off.lower == pytest.approx([0.0, 0.4, 0.6, 0.0])  # only where S1 ended (EOS, ",")


def test_authors_values_are_not_normalised():
    res = tree_search(WALK, authors("token_probability"))
    with pytest.raises(ValueError, match="params.estimate: lower"):
        res.probs("normalized")


def test_settings_name_what_is_wrong():
    with pytest.raises(ValueError, match="definition must be"):
        SearchSettings(definition="theirs")
    with pytest.raises(ValueError, match="needs definition: authors"):
        SearchSettings(estimator="fixed_place")
    with pytest.raises(ValueError, match="suffix_credit: true needs definition: authors"):
        SearchSettings(suffix_credit=True)
    with pytest.raises(ValueError, match="keep_greedy"):
        SearchSettings(definition="authors", keep_greedy=True)


# ------------------------------------------------------------------ ours keeps greedy

# the greedy path "unsafe\nS1" falls below eps = .01 before it ends
THIN = {
    (): {0: 0.3, 5: 0.25, 6: 0.25, 2: 0.2},
    (0,): {1: 0.2, 6: 0.2, 5: 0.2, 2: 0.2, 4: 0.2},
    (0, 1): {2: 0.16, 6: 0.12, 5: 0.12, 4: 0.12, 3: 0.12, 0: 0.12, 1: 0.12, TEOS: 0.12},
    (0, 1, 2): {TEOS: 0.6, 6: 0.4},
}


def test_ours_completes_the_greedy_path_under_a_mass_cut():
    def parse(text):
        return [p for p in text.replace("\n", ",").split(",") if p]

    def run(keep):
        def step(suffix):
            dist = THIN.get(tuple(suffix), {TEOS: 1.0})
            logp = np.full(8, -1e9)
            for tok, p in dist.items():
                logp[tok] = math.log(p)
            return logp

        settings = SearchSettings(
            min_path_mass=0.01, max_paths=4, max_expansions=2, keep_greedy=keep, top_k=None
        )
        return search_paths(step, tdecode, {TEOS}, parse, ["unsafe", "S1", "S2"], settings)

    lost = run(False)
    assert lost.explored_mass == pytest.approx(0.0) and not lost.lower.any()
    kept = run(None)  # ours' default
    greedy = [p for p in kept.paths if p.text == "unsafe\nS1"]
    assert [p.mass for p in greedy] == pytest.approx([0.3 * 0.2 * 0.16 * 0.6])
    assert kept.normalized[0] > 0 and kept.normalized[1] > 0
    assert isinstance(kept, MarginalResult)
