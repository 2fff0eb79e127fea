"""Engine services (issue 27): one loaded engine serves every model-bound job of a
(dataset, model, engine), and gives the same files as each job loading its own model.

A real service process (``python -m multilabel_llm.engine.service``) on a tiny random Llama:
traces of two prompts, unary and binary breakdown scores and a marginalisation run through
it; each output is byte-for-byte the in-process front end's (the plain path), the model is
loaded once for all of them, a job's failure reaches its client with the service's traceback
in the job's log, and SIGTERM (what Snakemake sends when the last client is done) stops it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multilabel_llm.engine.service import FRONT_ENDS, run_job
from tests.builders import TOY_PROMPT_CFG, save_tiny_checkpoint, toy_dataset

PROMPTS = {
    "plain": {**TOY_PROMPT_CFG, "max_new_tokens": 5},
    "reversed": {**TOY_PROMPT_CFG, "max_new_tokens": 5, "label_order": "reverse"},
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from multilabel_llm.core.io import write_id_list
    from multilabel_llm.data.canonical import save_canonical

    root = tmp_path_factory.mktemp("engine_service")
    ds = toy_dataset(n_queries=4)
    save_canonical(ds, root / "data")
    write_id_list(root / "ids.txt", ds.split("dev")["id"].tolist())
    model_cfg = {**save_tiny_checkpoint(root / "ckpt", layers=2), "name": "tiny"}
    model_cfg.update(dtype="float32", shard_size=2)
    return root, model_cfg


def _jobs(root: Path, model_cfg: dict, out: Path) -> list[tuple[str, dict, list[Path]]]:
    """(front end, kwargs, outputs) of the model-bound jobs of one (dataset, model)."""
    common = {"data_dir": str(root / "data"), "ids_path": str(root / "ids.txt")}
    jobs = []
    for name, prompt in PROMPTS.items():
        path = out / "traces" / name / "traces.jsonl.gz"
        kwargs = {**common, "model_cfg": model_cfg, "prompt_cfg": prompt, "out_path": str(path)}
        jobs.append(("extract_traces", kwargs, [path]))
    for kind in ("unary", "binary"):
        path = out / "breakdown" / f"{kind}.parquet"
        kwargs = {**common, "kind": kind, "model_cfg": model_cfg, "out_path": str(path),
                  "prompt_cfg": {"breakdown": {"n_shots": 2}}}  # fmt: skip
        jobs.append(("score_breakdown", kwargs, [path]))
    dist, stats = out / "marg" / "m.parquet", out / "marg" / "m.paths.parquet"
    kwargs = {**common, "model_cfg": model_cfg, "prompt_cfg": PROMPTS["plain"],
              "settings": {"max_paths": 2, "max_expansions": 6}, "dist_path": str(dist),
              "stats_path": str(stats)}  # fmt: skip
    jobs.append(("marginalize", kwargs, [dist, stats]))
    assert {name for name, _, _ in jobs} == set(FRONT_ENDS)
    return jobs


def _start_service(address: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "multilabel_llm.engine.service", str(address), "--threads", "1"],
            stderr=stderr,
        )
    deadline = time.monotonic() + 60
    while not address.exists():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return proc


def test_served_jobs_equal_in_process_jobs_and_load_the_model_once(inputs, tmp_path):
    root, model_cfg = inputs
    plain = _jobs(root, model_cfg, tmp_path / "plain")
    for name, kwargs, _ in plain:
        run_job(name, kwargs)  # no address: the front end runs here, loading its own model

    address, service_log = tmp_path / "engines" / "hf.json", tmp_path / "service.log"
    address.parent.mkdir()
    proc = _start_service(address, service_log)
    served = _jobs(root, model_cfg, tmp_path / "served")
    try:
        for k, (name, kwargs, _) in enumerate(served):
            job_log = tmp_path / f"job{k}.log"
            job_log.write_text("")
            summary = run_job(name, kwargs, address=str(address), log_path=str(job_log))
            assert summary is not None
            text = job_log.read_text()
            assert f"job {k + 1} of this service" in text, text
            loaded = "loading tiny on hf" in text
            assert loaded == (k == 0), text  # one load, in the first job only
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, service_log.read_text()
    assert "5 jobs served; closing" in service_log.read_text()
    assert not Path(json.loads(address.read_text())["socket"]).exists()  # cleaned up

    for (name, _, plain_files), (_, _, served_files) in zip(plain, served, strict=True):
        for a, b in zip(plain_files, served_files, strict=True):
            if a.suffix == ".gz":  # traces: compare the records (gzip headers carry a time)
                import gzip

                assert gzip.open(a).read() == gzip.open(b).read(), name
            elif a.name.endswith(".paths.parquet"):  # search statistics: timings differ
                import pandas as pd

                timing = ["seconds"]
                pd.testing.assert_frame_equal(
                    pd.read_parquet(a).drop(columns=timing), pd.read_parquet(b).drop(columns=timing)
                )
            else:
                assert a.read_bytes() == b.read_bytes(), (name, a.name)


def test_a_failed_job_reaches_its_client_and_the_service_serves_on(inputs, tmp_path):
    root, model_cfg = inputs
    address, service_log = tmp_path / "hf.json", tmp_path / "service.log"
    proc = _start_service(address, service_log)
    try:
        bad = {"data_dir": str(root / "data"), "ids_path": str(root / "missing_ids.txt"),
               "model_cfg": model_cfg, "prompt_cfg": PROMPTS["plain"],
               "out_path": str(tmp_path / "bad" / "traces.jsonl.gz")}  # fmt: skip
        job_log = tmp_path / "bad.log"
        job_log.write_text("")
        with pytest.raises(RuntimeError, match="extract_traces failed in the engine service"):
            run_job("extract_traces", bad, address=str(address), log_path=str(job_log))
        assert "missing_ids.txt" in job_log.read_text()  # the service's traceback, in its log
        assert not (tmp_path / "bad" / "traces.jsonl.gz").exists()
        good = {**bad, "ids_path": str(root / "ids.txt"),
                "out_path": str(tmp_path / "good" / "traces.jsonl.gz")}  # fmt: skip
        assert run_job("extract_traces", good, address=str(address))["n"] == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_a_client_names_a_dead_service(tmp_path):
    address = tmp_path / "hf.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    address.write_text(json.dumps({"socket": str(tmp_path / "gone"), "pid": dead.pid}))
    with pytest.raises(RuntimeError, match="is not running"):
        run_job("extract_traces", {}, address=str(address))
    with pytest.raises(ValueError, match="expected one of"):
        run_job("train_everything", {}, address=str(address))


def test_an_orphaned_service_stops(tmp_path):
    """Snakemake killed outright: the service notices its parent is gone and exits."""
    address = tmp_path / "hf.json"
    code = (
        "import subprocess, sys; "
        f"p = subprocess.Popen([sys.executable, '-m', 'multilabel_llm.engine.service', "
        f"{str(address)!r}]); print(p.pid, flush=True)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.5)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the orphaned engine service kept running")


def test_breakdown_scores_are_reused_only_under_the_same_inputs(inputs, tmp_path, caplog):
    """A served job can rerun when its service reruns for another client (Snakemake reruns
    every client of a service that has to run): breakdown scores, like traces, come back from
    a fingerprinted shard then, and are recomputed when anything that decides them changed."""
    import logging

    root, model_cfg = inputs
    out = tmp_path / "unary.parquet"
    kwargs = {"data_dir": str(root / "data"), "ids_path": str(root / "ids.txt"),
              "kind": "unary", "model_cfg": model_cfg, "out_path": str(out),
              "prompt_cfg": {"breakdown": {"n_shots": 2}}}  # fmt: skip
    caplog.set_level(logging.INFO)
    run_job("score_breakdown", kwargs)
    first = out.read_bytes()
    assert "reused the finished shard" not in caplog.text
    caplog.clear()
    out.unlink()  # what Snakemake does before it reruns a job
    run_job("score_breakdown", kwargs)
    assert "reused the finished shard" in caplog.text
    assert out.read_bytes() == first
    caplog.clear()
    run_job("score_breakdown", {**kwargs, "prompt_cfg": {"breakdown": {"n_shots": 1}}})
    assert "reused the finished shard" not in caplog.text
    assert "breakdown changed since its 1 shard files were written" in caplog.text
