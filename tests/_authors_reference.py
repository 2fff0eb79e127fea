"""A slow reference of the authors' three token-level estimators (Praharaj & Kasundra 2025),
written from their definition (issue 25, docs/metrics.md), not from their code nor from
``multilabel_llm.engine.hf.marginalization``: plain recursion, a full forward of prompt + path for every
node (no KV cache), Python lists throughout. ``probs(path)`` gives the next-token
distribution (a list of floats, full vocabulary) after the prompt and ``path``."""

from __future__ import annotations


def top_p_children(probs, top_p):
    """Token ids and probabilities of the smallest most-likely-first set holding ``top_p``
    (ties: lower id first)."""
    order = sorted(range(len(probs)), key=lambda t: (-probs[t], t))
    kept, total = [], 0.0
    for t in order:
        kept.append((t, probs[t]))
        total += probs[t]
        if total >= top_p - 1e-12:
            break
    return kept


def label_continued(label, labels):
    return any(other != label and other.startswith(label) for other in labels)


def ended(before, after):
    rest = after[len(before) :] if after.startswith(before) else after
    return rest == "" or not rest[0].isalnum()


def walk(probs, decode, eos, labels, max_new_tokens, estimator, suffix_credit=True):
    """Estimators 1 (``token_probability``) and 2 (``fixed_place``): greedy decoding to EOS
    or ``max_new_tokens``; each step whose text ends with a label credits it (a repeat
    overwrites); estimator 2 multiplies the probabilities of every crediting step so far."""
    path, step_p, texts = [], [], []
    while len(path) < max_new_tokens:
        dist = probs(path)
        best = max(range(len(dist)), key=lambda t: (dist[t], -t))
        if best in eos:
            break
        path = path + [best]
        step_p.append(dist[best])
        texts.append(decode(path))
    values = {lab: 0.0 for lab in labels}
    product = 1.0
    for i, text in enumerate(texts):
        after = texts[i + 1] if i + 1 < len(texts) else texts[-1]
        hit = []
        for lab in labels:
            if not text.endswith(lab):
                continue
            if suffix_credit or not label_continued(lab, labels) or ended(text, after):
                hit.append(lab)
        if hit:
            product = product * step_p[i]
            for lab in hit:
                values[lab] = step_p[i] if estimator == "token_probability" else product
    return [values[lab] for lab in labels]


def dfs(
    probs,
    decode,
    eos,
    labels,
    top_p,
    eps,
    max_new_tokens,
    suffix_credit=True,
    eos_stop_p=0.7,
    eos_check=3,
    eos_expand=2,
):
    """Estimator 3: depth-first over the top-p children; a node lighter than ``eps`` is
    pruned before expansion; a checked child whose text ends with a label credits it path
    probability x token probability; EOS rules as documented; no normalisation."""
    values = {lab: 0.0 for lab in labels}

    def node(path, mass, text, waiting):
        if mass < eps or len(path) >= max_new_tokens:
            for lab in waiting:
                values[lab] += mass
            return
        kids = top_p_children(probs(path), top_p)
        texts = [None if t in eos else decode(path + [t]) for t, _ in kids]
        for lab in waiting:
            for (_t, p), kid_text in zip(kids, texts, strict=True):
                if kid_text is None or ended(text, kid_text):
                    values[lab] += mass * p
        has_eos = any(x is None for x in texts)
        check = min(eos_check, len(kids)) if has_eos else len(kids)
        expand = eos_expand if has_eos else len(kids)
        for rank in range(check):
            t, p = kids[rank]
            if texts[rank] is None:
                if p >= eos_stop_p:
                    break
                continue
            later = []
            for lab in labels:
                if texts[rank].endswith(lab):
                    if suffix_credit or not label_continued(lab, labels):
                        values[lab] += mass * p
                    else:
                        later.append(lab)
            if rank < expand:
                node(path + [t], mass * p, texts[rank], later)
            else:
                for lab in later:
                    values[lab] += mass * p

    node([], 1.0, "", [])
    return [values[lab] for lab in labels]
