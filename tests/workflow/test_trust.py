"""Issue 15: no silent wrong results and errors that name the file, line and key.

Too-long prompts, unknown names in the config, loader input that would be misread (0/1
labels, byte-order marks, non-UTF-8 bytes, empty and header-only files, a TAB inside a
tweet), a bad ``overrides=`` string, and outputs that respect the umask and name the path
when the disk is full or the directory is read-only.
"""

import errno
import os
import stat
from pathlib import Path

import pytest

from multilabel_llm.core import io
from multilabel_llm.data import prepare
from multilabel_llm.data._common import DatasetFormatError
from tests.builders import TOY_PROMPT_CFG, toy_dataset

ROOT = Path(__file__).resolve().parents[2]
GOEMO = ROOT / "data" / "goemotions"
SEMEVAL = ROOT / "tests" / "fixtures" / "datasets" / "semeval"

# --- too-long prompts (item 6) ---------------------------------------------------------------

NO_DEMOS = {**TOY_PROMPT_CFG, "n_shots": 0, "max_new_tokens": 4}


def _long_dataset():
    ds = toy_dataset(n_queries=3)
    frame = ds.examples
    frame.loc[frame["id"] == "q1", "text"] = "worried " * 400  # ~400 tokens
    return ds


def test_too_long_prompt_fails_naming_count_and_longest(tmp_path):
    from multilabel_llm.engine.run import extract_traces
    from tests.builders import tiny_model

    model, tok = tiny_model()
    ds = _long_dataset()
    ids = ["q0", "q1", "q2"]
    with pytest.raises(ValueError, match=r"1 of 3 prompts do not fit .* 200 tokens .*'q1'"):
        extract_traces(ds, ids, model, tok, NO_DEMOS, tmp_path / "t.jsonl.gz", max_context=200)
    assert not (tmp_path / "t.jsonl.gz").exists()


def test_too_long_prompt_truncated_when_configured(tmp_path, caplog):
    from multilabel_llm.core.traces import read_traces
    from multilabel_llm.engine.run import extract_traces, plan_run
    from tests.builders import tiny_model

    model, tok = tiny_model()
    ds = _long_dataset()
    ids = ["q0", "q1", "q2"]
    full = plan_run(ds, ids, tok, NO_DEMOS)
    assert len(full.prompts[1]) > 400  # the model's own 4096 context would take it
    with caplog.at_level("WARNING"):
        extract_traces(
            ds, ids, model, tok, NO_DEMOS, tmp_path / "t.jsonl.gz",
            max_context=200, too_long="truncate",
        )  # fmt: skip
    assert "1 of 3 query texts were cut" in caplog.text
    meta, traces = read_traces(tmp_path / "t.jsonl.gz")
    assert [t.id for t in traces] == ids and meta.info["n_truncated"] == 1
    cut = plan_run(ds, ids, tok, NO_DEMOS, max_context=200, too_long="truncate")
    assert 190 <= len(cut.prompts[1]) <= 196  # fits with the 4 answer tokens, barely cut more
    assert cut.prompts[0] == full.prompts[0] and cut.prompts[2] == full.prompts[2]
    with pytest.raises(ValueError, match="too_long_prompts"):
        plan_run(ds, ids, tok, NO_DEMOS, max_context=200, too_long="cut")


# --- names checked at config time (item 7) ---------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("+roles.table9=smollm2", r"config key 'roles': unknown roles \['table9'\]"),
        ("roles.table2={model:smollm2,promt:json10}", r"'roles.table2': unknown keys \['promt'\]"),
        ("+studies.alignment.exclude=[{modle:smollm2}]", r"exclude\[0\]': unknown key 'modle'"),
        ("+studies.alignment.exclude=[{model:nosuch}]", r"exclude\[0\].model': 'nosuch'"),
        ("+studies.alignment.exclude=[{method:nosuch}]", r"exclude\[0\].method': 'nosuch'"),
    ],
)
def test_unknown_names_stop_at_config_time(override, message):
    from multilabel_llm.workflow.config import compose
    from multilabel_llm.workflow.studies import StudyError, resolve_studies

    with pytest.raises(StudyError, match=message):
        resolve_studies(compose("demo", [override]))


def test_exclude_with_known_names_still_resolves():
    from multilabel_llm.workflow.config import compose
    from multilabel_llm.workflow.studies import resolve_studies

    cfg = compose("demo", ["+studies.alignment.exclude=[{model:smollm2-sft,method:constant}]"])
    assert resolve_studies(cfg)["alignment"].exclude == [
        {"model": "smollm2-sft", "method": "constant"}
    ]


def test_bad_overrides_string_names_the_key():
    from multilabel_llm.workflow.config import ConfigError, _overrides_from

    with pytest.raises(ConfigError, match=r"config key 'overrides': cannot split .*closing quot"):
        _overrides_from({"overrides": "prompts.json10.seed='3"})
    assert _overrides_from({"overrides": "a.b='x y' c=1"}) == ["a.b=x y", "c=1"]


# --- loaders (items 8, 9 and errors naming the file) -----------------------------------------


def _goemo(tmp_path, dev_bytes: bytes, emotions: bytes | None = None):
    (tmp_path / "dev.tsv").write_bytes(dev_bytes)
    emo = GOEMO / "emotions.txt"
    if emotions is not None:
        emo = tmp_path / "emotions.txt"
        emo.write_bytes(emotions)
    files = {"dev": "dev.tsv", "emotions": str(emo)}
    return {"name": "g", "loader": "goemotions", "files": files}


def test_bom_is_not_part_of_the_first_text_or_label(tmp_path):
    bom = "\ufeff".encode()
    emotions = (GOEMO / "emotions.txt").read_bytes()
    cfg = _goemo(tmp_path, bom + b"Hello there\t1\tid1\nBye\t27\tid2\n", bom + emotions)
    ds = prepare(cfg, tmp_path)
    first = ds.examples.set_index("id").loc["id1"]
    assert first["text"] == "Hello there"
    assert list(first["labels"]) == ["amusement"]


def test_non_utf8_bytes_name_file_line_and_column(tmp_path):
    cfg = _goemo(tmp_path, b"fine\t1\tid1\ncaf\xe9 au lait\t2\tid2\n")
    with pytest.raises(DatasetFormatError, match=r"dev\.tsv:2: byte b'\\xe9' at column 4 is not"):
        prepare(cfg, tmp_path)


def test_empty_files_are_named(tmp_path):
    cfg = _goemo(tmp_path, b"")
    with pytest.raises(DatasetFormatError, match=r"dev\.tsv: the file is empty \(0 bytes\)"):
        prepare(cfg, tmp_path)
    (tmp_path / "d.csv").write_bytes(b"")
    generic = {"loader": "generic", "multilabel": True, "files": {"data": "d.csv"}}
    with pytest.raises(DatasetFormatError, match=r"d\.csv: the file is empty"):
        prepare(generic, tmp_path)
    (tmp_path / "d.csv").write_text("id,text,labels\n")
    with pytest.raises(DatasetFormatError, match=r"d\.csv: a header .* but no data rows"):
        prepare(generic, tmp_path)


def test_tab_inside_a_semeval_tweet_names_file_and_line(tmp_path):
    lines = (SEMEVAL / "2018-E-c-En-dev.txt").read_text().splitlines()
    tweet_id, tweet, *rest = lines[1].split("\t")
    lines[1] = "\t".join([tweet_id, tweet[:5] + "\t" + tweet[5:], *rest])
    (tmp_path / "dev.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DatasetFormatError, match=r"dev\.txt:2: 14 fields where the header has 13; a TAB inside"
    ):
        prepare({"loader": "semeval", "files": {"dev": "dev.txt"}}, tmp_path)


def test_generic_zero_one_labels_refused_with_a_hint(tmp_path):
    (tmp_path / "d.csv").write_text("id,text,labels\na,hello,1\nb,bye,0\n")
    cfg = {"loader": "generic", "multilabel": True, "files": {"data": "d.csv"}}
    with pytest.raises(DatasetFormatError, match=r"only 0/1 values.*\['0', '1'\].*`labels:`"):
        prepare(cfg, tmp_path)
    (tmp_path / "d.csv").write_text("id,text,labels\na,hello,joy\nb,bye,none\n")
    assert prepare(cfg, tmp_path).labels == ["joy"]


# --- outputs: umask, disk full, read-only (usability + errors) -------------------------------


@pytest.mark.parametrize(
    "mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_atomic_outputs_respect_the_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        io.write_text(tmp_path / "a.txt", "x")
        with io.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == dir_mode


def test_atomic_dir_replaces_or_keeps_what_is_there(tmp_path):
    target = tmp_path / "d"
    for keep, want in ((True, "old"), (False, "new")):
        target.mkdir(exist_ok=True)
        (target / "f").write_text("old")
        with io.atomic_dir(target, keep_existing=keep) as tmp:
            (tmp / "f").write_text("new")
        assert (target / "f").read_text() == want
        assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temp dir left behind


def test_disk_full_names_the_output(tmp_path):
    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out" / "traces.jsonl.gz"
    with pytest.raises(io.OutputError, match=r"writing .*out/traces\.jsonl\.gz: No space .*free"):
        io.write_with(target, full)
    assert list((tmp_path / "out").iterdir()) == []  # no temp file left behind


def test_read_only_directory_names_the_output(tmp_path, monkeypatch):
    def denied(*args, **kwargs):  # what mkstemp meets in a read-only directory (even as root)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(io.tempfile, "mkstemp", denied)
    with pytest.raises(io.OutputError, match=r"cannot create .*shards/manifest\.json: .*writable"):
        io.write_json(tmp_path / "shards" / "manifest.json", {})


def test_reading_errors_inside_a_writer_pass_through(tmp_path):
    def reads_missing(tmp):
        open(tmp_path / "nope")

    with pytest.raises(FileNotFoundError):
        io.write_with(tmp_path / "x", reads_missing)
