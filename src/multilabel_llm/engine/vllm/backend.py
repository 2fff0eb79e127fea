"""vLLM behind the backend interface: traces and breakdown scores from a vLLM engine.

vLLM (≥ 0.32) returns, at every generated step, the log-probabilities of chosen token ids
(``SamplingParams(logprob_token_ids=...)``, at most 128, log-softmax over the full vocabulary,
whatever their rank). That is all a trace needs: the label forms' log-probs per step, and the
generated token's own log-prob (vLLM always adds it). Label distributions and compare-to-none
differences do not change by a per-step constant, so they equal the Hugging Face engine's,
whose traces hold raw logits (``logit_kind``: "logprob" here, "logit" there).

The engine runs in its own Python (vLLM pins its torch and transformers): a worker process
(engine/vllm/worker.py) started with the interpreter :func:`vllm_python` finds, fed token ids
over a pipe. Everything else (prompts, label forms, the stop rule, parsing) stays here, so both
engines see the very same token ids.

Our stop rule, exactly: vLLM stops at the rule's stop strings (JSON's "}", the prompt's own
``stop``) and at the tokenizer's EOS only (``ignore_eos`` + ``stop_token_ids``: a generation
config's extra EOS ids do not stop the HF engine either); each answer is then cut at the first
step where :class:`~.tracing.StopRule` is done. A stop string can fire before the rule does
(a "}" before any "{"): those few requests are asked again without stop strings, counted in the
log. Greedy decoding makes the cut exact: later tokens never change earlier steps.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from multilabel_llm.engine.backend import DECLARED
from multilabel_llm.engine.loading import load_tokenizer, resolve_checkpoint
from multilabel_llm.engine.tracing import RawTrace
from multilabel_llm.engine.vllm import worker as wire

log = logging.getLogger(__name__)

MAX_LOGPROB_IDS = 128  # vLLM refuses more token ids per request
PYTHON_ENV = "MULTILABEL_LLM_VLLM_PYTHON"
# `make vllm` builds this environment beside the checkout's .venv
DEFAULT_VENV = Path(__file__).resolve().parents[4] / ".venv-vllm"
REQUESTS_PER_CALL = 64  # requests sent at once: vLLM batches them; the bar moves per call


class VLLMError(RuntimeError):
    """The vLLM engine could not start or answer."""


def vllm_python(model_cfg: dict | None = None) -> str:
    """The Python that runs the vLLM engine: the model config's ``vllm.python``, else
    ``$MULTILABEL_LLM_VLLM_PYTHON``, else this one when it imports vLLM, else the checkout's
    ``.venv-vllm`` (``make vllm``)."""
    opts = (model_cfg or {}).get("vllm") or {}
    for source, value in (
        ("model config key 'vllm.python'", opts.get("python")),
        (f"${PYTHON_ENV}", os.environ.get(PYTHON_ENV)),
    ):
        if value:
            if not Path(value).is_file():
                raise VLLMError(f"{source}: {value} is not a file (a Python with vllm installed)")
            return str(value)
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    default = DEFAULT_VENV / "bin" / "python"
    if default.is_file():
        return str(default)
    raise VLLMError(
        "the vLLM engine needs a Python with vllm installed: run `make vllm` (CPU build, "
        f"into {DEFAULT_VENV.name}), pip install 'multilabel-llm[vllm]' on a CUDA machine, or "
        f"point ${PYTHON_ENV} (or the model's `vllm.python`) at one (docs/cluster.md)"
    )


def _dtype_name(spec) -> str:
    dtype = getattr(spec, "dtype", "auto")
    return dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")


def engine_settings(model_cfg: dict, spec, checkpoint: str, adapter: str | None) -> dict:
    """The ``vllm.LLM`` arguments of this model (the worker's ``start`` message): the engine
    keys of its :class:`~.model_spec.ModelSpec`, plus where the weights are."""
    settings = {
        "model": checkpoint,
        "dtype": _dtype_name(spec),
        "tensor_parallel_size": spec.tensor_parallel,
        "quantization": spec.engine_quantization,
        "max_model_len": spec.max_context,
        "enforce_eager": spec.enforce_eager,
        "trust_remote_code": spec.trust_remote_code,
        "max_logprobs": MAX_LOGPROB_IDS,
        "seed": 0,
    }
    if (
        spec.revision
        and model_cfg.get("hf_id")
        and not (model_cfg.get("path") or model_cfg.get("gguf"))
    ):
        settings["revision"] = spec.revision
    if spec.memory_share:
        settings["gpu_memory_utilization"] = spec.memory_share
    if adapter:
        config = Path(adapter, "adapter_config.json")
        if not config.is_file():
            raise ValueError(f"adapter {adapter}: no adapter_config.json (expected a peft dir)")
        settings["max_lora_rank"] = _lora_rank(int(json.loads(config.read_text())["r"]))
    return settings


def _lora_rank(r: int) -> int:
    """vLLM's smallest allowed max_lora_rank that holds ``r``."""
    for allowed in (1, 8, 16, 32, 64, 128, 256, 320, 512):
        if r <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {r}: vLLM serves ranks up to 512")


class VLLMBackend:
    name = "vllm"
    capabilities = DECLARED["vllm"]

    def __init__(self, settings: dict, tokenizer, *, adapter=None, python=None, env=None):
        self.settings = dict(settings)
        self.tokenizer = tokenizer
        self.adapter = str(adapter) if adapter else None
        self.python = python or vllm_python()
        self.env = dict(env or {})
        self.version = None
        self.n_reasked = 0  # requests asked again without stop strings (see the docstring)
        self._proc = None
        self._send_fd = self._recv_fd = None

    @classmethod
    def load(cls, model_cfg: dict, spec, adapter: str | None = None) -> VLLMBackend:
        checkpoint = resolve_checkpoint(model_cfg)
        env = {}
        if spec.device == "cpu":
            # the CPU build takes its KV cache from host memory: most of it unless told
            env["VLLM_CPU_KVCACHE_SPACE"] = f"{spec.cpu_kv_cache_gb:g}"
        backend = cls(
            engine_settings(model_cfg, spec, checkpoint, adapter),
            load_tokenizer(model_cfg),
            adapter=adapter,
            python=vllm_python(model_cfg),
            env=env,
        )
        backend.start()
        return backend

    # --- the worker process ------------------------------------------------------------------

    def start(self) -> None:
        if self._proc is not None:
            return
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            out = sys.stderr.fileno()  # the job's log (the adapters point stderr at it)
        except (AttributeError, OSError, ValueError):
            out = None
        env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING", **self.env}
        self._proc = subprocess.Popen(
            [self.python, wire.__file__, str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._send_fd, self._recv_fd = to_child_w, from_child_r
        log.info("starting vLLM (%s) for %s", self.python, self.settings["model"])
        self.version = self._call({"op": "start", "engine": self.settings})["vllm"]
        log.info("vLLM %s ready: %s", self.version, self.settings)

    def _call(self, message: dict) -> dict:
        try:
            wire.send(self._send_fd, message)
            answer = wire.receive(self._recv_fd)
        except (BrokenPipeError, EOFError):
            answer = None
        if answer is None:
            code = self._proc.wait()
            self._proc = None
            raise VLLMError(
                f"the vLLM engine process ({self.python}) exited with code {code} during "
                f"{message['op']!r}; its messages are in this job's log above"
            )
        if "error" in answer:
            raise VLLMError(f"vLLM {message['op']}: {answer['error']}\n{answer.get('trace', '')}")
        return answer

    def generate(self, requests: list[dict]) -> list[dict]:
        """Answers of the worker (see engine/vllm/worker.py) for ``requests``."""
        self.start()
        for req in requests:
            req.setdefault("adapter", self.adapter)
        return self._call({"op": "generate", "requests": requests})["answers"]

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            wire.send(self._send_fd, {"op": "stop"})
            self._proc.wait(timeout=120)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        finally:
            os.close(self._send_fd)
            os.close(self._recv_fd)
            self._proc = None

    def __del__(self):
        if getattr(self, "_proc", None) is not None:
            self._proc.kill()

    # --- the backend interface ---------------------------------------------------------------

    def tracer(
        self,
        label_tokens,
        stop_rule,
        max_new_tokens: int,
        batch_size: int,
        *,
        hidden_states: bool = False,
        label_scoring: str = "first_token",
    ):
        if hidden_states:
            raise ValueError(
                "the vLLM engine returns no hidden states: the DAG runs hidden-state traces "
                "on Hugging Face (engine.backend.engine_for)"
            )
        if label_scoring != "first_token":
            raise ValueError(
                f"label_scoring {label_scoring!r} needs forwards the vLLM engine does not "
                "offer: use backend: hf for this prompt's model"
            )
        return VLLMTracer(self, label_tokens, stop_rule, max_new_tokens)

    def next_token_scores(
        self,
        prefix_ids: list[int],
        prompts: list[list[int]],
        token_ids: list[int],
        *,
        batch_size: int = 32,
        desc: str = "",
    ) -> np.ndarray:
        """(n_prompts, n_ids) next-token log-probs (vLLM's prefix cache serves the prefix)."""
        ids = [int(t) for t in token_ids]
        _check_ids(ids)
        out = np.zeros((len(prompts), len(ids)), dtype=np.float32)
        bar = tqdm(total=len(prompts), unit="prompt", desc=desc, mininterval=1)
        for start in range(0, len(prompts), REQUESTS_PER_CALL):
            chunk = prompts[start : start + REQUESTS_PER_CALL]
            answers = self.generate(
                [{"prompt": list(p), "max_tokens": 1, "token_ids": ids} for p in chunk]
            )
            for k, answer in enumerate(answers):
                out[start + k] = [answer["logprobs"][0][t] for t in ids]
            bar.update(len(chunk))
        bar.close()
        return out

    def shard_components(self) -> dict:
        settings = {k: v for k, v in self.settings.items() if k != "model"}
        return {"vllm": {"version": self.version, "settings": settings, "kind": "logprob"}}

    def context_length(self) -> int | None:
        if self.settings.get("max_model_len"):
            return int(self.settings["max_model_len"])
        config = Path(self.settings["model"], "config.json")
        if config.is_file():
            value = json.loads(config.read_text()).get("max_position_embeddings")
            return int(value) if isinstance(value, int) and value > 0 else None
        return None


def _check_ids(ids: list[int]) -> None:
    if len(set(ids)) > MAX_LOGPROB_IDS:
        raise ValueError(
            f"{len(set(ids))} label-form token ids: vLLM returns the log-probs of at most "
            f"{MAX_LOGPROB_IDS} ids per step; fewer forms (prompt key label_forms: "
            "{capitalised: false}) or backend: hf"
        )


def stop_strings(stop_rule) -> list[str]:
    """vLLM stop strings that fire no later than :class:`StopRule` (see the module doc)."""
    strings = list(stop_rule.stop)
    if stop_rule.label_format == "json":
        strings.append("}")
    return strings


class VLLMTracer:
    """The trace engine's interface (set_prefix, run) over vLLM requests."""

    logit_kind = "logprob"

    def __init__(self, backend: VLLMBackend, label_tokens, stop_rule, max_new_tokens: int):
        self.backend, self.stop_rule = backend, stop_rule
        self.form_ids = [int(t) for t in label_tokens.form_ids]
        _check_ids(self.form_ids)
        self.max_new_tokens = int(max_new_tokens)
        self.prefix = None  # vLLM's automatic prefix caching reuses it across requests

    def set_prefix(self, prefix_ids: list[int]) -> None:
        self.prefix = list(prefix_ids)

    def _request(self, prompt, stops: bool) -> dict:
        return {
            "prompt": list(prompt),
            "max_tokens": self.max_new_tokens,
            "token_ids": sorted(set(self.form_ids)),
            "stop": stop_strings(self.stop_rule) if stops else [],
            "stop_token_ids": sorted(self.stop_rule.eos_ids),
        }

    def run(self, prompts: list[list[int]], progress=None) -> list[RawTrace]:
        results: list[RawTrace | None] = [None] * len(prompts)
        for start in range(0, len(prompts), REQUESTS_PER_CALL):
            chunk = list(range(start, min(start + REQUESTS_PER_CALL, len(prompts))))
            answers = self.backend.generate([self._request(prompts[i], True) for i in chunk])
            again = []
            for i, answer in zip(chunk, answers, strict=True):
                raw = self._raw(answer)
                if raw is None:
                    again.append(i)
                results[i] = raw
            if again:  # a stop string fired before the rule was done: ask without them
                self.backend.n_reasked += len(again)
                log.info("%d requests asked again without stop strings", len(again))
                answers = self.backend.generate([self._request(prompts[i], False) for i in again])
                for i, answer in zip(again, answers, strict=True):
                    results[i] = self._raw(answer, final=True)
            if progress is not None:
                progress.update(len(chunk))
        return results

    def _raw(self, answer: dict, final: bool = False) -> RawTrace | None:
        gen = answer["token_ids"]
        cut = next((k + 1 for k in range(len(gen)) if self.stop_rule.done(gen[: k + 1])), None)
        extra = {}
        if cut is None:
            if len(gen) < self.max_new_tokens and not final:
                return None  # stopped by a stop string the rule does not stop at
            cut = len(gen)
            extra = {"hit_max_new_tokens": True}
        steps = answer["logprobs"][:cut]
        forms = np.asarray([[step[t] for t in self.form_ids] for step in steps], np.float32)
        gen_lp = np.asarray([step[t] for step, t in zip(steps, gen[:cut], strict=True)])
        return RawTrace(
            list(gen[:cut]),
            forms.reshape(len(steps), len(self.form_ids)),
            None,
            extra,
            gen_lp.astype(np.float64),
        )
