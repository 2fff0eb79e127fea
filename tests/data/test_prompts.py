"""Prompt building, demo sampling, label formats and output parsing (multilabel_llm.data.prompts)."""

import pytest

from multilabel_llm.data.prompts import (
    PromptBuilder,
    format_labels,
    join_labels,
    order_labels,
    parse_output,
    pick_template,
    resolve_prompt,
    resolve_prompt_config,
    sample_demos,
)
from tests.builders import TOY_PROMPT_CFG, toy_dataset

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


def test_resolved_prompt_holds_the_template_and_the_label_forms_once():
    cfg = {**TOY_PROMPT_CFG, "label_forms": {"capitalised": False}}
    prompt = resolve_prompt_config(cfg, "goemotions")
    assert prompt.spec == resolve_prompt(cfg, "goemotions")
    assert (prompt.capitalised, prompt.leading_space) == (False, True)
    with pytest.raises(AttributeError):
        prompt.capitalised = True  # frozen: the engine reads it, never changes it


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
        ('\n{"label": ["fe', "json"),  # cut off inside the only label
        ('\n{"label": ["fear"] and more', "json"),  # text after the list: not a cut list
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


@pytest.mark.parametrize(
    ("text", "labels", "spans"),
    [
        # complete items count; a trailing fragment only if it is a whole label name
        ('\n{"label": ["sadness", "joy', ["sadness", "joy"], [("sadness", 13), ("joy", 24)]),
        ('\n{"label": ["sadness", "jo', ["sadness"], [("sadness", 13)]),
        ('\n{"label": ["sadness", ', ["sadness"], [("sadness", 13)]),
        ('\n{"label": ["sadness"]', ["sadness"], [("sadness", 13)]),  # brace missing
        ('\n{"label": ["none', [], [("none", 13)]),
    ],
)
def test_cut_json_list_is_read_up_to_the_cut(text, labels, spans):
    out = parse_output(text, ["joy", "sadness"], "json")
    assert out.truncated is True
    assert out.labels == labels and out.spans == spans


def test_cut_comma_list_and_complete_lists_are_not_flagged():
    labs = ["care", "loyalty"]
    cut = parse_output(" care, loy", labs, "comma")
    assert (cut.labels, cut.truncated, cut.unknown) == (["care"], True, [])
    assert parse_output(" care, ", labs, "comma").truncated is True
    whole = parse_output(" care, loyalty", labs, "comma")  # ended by EOS, last item whole
    assert (whole.labels, whole.truncated) == (["care", "loyalty"], False)
    done = parse_output('\n{"label": ["care"]}', labs, "json")
    assert done.truncated is False
    only = parse_output('\n{"label": ["lo', labs, "json")
    assert only.labels is None and only.truncated is True


GERMAN = ["Ärger", "Freude", "Angst", "Überraschung"]
FRENCH = ["colère", "joie", "peur", "écœurement"]


def test_non_ascii_labels_round_trip():
    assert format_labels(["Ärger"], "json") == '{"label": ["Ärger"]}'  # not \u00c4rger
    out = parse_output('\n{"label": ["Ärger", "Überraschung"]}', GERMAN, "json")
    assert out.labels == ["Ärger", "Überraschung"]
    assert out.spans == [("Ärger", 13), ("Überraschung", 22)]
    fr = parse_output('\n{"label": ["colère", "écœurement"]}', FRENCH, "json")
    assert fr.labels == ["colère", "écœurement"] and fr.unknown == []
    assert parse_output(" colère, peur\n", FRENCH, "comma").labels == ["colère", "peur"]
    # the escaped spelling a model might copy from an old prompt still parses
    assert parse_output('{"label": ["\\u00c4rger"]}', GERMAN, "json").labels == ["Ärger"]


def test_templating_is_literal():
    ds = toy_dataset()
    ds.examples.loc[ds.examples["id"] == "tr1", "text"] = "see {label} and {text} and {labels}"
    spec = resolve_prompt(TOY_PROMPT_CFG, ds.name)
    pb = PromptBuilder.from_dataset(spec, ds)
    query = "what is {label}? and {text}"
    prompt = pb.prompt(query)
    assert prompt.endswith("\nInput: what is {label}? and {text}")
    demo_texts = [t for t, _ in pb.demos]
    if "see {label} and {text} and {labels}" in demo_texts:
        assert "Input: see {label} and {text} and {labels}\n{" in prompt
    # a demo text with a placeholder, built directly: gold labels go only where the template
    # puts them
    block = pb.block("a {label} b", ["joy"])
    assert block == 'Input: a {label} b\n{"label": ["joy"]}\n'
    assert pb.query("x {label} y") == "Input: x {label} y\n"
    assert prompt.count('{"label"') == len(pb.demos)


def test_max_new_tokens_validation():
    with pytest.raises(ValueError, match="max_new_tokens 'lots'"):
        resolve_prompt({**TOY_PROMPT_CFG, "max_new_tokens": "lots"}, "goemotions")
    with pytest.raises(ValueError, match="max_new_tokens 0"):
        resolve_prompt({**TOY_PROMPT_CFG, "max_new_tokens": 0}, "goemotions")
    with pytest.raises(ValueError, match="label_scoring 'beam'"):
        resolve_prompt({**TOY_PROMPT_CFG, "label_scoring": "beam"}, "goemotions")
    assert (
        resolve_prompt({**TOY_PROMPT_CFG, "max_new_tokens": "auto"}, "x").max_new_tokens == "auto"
    )
