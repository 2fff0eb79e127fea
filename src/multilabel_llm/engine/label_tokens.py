"""Which token starts each label, in context, over its surface forms (paper §3, §A.1).

A label's score at a generation step is the max logit over the first tokens of its surface
forms ("joy", "Joy", " joy", after a quote, ...). Each form's first token is found *in
context*: the label is placed in a real answer string (first and later list positions, JSON
and comma formats), the whole string is tokenised, and the token covering the label's first
character is taken. That token may be a fragment ("f" for fear) or carry the preceding space
(" joy"), which standalone encoding would get wrong.

Two labels can share a first token ("s" for sadness and "S" for Surprise). Rules:
  * a token that is the *primary* form (the one the run's own format produces) of exactly one
    label stays with that label and is dropped from the others;
  * a token that is primary for several labels is kept for all of them (nothing better exists)
    and reported as a collision;
  * a token that is only a secondary form of several labels is dropped from all of them.
Every shared token is reported in ``shared`` (stored in the trace meta).

Each form also records its ``lead``: the text the token carries before the label's first
character ('"' for Llama 3's and Qwen's merged '"f' of fear, " " for " joy", "" for "f").
A lead that is itself one token (the bare '"', " ") is an *opener*: the model can also emit
it alone and start the label one step later. ``label_scoring: lookahead`` (engine/hf/tracer.py)
scores those two-step paths; docs/label_tokens.md explains why that matters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from multilabel_llm import NONE_LABEL
from multilabel_llm.data.prompts import format_labels

log = logging.getLogger(__name__)


def _covering(tokenizer, text: str, char: int) -> tuple[int, str]:
    """(id, lead) of the token whose span covers character ``char`` of ``text``; ``lead`` is
    the part of the token before ``char``."""
    if not 0 <= char < len(text):
        raise ValueError(f"character {char} is outside {text!r} (a label missing from its text?)")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    for tid, (start, end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        if start <= char < end:
            return int(tid), text[start:char]
    raise ValueError(f"no token covers character {char} of {text!r}")


def _covering_token(tokenizer, text: str, char: int) -> int:
    """Id of the token whose span covers character ``char`` of ``text``."""
    return _covering(tokenizer, text, char)[0]


def surface_variants(label: str, capitalised: bool = True) -> list[str]:
    out = [label]
    if capitalised:
        for v in (label.capitalize(), label.lower(), label.title()):
            if v not in out:
                out.append(v)
    return out


def _contexts(variant: str, other: str, leading_space: bool) -> list[tuple[str, int]]:
    """(string, char where ``variant`` starts) for the answer shapes a model may produce."""
    shapes = []
    for fmt in ("json", "comma"):
        for labels in ([variant], [other, variant]):
            ans = format_labels(labels, fmt)
            pos = ans.rfind(variant)
            shapes.append(("\n" + ans, 1 + pos))
    shapes.append(('"' + variant, 1))  # after a bare quote
    shapes.append(("\n" + variant, 1))  # alone on a line
    if leading_space:
        shapes.append((": " + variant, 2))  # "Answer: joy" / "Label: joy"
        shapes.append((" " + variant, 1))
    return shapes


@dataclass
class LabelTokens:
    """First-token forms of every score label (labels + none) and how to reduce them."""

    labels: list[str]  # score labels: the dataset labels then none
    forms: list[dict]  # {"label", "token_id", "text", "primary", "lead"} per (label, token)
    shared: list[dict] = field(default_factory=list)
    openers: list[dict] = field(default_factory=list)  # {"token_id", "text"}: bare leads

    @property
    def opener_ids(self) -> list[int]:
        return [o["token_id"] for o in self.openers]

    @property
    def leadless(self) -> np.ndarray:
        """Mask of the forms that start right at the label (what may follow an opener)."""
        return np.asarray([not f.get("lead") for f in self.forms], dtype=bool)

    def form_of(self, token_id: int, label: str) -> dict | None:
        """``label``'s form with this token id, if it is one."""
        for f in self.forms:
            if f["token_id"] == token_id and f["label"] == label:
                return f
        return None

    @property
    def form_ids(self) -> list[int]:
        return [f["token_id"] for f in self.forms]

    @property
    def form_label_index(self) -> np.ndarray:
        idx = {lab: i for i, lab in enumerate(self.labels)}
        return np.asarray([idx[f["label"]] for f in self.forms], dtype=np.int64)

    def primary_ids(self) -> dict[str, int]:
        return {f["label"]: f["token_id"] for f in self.forms if f["primary"]}

    def reduce(self, form_logits: np.ndarray) -> np.ndarray:
        """(..., n_forms) -> (..., n_labels): max over each label's forms."""
        form_logits = np.asarray(form_logits, dtype=np.float64)
        out = np.full((*form_logits.shape[:-1], len(self.labels)), -np.inf)
        for j, li in enumerate(self.form_label_index):
            out[..., li] = np.maximum(out[..., li], form_logits[..., j])
        return out

    def meta_forms(self) -> list[dict]:
        return [dict(f) for f in self.forms]


def detect_label_tokens(
    tokenizer,
    labels,
    label_format: str = "json",
    lead: str = "\n",
    capitalised: bool = True,
    leading_space: bool = True,
    extra_contexts: list[tuple[str, str]] | None = None,
) -> LabelTokens:
    """Find each label's (and none's) first-token forms.

    ``lead`` is what precedes the answer right after the prompt (e.g. "\\n" or " "), used for
    the primary form. ``extra_contexts`` are (text before, text after) pairs placed around
    each variant, e.g. the real completion of the run.
    """
    score_labels = [*labels, NONE_LABEL]
    found: dict[str, dict[int, bool]] = {}
    leads: dict[int, str] = {}
    for k, label in enumerate(score_labels):
        other = score_labels[(k + 1) % len(score_labels)]
        primary_text = lead + format_labels([label], label_format)
        primary, primary_lead = _covering(tokenizer, primary_text, primary_text.rfind(label))
        leads.setdefault(primary, primary_lead)
        ids = {primary: True}
        for variant in surface_variants(label, capitalised):
            shapes = _contexts(variant, other, leading_space)
            for before, after in extra_contexts or []:
                shapes.append((before + variant + after, len(before)))
            for text, char in shapes:
                tid, form_lead = _covering(tokenizer, text, char)
                ids.setdefault(tid, False)
                leads.setdefault(tid, form_lead)
        found[label] = ids
    owners: dict[int, list[str]] = {}
    for label, ids in found.items():
        for tid in ids:
            owners.setdefault(tid, []).append(label)
    shared, drop = [], set()
    for tid, labs in owners.items():
        if len(labs) < 2:
            continue
        prim = [lab for lab in labs if found[lab][tid]]
        if len(prim) == 1:
            keep, resolution = prim, f"kept for {prim[0]} (its primary form)"
        elif len(prim) > 1:
            keep, resolution = prim, "collision: primary form of several labels; kept for all"
        else:
            keep, resolution = [], "dropped: secondary form of several labels"
        drop.update((lab, tid) for lab in labs if lab not in keep)
        entry = {
            "token_id": tid,
            "text": tokenizer.convert_ids_to_tokens(tid),
            "decoded": tokenizer.decode([tid]),
            "labels": labs,
            "kept_for": keep,
            "resolution": resolution,
        }
        shared.append(entry)
        level = logging.WARNING if len(prim) > 1 else logging.INFO
        log.log(level, "labels %s share first token %r: %s", labs, entry["decoded"], resolution)
    forms = []
    for label in score_labels:
        for tid, is_primary in found[label].items():
            if (label, tid) in drop:
                continue
            forms.append(
                {
                    "label": label,
                    "token_id": tid,
                    "text": tokenizer.decode([tid]),
                    "primary": bool(is_primary),
                    "lead": leads[tid],
                }
            )
    missing = [lab for lab in score_labels if not any(f["label"] == lab for f in forms)]
    if missing:  # cannot happen by construction (primary forms are never all dropped)
        raise ValueError(f"labels {missing} lost every first-token form")
    return LabelTokens(score_labels, forms, shared, _openers(tokenizer, forms))


def _openers(tokenizer, forms: list[dict]) -> list[dict]:
    """The forms' leads that are one token on their own ('"', " "), in first-seen order."""
    out, seen = [], set()
    for lead in (f["lead"] for f in forms):
        if not lead or lead in seen:
            continue
        seen.add(lead)
        ids = tokenizer(lead, add_special_tokens=False).input_ids
        if len(ids) == 1 and tokenizer.decode(ids) == lead:
            out.append({"token_id": int(ids[0]), "text": lead})
    return out


def answer_tokens(tokenizer, answers, lead: str = " ") -> LabelTokens:
    """Forms of breakdown answers ("reasonable"/"unreasonable", "a"/"b"): bare and spaced."""
    score = list(answers)
    forms, owners = [], {}
    for ans in score:
        ids = []
        for text, char in ((lead + ans, len(lead)), (ans, 0), (" " + ans, 1), ("\n" + ans, 1)):
            tid = _covering_token(tokenizer, text, char)
            if tid not in ids:
                ids.append(tid)
        for i, tid in enumerate(ids):
            owners.setdefault(tid, []).append(ans)
            forms.append(
                {"label": ans, "token_id": tid, "text": tokenizer.decode([tid]), "primary": i == 0}
            )
    clash = {tid: labs for tid, labs in owners.items() if len(labs) > 1}
    if clash:
        raise ValueError(f"breakdown answers {score} share first tokens {clash}")
    return LabelTokens(score, forms, [])
