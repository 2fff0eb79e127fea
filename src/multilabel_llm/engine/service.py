"""Engine services: one loaded engine serves every inference job of a (dataset, model, engine).

Rule ``engine_service`` (rules/inference.smk) runs ``python -m multilabel_llm.engine.service
ADDRESS`` as a Snakemake service job. The model-bound jobs of its (dataset, model, engine):
traces of every prompt and test set, breakdown scores and marginalisation, take ADDRESS as an
input and are thin clients: :func:`run_job` sends the name of their front end
(:data:`FRONT_ENDS`, engine/jobs.py) and its arguments over a Unix socket, and the service
runs that same front end in its own process, where :func:`.jobs.keep_engines_loaded` keeps the
model loaded from one job to the next. Snakemake starts a service together with those of its
consumers that need to run (one group: on SLURM, one allocation with the service's GPUs) and
stops it (SIGTERM) when the last is done: a rerun that needs one file starts one service and
one client, and each client keeps its own outputs, log, shards and ``--cache`` entry.

Without an address (``engine_service: false``, the CLI, tests) :func:`run_job` calls the
front end in the calling process: the plain path the service is tested equal to.

The module's top level imports only the standard library, so a client costs a Python start,
not torch; the service's requests are served one at a time (each job uses all its threads).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

log = logging.getLogger(__name__)

# what a client may ask a service to run: rule name -> "module:function" (engine/jobs.py)
FRONT_ENDS = {
    "extract_traces": "multilabel_llm.engine.jobs:extract_traces_from_files",
    "score_breakdown": "multilabel_llm.engine.jobs:breakdown_from_files",
    "marginalize": "multilabel_llm.engine.jobs:marginalize_from_files",
}
READY_TIMEOUT_S = 120  # a service binds its socket before importing anything heavy


def _front_end(name: str):
    if name not in FRONT_ENDS:
        raise ValueError(f"front end {name!r}: expected one of {sorted(FRONT_ENDS)}")
    module, _, func = FRONT_ENDS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def _summary(result):
    """What a front end returned, as JSON (a frame is summarised by its shape)."""
    if result is None or isinstance(result, dict | list | str | int | float | bool):
        return result
    shape = getattr(result, "shape", None)
    return {"type": type(result).__name__, "shape": list(shape) if shape else None}


def run_job(name: str, kwargs: dict, *, address: str | None = None, log_path=None):
    """Run front end ``name`` with ``kwargs``: in the engine service at ``address`` when
    given, else here. Returns the front end's summary; a failure in the service is raised
    here as RuntimeError (its traceback is in the job's log)."""
    if not address:
        result = _summary(_front_end(name)(**kwargs))
        log.info("%s: %s", name, result)
        return result
    if name not in FRONT_ENDS:
        raise ValueError(f"front end {name!r}: expected one of {sorted(FRONT_ENDS)}")
    reply = _request(address, {"front_end": name, "kwargs": kwargs, "log": log_path})
    if not reply.get("ok"):
        raise RuntimeError(
            f"{name} failed in the engine service of {address}: {reply.get('error')}"
        )
    return reply.get("result")


def run_model_job(smk, front_end: str, **kwargs):
    """A Snakemake script's call (workflow/scripts/): :func:`run_job` in the engine service
    named by the job's ``engine`` input when it has one, else in this process."""
    address = smk.input.get("engine") or None  # a named input of one file, or none
    if address is not None and not isinstance(address, str):
        address = str(address[0])
    return run_job(front_end, kwargs, address=address, log_path=smk.log[0] if smk.log else None)


def _read_address(address: str) -> dict:
    try:
        return json.loads(Path(address).read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def _request(address: str, message: dict) -> dict:
    """Send one request to the service of ``address`` and wait for its answer."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        info = _read_address(address)
        sock_path = info.get("socket")
        if sock_path:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(sock_path)
                break
            except OSError:
                conn.close()
        if info.get("pid") and not _alive(info["pid"]):
            raise RuntimeError(
                f"engine service {address}: its process {info['pid']} is not running "
                "(see the engine_service log under logs/)"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"engine service {address}: no service answered within {READY_TIMEOUT_S} s "
                f"(address file: {info or 'missing or unreadable'})"
            )
        time.sleep(0.2)
    with conn, conn.makefile("rwb") as stream:
        stream.write(json.dumps(message).encode() + b"\n")
        stream.flush()
        line = stream.readline()
    if not line:
        raise RuntimeError(f"engine service {address} closed the connection without an answer")
    return json.loads(line)


@contextlib.contextmanager
def _job_log(path):
    """Send the service's stderr (log records, progress bars, warnings: every handler that
    writes to it, transformers' too) into the job's log while it runs, appending (the
    client truncated it); the file descriptor is swapped, so no handler keeps a closed file."""
    if not path:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    job_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(job_fd, 2)
    os.close(job_fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _answer(stream, state: dict, threads: int | None) -> dict:
    try:
        request = json.loads(stream.readline() or b"{}")
    except ValueError as err:
        return {"ok": False, "error": f"unreadable request: {err}"}
    name, kwargs = request.get("front_end"), dict(request.get("kwargs") or {})
    with _job_log(request.get("log")):
        started = time.monotonic()
        try:
            if threads:
                kwargs["threads"] = threads  # the service's threads: it holds the cores
            result = _summary(_front_end(name)(**kwargs))
        except Exception as err:  # the client re-raises it; the service serves the next
            logging.getLogger().error("%s", traceback.format_exc())
            return {"ok": False, "error": f"{type(err).__name__}: {err}"}
        state["served"] += 1
        logging.getLogger().info(
            "%s in engine service %s (job %d of this service, %.1f s): %s",
            name,
            state["address"],
            state["served"],
            time.monotonic() - started,
            result,
        )
        return {"ok": True, "result": result}


def serve(address: str, threads: int | None = None) -> None:
    """Bind a socket, publish it in ``address`` and answer requests until SIGTERM (or until
    the process that started the service is gone)."""
    parent = os.getppid()
    sock_dir = tempfile.mkdtemp(prefix="mlllm-engine-")  # short: socket paths are capped
    sock_path = os.path.join(sock_dir, "socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(64)
    server.settimeout(1.0)
    state = {"address": address, "served": 0}
    Path(address).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{address}.tmp"
    Path(tmp).write_text(json.dumps({"socket": sock_path, "pid": os.getpid()}))
    os.replace(tmp, address)  # consumers start once it exists: publish before heavy imports

    stopping = []  # SIGTERM (Snakemake: the last client is done) ends the loop between jobs
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    from multilabel_llm.engine import jobs

    jobs.keep_engines_loaded()
    log.info("engine service %s: listening on %s", address, sock_path)
    try:
        # stop on SIGTERM, or when orphaned (Snakemake killed outright)
        while not stopping and os.getppid() == parent != 1:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn, conn.makefile("rwb") as stream:
                reply = _answer(stream, state, threads)
                with contextlib.suppress(OSError):  # a killed client hears nothing
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()
    finally:
        log.info("engine service %s: %d jobs served; closing", address, state["served"])
        jobs.close_kept_engines()
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(sock_path)
            os.rmdir(sock_dir)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("address", help="the address file to publish (the rule's output)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of every job")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    serve(args.address, args.threads)


if __name__ == "__main__":
    main()
