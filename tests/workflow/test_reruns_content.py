"""Issue 26, items 3 and 4: what decided an output travels with it.

A raw data file edited with its modification time kept (cp -p, rsync -t, touch -r, tar x)
and a results folder copied elsewhere and then run with a changed parameter both used to say
"Nothing to be done". The decision files under ``{results}/decided/`` (config values and
raw-file digests, rewritten only when they change) are inputs of the rules they decide, so
both now rerun the dataset preparation. Runs only rule prepare_dataset of the demo dataset
(a few seconds each) in a scratch working directory.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests._dag import ROOT, run_snakemake

TARGET = "results/data/goemotions/meta.json"


def _snakemake(work, *args, config=()):
    config = ("experiment=demo", *config)
    proc = run_snakemake(work, *args, "--cores", "1", "--config", *config, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def _plans_prepare(out: str) -> bool:
    return "prepare_dataset" in out and "Nothing to be done" not in out


@pytest.fixture()
def prepared(tmp_path):
    shutil.copytree(ROOT / "data" / "goemotions", tmp_path / "data" / "goemotions")
    (tmp_path / "data" / "hatexplain").symlink_to(ROOT / "data" / "hatexplain")
    _snakemake(tmp_path, TARGET)
    assert "Nothing to be done" in _snakemake(tmp_path, "-n", TARGET)
    return tmp_path


def test_content_edit_with_old_mtime_reruns_preparation(prepared):
    raw = prepared / "data" / "goemotions" / "dev.tsv"
    before = raw.stat()
    lines = raw.read_text().splitlines(keepends=True)
    raw.write_text("".join(lines[:-1]))  # one comment fewer, as a re-download might bring
    os.utime(raw, ns=(before.st_atime_ns, before.st_mtime_ns))  # what cp -p / touch -r do
    assert raw.stat().st_mtime_ns == before.st_mtime_ns
    assert _plans_prepare(_snakemake(prepared, "-n", TARGET))


def test_copied_results_folder_sees_a_changed_parameter(prepared):
    shutil.copytree(prepared / "results", prepared / "copy", copy_function=shutil.copy2)
    copy = ("results_dir=copy",)
    target = TARGET.replace("results/", "copy/", 1)
    assert "Nothing to be done" in _snakemake(prepared, "-n", target, config=copy)
    changed = (*copy, "datasets={goemotions: {drop_unclear: true}}")
    assert _plans_prepare(_snakemake(prepared, "-n", target, config=changed))
    _snakemake(prepared, target, config=changed)
    assert "Nothing to be done" in _snakemake(prepared, "-n", target, config=changed)


# --- item 9: two runs in one project folder -------------------------------------------------------


def test_a_finished_run_keeps_another_runs_locks(tmp_path):
    """Another run's lock files (outputs under another results folder) outlive this run;
    ``--unlock`` still clears every lock."""
    (tmp_path / "data").symlink_to(ROOT / "data")
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    other = locks / "0.output.lock"
    other.write_text("results/paper_smoke/data/goemotions/meta.json\n")
    _snakemake(tmp_path, TARGET)  # the demo's own results folder: no overlap, so it runs
    assert (tmp_path / TARGET).is_file()
    assert other.read_text() == "results/paper_smoke/data/goemotions/meta.json\n"
    _snakemake(tmp_path, "--unlock")
    assert not other.exists()
