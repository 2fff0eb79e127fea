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

from multilabel_llm import NONE_LABEL
from multilabel_llm.core.io import atomic_path, read_json, write_json


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


TRACES_SUFFIX = ".jsonl.gz"
META_SUFFIX = ".meta.json"


def traces_meta_path(path: str | os.PathLike) -> Path:
    """The meta sidecar of a trace file: ``traces.jsonl.gz`` -> ``traces.meta.json`` (same dir)."""
    path = Path(path)
    stem = path.name[: -len(TRACES_SUFFIX)] if path.name.endswith(TRACES_SUFFIX) else path.name
    return path.with_name(stem + META_SUFFIX)


def write_traces(path: str | os.PathLike, meta: TraceMeta, traces) -> None:
    """Gzipped JSON Lines, one trace per line, and the meta in :func:`traces_meta_path`.

    Both atomic; the sidecar goes first, so a trace file (whose existence marks a finished
    shard) never lacks its meta. ``pandas.read_json(path, lines=True)`` gives one row per trace.
    """
    write_json(traces_meta_path(path), meta.to_dict())
    with atomic_path(path) as tmp:
        with gzip.open(tmp, "wt", encoding="utf-8") as handle:
            for trace in traces:
                handle.write(json.dumps(trace.to_dict()) + "\n")


def _old_meta(line: str) -> dict | None:
    """The meta of a file in the old format (first line ``{"meta": ...}``), else None."""
    record = json.loads(line)
    return record["meta"] if set(record) == {"meta"} else None


def read_traces(path: str | os.PathLike) -> tuple[TraceMeta, list[Trace]]:
    """Meta and traces of a trace file: its sidecar, or (old files) a first ``{"meta"}`` line."""
    path = Path(path)
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        first = handle.readline()
        meta = _old_meta(first) if first.strip() else None
        traces = [] if meta is not None or not first.strip() else [_trace(first)]
        traces += [_trace(line) for line in handle if line.strip()]
    if meta is None:
        sidecar = traces_meta_path(path)
        if not sidecar.is_file():
            raise ValueError(
                f"{path}: its meta sidecar {sidecar} is missing (a trace file is written "
                "together with it: copy both, or rerun the step that wrote the traces)"
            )
        meta = read_json(sidecar)
    return TraceMeta(**meta), traces


def _trace(line: str) -> Trace:
    return Trace.from_dict(json.loads(line))
