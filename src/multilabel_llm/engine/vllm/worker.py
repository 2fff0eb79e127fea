"""The vLLM side of the vLLM backend: one engine, requests over a pipe, plain data back.

Run as a script (``python worker.py READ_FD WRITE_FD``) by engine/vllm/backend.py, in
whichever Python has vLLM: vLLM pins its own torch and transformers, so it usually lives in an
environment of its own (``make vllm``: ``.venv-vllm``). This file therefore imports nothing
from the package and only the standard library at module level; everything it exchanges is
lists, dicts, ints, floats and strings (pickled), never our objects.

Protocol (length-prefixed pickles): the parent sends ``{"op": "start", "engine": {...}}``
once, then ``{"op": "generate", "requests": [...]}`` any number of times, then
``{"op": "stop"}``. Every request is ``{"prompt": [token ids], "max_tokens": n,
"token_ids": [ids whose log-probs to return], "stop": [strings], "stop_token_ids": [ids],
"adapter": path|None}``;
every answer ``{"token_ids": [...], "logprobs": [{id: logprob} per step], "finish":
"stop"|"length", "stop_reason": str|int|None}``. Errors come back as ``{"error": text}``.
vLLM's own logging goes to stderr (the job's log).
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import traceback


def send(fd: int, obj) -> None:
    data = pickle.dumps(obj, protocol=4)
    os.write(fd, struct.pack("<Q", len(data)))
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def receive(fd: int):
    head = _read_exactly(fd, 8)
    if head is None:
        return None
    (size,) = struct.unpack("<Q", head)
    body = _read_exactly(fd, size)
    if body is None:
        raise EOFError("the pipe closed inside a message")
    return pickle.loads(body)


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class Engine:
    """One ``vllm.LLM`` and the generate calls the backend asks for."""

    def __init__(self, settings: dict):
        from vllm import LLM

        self.settings = settings
        kwargs = {
            "model": settings["model"],
            "tokenizer": settings.get("tokenizer") or settings["model"],
            "dtype": settings.get("dtype", "auto"),
            "seed": int(settings.get("seed", 0)),
            "enable_prefix_caching": True,
            "enforce_eager": bool(settings.get("enforce_eager", True)),
            "tensor_parallel_size": int(settings.get("tensor_parallel_size", 1)),
            "max_logprobs": int(settings.get("max_logprobs", 128)),
            "trust_remote_code": bool(settings.get("trust_remote_code", False)),
            "logprobs_mode": "raw_logprobs",
        }
        for key in ("quantization", "revision", "max_model_len", "gpu_memory_utilization"):
            if settings.get(key) is not None:
                kwargs[key] = settings[key]
        if settings.get("kv_cache_memory_bytes"):
            kwargs["kv_cache_memory_bytes"] = int(settings["kv_cache_memory_bytes"])
        if settings.get("max_lora_rank"):
            kwargs["enable_lora"] = True
            kwargs["max_lora_rank"] = int(settings["max_lora_rank"])
            kwargs["max_loras"] = int(settings.get("max_loras", 2))
        self.llm = LLM(**kwargs)
        self.adapters: dict[str, int] = {}

    def _lora(self, path):
        if not path:
            return None
        from vllm.lora.request import LoRARequest

        lora_id = self.adapters.setdefault(path, len(self.adapters) + 1)
        return LoRARequest(f"adapter-{lora_id}", lora_id, path)

    def generate(self, requests: list[dict]) -> list[dict]:
        from vllm import SamplingParams

        prompts, params, loras = [], [], []
        for req in requests:
            prompts.append({"prompt_token_ids": list(req["prompt"])})
            params.append(
                SamplingParams(
                    temperature=0.0,
                    max_tokens=int(req["max_tokens"]),
                    logprob_token_ids=list(req["token_ids"]),
                    stop=list(req.get("stop") or []) or None,
                    include_stop_str_in_output=True,
                    # only the caller's EOS ids stop (a generation config may list more)
                    ignore_eos=True,
                    stop_token_ids=list(req.get("stop_token_ids") or []) or None,
                    seed=0,
                )
            )
            loras.append(self._lora(req.get("adapter")))
        any_lora = any(lora is not None for lora in loras)
        outs = self.llm.generate(
            prompts, params, lora_request=loras if any_lora else None, use_tqdm=False
        )
        answers = []
        for out in outs:
            comp = out.outputs[0]
            steps = []
            for step in comp.logprobs or []:
                steps.append({int(t): float(lp.logprob) for t, lp in step.items()})
            answers.append(
                {
                    "token_ids": [int(t) for t in comp.token_ids],
                    "logprobs": steps,
                    "finish": comp.finish_reason,
                    "stop_reason": comp.stop_reason,
                }
            )
        return answers

    def close(self) -> None:
        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()


def serve(read_fd: int, write_fd: int) -> None:
    engine = None
    while True:
        msg = receive(read_fd)
        if msg is None or msg.get("op") == "stop":
            break
        try:
            if msg["op"] == "start":
                engine = Engine(msg["engine"])
                import vllm

                send(write_fd, {"ok": True, "vllm": vllm.__version__})
            elif msg["op"] == "generate":
                send(write_fd, {"ok": True, "answers": engine.generate(msg["requests"])})
            else:
                send(write_fd, {"error": f"unknown op {msg.get('op')!r}"})
        except Exception as err:  # noqa: BLE001 (every failure goes back to the parent)
            send(
                write_fd, {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()}
            )
    if engine is not None:
        engine.close()


if __name__ == "__main__":  # vLLM spawns its engine core: the guard keeps it from re-running
    sys.stdout = sys.stderr  # stdout is not ours to use: vLLM's prints go to the job's log
    serve(int(sys.argv[1]), int(sys.argv[2]))
