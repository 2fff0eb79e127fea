"""Config composition and validation: a wrong key or value is reported by name."""

from pathlib import Path

import pytest

from multilabel_llm.config import ConfigError, compose, load_config, validate


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
    # Paper-scale experiments must at least compose and validate (they are dry-run on CI).
    for path in sorted((Path(__file__).parents[1] / "config" / "experiment").glob("*.yaml")):
        cfg = load_config({"experiment": path.stem})
        assert cfg["experiment_name"] == path.stem


def test_yaml_mistake_in_a_config_file_names_the_file(tmp_path):
    import shutil

    from multilabel_llm.config import CONFIG_DIR

    config_dir = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config_dir)
    (config_dir / "experiment" / "broken.yaml").write_text(
        "# @package _global_\ndatasets:\n  a: {x: 1}\n  a: {x: 2}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"broken\.yaml.*line 4|duplicate key"):
        compose("broken", config_dir=config_dir)
