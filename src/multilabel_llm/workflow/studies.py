"""Experiments made of studies: each study names the artifacts it produces and its own grid.

A study (``studies.<name>`` in an experiment) has a ``kind`` (default: its name) that fixes
what it can produce, and a small grid::

    studies:
      alignment:                       # Tables 2/5, the per-dataset alignment tables, Fig 8
        datasets: [goemotions, mfrc, hatexplain, msp_podcast]
        models: [llama3-70b-instruct, llama3-8b-instruct]
        prompts: [main]
        testsets: [main_test_set]
        methods: [compare_to_none, hard_predictions, ...]
        exclude: [{dataset: hatexplain, method: sft_outputs}]   # cells the paper did not run

Only the cells of a study are requested, so the DAG holds what the paper's tables and figures
need and nothing crossed beyond it. Omitted keys take the kind's defaults: every configured
dataset the kind applies to (single-label datasets have no label lists for the mechanism kinds),
every model slot, the first prompt (every prompt for the sweeps), the kind's test set, every
method that applies to the dataset. A model may be named ``<slot>-sft``: that slot with its
LoRA adapter (trained once per dataset and model, rules/sft.smk); no configured model slot may
end in ``-sft`` itself. A method's ``kind``, never its slot name, decides which rule writes
its distribution file (:func:`distribution_producer`); :func:`method_contract_problems` checks
these contracts at config time.

An experiment without ``studies:`` gets one study of every kind with those defaults.
Nothing here imports Snakemake: rules/common.smk and the cost plan both call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from multilabel_llm.methods.registry import (
    DISTRIBUTION_PRODUCERS,
    PRODUCER_OF_KIND,
    RENAMED_METHOD_KINDS,
)

log = logging.getLogger(__name__)

SFT_SUFFIX = "-sft"

# kind -> what it can produce, whether it is about multi-label generation, its default test set
KINDS: dict[str, dict] = {
    "alignment": {
        "artifacts": ("alignment_tables", "table2", "table5", "fig8"),
        "multilabel_only": False,
        "testsets": ["main_test_set"],
        "methods": True,
    },
    "base_vs_instruct": {
        "artifacts": ("fig12",),
        "multilabel_only": True,
        "testsets": ["main_test_set"],
        "methods": True,
    },
    "mechanisms": {
        "artifacts": (
            "fig1",
            "fig2",
            "fig3",
            "fig4",
            "fig5",
            "fig9",
            "fig10",
            "fig11",
            "table4",
            "second_next",
        ),
        "multilabel_only": True,
        "testsets": ["multilabel"],
        "methods": False,
    },
    "label_order": {
        "artifacts": ("table7",),
        "multilabel_only": True,
        "testsets": ["multilabel"],
        "methods": False,
        "sweep": True,
    },
    "icl_ratio": {
        "artifacts": ("fig6",),
        "multilabel_only": True,
        "testsets": ["multilabel"],
        "methods": False,
        "sweep": True,
    },
    "probes": {
        "artifacts": ("fig7",),
        "multilabel_only": True,
        "testsets": [],
        "methods": False,
    },
    "families": {
        "artifacts": ("fig13", "fig14", "fig15", "fig16"),
        "multilabel_only": True,
        "testsets": ["multilabel"],
        "methods": False,
    },
    "attention": {
        "artifacts": ("table6",),
        "multilabel_only": True,
        "testsets": ["multilabel"],
        "methods": False,
    },
}
# alignment-side kinds: their runs are scored into results/tables/alignment_{dataset}.csv
ALIGNMENT_KINDS = ("alignment", "base_vs_instruct")
# study kinds whose runs are traced and analysed (analyze_traces)
TRACED_STUDY_KINDS = ("mechanisms", "label_order", "icl_ratio", "families", "attention")
# model families with a figure of their own (paper §D.7 Qwen, §D.8 Medusa)
FAMILY_FIGURES = {"fig13": "qwen2.5", "fig14": "qwen2.5", "fig15": "qwen2.5", "fig16": "medusa"}
# artifacts that read linear probes, trained on the first-label hidden states of the study's
# first prompt (rules/probes.smk): that prompt needs ``hidden_states: true``
PROBE_ARTIFACTS = ("fig7", "fig15")
# Which rule writes a method's distribution file ({method}.parquet under results/distributions/)
# follows from the method's ``kind`` alone, never from its slot name: every kind has exactly
# one producer (multilabel_llm.methods.registry, read without pandas: the DAG parses this module
# at every job start), and rules/ constrain their {method} wildcard to
# methods_of_producer(cfg, producer).
STUDY_KEYS = (
    "kind",
    "artifacts",
    "datasets",
    "models",
    "prompts",
    "testsets",
    "methods",
    "exclude",
    "description",
)


class StudyError(ValueError):
    """A study the pipeline cannot run; the message names the config key."""


@dataclass
class Study:
    name: str
    kind: str
    artifacts: list[str]
    datasets: list[str]
    models: list[str]
    prompts: list[str]
    testsets: list[str]
    methods: list[str] = field(default_factory=list)
    exclude: list[dict] = field(default_factory=list)
    description: str = ""

    def excluded(self, cell: dict) -> bool:
        return any(all(cell.get(k) == v for k, v in rule.items()) for rule in self.exclude)

    def trace_runs(self) -> list[dict]:
        """(dataset, model, prompt, testset) cells of the study, minus its exclusions."""
        cells = [
            {"dataset": d, "model": m, "prompt": p, "testset": t}
            for d in self.datasets
            for m in self.models
            for p in self.prompts
            for t in self.testsets
        ]
        return [c for c in cells if not self.excluded(c)]


def base_slot(model: str) -> str:
    return model.removesuffix(SFT_SUFFIX)


def _is_multilabel(cfg: dict, dataset: str) -> bool:
    return bool(cfg["datasets"][dataset].get("multilabel", True))


def method_applies(cfg: dict, method: str, dataset: str) -> bool:
    """A method's ``applies_to`` (multilabel / single_label) against the dataset's kind."""
    applies = cfg["methods"][method].get("applies_to") or ["multilabel", "single_label"]
    return ("multilabel" if _is_multilabel(cfg, dataset) else "single_label") in applies


def _names(value, key: str, allowed: list[str], *, sft_ok: bool = False) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StudyError(f"config key '{key}': expected a list of names, got {value!r}")
    for name in value:
        slot = base_slot(name) if sft_ok else name
        if slot not in allowed or (not sft_ok and name != slot):
            extra = f" (or a model slot with the {SFT_SUFFIX!r} suffix)" if sft_ok else ""
            raise StudyError(f"config key '{key}': {name!r} is not one of {allowed}{extra}")
    return list(dict.fromkeys(value))


def _default_models(cfg: dict, kind: str) -> list[str]:
    models = list(cfg["models"])
    families = set(FAMILY_FIGURES.values())
    family = {m: cfg["models"][m].get("family", m) for m in models}
    if kind == "families":
        return [m for m in models if family[m] in families]
    if kind in ("mechanisms", "probes"):
        return [m for m in models if family[m] not in families] or models
    return models


def resolve_study(cfg: dict, name: str, spec: dict | None) -> Study:
    """One study with its defaults filled in and every name checked against the experiment."""
    spec = dict(spec or {})
    where = f"studies.{name}"
    unknown = sorted(set(spec) - set(STUDY_KEYS))
    if unknown:
        raise StudyError(
            f"config key '{where}': unknown keys {unknown}; allowed keys: {list(STUDY_KEYS)}"
        )
    kind = spec.get("kind") or name
    if kind not in KINDS:
        raise StudyError(
            f"config key '{where}.kind': {kind!r} is not allowed; allowed values: {sorted(KINDS)}"
        )
    info = KINDS[kind]
    artifacts = spec.get("artifacts") or list(info["artifacts"])
    for art in artifacts:
        if art not in info["artifacts"]:
            raise StudyError(
                f"config key '{where}.artifacts': {art!r} is not produced by a {kind!r} study; "
                f"allowed values: {list(info['artifacts'])}"
            )
    datasets_all = list(cfg["datasets"])
    if spec.get("datasets") is None:
        datasets = [
            d for d in datasets_all if not info["multilabel_only"] or _is_multilabel(cfg, d)
        ]
    else:
        datasets = _names(spec["datasets"], f"{where}.datasets", datasets_all)
        single = [d for d in datasets if info["multilabel_only"] and not _is_multilabel(cfg, d)]
        if single:
            raise StudyError(
                f"config key '{where}.datasets': {single} are single-label; a {kind!r} study "
                "studies multi-label generation (drop them from the study)"
            )
    models = (
        _default_models(cfg, kind)
        if spec.get("models") is None
        else _names(spec["models"], f"{where}.models", list(cfg["models"]), sft_ok=True)
    )
    prompts_all = list(cfg["prompts"])
    if spec.get("prompts") is None:
        prompts = prompts_all if info.get("sweep") else prompts_all[:1]
    else:
        prompts = _names(spec["prompts"], f"{where}.prompts", prompts_all)
    testsets = list(info["testsets"]) if spec.get("testsets") is None else spec["testsets"]
    if not isinstance(testsets, list):
        raise StudyError(f"config key '{where}.testsets': expected a list, got {testsets!r}")
    methods: list[str] = []
    if info["methods"]:
        methods = (
            list(cfg["methods"])
            if spec.get("methods") is None
            else _names(spec["methods"], f"{where}.methods", list(cfg["methods"]))
        )
    elif spec.get("methods"):
        raise StudyError(f"config key '{where}.methods': a {kind!r} study scores no methods")
    exclude = spec.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(e, dict) and e for e in exclude):
        raise StudyError(
            f"config key '{where}.exclude': expected a list of mappings such as "
            "{dataset: hatexplain, method: probes}"
        )
    _check_exclude(
        where,
        exclude,
        {
            "dataset": datasets_all,
            "model": list(cfg["models"]),
            "prompt": prompts_all,
            "testset": list(testsets),
            "method": list(cfg["methods"]),
        },
    )
    study = Study(
        name,
        kind,
        list(artifacts),
        datasets,
        models,
        prompts,
        list(testsets),
        methods,
        list(exclude),
        str(spec.get("description") or ""),
    )
    _check_testsets(cfg, study)
    return study


def _check_exclude(where: str, exclude: list[dict], names: dict[str, list[str]]) -> None:
    """An exclude rule with a misspelt key or name would silently exclude nothing."""
    for j, rule in enumerate(exclude):
        for key, value in rule.items():
            if key not in names:
                raise StudyError(
                    f"config key '{where}.exclude[{j}]': unknown key {key!r}; allowed keys: "
                    f"{list(names)}"
                )
            allowed = names[key]
            base = base_slot(str(value)) if key == "model" else value
            if value not in allowed and base not in allowed:
                raise StudyError(
                    f"config key '{where}.exclude[{j}].{key}': {value!r} is not one of {allowed}"
                )


def _check_testsets(cfg: dict, study: Study) -> None:
    """Every (dataset, test set) a study asks for must be defined by that dataset's config."""
    from multilabel_llm.data.testsets import DEFAULT_KIND

    held_out = {
        (cfg["methods"][m].get("params") or {}).get("calibration_testset") for m in study.methods
    } - {None}
    scored_held_out = sorted(held_out & set(study.testsets))
    if scored_held_out:
        raise StudyError(
            f"config key 'studies.{study.name}.testsets': {scored_held_out} is the held-out set "
            "a Platt method is fitted on; scoring on it would report the fit, not a test"
        )
    for dataset in study.datasets:
        defined = cfg["datasets"][dataset].get("testsets") or {}
        for testset in study.testsets:
            if testset not in defined and testset not in DEFAULT_KIND:
                raise StudyError(
                    f"config key 'studies.{study.name}.testsets': dataset {dataset!r} defines no "
                    f"test set {testset!r} (datasets.{dataset}.testsets: {sorted(defined)})"
                )
            if (
                DEFAULT_KIND.get(testset) == "multilabel"
                or (defined.get(testset) or {}).get("kind") == "multilabel"
            ) and not _is_multilabel(cfg, dataset):
                raise StudyError(
                    f"config key 'studies.{study.name}.testsets': {testset!r} is a multi-label-"
                    f"only test set and {dataset!r} is single-label"
                )


def resolve_studies(cfg: dict) -> dict[str, Study]:
    """Every study of the experiment (defaults: one of each kind), resolved and checked."""
    specs = cfg.get("studies")
    if specs is None:
        specs = {kind: {} for kind in KINDS}
    if not isinstance(specs, dict):
        raise StudyError(f"config key 'studies': expected a mapping name -> study, got {specs!r}")
    studies = {name: resolve_study(cfg, name, spec) for name, spec in specs.items()}
    owners: dict[str, str] = {}
    for study in studies.values():
        for art in study.artifacts:
            if art in owners:
                raise StudyError(
                    f"config key 'studies.{study.name}.artifacts': {art!r} is already produced "
                    f"by study {owners[art]!r}; one study per artifact"
                )
            owners[art] = study.name
    # a study that can produce nothing (no models, datasets or prompts) is dropped
    studies = {n: s for n, s in studies.items() if s.datasets and s.models and s.prompts}
    studies = _check_hidden_states(cfg, studies, defaulted=cfg.get("studies") is None)
    paper_tables(cfg, studies)  # roles must name cells of the study listing the table
    for dataset in cfg["datasets"]:
        _check_demo_pool(cfg, studies, dataset)
    return studies


def _hidden(cfg: dict, prompt: str) -> bool:
    return bool(cfg["prompts"][prompt].get("hidden_states"))


def distribution_producer(method_cfg: dict) -> str:
    """The producer of a method's distribution file, from its ``kind``: "estimate",
    "estimate_binary", "marginalize", "probes" or "demux" (DISTRIBUTION_PRODUCERS)."""
    kind = (method_cfg or {}).get("kind")
    if kind not in PRODUCER_OF_KIND:
        raise StudyError(
            f"method kind {kind!r} has no distribution producer; allowed kinds: "
            f"{sorted(PRODUCER_OF_KIND)}"
        )
    return PRODUCER_OF_KIND[kind]


def methods_of_producer(cfg: dict, producer: str) -> list[str]:
    """Method slots whose distribution file ``producer`` writes, in config order."""
    if producer not in DISTRIBUTION_PRODUCERS:
        raise ValueError(f"unknown producer {producer!r}; known: {list(DISTRIBUTION_PRODUCERS)}")
    return [
        slot
        for slot, method in (cfg.get("methods") or {}).items()
        if PRODUCER_OF_KIND.get((method or {}).get("kind")) == producer
    ]


def method_contract_problems(cfg: dict) -> list[str]:
    """Contracts between slot names and kinds the rules rely on, as messages naming the key.

    - every method's kind has exactly one distribution producer (the rules tell the four
      ``{method}.parquet`` writers apart by it);
    - a method slot named after a kind has that kind (a slot ``probes`` of kind
      ``hard_predictions`` would read as linear probes everywhere a name is shown);
    - no model slot ends in ``-sft``: ``<slot>-sft`` names that slot with its SFT adapter
      (rules/sft.smk), so such a slot would be shadowed by or shadow a synthesised one.
    """
    problems = []
    for slot, method in (cfg.get("methods") or {}).items():
        kind = (method or {}).get("kind")
        where = f"config key 'methods.{slot}.kind'"
        if kind in RENAMED_METHOD_KINDS:
            problems.append(
                f"{where}: kind {kind!r} was split by producer; use {RENAMED_METHOD_KINDS[kind]}"
            )
        elif kind not in PRODUCER_OF_KIND:
            problems.append(
                f"{where}: {kind!r} has no distribution producer; allowed values: "
                f"{sorted(PRODUCER_OF_KIND)}"
            )
        elif slot in PRODUCER_OF_KIND and kind != slot:
            problems.append(
                f"{where}: slot {slot!r} is named after the kind {slot!r} but has kind "
                f"{kind!r}; rename the slot (methods.<name>) or set kind: {slot}"
            )
    for slot in cfg.get("models") or {}:
        if slot.endswith(SFT_SUFFIX):
            problems.append(
                f"config key 'models.{slot}': a model slot may not end in {SFT_SUFFIX!r}; "
                f"'<slot>{SFT_SUFFIX}' names slot <slot> with its SFT adapter (rules/sft.smk), "
                f"so rename it (e.g. {slot.removesuffix(SFT_SUFFIX) + '_sft'!r})"
            )
    return problems


def reads_probes(cfg: dict, method: str) -> bool:
    """A method of kind ``probes``: its distributions come from probes on hidden states."""
    return PRODUCER_OF_KIND.get((cfg["methods"][method] or {}).get("kind")) == "probes"


def _check_hidden_states(cfg: dict, studies: dict[str, Study], defaulted: bool) -> dict[str, Study]:
    """Linear probes read ``hidden.npz``, which only prompts with ``hidden_states: true``
    write; without it the DAG would fail later with a missing ``hidden.npz``.

    A study the experiment lists is an error naming the setting. The default studies (an
    experiment without ``studies:``) are trimmed instead: they stand for "whatever this
    experiment can produce", so Fig 7/15 and the ``probes`` method are left out (logged).
    """
    kept = {}
    for name, study in studies.items():
        probe_arts = [a for a in study.artifacts if a in PROBE_ARTIFACTS]
        prompt = study.prompts[0]  # the probe figures read the first prompt's probes
        if probe_arts and not _hidden(cfg, prompt):
            if not defaulted:
                raise StudyError(
                    f"config key 'prompts.{prompt}.hidden_states': study {name!r} lists "
                    f"{probe_arts}, linear probes trained on the hidden states of its prompt "
                    f"{prompt!r}, whose traces carry none; set prompts.{prompt}.hidden_states: "
                    f"true, or drop {probe_arts} from studies.{name}.artifacts"
                )
            _warn_once(
                f"{', '.join(probe_arts)} left out (default studies): prompt {prompt!r} has no "
                f"hidden_states: true, so there are no probe features"
            )
            study.artifacts = [a for a in study.artifacts if a not in PROBE_ARTIFACTS]
        probe_methods = [m for m in study.methods if reads_probes(cfg, m)]
        missing = sorted(
            {c["prompt"] for c in method_cells(cfg, study) if c["method"] in probe_methods}
            - {p for p in study.prompts if _hidden(cfg, p)}
        )
        if missing:
            settings = ", ".join(f"prompts.{p}.hidden_states: true" for p in missing)
            if not defaulted:
                raise StudyError(
                    f"config key 'prompts.{missing[0]}.hidden_states': study {name!r} scores "
                    f"method {probe_methods[0]!r} (linear probes on hidden states) with prompts "
                    f"{missing}, whose traces carry none; set {settings}, or leave the method "
                    f"out of studies.{name}.methods (or add it to studies.{name}.exclude)"
                )
            _warn_once(
                f"method {probe_methods[0]!r} left out of study {name!r} (default studies): "
                f"prompts {missing} have no hidden_states: true"
            )
            study.methods = [m for m in study.methods if m not in probe_methods]
        if study.artifacts:
            kept[name] = study
    return kept


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    # the config is resolved twice per Snakemake run (validation, then rules/common.smk)
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


def _check_demo_pool(cfg: dict, studies: dict[str, Study], dataset: str) -> None:
    """A test set spanning the whole demo split leaves no demonstrations for any run."""
    from multilabel_llm.data.testsets import get_testset_cfg

    data = cfg["datasets"][dataset]
    demo_split = data.get("demo_split", "train")
    for name in evaluated_testsets(cfg, studies, dataset):
        try:
            testset = get_testset_cfg(data, name)
        except ValueError as err:
            raise StudyError(f"config key 'datasets.{dataset}.testsets': {err}") from None
        if testset["kind"] == "all" and demo_split in testset["splits"]:
            raise StudyError(
                f"config key 'datasets.{dataset}.testsets.{name}': takes every example of "
                f"{demo_split!r}, the split demonstrations come from, so no demo would be left "
                f"(the shared pool excludes every evaluated id); sample it (kind: sample, size: N) "
                f"or draw demos from another split (datasets.{dataset}.demo_split)"
            )


def artifact_owner(studies: dict[str, Study], artifact: str) -> Study | None:
    return next((s for s in studies.values() if artifact in s.artifacts), None)


def method_cells(cfg: dict, study: Study) -> list[dict]:
    """{dataset, model, prompt, testset, method} of an alignment-side study: its cells times
    its methods, minus methods that don't apply to the dataset and the study's exclusions."""
    return [
        cell | {"method": method}
        for cell in study.trace_runs()
        for method in study.methods
        if method_applies(cfg, method, cell["dataset"])
        and not study.excluded(cell | {"method": method})
    ]


def alignment_runs(cfg: dict, studies: dict[str, Study], dataset: str) -> list[dict]:
    """Distribution cells {model, prompt, testset, method} scored for ``dataset``: the union of
    the alignment-side studies' method cells."""
    runs = [
        {k: run[k] for k in ("model", "prompt", "testset", "method")}
        for study in studies.values()
        if study.kind in ALIGNMENT_KINDS
        for run in method_cells(cfg, study)
        if run["dataset"] == dataset
    ]
    unique = {tuple(sorted(r.items())): r for r in runs}
    return list(unique.values())


def mechanism_cells(study: Study, models: list[str] | None = None) -> list[dict]:
    """Trace cells of a trace-kind study, optionally restricted to ``models``."""
    cells = study.trace_runs()
    return cells if models is None else [c for c in cells if c["model"] in models]


def probe_cells(study: Study, models: list[str] | None = None) -> list[dict]:
    """(dataset, model, prompt) cells whose linear probes a probe figure reads."""
    cells = [
        {"dataset": d, "model": m, "prompt": p}
        for d in study.datasets
        for m in study.models
        for p in study.prompts[:1]
        if models is None or m in models
    ]
    return [c for c in cells if not study.excluded(c)]


def grid_summary(cfg: dict, studies: dict[str, Study]) -> list[dict]:
    """One row per study: kind, artifacts, models, datasets, prompts, test sets, cells."""
    rows = []
    for study in studies.values():
        aligned = study.kind in ALIGNMENT_KINDS
        n = len(method_cells(cfg, study) if aligned else study.trace_runs())
        rows.append(
            {
                "study": study.name,
                "kind": study.kind,
                "artifacts": ", ".join(study.artifacts),
                "models": ", ".join(study.models),
                "datasets": ", ".join(study.datasets),
                "prompts": ", ".join(study.prompts),
                "testsets": ", ".join(study.testsets),
                "cells": n,
            }
        )
    return rows


def probe_testsets(cfg: dict) -> list[str]:
    probes = (cfg.get("training") or {}).get("probes") or {}
    return [probes.get("train_testset", "probe_train"), probes.get("eval_testset", "probe_eval")]


def probe_studies(studies: dict[str, Study]) -> list[Study]:
    """Studies whose artifacts read linear probes (Fig 7, Fig 15)."""
    return [s for s in studies.values() if {"fig7", "fig15"} & set(s.artifacts)]


def evaluated_testsets(cfg: dict, studies: dict[str, Study], dataset: str) -> list[str]:
    """Every test set of ``dataset`` some run of the experiment traces or scores: the shared
    demo pool excludes all of their ids, so no run sees its own examples as demos."""
    names: list[str] = []
    for run in alignment_runs(cfg, studies, dataset):
        names.append(run["testset"])
        method = cfg["methods"][run["method"]]
        calibration = (method.get("params") or {}).get("calibration_testset")
        if calibration:
            names.append(calibration)
        if reads_probes(cfg, run["method"]):
            names += probe_testsets(cfg)
    for study in studies.values():
        if study.kind in TRACED_STUDY_KINDS and dataset in study.datasets:
            names += study.testsets
        if study in probe_studies(studies) and dataset in study.datasets:
            names += probe_testsets(cfg)
    return list(dict.fromkeys(names))


PAPER_TABLES = ("table2", "table5")


def paper_tables(cfg: dict, studies: dict[str, Study]) -> dict[str, dict]:
    """Tables 2/5 -> {model, prompt, testset}: the model from ``roles.<table>`` (a slot name or
    a mapping), prompt and test set from the study listing the table unless the role names
    them (the study's first prompt is its main prompt, not the alphabetically first)."""
    roles = cfg.get("roles") or {}
    unknown = sorted(set(roles) - set(PAPER_TABLES))
    if unknown:  # a misspelt role would otherwise be ignored and the table left out
        raise StudyError(
            f"config key 'roles': unknown roles {unknown}; allowed: {list(PAPER_TABLES)}"
        )
    tables = {}
    for table in PAPER_TABLES:
        study = artifact_owner(studies, table)
        role = roles.get(table)
        if not role or study is None:
            continue
        spec = {"model": role} if isinstance(role, str) else dict(role)
        extra = sorted(set(spec) - {"model", "prompt", "testset"})
        if extra:
            raise StudyError(
                f"config key 'roles.{table}': unknown keys {extra}; allowed keys: "
                "['model', 'prompt', 'testset']"
            )
        spec.setdefault("prompt", study.prompts[0])
        spec.setdefault("testset", study.testsets[0])
        for key, allowed in (
            ("model", study.models),
            ("prompt", study.prompts),
            ("testset", study.testsets),
        ):
            if spec.get(key) not in allowed:
                raise StudyError(
                    f"config key 'roles.{table}': {key} {spec.get(key)!r} is not in study "
                    f"{study.name!r} (its {key}s: {allowed})"
                )
        tables[table] = spec
    return tables
