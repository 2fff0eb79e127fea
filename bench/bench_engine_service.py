"""Benchmark: model-bound jobs through one engine service vs. each job loading its own model.

The demo's GoEmotions excerpt and the bundled SmolLM2-135M (CPU): ``--jobs`` trace jobs (one
prompt variant each, 8 examples), run as Snakemake runs them, one process per job:

* plain: each job process imports torch, loads the model, traces, exits
  (``engine_service: false``);
* served: one ``python -m multilabel_llm.engine.service`` process; each job process is a client
  (standard library only) whose work runs in the service, the model loaded once.

Both write the same traces (checked here, record for record). The last line is
``speedup <N>x`` (plain wall time / served wall time, including the service's start).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDERS = ("dataset", "alphabetical", "reverse", "random")


def prepare(work: Path, n: int) -> dict:
    import yaml

    from multilabel_llm.core.io import write_id_list
    from multilabel_llm.data import prepare as prepare_dataset
    from multilabel_llm.data.canonical import save_canonical
    from multilabel_llm.engine.loading import bundled_model_cfg

    ds_cfg = yaml.safe_load((ROOT / "config/dataset/goemotions_demo.yaml").read_text())
    ds = prepare_dataset(ds_cfg, ROOT)
    save_canonical(ds, work / "data")
    write_id_list(work / "ids.txt", ds.split("dev")["id"].tolist()[:n])
    prompt = yaml.safe_load((ROOT / "config/prompt/json_10shot.yaml").read_text())
    return {"model_cfg": {**bundled_model_cfg(), "dtype": "float32"}, "prompt_cfg": prompt}


def job_kwargs(work: Path, base: dict, k: int, out: Path) -> dict:
    prompt = {**base["prompt_cfg"], "label_order": ORDERS[k % len(ORDERS)], "seed": k}
    return {
        "data_dir": str(work / "data"),
        "ids_path": str(work / "ids.txt"),
        "model_cfg": base["model_cfg"],
        "prompt_cfg": prompt,
        "out_path": str(out / f"job{k}" / "traces.jsonl.gz"),
        "threads": 2,
    }


CLIENT = (
    "import json, sys; from multilabel_llm.engine.service import run_job; "
    "a = json.loads(sys.argv[1]); run_job('extract_traces', a['kwargs'], address=a['address'])"
)


def run_jobs(work: Path, base: dict, jobs: int, out: Path, address: str | None) -> float:
    start = time.perf_counter()
    for k in range(jobs):  # one after another, as one service's group runs them
        arg = json.dumps({"kwargs": job_kwargs(work, base, k, out), "address": address})
        subprocess.run([sys.executable, "-c", CLIENT, arg], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--n", type=int, default=8, help="examples per job")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_engine_service-"))
    try:
        base = prepare(work, args.n)
        plain = run_jobs(work, base, args.jobs, work / "plain", None)
        start = time.perf_counter()
        address = work / "engine.json"
        service = subprocess.Popen(
            [sys.executable, "-m", "multilabel_llm.engine.service", str(address), "--threads", "2"],
            stderr=subprocess.DEVNULL,
        )
        while not address.exists():
            time.sleep(0.05)
        served = run_jobs(work, base, args.jobs, work / "served", str(address))
        service.terminate()
        service.wait(timeout=60)
        served = time.perf_counter() - start
        for k in range(args.jobs):
            a = gzip.open(work / "plain" / f"job{k}" / "traces.jsonl.gz").read()
            b = gzip.open(work / "served" / f"job{k}" / "traces.jsonl.gz").read()
            assert a == b, f"job {k}: served traces differ from the plain path's"
        print(f"{args.jobs} trace jobs x {args.n} examples, bundled SmolLM2-135M, CPU")
        print(f"plain (each job loads its model): {plain:.1f} s, {plain / args.jobs:.2f} s/job")
        print(f"served (one engine service):      {served:.1f} s, {served / args.jobs:.2f} s/job")
        print(f"speedup {plain / served:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
