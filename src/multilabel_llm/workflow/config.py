"""Compose the Hydra config tree and validate it, with errors that name the key.

The Snakefile calls :func:`load_config`; nothing here imports Snakemake, so the same
composition serves tests and notebooks.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from multilabel_llm import NONE_LABEL
from multilabel_llm.engine.backend import engine_key_problems
from multilabel_llm.workflow.studies import StudyError, method_contract_problems, resolve_studies

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO_ROOT / "config"
# More config trees searched after config/, each with config/'s group layout (dataset/,
# model/, experiment/, ...): os.pathsep-separated, relative entries taken from the checkout's
# root like config/ itself. The test-only configs (stand-ins, smoke fixtures, the tiny /
# paper_smoke / slurm_test experiments) live in tests/config, which the tests put here.
SEARCH_PATH_ENV = "MULTILABEL_LLM_CONFIG_PATH"
# The same as a Snakemake `--config` key (a string as above, or a list); it reaches every job
# of a cluster run on the job's own command line, whatever the job's environment.
SEARCH_PATH_KEY = "config_path"
TEST_CONFIG_DIR = REPO_ROOT / "tests" / "config"
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"
# Per-slot schemas: the experiment's named slots of each group are checked against these.
GROUP_SCHEMAS = {
    "datasets": "dataset.schema.yaml",
    "models": "model.schema.yaml",
    "prompts": "prompt.schema.yaml",
    "methods": "method.schema.yaml",
    "training": "training.schema.yaml",
}


# Size classes were once named 1b/8b/70b; Hydra's override grammar cannot address a key that
# starts with a digit (`resources.size_classes.70b.gpu=2` is a parse error), so they became
# b1/b8/b70. An old name gets a message naming the new one.
RENAMED_SIZE_CLASSES = {"1b": "b1", "8b": "b8", "70b": "b70"}


# Config keys that were renamed: an old key (in an experiment file, an override or a nested
# --config mapping) gets a message naming the new one instead of a bare "unknown key".
RENAMED_KEYS = {
    # the NLL clip of the alignment metrics; the methods' floor is `probability_floor`
    "alignment.epsilon": "alignment.nll_clip",
}


# Where outputs go when `results_dir` is not set: the default experiment of config/config.yaml
# (the demo, `make demo`) writes to results/, every other experiment to results/<experiment>/,
# so two experiments whose slot names coincide (results/data/goemotions, …) never overwrite
# each other's outputs. Reuse between experiments goes through Snakemake's between-workflow
# cache (`--cache`), whose keys are inputs and params, not paths.
# The demo's top-level output folders (and make plan's): no experiment may be named like one.
RESERVED_RESULT_FOLDERS = frozenset(
    "analyses breakdown cli data decided demux distributions explorer figures logs plan "
    "probes report sft tables traces".split()
)


def default_experiment(config_dir: Path = CONFIG_DIR) -> str:
    """The ``experiment:`` entry of config/config.yaml's defaults list."""
    with open(config_dir / "config.yaml", encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle).get("defaults") or []
    return next(str(e["experiment"]) for e in defaults if isinstance(e, dict) and "experiment" in e)


def default_results_dir(experiment_name: str, config_dir: Path = CONFIG_DIR) -> str:
    """``results`` for the default experiment, ``results/<experiment>`` for any other."""
    if experiment_name == default_experiment(config_dir):
        return "results"
    if experiment_name in RESERVED_RESULT_FOLDERS or "/" in experiment_name:
        raise ConfigError(
            f"config key 'experiment': {experiment_name!r} would put the experiment's "
            f"outputs into the demo's results/{experiment_name.split('/')[0]}/ folder; rename "
            f"the experiment or set results_dir"
        )
    return f"results/{experiment_name}"


class ConfigError(ValueError):
    """A config value or key that the pipeline cannot run with."""


def _override_key(override: str) -> str:
    """The dotted key an override addresses: ``+a.b=1`` / ``~a.b`` / ``a.b=1`` -> ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


def _renamed_hint(overrides: list[str]) -> str:
    """A hint for overrides that address a size class or a key by its old name, else ''."""
    hints = [
        f"size class {old!r} was renamed to {new!r} ({override!r})"
        for override in overrides
        for old, new in RENAMED_SIZE_CLASSES.items()
        if f"size_classes.{old}." in override.split("=", 1)[0] + "."
    ]
    hints += [
        f"config key {old!r} was renamed to {new!r} ({override!r})"
        for override in overrides
        for old, new in RENAMED_KEYS.items()
        if _override_key(override) == old
    ]
    return ("\n" + "\n".join(hints)) if hints else ""


def _entries(value: Any, origin: str) -> list[tuple[str, str]]:
    """(directory, where it was named) for an os.pathsep-separated string or a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [(part, origin) for part in value.split(os.pathsep) if part.strip()]
    if isinstance(value, (list, tuple)):
        return [(str(part), origin) for part in value]
    raise ConfigError(
        f"{origin}: expected directories separated by {os.pathsep!r} or a list, "
        f"got {type(value).__name__}"
    )


def config_search_path(config_dir: Path = CONFIG_DIR, search_path: Any = None) -> list[Path]:
    """Every tree a group option is looked up in, the first match winning: config/, then the
    trees of ``$MULTILABEL_LLM_CONFIG_PATH``, then ``search_path`` (the ``config_path`` key)."""
    named = _entries(os.environ.get(SEARCH_PATH_ENV), f"${SEARCH_PATH_ENV}")
    named += _entries(search_path, f"config key {SEARCH_PATH_KEY!r}")
    trees = [config_dir]
    for entry, origin in named:
        tree = REPO_ROOT / Path(entry).expanduser()  # an absolute entry stays as it is
        if not tree.is_dir():
            raise ConfigError(f"{origin}: config directory {entry!r} does not exist ({tree})")
        if tree.resolve() not in [t.resolve() for t in trees]:
            trees.append(tree)
    return trees


def _group_files(group: str, trees: list[Path]) -> list[Path]:
    found: dict[str, Path] = {}
    for tree in trees:
        for path in sorted((tree / group).glob("*.yaml")):
            found.setdefault(path.stem, path)
    return [found[name] for name in sorted(found)]


def config_files(group: str, config_dir: Path = CONFIG_DIR, search_path: Any = None) -> list[Path]:
    """The option files of ``group`` over the search path, one per name (the first found)."""
    return _group_files(group, config_search_path(config_dir, search_path))


def group_options(group: str, config_dir: Path = CONFIG_DIR, search_path: Any = None) -> list[str]:
    return [path.stem for path in config_files(group, config_dir, search_path)]


def _unknown_experiment(experiment: str, experiments: list[str], trees: list[Path]) -> str:
    """Where the experiments were looked for, and how to add a tree (the test one by name)."""
    message = (
        f"config key 'experiment': unknown value {experiment!r}; allowed values: {experiments} "
        f"(files in {', '.join(str(tree / 'experiment') for tree in trees)}; more config trees "
        f"come from ${SEARCH_PATH_ENV} or --config {SEARCH_PATH_KEY}=DIR)"
    )
    if (TEST_CONFIG_DIR / "experiment" / f"{experiment}.yaml").exists():
        message += (
            f"; {experiment!r} is a test experiment (tests/config/experiment/): set "
            f"{SEARCH_PATH_ENV}=tests/config"
        )
    return message


def _hydra_searchpath(extra_trees: list[Path]) -> list[str]:
    """The Hydra override that adds the extra trees after the primary config dir."""
    if not extra_trees:
        return []
    quoted = [
        "'file://" + str(tree.resolve()).replace("\\", "\\\\").replace("'", "\\'") + "'"
        for tree in extra_trees
    ]
    return [f"hydra.searchpath=[{','.join(quoted)}]"]


def _flatten(prefix: str, value: Any):
    """Nested ``--config`` mappings become dotted keys; Snakemake passes their leaves as text."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    else:
        yield prefix, value


def _hydra_value(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return str(value)


def _overrides_from(items: dict[str, Any]) -> list[str]:
    """Turn Snakemake ``--config`` items into Hydra overrides.

    ``overrides="a.b=1 c=[x,y]"`` (or a YAML list) passes Hydra overrides verbatim, since
    Snakemake rejects dotted keys; other items (``key=value`` or nested mappings) are
    flattened into ``dotted.key=value``.
    """
    overrides = []
    verbatim = items.pop("overrides", None)
    if isinstance(verbatim, str):
        try:
            overrides += shlex.split(verbatim)
        except ValueError as err:  # shlex's own message names neither the key nor the text
            raise ConfigError(
                f"config key 'overrides': cannot split {verbatim!r} into Hydra overrides "
                f"({err}); quote a value holding spaces as key='a b' and close every quote"
            ) from None
    elif isinstance(verbatim, list):
        overrides += [str(v) for v in verbatim]
    elif verbatim is not None:
        raise ConfigError(
            f"config key 'overrides': expected a string of Hydra overrides or a list, "
            f"got {type(verbatim).__name__}"
        )
    for key, value in items.items():
        for dotted, leaf in _flatten(key, value):
            overrides.append(f"{dotted}={_hydra_value(leaf)}")
    return overrides


def compose(
    experiment: str | None = None,
    overrides: list[str] | None = None,
    config_dir: Path = CONFIG_DIR,
    search_path: Any = None,
):
    """Compose ``config/config.yaml`` with ``experiment=NAME`` plus Hydra overrides.

    Without ``experiment`` the root defaults list's ``experiment:`` entry decides (the one
    place the default experiment is set). Group options are looked up in config/, then in
    the trees of ``$MULTILABEL_LLM_CONFIG_PATH`` and ``search_path``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    trees = config_search_path(config_dir, search_path)
    experiments = [path.stem for path in _group_files("experiment", trees)]
    if experiment is not None and experiment not in experiments:
        raise ConfigError(_unknown_experiment(experiment, experiments, trees))
    overrides = list(overrides or [])
    chosen = [] if experiment is None else [f"experiment={experiment}"]
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = hydra_compose(
                "config", overrides=[*_hydra_searchpath(trees[1:]), *chosen, *overrides]
            )
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as err:
        # a YAML mistake in a config file names its file and line (yaml's own message)
        # a renamed key or class first: Hydra's own advice (append with +key) would not help
        hint = _renamed_hint(overrides)
        raise ConfigError(
            (hint.strip() + "\n" if hint else "")
            + f"composing experiment {experiment!r} with {overrides}: {err}"
        ) from None


def _load_schema(name: str) -> dict | None:
    path = SCHEMA_DIR / name
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _format_error(err, prefix: str = "") -> str:
    path = ".".join(str(p) for p in [prefix, *err.absolute_path] if p != "")
    where = f"config key '{path}'" if path else "config"
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not allowed; allowed values: {err.validator_value}"
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        return f"{where}: {err.message}; allowed keys: {allowed}"
    if err.validator == "required":
        return f"{where}: {err.message}"
    return f"{where}: {err.message} (expected {err.validator} {err.validator_value!r})"


def validate(cfg: dict) -> None:
    """Check ``cfg`` against workflow/schemas; raise ConfigError listing every problem."""
    import jsonschema

    problems: list[str] = []
    root = _load_schema("config.schema.yaml")
    if root is not None:
        validator = jsonschema.Draft202012Validator(root)
        problems += [_format_error(e) for e in validator.iter_errors(cfg)]
    for group, schema_file in GROUP_SCHEMAS.items():
        schema = _load_schema(schema_file)
        if schema is None or group not in cfg:
            continue
        validator = jsonschema.Draft202012Validator(schema)
        # training is one object; the other groups are name -> entry mappings
        entries = {"": cfg[group]} if group == "training" else cfg[group] or {}
        for slot, entry in entries.items():
            prefix = f"{group}.{slot}" if slot else group
            problems += [_format_error(e, prefix) for e in validator.iter_errors(entry)]
    cross = _cross_checks(cfg)
    problems += cross
    if not problems:
        try:
            resolve_studies(cfg)
        except StudyError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(sorted(set(problems))))


def _cross_checks(cfg: dict) -> list[str]:
    """Checks a per-entry schema cannot express: names used as wildcards, known size classes."""
    problems = []
    classes = set((cfg.get("resources") or {}).get("size_classes", {}))
    for old in sorted(classes & set(RENAMED_SIZE_CLASSES)):
        problems.append(
            f"config key 'resources.size_classes.{old}': size class {old!r} was renamed to "
            f"{RENAMED_SIZE_CLASSES[old]!r} (Hydra overrides cannot address a name that "
            f"starts with a digit); rename it in config/resources/"
        )
    for slot, model in (cfg.get("models") or {}).items():
        size = (model or {}).get("size_class")
        if classes and size not in classes:
            renamed = RENAMED_SIZE_CLASSES.get(str(size))
            hint = f"; it was renamed to {renamed!r}" if renamed else ""
            problems.append(
                f"config key 'models.{slot}.size_class': {size!r} is not allowed{hint}; "
                f"allowed values: {sorted(classes)}"
            )
    problems += _model_spec_checks(cfg)
    problems += _model_source_checks(cfg)
    problems += _dataset_label_checks(cfg)
    problems += _renamed_key_checks(cfg)
    problems += method_contract_problems(cfg)
    for group in ("datasets", "models", "prompts", "methods"):
        for slot in cfg.get(group) or {}:
            if "/" in slot or "_" == slot[:1]:
                problems.append(f"config key '{group}.{slot}': slot names become path parts")
    return problems


def _renamed_key_checks(cfg: dict) -> list[str]:
    """An old key that reached the composed config (an experiment file, a ``+key=`` override)."""
    problems = []
    for old, new in RENAMED_KEYS.items():
        parent, _, leaf = old.rpartition(".")
        node = cfg
        for part in parent.split(".") if parent else []:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            problems.append(f"config key {old!r} was renamed to {new!r}; set {new} instead")
    return problems


def _model_spec_checks(cfg: dict) -> list[str]:
    """Model loading settings that need their size class: quantisation (bitsandbytes) runs
    on CUDA only, so a CPU size class (gpu: 0) would fail in the job; say so now."""
    problems = []
    classes = (cfg.get("resources") or {}).get("size_classes") or {}
    for slot, model in (cfg.get("models") or {}).items():
        model = model or {}
        quant, size = model.get("quantization"), model.get("size_class")
        if quant and size in classes and not (classes[size] or {}).get("gpu"):
            problems.append(
                f"config key 'models.{slot}.quantization': {quant} loading needs a GPU "
                f"(bitsandbytes), but size class {size!r} has gpu: 0; use a GPU size class "
                f"or quantization: null"
            )
        problems += engine_key_problems(slot, model, (classes.get(size) or {}))
    return problems


def _model_source_checks(cfg: dict) -> list[str]:
    """A slot loads from the first of gguf, path, hf_id: a ``path`` next to a ``gguf`` would be
    ignored without a word and the traces would be the GGUF model's."""
    problems = []
    for slot, model in (cfg.get("models") or {}).items():
        model = model or {}
        if model.get("gguf") and model.get("path"):
            problems.append(
                f"config key 'models.{slot}.path': {model['path']!r} would be ignored, because "
                f"models.{slot}.gguf is set too and a GGUF is loaded first (order: gguf, path, "
                f"hf_id); to load the checkpoint at path, also set models.{slot}.gguf=null"
            )
    return problems


def _dataset_label_checks(cfg: dict) -> list[str]:
    """Label names listed in a dataset config: each once, and none named like the prompts'
    no-label answer (compare-to-none would compare that label with itself)."""
    problems = []
    for slot, data in (cfg.get("datasets") or {}).items():
        labels = (data or {}).get("labels") or []
        seen: set[str] = set()
        twice = sorted({lab for lab in labels if lab in seen or seen.add(lab)})
        if twice:
            problems.append(
                f"config key 'datasets.{slot}.labels': {twice} listed more than once; "
                f"list each label once"
            )
        reserved = [lab for lab in labels if str(lab).strip().lower() == NONE_LABEL]
        if reserved:
            problems.append(
                f"config key 'datasets.{slot}.labels': {reserved[0]!r} is the pipeline's own "
                f"no-label answer ({NONE_LABEL!r}); rename that label (e.g. 'no_{NONE_LABEL}')"
            )
    return problems


def load_config(snakemake_config: dict | None = None, config_dir: Path = CONFIG_DIR) -> dict:
    """Compose from Snakemake's ``--config`` dict (``experiment`` + overrides) and validate.

    Without ``experiment`` the default of config/config.yaml's defaults list is used. The
    result always holds ``alignment`` and ``analyses`` with every key (config/alignment/,
    config/analyses/ defaults, overridden by the experiment and the overrides)."""
    items = dict(snakemake_config or {})
    experiment = items.pop("experiment", None)
    experiment = None if experiment is None else str(experiment)
    search_path = items.pop(SEARCH_PATH_KEY, None)
    cfg = compose(experiment, _overrides_from(items), config_dir, search_path)
    if not cfg.get("results_dir"):
        # the experiment file's name (one built on demo inherits its experiment_name)
        cfg["results_dir"] = default_results_dir(
            experiment or default_experiment(config_dir), config_dir
        )
    validate(cfg)
    return cfg
