"""The trace record: what one generation leaves behind, and how traces are stored.

Every method, analysis and figure is a function of these records, so the format is the
contract between the engine and everything downstream (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import NONE_LABEL
from .io import atomic_path


@dataclass
class LabelStep:
    """A generated step at which a label starts: ``step`` indexes ``Trace.step_logits``."""

    step: int
    label: str


@dataclass
class Trace:
    """One example's generation.

    ``step_logits[s][k]`` is the raw logit at generated step ``s`` of label ``k``
    (``TraceMeta.score_labels`` order: the labels, then ``none``), the max over that label's
    first-token surface forms. ``step_probs`` is the softmax of each row (renormalised over
    the label set + none). ``pred_labels`` is ``None`` when the output could not be parsed.
    """

    id: str
    text_out: str
    pred_labels: list[str] | None
    label_steps: list[LabelStep]
    step_logits: list[list[float]]
    step_probs: list[list[float]]
    form_logits: list[list[float]] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def parse_ok(self) -> bool:
        return self.pred_labels is not None

    def label_step_probs(self) -> np.ndarray:
        """Probabilities (n_label_steps x (L+1)) at the steps where a label starts."""
        if not self.label_steps:
            return np.zeros((0, len(self.step_probs[0]) if self.step_probs else 0))
        return np.asarray([self.step_probs[s.step] for s in self.label_steps], dtype=float)

    def label_step_logits(self) -> np.ndarray:
        if not self.label_steps:
            return np.zeros((0, len(self.step_logits[0]) if self.step_logits else 0))
        return np.asarray([self.step_logits[s.step] for s in self.label_steps], dtype=float)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> Trace:
        record = dict(record)
        record["label_steps"] = [LabelStep(**s) for s in record.get("label_steps", [])]
        return cls(**record)


@dataclass
class TraceMeta:
    """What a trace file's numbers mean: label order, token forms, model and prompt."""

    labels: list[str]
    model: str = ""
    prompt: str = ""
    forms: list[dict] = field(default_factory=list)  # {"label", "token_id", "text"} per form
    shared_first_tokens: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def score_labels(self) -> list[str]:
        return [*self.labels, NONE_LABEL]

    def to_dict(self) -> dict:
        return asdict(self)


def write_traces(path: str | os.PathLike, meta: TraceMeta, traces) -> None:
    """Gzipped JSON Lines: first line ``{"meta": ...}``, then one trace per line. Atomic."""
    with atomic_path(path) as tmp:
        with gzip.open(tmp, "wt", encoding="utf-8") as handle:
            handle.write(json.dumps({"meta": meta.to_dict()}) + "\n")
            for trace in traces:
                handle.write(json.dumps(trace.to_dict()) + "\n")


def read_traces(path: str | os.PathLike) -> tuple[TraceMeta, list[Trace]]:
    path = Path(path)
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        first = handle.readline()
        if not first:
            raise ValueError(f"{path}: empty trace file (expected a meta line first)")
        meta = TraceMeta(**json.loads(first)["meta"])
        traces = [Trace.from_dict(json.loads(line)) for line in handle if line.strip()]
    return meta, traces
