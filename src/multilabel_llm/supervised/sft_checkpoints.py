"""The files of an SFT run's checkpoints: which ones were completely written, whether the
run that wrote them had finished, which step was best, and the adapter copied out of it.

The Trainer writes ``checkpoint-<step>/`` folders; :mod:`.sft` adds a fingerprint file to
each, last, so a checkpoint without one was cut off mid-save and is never resumed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from multilabel_llm.core.io import atomic_dir

CHECKPOINT_PREFIX = "checkpoint-"  # the Trainer's folder names
FINGERPRINT_FILE = "sft_fingerprint.json"
STATE_FILE = "trainer_state.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _step(path: Path) -> int:
    return int(path.name.removeprefix(CHECKPOINT_PREFIX))


def _read_fingerprint(path: Path) -> dict | None:
    try:
        return json.loads((path / FINGERPRINT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _complete(path: Path) -> bool:
    return (path / STATE_FILE).is_file() and _read_fingerprint(path) is not None


def latest_checkpoint(checkpoint_dir) -> Path | None:
    """The highest ``checkpoint-*`` directory that was completely written (fingerprint last)."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return None
    found = [
        p
        for p in root.glob(f"{CHECKPOINT_PREFIX}*")
        if p.name.removeprefix(CHECKPOINT_PREFIX).isdigit() and _complete(p)
    ]
    return max(found, key=_step, default=None)


def _changed(old: dict | None, new: dict) -> list[str]:
    if not old or "parts" not in old:
        return ["(no fingerprint)"]
    return sorted(k for k in set(old["parts"]) | set(new) if old["parts"].get(k) != new.get(k))


def _finished(checkpoint: Path, patience: int) -> bool:
    """The run that wrote ``checkpoint`` had ended: last step reached or patience exhausted."""
    state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    if state["global_step"] >= state["max_steps"]:
        return True
    stopper = (state.get("stateful_callbacks") or {}).get("DevLossEarlyStopping") or {}
    counter = (stopper.get("attributes") or {}).get("early_stopping_patience_counter", 0)
    return counter >= patience


def _best_step(state: dict) -> int:
    if state.get("best_global_step"):
        return int(state["best_global_step"])
    if state.get("best_model_checkpoint"):  # transformers versions before best_global_step
        return _step(Path(state["best_model_checkpoint"]))
    raise ValueError("SFT: no dev evaluation happened; check training.sft.eval_every")


def _finalize(best_dir: Path, adapter_dir: Path, info: dict, fingerprint: dict) -> None:
    """Copy the best checkpoint's adapter to the rule's output with where it came from."""
    missing = [f for f in ADAPTER_FILES if not (best_dir / f).is_file()]
    if missing:
        raise ValueError(f"SFT: best checkpoint {best_dir} lacks {missing}; delete it and rerun")
    with atomic_dir(adapter_dir) as tmp:
        for name in ADAPTER_FILES:
            shutil.copyfile(best_dir / name, tmp / name)
        (tmp / "sft_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        (tmp / FINGERPRINT_FILE).write_text(
            json.dumps(fingerprint, indent=1, default=str) + "\n", encoding="utf-8"
        )
