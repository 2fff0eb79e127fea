"""What every backend's decoding becomes: the stop rule, the raw trace and its parsing.

A backend decodes greedily and leaves a :class:`RawTrace` per prompt (generated token ids and
the label forms' scores at every step); :func:`finalize` decodes, parses and turns it into a
:class:`~multilabel_llm.core.traces.Trace`, the same for every engine. :class:`StopRule` is
shared by every decoding path so they stop identically. The Hugging Face decoding itself is
engine/hf/tracer.py.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from multilabel_llm import NONE_LABEL
from multilabel_llm.core.traces import LabelStep, Trace
from multilabel_llm.data.prompts import (
    fallback_labels,
    llama_guard_done,
    parse_output,
)
from multilabel_llm.engine.label_tokens import LabelTokens


class StopRule:
    """Stop at the end of the label list (JSON: the closing brace; comma: the end of the
    line), at a stop string, or at EOS. Shared by both paths so they stop identically."""

    def __init__(self, tokenizer, label_format: str, stop: list[str] | None = None):
        self.tokenizer = tokenizer
        self.label_format = label_format
        self.stop = [s for s in (stop or []) if s]
        eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}

    def text_done(self, text: str) -> bool:
        if any(s in text for s in self.stop):
            return True
        if self.label_format == "llama_guard":  # "safe" / "unsafe\nS1,S3" (prompts.py)
            return llama_guard_done(text)
        if self.label_format == "json":
            start = text.find("{")
            return start >= 0 and "}" in text[start:]
        body = text.lstrip()
        return bool(body) and "\n" in body

    def done(self, gen_ids: list[int]) -> bool:
        if gen_ids and gen_ids[-1] in self.eos_ids:
            return True
        return self.text_done(self.tokenizer.decode(gen_ids, skip_special_tokens=True))

    def truncate(self, text: str) -> str:
        cut = len(text)
        for s in self.stop:
            pos = text.find(s)
            if 0 <= pos < cut:
                cut = pos
        return text[:cut]


@dataclass
class RawTrace:
    """What decoding leaves before parsing: token ids, form logits per step, hidden states."""

    gen_ids: list[int]
    form_logits: np.ndarray  # (steps, n_forms) float32
    hidden: np.ndarray | None = None  # (steps, d): last-layer state that predicted each step
    extra: dict = field(default_factory=dict)
    # (steps,) log-probability of each generated token under the full vocabulary softmax
    # (the token-probability estimators need it; None from callers that do not record it)
    gen_logprobs: np.ndarray | None = None


def common_prefix_len(prefix_ids: list[int], prompts: list[list[int]]) -> int:
    """Longest run of ``prefix_ids`` every prompt starts with, leaving >= 1 suffix token.

    Tokenising prefix and query separately can merge differently at the seam, so the cut is
    where every whole-prompt tokenisation still agrees with the prefix tokens.
    """
    cut = len(prefix_ids)
    for ids in prompts:
        n = 0
        limit = min(cut, len(ids) - 1)
        while n < limit and ids[n] == prefix_ids[n]:
            n += 1
        cut = n
    return cut


def _token_starts(tokenizer, gen_ids: list[int]) -> list[int]:
    """Character offset in the decoded text where each generated token starts."""
    starts, prev = [], ""
    for k in range(len(gen_ids)):
        starts.append(len(prev))
        prev = tokenizer.decode(gen_ids[: k + 1], skip_special_tokens=True)
    return starts


def _step_at(starts: list[int], char: int) -> int:
    """The generated step whose token contains character ``char`` of the decoded text."""
    return max((k for k, s in enumerate(starts) if s <= char), default=0)


def fallback_spans(text: str, labels: list[str]) -> list[tuple[str, int]]:
    """(label, character offset of its first whole-word match) for every label of
    ``prompts.fallback_labels(text, labels)``, in text order (ties: label order)."""
    low = text.lower()
    spans = []
    for label in fallback_labels(text, labels):
        pattern = rf"\b{re.escape(label.lower())}\b"
        # offsets into the text itself: lower() can change a string's length ("İ" -> 2 chars),
        # so the lowered text (where fallback_labels matched) is only the last resort
        match = re.search(pattern, text, re.IGNORECASE) or re.search(pattern, low)
        spans.append((label, match.start()))
    return sorted(spans, key=lambda span: span[1])


def label_end_char(text: str, label: str, char: int, label_format: str) -> int:
    """Offset of the last character of the list item naming ``label`` that starts at ``char``.

    The item is the label's own length when the text spells it there (any case); otherwise
    (a JSON escape such as ``\\u00e9`` spells it longer) it runs to the closing quote (JSON)
    or to the next comma or line end (comma lists)."""
    if text[char : char + len(label)].lower() == label.lower():
        return char + len(label) - 1
    closers = '"' if label_format == "json" else ",\n"
    end = char
    while end < len(text) and text[end] not in closers:
        end += 1
    return max(char, end - 1)


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _round(rows: np.ndarray, digits: int = 7) -> list[list[float]]:
    return [[float(f"{x:.{digits}g}") for x in row] for row in np.asarray(rows, dtype=np.float64)]


def finalize(
    example_id: str,
    raw: RawTrace,
    tokenizer,
    label_tokens: LabelTokens,
    labels: list[str],
    label_format: str,
    stop_rule: StopRule,
    keep_forms: bool = True,
) -> Trace:
    """Decode, parse and attach per-step label logits/probs and label start steps."""
    text = tokenizer.decode(raw.gen_ids, skip_special_tokens=True)
    text_out = stop_rule.truncate(text)
    parsed = parse_output(text_out, labels, label_format)
    step_logits = label_tokens.reduce(raw.form_logits)
    step_probs = softmax_rows(step_logits) if len(step_logits) else step_logits
    starts = _token_starts(tokenizer, raw.gen_ids)
    label_steps: list[LabelStep] = []
    ends: list[int] = []  # parallel to label_steps: the step whose token completes the label
    extra: dict = {"gen_ids": [int(t) for t in raw.gen_ids]}
    extra.update(raw.extra)  # e.g. hit_max_new_tokens
    if raw.gen_logprobs is not None:
        extra["gen_probs"] = [float(f"{p:.7g}") for p in np.exp(raw.gen_logprobs)]
    if parsed.truncated:
        extra["truncated"] = True  # list cut off: read up to the cut (prompts.parse_output)
    if parsed.labels is not None:
        for label, char in parsed.spans:
            label_steps.append(LabelStep(step=_step_at(starts, char), label=label))
            ends.append(_step_at(starts, label_end_char(text_out, label, char, label_format)))
        if parsed.unknown:
            extra["unknown_labels"] = parsed.unknown
        extra["step_forms"] = step_forms(raw.gen_ids, label_steps, label_tokens, tokenizer)
    else:
        # Unparseable: each label the text names as a whole word starts at the step of the
        # token holding its first whole-word match (not at the first appearance of its first
        # token, which can be a fragment inside another word: the "ad" of "sadness").
        extra["unparseable"] = True
        extra["fallback_labels"] = fallback_labels(text_out, labels)
        score_labels = list(dict.fromkeys([*labels, NONE_LABEL]))
        for label, char in fallback_spans(text_out, score_labels):
            label_steps.append(LabelStep(step=_step_at(starts, char), label=label))
            ends.append(_step_at(starts, char + len(label) - 1))
    # which generated step completes each label (the token-probability estimators read it)
    extra["label_ends"] = [
        {"label": ls.label, "start": ls.step, "end": max(end, ls.step)}
        for ls, end in zip(label_steps, ends, strict=True)
    ]
    return Trace(
        id=str(example_id),
        text_out=text_out,
        pred_labels=parsed.labels,
        label_steps=label_steps,
        step_logits=_round(step_logits),
        step_probs=_round(step_probs),
        form_logits=_round(raw.form_logits) if keep_forms else None,
        extra=extra,
    )


def step_forms(gen_ids, label_steps, label_tokens: LabelTokens, tokenizer) -> list[dict]:
    """Which token each label step emitted, one entry per ``label_steps`` entry: its text,
    its ``lead`` (the '"' of a merged '"s', " " of " joy", "" of "s"), and whether it is one
    of the label's detected forms (``form``: false means the step's probabilities did not
    score the token the model actually wrote for that label)."""
    out = []
    for ls in label_steps:
        tid = int(gen_ids[ls.step]) if ls.step < len(gen_ids) else None
        form = label_tokens.form_of(tid, ls.label) if tid is not None else None
        out.append(
            {
                "token": tokenizer.decode([tid]) if tid is not None else "",
                "lead": form.get("lead", "") if form else None,
                "form": form is not None,
            }
        )
    return out


def first_label_hidden(trace: Trace, raw: RawTrace) -> np.ndarray | None:
    """The last-layer state that predicted the first label token (probe features)."""
    if raw.hidden is None or not len(raw.hidden):
        return None
    steps = [s.step for s in trace.label_steps if s.label != NONE_LABEL] or [
        s.step for s in trace.label_steps
    ]
    return raw.hidden[steps[0] if steps else 0]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
