"""Unary and binary breakdown scoring (paper §5.2.2, Table 3): one forward per prompt.

Unary: for every (example, label or none) ask whether the label is "reasonable"; binary: for
every unordered pair of labels + none (one order, ``itertools.combinations``) ask which of
"a"/"b" is better. ``reverse=True`` asks every pair the other way round (b first): with both
files a method can cancel the model's preference for one answer letter (docs/metrics.md). The header and demos are shared by every prompt of a run, so the prefix
KV cache is computed once and the queries are batched over it; only the two answers' first
token logits (max over their surface forms) are read.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pandas as pd

from multilabel_llm import NONE_LABEL
from multilabel_llm.data.prompts import demo_pool_frame
from multilabel_llm.engine.backend import as_backend
from multilabel_llm.engine.label_tokens import answer_tokens
from multilabel_llm.engine.tracing import common_prefix_len

UNARY_HEADER = (
    'Classify the following question-label pairs as either "reasonable" or "unreasonable". '
    'Output either "reasonable" or "unreasonable" and nothing else.\n\n'
)
UNARY_BLOCK = "Question: {text}\nLabel: {label}\nIs the label reasonable: {answer}\n\n"
BINARY_HEADER = (
    "Classify the following question into one of the two following labels. Output either "
    '"a" or "b" depending on which label is better and nothing else.\n\n'
)
BINARY_BLOCK = "Question: {text}\na. {a}\nb. {b}\nCorrect Label: {answer}\n\n"


def _gold_and_other(rng: random.Random, gold: list[str], labels: list[str]):
    gold_pick = rng.choice(gold) if gold else NONE_LABEL
    others = [lab for lab in [*labels, NONE_LABEL] if lab not in gold and lab != gold_pick]
    return gold_pick, rng.choice(others)


def unary_prefix(pool: pd.DataFrame, labels, n_shots: int = 10, seed: int = 0) -> str:
    """Header + demos: half with a gold label (or none) -> reasonable, half a non-gold one."""
    rng = random.Random(seed)
    rows = pool.iloc[rng.sample(range(len(pool)), min(n_shots, len(pool)))]
    blocks = []
    for k, (text, gold) in enumerate(zip(rows["text"], rows["labels"], strict=True)):
        good, bad = _gold_and_other(rng, list(gold), list(labels))
        reasonable = k % 2 == 0
        blocks.append(
            UNARY_BLOCK.format(
                text=text,
                label=good if reasonable else bad,
                answer="reasonable" if reasonable else "unreasonable",
            )
        )
    rng.shuffle(blocks)
    return UNARY_HEADER + "".join(blocks)


def binary_prefix(pool: pd.DataFrame, labels, n_shots: int = 10, seed: int = 0) -> str:
    """Header + demos: gold (or none) vs. a non-gold label, the gold one at a random side."""
    rng = random.Random(seed)
    rows = pool.iloc[rng.sample(range(len(pool)), min(n_shots, len(pool)))]
    blocks = []
    for text, gold in zip(rows["text"], rows["labels"], strict=True):
        good, bad = _gold_and_other(rng, list(gold), list(labels))
        if rng.random() < 0.5:
            blocks.append(BINARY_BLOCK.format(text=text, a=good, b=bad, answer="a"))
        else:
            blocks.append(BINARY_BLOCK.format(text=text, a=bad, b=good, answer="b"))
    return BINARY_HEADER + "".join(blocks)


def unary_query(text: str, label: str) -> str:
    return UNARY_BLOCK.format(text=text, label=label, answer="").rstrip()


def binary_query(text: str, a: str, b: str) -> str:
    return BINARY_BLOCK.format(text=text, a=a, b=b, answer="").rstrip()


def score_next_token(
    model,
    tokenizer,
    prefix: str,
    queries: list[str],
    answers: list[str],
    batch_size: int = 32,
    desc: str = "breakdown",
) -> np.ndarray:
    """(n_queries, n_answers) next-token scores, max over each answer's surface forms.

    ``model``: a backend (engine/backend.py) or a bare transformers model (Hugging Face).
    The scores are logits (Hugging Face) or log-probs (vLLM): the answers' probabilities, a
    softmax over them, are the same either way.
    """
    backend = as_backend(model, tokenizer)
    tokens = answer_tokens(tokenizer, answers)
    prompts = [tokenizer(prefix + q).input_ids for q in queries]
    prefix_tok = tokenizer(prefix).input_ids
    cut = common_prefix_len(prefix_tok, prompts)
    out = backend.next_token_scores(
        prefix_tok[:cut], prompts, list(tokens.form_ids), batch_size=batch_size, desc=desc
    )
    return tokens.reduce(out)


def _p_first(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, 0] / e.sum(axis=1)


def _demo_pool_and_texts(dataset, ids, demo_split: str, pool_ids=None):
    """Demonstration candidates (the shared pool, else the split minus the scored ids) and
    each scored id's text."""
    pool = demo_pool_frame(dataset, demo_split, ids, pool_ids)
    texts = dataset.examples.set_index("id").loc[list(ids), "text"]
    return pool, dict(zip(ids, texts, strict=True))


def score_unary(
    model,
    tokenizer,
    dataset,
    ids,
    demo_split: str = "train",
    n_shots: int = 10,
    seed: int = 0,
    batch_size: int = 32,
    pool_ids=None,
) -> pd.DataFrame:
    """Columns: id, label, p_reasonable, logit_reasonable, logit_unreasonable."""
    pool, by_id = _demo_pool_and_texts(dataset, ids, demo_split, pool_ids)
    prefix = unary_prefix(pool, dataset.labels, n_shots, seed)
    rows = [(i, lab) for i in ids for lab in [*dataset.labels, NONE_LABEL]]
    queries = [unary_query(by_id[i], lab) for i, lab in rows]
    logits = score_next_token(
        model,
        tokenizer,
        prefix,
        queries,
        ["reasonable", "unreasonable"],
        batch_size,
        desc=f"unary {dataset.name}",
    )
    return pd.DataFrame(
        {
            "id": [i for i, _ in rows],
            "label": [lab for _, lab in rows],
            "p_reasonable": _p_first(logits),
            "logit_reasonable": logits[:, 0],
            "logit_unreasonable": logits[:, 1],
        }
    )


def score_binary(
    model,
    tokenizer,
    dataset,
    ids,
    demo_split: str = "train",
    n_shots: int = 10,
    seed: int = 0,
    batch_size: int = 32,
    pool_ids=None,
    reverse: bool = False,
) -> pd.DataFrame:
    """Columns: id, label_a, label_b, p_a, logit_a, logit_b (one order per unordered pair).

    The pairs are asked in label-list order (a before b, as the paper's code did), or with
    ``reverse`` the other way round; the header and demonstrations are the same either way.
    """
    pool, by_id = _demo_pool_and_texts(dataset, ids, demo_split, pool_ids)
    prefix = binary_prefix(pool, dataset.labels, n_shots, seed)
    pairs = list(itertools.combinations([*dataset.labels, NONE_LABEL], 2))
    if reverse:
        pairs = [(b, a) for a, b in pairs]
    rows = [(i, a, b) for i in ids for a, b in pairs]
    queries = [binary_query(by_id[i], a, b) for i, a, b in rows]
    logits = score_next_token(
        model, tokenizer, prefix, queries, ["a", "b"], batch_size, desc=f"binary {dataset.name}"
    )
    return pd.DataFrame(
        {
            "id": [r[0] for r in rows],
            "label_a": [r[1] for r in rows],
            "label_b": [r[2] for r in rows],
            "p_a": _p_first(logits),
            "logit_a": logits[:, 0],
            "logit_b": logits[:, 1],
        }
    )


def score_binary_reversed(*args, **kwargs) -> pd.DataFrame:
    """:func:`score_binary` with every pair asked the other way round."""
    return score_binary(*args, **kwargs, reverse=True)


# breakdown file kind -> scorer (rule score_breakdown's {kind} wildcard)
SCORERS = {
    "unary": score_unary,
    "binary": score_binary,
    "binary_reversed": score_binary_reversed,
}
