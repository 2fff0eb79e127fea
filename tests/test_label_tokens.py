"""Label-token detection: in-context first tokens, surface forms, shared first tokens."""

import numpy as np
import pytest

from multilabel_llm.engine.label_tokens import answer_tokens, detect_label_tokens
from multilabel_llm.engine.testing import bundled_model as bundled

LABELS = ["joy", "optimism", "admiration", "surprise", "fear", "sadness", "anger"]


@pytest.fixture(scope="module")
def tok():
    return bundled()[1]


def test_primary_forms_are_in_context_fragments(tok):
    lt = detect_label_tokens(tok, LABELS, "json")
    prim = {lab: tok.decode([tid]) for lab, tid in lt.primary_ids().items()}
    # DESIGN.md: in the JSON format SmolLM2 starts these labels with fragments, no space.
    assert prim == {
        "joy": "joy",
        "optimism": "optim",
        "admiration": "ad",
        "surprise": "sur",
        "fear": "f",
        "sadness": "s",
        "anger": "anger",
        "none": "none",
    }
    assert lt.labels == [*LABELS, "none"]


def test_surface_forms_cover_space_and_capitals(tok):
    lt = detect_label_tokens(tok, LABELS, "json")
    joy = {f["text"] for f in lt.forms if f["label"] == "joy"}
    assert {"joy", " joy", " Joy"} <= joy
    assert tok.encode(" fear")[0] in [f["token_id"] for f in lt.forms if f["label"] == "fear"]
    none = {f["text"] for f in lt.forms if f["label"] == "none"}
    assert {"none", " none", "None"} <= none


def test_comma_format_primary_has_leading_space(tok):
    lt = detect_label_tokens(tok, ["care", "loyalty"], "comma", lead=" ")
    assert tok.decode([lt.primary_ids()["care"]]) == " care"


def test_reduce_takes_max_over_forms(tok):
    lt = detect_label_tokens(tok, ["joy", "fear"], "json")
    idx = lt.form_label_index
    logits = np.arange(len(lt.forms), dtype=float)
    red = lt.reduce(logits[None])[0]
    for k in range(3):
        assert red[k] == max(logits[j] for j in range(len(idx)) if idx[j] == k)


def test_shared_first_token_is_detected_and_resolved(tok):
    # "sad" and "sadness" both start with the JSON fragment "s": a true primary collision.
    lt = detect_label_tokens(tok, ["sad", "sadness", "joy"], "json")
    shared = {tuple(s["labels"]): s for s in lt.shared}
    s_tok = tok.convert_tokens_to_ids("s")
    hits = [s for s in lt.shared if s["token_id"] == s_tok]
    assert hits and set(hits[0]["labels"]) == {"sad", "sadness"}
    assert "collision" in hits[0]["resolution"]
    assert shared  # reported for the trace meta
    # "surprise" (primary "sur") and "sadness" (primary "s"): capitals "Sur"/"Sad" differ, so
    # the GoEmotions label set has no shared tokens at all.
    assert detect_label_tokens(tok, LABELS, "json").shared == []


def test_secondary_only_collision_is_dropped(tok):
    # "Art" and "Arts" share capitalised/space forms but their primaries differ in JSON? Both
    # start with "art" -> primary collision; use distinct primaries with a shared " X" form.
    lt = detect_label_tokens(tok, ["joyful", "joy"], "json")
    for s in lt.shared:
        kept = s["kept_for"]
        owners = [f["label"] for f in lt.forms if f["token_id"] == s["token_id"]]
        assert sorted(owners) == sorted(kept)


def test_answer_tokens(tok):
    ans = answer_tokens(tok, ["reasonable", "unreasonable"])
    texts = {f["label"]: f["text"] for f in ans.forms if f["primary"]}
    assert texts == {"reasonable": " reasonable", "unreasonable": " unreasonable"}
    ab = answer_tokens(tok, ["a", "b"])
    assert {f["text"] for f in ab.forms} == {" a", "a", " b", "b"}
