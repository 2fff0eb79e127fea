"""The one declaration of every distribution-method kind (``kind:`` of config/method/*.yaml).

An entry says which rule writes a method's ``{method}.parquet`` (its producer), which inputs
that rule reads for it, which function computes it (``module:function``, imported only when
run), which ``params`` it accepts (JSON-schema fragments, with the defaults the code uses) and
what it is, in one line. Everything else derives from here: the estimators' dispatch
(:func:`multilabel_llm.methods.estimators.estimate`), the studies' producers
(:mod:`multilabel_llm.workflow.studies`), the DAG's inputs (:func:`method_inputs`), the kind enum
and per-kind params of workflow/schemas/method.schema.yaml and the table of kinds in
docs/metrics.md. The last two are generated blocks::

    python -m multilabel_llm.methods.registry --write   # after editing an entry

and tests/methods/test_registry.py checks they are current. Standard library only: the
studies and the DAG read it at every job start without importing pandas or torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The probability floor of hard_predictions / max_over_generations when a method's params give
# no ``epsilon`` (config/method/*.yaml always pass ``${probability_floor}``). A separate knob
# from the NLL clip (``metrics.NLL_CLIP``, config ``alignment.nll_clip``).
PROBABILITY_FLOOR = 1e-8

# What an input name means (the keys of the DAG's input dict for the kind's producer rule)
INPUTS = {
    "traces": "the run's traces (traces.jsonl.gz of the method's traces_from model)",
    "examples": "the canonical examples table (the human distribution)",
    "calibration_ids": "the ids of the held-out test set params.calibration_testset",
    "calibration_traces": "the traces of that held-out test set",
    "unary": "unary breakdown scores (breakdown/.../unary.parquet)",
    "binary": "binary breakdown scores (breakdown/.../binary.parquet)",
    "binary_reversed": "the same pairs asked the other way round (params.orders: both)",
    "model": "the model itself (the inputs of rule extract_traces)",
    "probes": "linear probes trained on hidden states (rules/probes.smk)",
    "hidden": "the test set's first-label hidden states (hidden.npz)",
    "demux_distribution": "the Demux encoder's distribution of the test set (rules/demux.smk)",
}

_TRACES_FROM = {
    "type": "string",
    "pattern": "^[^/]*\\{model\\}[^/]*$|^[^/{}]+$",
    "description": 'model slot whose traces to read; "{model}" is the row\'s model',
}
_OPTIMIZER = {"enum": ["adam", "lbfgs"]}


@dataclass(frozen=True)
class MethodKind:
    """One method kind. ``inputs``: names of :data:`INPUTS` its producer rule reads beyond the
    dataset meta and test-set ids; ``inputs_when``: ``(input, param, value)`` read only when
    ``params[param] == value``; ``params``: param name -> JSON-schema fragment (``default``:
    the value the code uses when the param is absent); ``params_rule``: an extra
    ``if``/``then`` over the params; ``function``: ``module:function`` computing it (for the
    producers ``estimate`` and ``estimate_binary`` called by ``estimators.estimate`` as
    ``function(kind, params, ids, labels, multilabel, inputs, source)``)."""

    producer: str
    inputs: tuple[str, ...]
    function: str
    params: dict[str, dict]
    description: str
    inputs_when: tuple[tuple[str, str, object], ...] = ()
    params_rule: dict = field(default_factory=dict)
    params_note: str = ""
    # how far a single-label row's sum may be from 1 (estimators.estimate checks it)
    row_sum_tolerance: float = 1e-6


METHOD_KINDS: dict[str, MethodKind] = {
    "compare_to_none": MethodKind(
        producer="estimate",
        inputs=("traces",),
        function="multilabel_llm.methods.estimators:estimate_compare_to_none",
        params={"traces_from": {"type": "string"}},
        description="sigmoid(logit_l - logit_none) at the first label step (§5.2.1)",
    ),
    "compare_to_none_platt": MethodKind(
        producer="estimate",
        inputs=("traces", "examples", "calibration_ids", "calibration_traces"),
        function="multilabel_llm.methods.estimators:estimate_compare_to_none_platt",
        params={
            "calibration_testset": {"type": "string", "minLength": 1},
            "optimizer": _OPTIMIZER,
            "lr": {"type": "number", "exclusiveMinimum": 0},
            "epochs": {"type": "integer", "minimum": 1},
            "traces_from": {"type": "string"},
        },
        params_rule={"required": ["calibration_testset"]},
        description="compare_to_none with Platt scaling fitted on a held-out test set",
    ),
    "hard_predictions": MethodKind(
        producer="estimate",
        inputs=("traces",),
        function="multilabel_llm.methods.estimators:estimate_hard_predictions",
        params={
            "epsilon": {
                "type": "number",
                "exclusiveMinimum": 0,
                "exclusiveMaximum": 0.5,
                "default": PROBABILITY_FLOOR,
            },
            "traces_from": _TRACES_FROM,
        },
        description="1 - eps for generated labels, eps otherwise (§5.2.1)",
        # an unparseable single-label output deliberately predicts nothing (a row of eps)
        row_sum_tolerance=1.0,
    ),
    "max_over_generations": MethodKind(
        producer="estimate",
        inputs=("traces",),
        function="multilabel_llm.methods.estimators:estimate_max_over_generations",
        params={
            "epsilon": {
                "type": "number",
                "exclusiveMinimum": 0,
                "exclusiveMaximum": 0.5,
                "default": PROBABILITY_FLOOR,
            },
            "traces_from": _TRACES_FROM,
        },
        description="a label's max probability over every counted label step (§5.2.2)",
    ),
    **{
        kind: MethodKind(
            producer="estimate",
            inputs=("traces",),
            function="multilabel_llm.methods.token_level:estimate_token_level",
            params={
                "definition": {
                    "const": "ours",
                    "default": "ours",
                    "description": (
                        "estimators 1 and 2 read off the traces; the authors' definition needs "
                        "the model (kind marginalization, definition authors: "
                        "token_probability_authors, marginal_fixed_place_authors)"
                    ),
                },
                "epsilon": {
                    "type": "number",
                    "minimum": 0,
                    "exclusiveMaximum": 0.5,
                    "default": 0.0,
                    "description": "value of labels the output does not name (the paper uses 0)",
                },
                "traces_from": _TRACES_FROM,
            },
            description=description,
        )
        for kind, description in (
            (
                "token_probability",
                "full-vocabulary probability of the greedy token that completes a label "
                "(Praharaj & Kasundra 2025, estimator 1; 0 when not generated)",
            ),
            (
                "marginal_fixed_place",
                "product of those probabilities over the labels named up to and including "
                "this one, in output order (estimator 2)",
            ),
        )
    },
    "unary": MethodKind(
        producer="estimate",
        inputs=("unary",),
        function="multilabel_llm.methods.breakdown:estimate_unary",
        params={"single_label_norm": {"enum": ["sum", "softmax"], "default": "sum"}},
        description='P("reasonable") per label (§5.2.2)',
    ),
    "binary": MethodKind(
        producer="estimate_binary",
        inputs=("binary",),
        inputs_when=(("binary_reversed", "orders", "both"),),
        function="multilabel_llm.methods.breakdown:estimate_binary_frame",
        params={
            "outcomes": {"type": "boolean", "default": False},
            "seed": {"type": "integer"},
            "lr": {"type": "number", "exclusiveMinimum": 0},
            "max_iter": {"type": "integer", "minimum": 1},
            "l2": {"type": "number", "minimum": 0},
            "patience": {"type": "integer", "minimum": 1},
            "tol": {"type": "number", "minimum": 0},
            "optimizer": _OPTIMIZER,
            "orders": {
                "enum": ["one", "both"],
                "default": "one",
                "description": "ask each pair once in label order (the paper) or both ways",
            },
            "combine": {
                "enum": ["average", "position_term"],
                "default": "average",
                "description": "with orders both, average the two orders or fit a position term",
            },
        },
        description=(
            "Bradley–Terry over pairwise preferences, vs. none (§5.2.2, §C); orders: both asks "
            "each pair both ways to cancel the answer-position preference"
        ),
    ),
    "constant": MethodKind(
        producer="estimate",
        inputs=(),
        function="multilabel_llm.methods.estimators:estimate_constant",
        params={"value": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.1}},
        description="every label gets the same value (the degenerate baseline of §A.6)",
    ),
    "marginalization": MethodKind(
        producer="marginalize",
        inputs=("model",),
        function="multilabel_llm.engine.run:marginalize",
        params={
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "top_k": {"type": ["integer", "null"], "minimum": 1},
            "max_paths": {"type": "integer", "minimum": 1},
            "max_expansions": {"type": ["integer", "null"], "minimum": 1},
            "max_new_tokens": {"type": "integer", "minimum": 1},
            "min_path_mass": {"type": "number", "minimum": 0},
            "estimate": {"enum": ["normalized", "lower", "upper"]},
            "strategy": {"enum": ["rollout", "best_first"]},
            "definition": {
                "enum": ["ours", "authors"],
                "description": "ours, or the second paper's code reproduced (docs/metrics.md)",
            },
            "estimator": {
                "enum": ["any_place", "token_probability", "fixed_place"],
                "description": (
                    "authors only: their DFS (any_place) or their greedy walk (estimators 1, 2)"
                ),
            },
            "keep_greedy": {
                "type": ["boolean", "null"],
                "description": (
                    "ours: the greedy path is completed whatever the cuts (null: ours on, "
                    "authors off)"
                ),
            },
            "suffix_credit": {
                "type": ["boolean", "null"],
                "description": (
                    "authors: credit a label wherever the text ends with it (S1 inside S10; "
                    "null: on for authors)"
                ),
            },
            "eos_stop_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "eos_check": {"type": "integer", "minimum": 1},
            "eos_expand": {"type": "integer", "minimum": 0},
            "shard_size": {
                "type": "integer",
                "minimum": 1,
                "description": "examples per resumable shard",
            },
        },
        params_rule={
            "if": {"required": ["definition"], "properties": {"definition": {"const": "authors"}}},
            "then": {
                "required": ["estimate"],
                "properties": {
                    "estimate": {
                        "const": "lower",
                        "description": (
                            "the authors do not normalise: definition authors needs estimate lower"
                        ),
                    }
                },
            },
        },
        description="P(label in the generated list) by a bounded path search over the model",
    ),
    "probes": MethodKind(
        producer="probes",
        inputs=("probes", "hidden"),
        function="multilabel_llm.supervised.probes:probe_distribution",
        params={},
        params_note="set by config/training (training.probes / training.demux), not here",
        description="linear probes on the first-label hidden states (§5.2.3)",
    ),
    "demux": MethodKind(
        producer="demux",
        inputs=("demux_distribution",),
        function="multilabel_llm.supervised.demux:demux_distribution",
        params={},
        params_note="set by config/training (training.probes / training.demux), not here",
        description="the Demux encoder, trained once per dataset (§5.2.3)",
    ),
}

# Rule -> the kinds whose distribution file it writes, in registry order
DISTRIBUTION_PRODUCERS: dict[str, tuple[str, ...]] = {}
for _kind, _entry in METHOD_KINDS.items():
    DISTRIBUTION_PRODUCERS[_entry.producer] = (
        *DISTRIBUTION_PRODUCERS.get(_entry.producer, ()),
        _kind,
    )
PRODUCER_OF_KIND = {kind: entry.producer for kind, entry in METHOD_KINDS.items()}
# kinds that multilabel_llm.methods.estimators.estimate runs (rules estimate, estimate_binary)
ESTIMATED_KINDS = tuple(
    k for k, e in METHOD_KINDS.items() if e.producer in ("estimate", "estimate_binary")
)
# method kinds that read a run's traces (the DAG asks for them; the explorer shows them)
TRACE_METHOD_KINDS = tuple(k for k, e in METHOD_KINDS.items() if "traces" in e.inputs)
# method kinds that read breakdown scores (rule score_breakdown)
BREAKDOWN_METHOD_KINDS = tuple(
    k for k, e in METHOD_KINDS.items() if {"unary", "binary"} & set(e.inputs)
)
# method kinds that were renamed: old -> the message's advice
RENAMED_METHOD_KINDS = {"external": "'probes' (linear probes) or 'demux' (the Demux encoder)"}


def param_default(kind: str, name: str):
    """The value the code uses for ``params.<name>`` of ``kind`` when a config leaves it out."""
    return METHOD_KINDS[kind].params[name]["default"]


def method_inputs(kind: str, params: dict | None = None) -> tuple[str, ...]:
    """Input names (:data:`INPUTS`) the producer rule of a method of ``kind`` with ``params``
    reads beyond the dataset meta and the test-set ids."""
    entry = METHOD_KINDS[kind]
    params = params or {}
    extra = tuple(
        name
        for name, param, value in entry.inputs_when
        if params.get(param, entry.params[param].get("default")) == value
    )
    return (*entry.inputs, *extra)


def implementation(kind: str) -> Callable:
    """The function computing ``kind``, imported now (its module may import pandas/torch)."""
    module, _, name = METHOD_KINDS[kind].function.partition(":")
    return getattr(importlib.import_module(module), name)


def kinds_computed_by(function: str) -> tuple[str, ...]:
    """The kinds whose entry names ``function`` (``module:function``)."""
    return tuple(k for k, e in METHOD_KINDS.items() if e.function == function)


# ---------------------------------------------------------------------------- generated blocks

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "method.schema.yaml"
DOCS_PATH = REPO_ROOT / "docs" / "metrics.md"
YAML_BEGIN = "# BEGIN GENERATED: python -m multilabel_llm.methods.registry --write (do not edit)"
YAML_END = "# END GENERATED"
DOCS_BEGIN = "<!-- BEGIN GENERATED: python -m multilabel_llm.methods.registry --write -->"
DOCS_END = "<!-- END GENERATED -->"


def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        # YAML 1.1 (PyYAML) reads 1e-08 as a string; 1.0e-08 is a float
        return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text
    if isinstance(value, int):
        return str(value)
    text = str(value)
    plain = text.replace("_", "").replace("-", "").replace(".", "").isalnum()
    return (
        text if plain and text not in ("null", "true", "false", "yes", "no") else json.dumps(text)
    )


def _flow(value) -> str:
    """A value in YAML flow style: ``{a: 1, b: [x, y]}``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _block(value: dict, indent: int) -> list[str]:
    """A mapping in YAML block style; leaves and short mappings in flow style."""
    pad = " " * indent
    lines = []
    for key, inner in value.items():
        flow = _flow(inner)
        if isinstance(inner, dict) and inner and len(pad) + len(key) + len(flow) > 88:
            lines += [f"{pad}{key}:", *_block(inner, indent + 2)]
        else:
            lines.append(f"{pad}{key}: {flow}")
    return lines


def params_schema(kind: str) -> dict:
    """The JSON schema of ``params`` for ``kind``: its params, nothing else."""
    entry = METHOD_KINDS[kind]
    schema: dict = {"additionalProperties": False}
    if entry.params_note:
        schema["description"] = entry.params_note
    if "required" in entry.params_rule:
        schema["required"] = entry.params_rule["required"]
    if entry.params:
        schema["properties"] = entry.params
    schema.update({k: v for k, v in entry.params_rule.items() if k != "required"})
    return schema


def schema_block() -> str:
    """The ``kind`` property and the per-kind ``allOf`` of method.schema.yaml."""
    lines = [
        "  kind:",
        f"    enum: {_flow(list(METHOD_KINDS))}",
        "    description: >",
        "      which function computes it, hence which rule writes the distribution file",
        "      (multilabel_llm.methods.registry.METHOD_KINDS: one producer per kind)",
        "allOf:",
    ]
    for kind in METHOD_KINDS:
        lines.append(f"  - if: {{properties: {{kind: {{const: {kind}}}}}}}")
        lines += ["    then:", "      properties:", "        params:"]
        lines += _block(params_schema(kind), 10)
    return "\n".join(lines)


def docs_block() -> str:
    """The table of kinds in docs/metrics.md."""
    rows = [
        "| kind | producer rule | reads | params (default) | what it is |",
        "|---|---|---|---|---|",
    ]
    for kind, entry in METHOD_KINDS.items():
        reads = [*entry.inputs, *(f"{name} ({p}: {v})" for name, p, v in entry.inputs_when)]
        params = [
            f"`{name}`" + (f" ({_scalar(spec['default'])})" if "default" in spec else "")
            for name, spec in entry.params.items()
        ]
        rows.append(
            f"| `{kind}` | `{entry.producer}` | {', '.join(reads) or '—'} | "
            f"{', '.join(params) or '—'} | {entry.description} |"
        )
    return "\n".join(rows)


def with_block(text: str, begin: str, end: str, block: str, path: Path) -> str:
    """``text`` with the lines between the ``begin`` and ``end`` markers replaced by ``block``."""
    head, found, rest = text.partition(begin + "\n")
    old, found_end, tail = rest.partition(end)
    if not found or not found_end:
        raise ValueError(f"{path}: no generated block between {begin!r} and {end!r}")
    return f"{head}{begin}\n{block}\n{end}{tail}"


def generated_files() -> dict[Path, str]:
    """Each generated file with its current text, its generated block brought up to date."""
    out = {}
    for path, begin, end, block in (
        (SCHEMA_PATH, YAML_BEGIN, YAML_END, schema_block()),
        (DOCS_PATH, DOCS_BEGIN, DOCS_END, docs_block()),
    ):
        out[path] = with_block(path.read_text(encoding="utf-8"), begin, end, block, path)
    return out


def main(argv=None) -> int:
    """Write (``--write``) or check (``--check``) the generated blocks of the kind registry."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the generated blocks")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files().items():
        if path.read_text(encoding="utf-8") != text:
            stale.append(path)
            if args.write:
                path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'rewrote' if args.write else 'out of date'}: {path.relative_to(REPO_ROOT)}")
    return 0 if args.write or not stale else 1


if __name__ == "__main__":
    raise SystemExit(main())
