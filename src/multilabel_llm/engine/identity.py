"""What a run's model is, without reading its weights (checkpoint, adapter) and with them (probe).

These digests key the resumable trace and marginalisation shards (engine/run.py) and the SFT
checkpoints (sft.py): renaming a model slot changes none of them, pointing it at other weights
does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from multilabel_llm.engine.loading import gguf_location

# files whose size and mtime stand for a local checkpoint's weights (hashing GBs is too slow)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5")


def short_digest(obj) -> str:
    """16 hex digits of sha256 over ``obj`` as sorted JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path) -> str:
    """sha256 over a file's bytes (datasets and id lists: MBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def dir_digest(path) -> str:
    """sha256 over every file's relative name and bytes (adapters are small: MBs)."""
    root = Path(path)
    digest = hashlib.sha256()
    for f in sorted(q for q in root.rglob("*") if q.is_file()):
        digest.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _hub_snapshot(hf_id: str, revision: str | None) -> str | None:
    """The commit of the locally cached snapshot of ``hf_id`` (offline; None if not cached)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(hf_id, "config.json", revision=revision)
    except Exception:  # an odd id or an old hub client: the id and revision still count
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def checkpoint_identity(model_cfg: dict) -> dict:
    """What decides which weights a model slot loads, without reading the weights.

    GGUF: the file's path, size and mtime. Local directory: its resolved path, a digest of
    ``config.json`` and the size and mtime of every weight file. Hub id: the id, the configured
    revision and the commit of the cached snapshot. Renaming the slot changes none of these;
    pointing it elsewhere changes them.
    """
    name = model_cfg.get("name", "<unnamed>")
    if model_cfg.get("gguf"):
        directory, file = gguf_location(model_cfg)
        source = (directory / file).resolve()
        return {"gguf": str(source), **_stat(source)}
    if model_cfg.get("path"):
        path = Path(model_cfg["path"]).resolve()
        if not path.is_dir():
            raise ValueError(f"model {name}: path {path} is not a directory")
        config = path / "config.json"
        weights = sorted(
            (f for f in path.iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES)),
            key=lambda f: f.name,
        )
        return {
            "path": str(path),
            "config": short_digest(config.read_text(encoding="utf-8"))
            if config.is_file()
            else None,
            "weights": [_stat(f) for f in weights],
        }
    if model_cfg.get("hf_id"):
        hf_id, revision = str(model_cfg["hf_id"]), model_cfg.get("revision")
        return {"hf_id": hf_id, "revision": revision, "snapshot": _hub_snapshot(hf_id, revision)}
    raise ValueError(f"model {name}: set one of 'gguf', 'path' or 'hf_id'")


def run_identity(model_cfg: dict, adapter=None) -> dict:
    """Checkpoint and adapter identity plus the configured dtype and backend of a model slot."""
    identity = {
        "checkpoint": checkpoint_identity(model_cfg),
        "dtype": model_cfg.get("dtype"),
        "backend": model_cfg.get("backend", "hf"),
        "quantization": model_cfg.get("quantization"),  # 8/4-bit weights change the traces
    }
    if adapter:
        if not Path(adapter).is_dir():
            raise ValueError(f"adapter {adapter}: not a directory (expected a peft LoRA dir)")
        identity["adapter"] = dir_digest(adapter)
    return identity


def weight_probe(model) -> str | None:
    """A digest of the first and last values of every parameter of a loaded model.

    Cheap (two small slices per tensor) and it catches what a config cannot: a merged LoRA
    moves every entry of the matrices it adapts, another seed or checkpoint moves them all.
    None for what is not an in-memory torch model.
    """
    if not isinstance(model, torch.nn.Module):
        return None
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.device.type == "meta":  # offloaded weights: nothing to read cheaply
                return None
            flat = param.detach().reshape(-1)
            digest.update(f"{name}{tuple(param.shape)}{param.dtype}".encode())
            ends = torch.cat([flat[:16], flat[-16:]]).float().cpu().numpy()
            digest.update(ends.tobytes())
    return digest.hexdigest()[:16]
