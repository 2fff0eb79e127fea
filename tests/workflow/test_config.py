"""Config composition and validation: a wrong key or value is reported by name."""

from pathlib import Path

import pytest

from multilabel_llm.workflow.config import (
    SEARCH_PATH_ENV,
    ConfigError,
    compose,
    config_files,
    config_search_path,
    group_options,
    load_config,
    validate,
)


def test_demo_experiment_composes_and_validates():
    cfg = load_config({"experiment": "demo"})
    assert cfg["experiment_name"] == "demo"
    assert cfg["datasets"] and cfg["models"] and cfg["prompts"] and cfg["methods"]
    assert cfg["models"]["smollm2"]["size_class"] == "tiny"


def test_overrides_string_is_passed_to_hydra():
    cfg = load_config(
        {
            "experiment": "demo",
            "overrides": "models.smollm2.dtype=bfloat16 studies.mechanisms.testsets=[main_test_set]",
        }
    )
    assert cfg["models"]["smollm2"]["dtype"] == "bfloat16"
    assert cfg["studies"]["mechanisms"]["testsets"] == ["main_test_set"]


def test_nested_config_mapping_merges_with_typed_leaves():
    # Snakemake hands nested --config leaves over as strings; Hydra's parser types them again.
    cfg = load_config(
        {"experiment": "demo", "methods": {"hard_predictions": {"params": {"epsilon": "1e-6"}}}}
    )
    assert cfg["methods"]["hard_predictions"]["params"]["epsilon"] == pytest.approx(1e-6)


def test_overrides_of_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="'overrides'"):
        load_config({"experiment": "demo", "overrides": 3})


def test_unknown_experiment_names_key_and_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config({"experiment": "no_such_experiment"})
    message = str(err.value)
    assert "'experiment'" in message
    assert "demo" in message  # the allowed values are listed


def test_bad_size_class_is_rejected_naming_the_key():
    with pytest.raises(ConfigError) as err:
        load_config({"experiment": "demo", "overrides": "models.smollm2.size_class=huge"})
    message = str(err.value)
    assert "models.smollm2.size_class" in message
    assert "'huge'" in message and "'b70'" in message
    assert "renamed" not in message  # 'huge' was never a class name


def test_size_classes_are_addressable_by_hydra_overrides():
    # the reason for the b1/b8/b70 names: `size_classes.70b.gpu` is a Hydra parse error
    cfg = load_config({"experiment": "paper", "overrides": "resources.size_classes.b70.gpu=2"})
    assert cfg["resources"]["size_classes"]["b70"]["gpu"] == 2
    assert set(cfg["resources"]["size_classes"]) == {"tiny", "b1", "b8", "b70"}
    nested = load_config(
        {"experiment": "paper", "resources": {"size_classes": {"b8": {"gpu": "2"}}}}
    )
    assert nested["resources"]["size_classes"]["b8"]["gpu"] == 2


@pytest.mark.parametrize("old, new", [("1b", "b1"), ("8b", "b8"), ("70b", "b70")])
def test_old_size_class_name_in_a_model_says_what_it_became(old, new):
    with pytest.raises(ConfigError) as err:
        load_config({"experiment": "demo", "overrides": f"models.smollm2.size_class={old}"})
    assert (
        f"config key 'models.smollm2.size_class': '{old}' is not allowed; it was renamed to '{new}'"
        in str(err.value)
    )


def test_old_size_class_name_in_an_override_says_what_it_became():
    with pytest.raises(ConfigError) as err:
        load_config({"experiment": "paper", "overrides": "resources.size_classes.70b.gpu=2"})
    assert "size class '70b' was renamed to 'b70'" in str(err.value)
    with pytest.raises(ConfigError, match="size class '8b' was renamed to 'b8'"):
        load_config({"experiment": "paper", "resources": {"size_classes": {"8b": {"gpu": "2"}}}})


def test_old_size_class_name_in_a_resources_file_says_what_it_became():
    cfg = compose("demo")
    cfg["resources"]["size_classes"]["70b"] = cfg["resources"]["size_classes"].pop("tiny")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert (
        "config key 'resources.size_classes.70b': size class '70b' was renamed to 'b70'" in message
    )


def test_unknown_top_level_key_is_rejected():
    cfg = compose("demo")
    cfg["reslts_dir"] = "typo"
    with pytest.raises(ConfigError, match="reslts_dir"):
        validate(cfg)


def test_missing_required_key_is_rejected():
    cfg = compose("demo")
    del cfg["datasets"]
    with pytest.raises(ConfigError, match="'datasets' is a required property"):
        validate(cfg)


def test_override_of_missing_key_fails_before_anything_runs():
    with pytest.raises(ConfigError, match="models.smollm2.no_such_key"):
        load_config({"experiment": "demo", "overrides": "models.smollm2.no_such_key=1"})


def test_every_experiment_file_composes(tmp_path: Path):
    # Paper-scale experiments must at least compose and validate (they are dry-run on CI);
    # the test experiments of tests/config too (conftest puts that tree on the search path).
    for path in config_files("experiment"):
        cfg = load_config({"experiment": path.stem})
        assert cfg["experiment_name"] == path.stem


def test_yaml_mistake_in_a_config_file_names_the_file(tmp_path):
    import shutil

    from multilabel_llm.workflow.config import CONFIG_DIR

    config_dir = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config_dir)
    (config_dir / "experiment" / "broken.yaml").write_text(
        "# @package _global_\ndatasets:\n  a: {x: 1}\n  a: {x: 2}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"broken\.yaml.*line 4|duplicate key"):
        compose("broken", config_dir=config_dir)


# ---------------------------------------------------------------- defaults in the Hydra tree

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = group_options("experiment")  # config/ and tests/config


def _group_default(group: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / "config" / group / "default.yaml").read_text(encoding="utf-8"))


def _schema_keys(group: str) -> set[str]:
    import yaml

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    return set(schema["properties"][group]["properties"])


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_alignment_and_analyses_are_always_fully_populated(experiment):
    cfg = load_config({"experiment": experiment})
    for group in ("alignment", "analyses"):
        # every key the schema knows, each with a value from the group default or the experiment
        assert set(cfg[group]) == _schema_keys(group) == set(_group_default(group)), group
    assert cfg["analyses"]["max_step"] == 2
    assert cfg["alignment"]["nll_clip"] == pytest.approx(1e-8)


def test_experiments_override_single_group_defaults():
    defaults = _group_default("alignment")
    smoke = load_config({"experiment": "paper_smoke"})["alignment"]
    assert smoke["bootstrap_n"] == 100  # set by the experiment
    assert {k: v for k, v in smoke.items() if k != "bootstrap_n"} == {
        k: v for k, v in defaults.items() if k != "bootstrap_n"
    }
    assert load_config({"experiment": "demo"})["alignment"]["token_level_threshold"] is None
    token = load_config({"experiment": "token_marginalization"})["alignment"]
    assert token["token_level_threshold"] == 0.2 and token["bootstrap_n"] == 50
    cfg = load_config(
        {"experiment": "demo", "overrides": "alignment.nll_clip=1e-6 analyses.max_step=3"}
    )
    assert cfg["alignment"]["nll_clip"] == pytest.approx(1e-6)
    assert cfg["analyses"]["max_step"] == 3


@pytest.mark.parametrize(
    "items",
    [
        {"overrides": "alignment.epsilon=1e-6"},
        {"overrides": "+alignment.epsilon=1e-6"},
        {"alignment": {"epsilon": "1e-6"}},  # a nested --config mapping
    ],
)
def test_old_alignment_epsilon_names_nll_clip(items):
    with pytest.raises(ConfigError) as err:
        load_config({"experiment": "demo", **items})
    assert "'alignment.epsilon' was renamed to 'alignment.nll_clip'" in str(err.value)


def test_old_alignment_epsilon_in_an_experiment_file_names_nll_clip(tmp_path):
    import shutil

    from multilabel_llm.workflow.config import CONFIG_DIR

    config_dir = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config_dir)
    (config_dir / "experiment" / "old.yaml").write_text(
        "# @package _global_\ndefaults:\n  - demo\n  - _self_\n"
        "experiment_name: old\nalignment:\n  epsilon: 1.0e-6\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config({"experiment": "old"}, config_dir=config_dir)
    assert "'alignment.epsilon' was renamed to 'alignment.nll_clip'" in str(err.value)


def test_missing_alignment_key_is_rejected():
    cfg = compose("demo")
    del cfg["alignment"]["digits"]
    with pytest.raises(ConfigError, match="config key 'alignment': 'digits' is a required"):
        validate(cfg)


def test_default_experiment_is_set_in_config_yaml_only():
    import yaml

    root = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    default = next(
        e["experiment"] for e in root["defaults"] if isinstance(e, dict) and "experiment" in e
    )
    assert load_config({})["experiment_name"] == default
    assert load_config(None)["experiment_name"] == default
    source = (ROOT / "src/multilabel_llm/workflow/config.py").read_text(encoding="utf-8")
    assert f'"{default}"' not in source and f"'{default}'" not in source


# ---------------------------------------------------------------- the test-only config tree

TEST_TREE = ROOT / "tests" / "config"


def _options(tree: Path) -> set[str]:
    return {p.relative_to(tree).with_suffix("").as_posix() for p in tree.rglob("*.yaml")}


def test_test_configs_sit_in_their_own_tree():
    # first tree wins: a test option named like a product one would be silently shadowed
    product, test_only = _options(ROOT / "config"), _options(TEST_TREE)
    assert {"experiment/tiny", "experiment/paper_smoke", "model/standin_llama3_8b"} <= test_only
    assert not product & test_only
    assert not [o for o in product if o.startswith("model/standin_") or o.endswith("_smoke")]


def test_product_experiments_compose_without_the_test_tree(monkeypatch):
    monkeypatch.delenv(SEARCH_PATH_ENV, raising=False)
    for path in sorted((ROOT / "config" / "experiment").glob("*.yaml")):
        assert load_config({"experiment": path.stem})["experiment_name"] == path.stem


def test_test_experiment_without_the_search_path_names_the_variable(monkeypatch):
    monkeypatch.delenv(SEARCH_PATH_ENV, raising=False)
    with pytest.raises(ConfigError) as err:
        load_config({"experiment": "tiny"})
    message = str(err.value)
    assert "config key 'experiment': unknown value 'tiny'" in message
    assert f"{SEARCH_PATH_ENV}=tests/config" in message and "config_path=DIR" in message


def test_search_path_from_the_config_key_and_missing_trees(monkeypatch):
    monkeypatch.delenv(SEARCH_PATH_ENV, raising=False)
    cfg = load_config({"experiment": "tiny", "config_path": "tests/config"})
    assert cfg["experiment_name"] == "tiny" and "config_path" not in cfg
    monkeypatch.setenv(SEARCH_PATH_ENV, "no/such/tree")
    with pytest.raises(ConfigError, match=rf"\${SEARCH_PATH_ENV}: config directory 'no/such/tree'"):
        load_config({"experiment": "demo"})


# ---------------------------------------------------------------- the method probability floor

FLOOR_METHODS = (
    "hard_predictions",
    "max_over_generations",
    "sft_outputs",
    "sft_max_over_generations",
)


def test_probability_floor_literal_appears_once_in_config():
    import re

    number = re.compile(r"\b1(?:\.0)?e-0?8\b", re.I)
    hits = [
        (str(p.relative_to(ROOT)), line.split("#")[0].strip())
        for tree in config_search_path()
        for p in sorted(tree.rglob("*.yaml"))
        for line in p.read_text(encoding="utf-8").splitlines()
        if number.search(line.split("#")[0])
    ]
    # one literal per knob: the methods' floor and the NLL clip
    assert hits == [
        ("config/alignment/default.yaml", "nll_clip: 1.0e-8"),
        ("config/config.yaml", "probability_floor: 1.0e-8"),
    ]


def test_probability_floor_reaches_every_floored_method():
    cfg = load_config({"experiment": "paper"})
    for method in FLOOR_METHODS:
        assert cfg["methods"][method]["params"]["epsilon"] == cfg["probability_floor"] == 1e-8
    moved = load_config({"experiment": "paper", "overrides": "probability_floor=1e-6"})
    assert {moved["methods"][m]["params"]["epsilon"] for m in FLOOR_METHODS} == {1e-6}
    assert moved["alignment"]["nll_clip"] == pytest.approx(1e-8)  # a separate knob
    # one method's own value still wins
    own = load_config(
        {"experiment": "demo", "overrides": "methods.hard_predictions.params.epsilon=1e-3"}
    )
    assert own["methods"]["hard_predictions"]["params"]["epsilon"] == pytest.approx(1e-3)
    assert own["methods"]["max_over_generations"]["params"]["epsilon"] == pytest.approx(1e-8)


# ---------------------------------------------------------------- contracts on slot names and kinds


def test_method_schema_takes_kinds_and_params_from_the_registry():
    import yaml

    from multilabel_llm.methods.registry import METHOD_KINDS, params_schema

    schema = yaml.safe_load((ROOT / "workflow/schemas/method.schema.yaml").read_text())
    assert schema["properties"]["kind"]["enum"] == list(METHOD_KINDS)
    blocks = {
        rule["if"]["properties"]["kind"]["const"]: rule["then"]["properties"]["params"]
        for rule in schema["allOf"]
    }
    assert blocks == {kind: params_schema(kind) for kind in METHOD_KINDS}


def test_method_kind_and_params_errors_name_the_key_and_the_allowed_values():
    cfg = load_config({"experiment": "demo"})
    cfg["methods"]["constant"]["kind"] = "constnat"
    cfg["methods"]["unary_breakdown"]["params"] = {"single_label_norm": "max", "temp": 1}
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert "config key 'methods.constant.kind': 'constnat' is not allowed; allowed values: [" in (
        message
    )
    assert "config key 'methods.unary_breakdown.params.single_label_norm': 'max' is not " in (
        message
    )
    assert "config key 'methods.unary_breakdown.params': Additional properties" in message
    assert "allowed keys: ['single_label_norm']" in message


def test_distribution_producer_follows_the_kind():
    from multilabel_llm.workflow.studies import distribution_producer, methods_of_producer

    cfg = load_config({"experiment": "demo"})
    got = {m: distribution_producer(c) for m, c in cfg["methods"].items()}
    assert got["probes"] == "probes" and got["demux"] == "demux"
    assert got["binary_breakdown_both_orders"] == "estimate_binary"
    assert got["token_marginalization"] == "marginalize"
    assert got["sft_outputs"] == got["constant"] == "estimate"
    assert methods_of_producer(cfg, "probes") == ["probes"]
    assert "binary_breakdown" in methods_of_producer(cfg, "estimate_binary")
    # a probe method under another slot name is still a probe method
    renamed = load_config(
        {
            "experiment": "demo",
            "overrides": [
                "~methods.probes",
                "+methods.linear_probes={name: probes, display_name: LP, group: supervised, "
                "kind: probes}",
            ],
        }
    )
    assert methods_of_producer(renamed, "probes") == ["linear_probes"]


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "methods.probes.kind=hard_predictions",
            "config key 'methods.probes.kind': slot 'probes' is named after the kind 'probes' "
            "but has kind 'hard_predictions'",
        ),
        (
            "methods.demux.kind=probes",
            "config key 'methods.demux.kind': slot 'demux' is named after the kind 'demux'",
        ),
        (
            "methods.demux.kind=external",
            "config key 'methods.demux.kind': kind 'external' was split by producer; use "
            "'probes' (linear probes) or 'demux'",
        ),
        (
            "+model@models.smollm2-sft=smollm2_135m_instruct",
            "config key 'models.smollm2-sft': a model slot may not end in '-sft'",
        ),
    ],
)
def test_slot_name_and_kind_contracts_are_checked_at_config_time(override, message):
    with pytest.raises(ConfigError) as err:
        load_config({"experiment": "demo", "overrides": override})
    assert message in str(err.value)
