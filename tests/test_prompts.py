"""Prompt building, demo sampling, label formats and output parsing (multilabel_llm.prompts)."""

import pytest

from multilabel_llm.engine.testing import TOY_PROMPT_CFG, toy_dataset
from multilabel_llm.prompts import (
    PromptBuilder,
    format_labels,
    join_labels,
    order_labels,
    parse_output,
    pick_template,
    resolve_prompt,
    sample_demos,
)

LABELS = ["joy", "optimism", "admiration", "surprise", "fear", "sadness", "anger"]


def test_join_and_formats():
    assert join_labels(["a", "b", "c", "d"]) == "a, b, c and d"
    assert join_labels(["a"]) == "a"
    assert format_labels(["joy", "fear"], "json") == '{"label": ["joy", "fear"]}'
    assert format_labels([], "json") == '{"label": ["none"]}'
    assert format_labels(["care", "loyalty"], "comma") == "care, loyalty"
    assert format_labels([], "comma") == "none"


def test_label_orders():
    assert order_labels(["b", "c", "a"], "dataset") == ["b", "c", "a"]
    assert order_labels(["b", "c", "a"], "alphabetical") == ["a", "b", "c"]
    assert order_labels(["b", "c", "a"], "reverse") == ["c", "b", "a"]
    r1 = order_labels(LABELS, "random", seed=1)
    assert sorted(r1) == sorted(LABELS) and r1 == order_labels(LABELS, "random", seed=1)


def test_prompt_matches_paper_layout():
    ds = toy_dataset()
    spec = resolve_prompt(TOY_PROMPT_CFG, ds.name)
    pb = PromptBuilder.from_dataset(spec, ds)
    prompt = pb.prompt("Hello there")
    assert prompt.startswith(
        "Classify the following inputs into none, one, or multiple the following emotions per "
        "input: joy, optimism, admiration, surprise, fear, sadness and anger. Output exactly "
        "these emotions and no others.\nInput: "
    )
    assert prompt.endswith("\nInput: Hello there")  # stripped: the model writes "\n{...}"
    assert prompt.count("Input: ") == 11
    assert prompt.startswith(pb.prefix())
    assert pb.completion(["fear"]) == '\n{"label": ["fear"]}\n'


def test_demo_sampling_ratio_and_seed():
    ds = toy_dataset()
    pool = ds.split("train")
    spec = resolve_prompt(TOY_PROMPT_CFG, ds.name)
    demos = sample_demos(pool, spec, LABELS, multilabel=True)
    n_multi = sum(len(x) > 1 for x in demos["labels"])
    assert len(demos) == 10 and n_multi == 5
    assert (demos["labels"].map(len) > 0).all()  # no none demos in the multilabel strategy
    again = sample_demos(pool, spec, LABELS, multilabel=True)
    assert demos["id"].tolist() == again["id"].tolist()
    spec2 = resolve_prompt({**TOY_PROMPT_CFG, "multilabel_ratio": 0.3}, ds.name)
    assert sum(len(x) > 1 for x in sample_demos(pool, spec2, LABELS, True)["labels"]) == 3


def test_demo_labels_follow_label_order():
    ds = toy_dataset()
    spec = resolve_prompt({**TOY_PROMPT_CFG, "label_order": "reverse"}, ds.name)
    pb = PromptBuilder.from_dataset(spec, ds)
    assert pb.labels == sorted(LABELS, reverse=True)
    for _, labs in pb.demos:
        assert labs == sorted(labs, reverse=True)
    assert "surprise, sadness, optimism, joy, fear, anger and admiration" in pb.prompt("x")


def test_template_selection_and_errors():
    cfg = {
        **TOY_PROMPT_CFG,
        "templates": {
            **TOY_PROMPT_CFG["templates"],
            "mfrc": {
                "instruction": "MF {labels}.\n",
                "example": "Input: {text}\nMoral foundation(s): {label}\n",
                "label_format": "comma",
            },
        },
    }
    assert pick_template(cfg, "mfrc", "x") == "mfrc"
    assert pick_template(cfg, None, "unknown") == "default"
    spec = resolve_prompt(cfg, "whatever", "mfrc")
    assert spec.label_format == "comma"
    with pytest.raises(ValueError, match="label_format"):
        resolve_prompt({**TOY_PROMPT_CFG, "label_format": "xml"}, "goemotions")
    with pytest.raises(ValueError, match="no template"):
        resolve_prompt({"name": "p", "templates": {"a": {}}}, "goemotions")


@pytest.mark.parametrize(
    ("text", "fmt", "labels", "spans"),
    [
        ('\n{"label": ["fear", "joy"]}', "json", ["fear", "joy"], [("fear", 13), ("joy", 21)]),
        ('\n{"label": ["none"]}', "json", [], [("none", 13)]),
        ('\n{"label": []}', "json", [], []),
        (" care, loyalty\nInput", "comma", [], None),
        ("none", "comma", [], [("none", 0)]),
    ],
)
def test_parse_output(text, fmt, labels, spans):
    labs = ["fear", "joy", "care", "loyalty"]
    out = parse_output(text, labs, fmt)
    if text.startswith(" care"):
        assert out.labels == ["care", "loyalty"] and out.spans == [("care", 1), ("loyalty", 7)]
        return
    assert out.labels == labels
    assert out.spans == spans


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ('\n{"label": ["fear"', "json"),  # cut off
        ("I think it is sad", "json"),  # no JSON at all
        ('{"labels": "fear"}', "json"),  # wrong shape
        ("", "comma"),
        ("I am not sure", "comma"),  # only unknown words
    ],
)
def test_unparseable_outputs(text, fmt):
    assert parse_output(text, ["fear", "joy"], fmt).labels is None


def test_unknown_labels_are_reported_not_kept():
    out = parse_output('{"label": ["fear", "happiness"]}', ["fear", "joy"], "json")
    assert out.labels == ["fear"] and out.unknown == ["happiness"]
