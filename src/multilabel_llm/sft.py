"""Supervised fine-tuning with LoRA (paper §5.2.3, §A.5): the "SFT" rows of Table 2.

Training text = the run's prompt *without demonstrations* (instruction + query block) followed
by the gold label list in the prompt's format; the loss covers only the answer tokens. The
adapter is later applied at inference with the usual 10-shot prompt (the engine's
``load_model(model_cfg, adapter=...)``).

The loop is plain torch (no trl): seeded, gradient accumulation, constant LR after warmup,
gradient clipping, dev-loss early stopping, and resumable checkpoints (adapter weights,
optimizer, scheduler, RNG states, position in the epoch) so a killed job continues exactly
where it stopped. Deviation from the reference: no sequence packing (each example is padded
in its batch), and AdamW from torch instead of bitsandbytes' paged AdamW.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .datasets.canonical import CanonicalDataset
from .io import atomic_dir, write_csv
from .prompts import PromptBuilder, order_labels, pick_template, resolve_prompt

log = logging.getLogger(__name__)

IGNORE = -100
STATE_FILE = "trainer_state.pt"


class SimulatedInterrupt(RuntimeError):
    """Raised by ``train_sft(stop_after=N)`` to test resuming (as if the job were killed)."""


@dataclass
class SFTExample:
    id: str
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt tokens


def zero_shot_builder(
    prompt_cfg: dict, dataset: CanonicalDataset, loader: str | None = None
) -> PromptBuilder:
    """The run's prompt with no demonstrations (same instruction, template, label format).

    The template is chosen as inference chooses it (``pick_template``: the dataset's loader,
    then its name), so a renamed dataset (``hatexplain_demo``) trains on the prompt it is
    later queried with."""
    spec = resolve_prompt(prompt_cfg, dataset.name, pick_template(prompt_cfg, loader, dataset.name))
    labels = order_labels(dataset.labels, spec.label_order, spec.seed)
    return PromptBuilder(spec, labels, demos=[])


def encode_example(
    tokenizer, prompt: str, completion: str, max_len: int, append_eos: bool
) -> tuple[list[int], list[int]]:
    """Prompt and answer tokenised separately, as at inference (prompt, then generation).

    When too long, prompt tokens are dropped from the left (after a leading BOS) so the answer
    is always kept whole.
    """
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    answer_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if append_eos and tokenizer.eos_token_id is not None:
        answer_ids.append(int(tokenizer.eos_token_id))
    answer_ids = answer_ids[:max_len]
    room = max_len - len(answer_ids)
    if len(prompt_ids) > room:
        bos = tokenizer.bos_token_id
        head = prompt_ids[:1] if bos is not None and prompt_ids[:1] == [bos] else []
        keep = max(0, room - len(head))
        prompt_ids = head + (prompt_ids[len(prompt_ids) - keep :] if keep else [])
        prompt_ids = prompt_ids[:room]
    return prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids


def build_examples(
    dataset: CanonicalDataset,
    split: str,
    builder: PromptBuilder,
    tokenizer,
    max_len: int,
    append_eos: bool = True,
    cap: int | None = None,
    seed: int = 0,
) -> list[SFTExample]:
    frame = dataset.split(split)
    if cap is not None and len(frame) > int(cap):
        frame = frame.sample(n=int(cap), random_state=seed)
    rank = {lab: i for i, lab in enumerate(builder.labels)}
    out = []
    for ex_id, text, labs in zip(frame["id"], frame["text"], frame["labels"], strict=True):
        ordered = sorted(labs, key=rank.__getitem__)  # gold in the prompt's label order
        ids, labels = encode_example(
            tokenizer, builder.prompt(text), builder.completion(ordered), max_len, append_eos
        )
        out.append(SFTExample(str(ex_id), ids, labels))
    return out


def collate(batch: list[SFTExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example; padding is masked out of attention and loss."""
    width = max(len(ex.input_ids) for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ex in enumerate(batch):
        n = len(ex.input_ids)
        ids[row, :n] = torch.tensor(ex.input_ids)
        labels[row, :n] = torch.tensor(ex.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def answer_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(sum of next-token losses over answer tokens, number of answer tokens)."""
    device = next(model.parameters()).device
    logits = model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
    ).logits
    labels = batch["labels"].to(device)[:, 1:]
    logits = logits[:, :-1].float()
    total = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return total, int((labels != IGNORE).sum())


@torch.no_grad()
def dev_loss(model, examples: list[SFTExample], batch_size: int, pad_id: int) -> float:
    """Token-weighted mean answer loss over ``examples``."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        loss, n = answer_loss(model, collate(examples[start : start + batch_size], pad_id))
        total, count = total + loss.item(), count + n
    model.train(was_training)
    return total / max(count, 1)


def add_lora(model, lora_cfg: dict, qlora: bool = False):
    """Wrap ``model`` with a peft LoRA (r, alpha, dropout, target_modules from config)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if qlora:
        model = prepare_model_for_kbit_training(model)
    config = LoraConfig(
        r=int(lora_cfg["r"]),
        lora_alpha=int(lora_cfg["alpha"]),
        lora_dropout=float(lora_cfg["dropout"]),
        target_modules=lora_cfg.get("target_modules"),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def qlora_available() -> bool:
    """4-bit loading needs bitsandbytes and a CUDA device; otherwise plain LoRA is used."""
    import importlib.util

    return torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None


def load_for_training(model_cfg: dict, qlora: bool):
    """(model, tokenizer, used_qlora): the engine's checkpoint resolution, training-ready."""
    from transformers import AutoModelForCausalLM

    from .engine.loading import load_tokenizer, parse_dtype, resolve_checkpoint

    checkpoint = resolve_checkpoint(model_cfg)
    use_4bit = bool(qlora) and qlora_available()
    if qlora and not use_4bit:
        log.info("QLoRA requested but bitsandbytes/CUDA missing: plain LoRA in float32")
    kwargs = {}
    if use_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = "auto"
    elif torch.cuda.is_available():
        kwargs["dtype"] = parse_dtype(model_cfg.get("dtype") or "bfloat16")
    else:
        kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(checkpoint, **kwargs)
    if not use_4bit and torch.cuda.is_available():
        model.to("cuda")
    return model, load_tokenizer(model_cfg), use_4bit


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_adapter(model, target: Path) -> None:
    """peft ``save_pretrained`` into a temp dir renamed onto ``target`` (never half-written)."""
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The highest ``step-*`` directory holding a complete trainer state."""
    if not checkpoint_dir.is_dir():
        return None
    done = [p for p in checkpoint_dir.glob("step-*") if (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def _save_checkpoint(model, state: dict, checkpoint_dir: Path, keep: int) -> None:
    target = checkpoint_dir / f"step-{state['counters']['step']:07d}"
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp / "adapter")
        torch.save(state, tmp / STATE_FILE)
    steps = sorted(checkpoint_dir.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in steps[: max(0, len(steps) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)


def _load_adapter_weights(model, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    set_peft_model_state_dict(model, load_peft_weights(str(adapter_dir)))


def train_sft(
    model,
    tokenizer,
    dataset: CanonicalDataset,
    prompt_cfg: dict,
    cfg: dict,
    adapter_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    log_csv: str | os.PathLike | None = None,
    qlora: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    loader: str | None = None,
) -> pd.DataFrame:
    """Fine-tune ``model`` with LoRA; write the best adapter to ``adapter_dir``.

    Resumes from the latest checkpoint in ``checkpoint_dir`` when there is one. Returns the
    training log (one row per optimizer step; ``dev_loss`` filled where dev was evaluated).
    ``stop_after`` raises :class:`SimulatedInterrupt` after that many optimizer steps (tests).
    """
    if cfg.get("lr_scheduler", "constant") != "constant":
        raise ValueError(
            f"training.sft.lr_scheduler: {cfg.get('lr_scheduler')!r} unsupported; "
            "expected 'constant' (after warmup, as the reference)"
        )
    seed = int(cfg.get("seed", 0))
    _seed_everything(seed)
    adapter_dir, checkpoint_dir = Path(adapter_dir), Path(checkpoint_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = int(tokenizer.pad_token_id)
    builder = zero_shot_builder(prompt_cfg, dataset, loader)
    max_len, eos = int(cfg["max_seq_length"]), bool(cfg.get("append_eos", True))
    train = build_examples(
        dataset, "train", builder, tokenizer, max_len, eos, cfg.get("max_train_examples"), seed
    )
    dev = build_examples(
        dataset, "dev", builder, tokenizer, max_len, eos, cfg.get("max_dev_examples"), seed
    )
    if not train or not dev:
        raise ValueError(
            f"SFT on {dataset.name}: needs train and dev examples "
            f"(got {len(train)} train, {len(dev)} dev)"
        )
    if cfg.get("gradient_checkpointing") and not qlora:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = add_lora(model, cfg["lora"], qlora=qlora)
    model.train()

    batch_size, accum = int(cfg["batch_size"]), int(cfg.get("grad_accum", 1))
    epochs = int(cfg["epochs"])
    micro_per_epoch = math.ceil(len(train) / batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / accum)
    total_steps = steps_per_epoch * epochs
    warmup = int(math.ceil(float(cfg.get("warmup_ratio", 0.0)) * total_steps))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 0.0))
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
    )
    state = {"step": 0, "epoch": 0, "micro": 0, "best": math.inf, "best_step": 0, "stale": 0}
    rows: list[dict] = []
    resume = latest_checkpoint(checkpoint_dir)
    if resume is not None:
        saved = torch.load(resume / STATE_FILE, map_location="cpu", weights_only=False)
        _load_adapter_weights(model, resume / "adapter")
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"])
        state = saved["counters"]
        rows = saved["rows"]
        log.info("resuming SFT from %s (step %d, epoch %d)", resume, state["step"], state["epoch"])
    eval_every = int(cfg.get("eval_every") or 0)
    ckpt_every = int(cfg.get("checkpoint_every") or 0)
    patience = int(cfg.get("patience", 3))
    best_dir = checkpoint_dir / "best"

    def checkpoint() -> None:
        payload = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
            "counters": dict(state),
            "rows": list(rows),
        }
        _save_checkpoint(model, payload, checkpoint_dir, int(cfg.get("keep_checkpoints", 2)))

    def evaluate() -> bool:
        """Dev loss; True when patience is exhausted."""
        loss = dev_loss(model, dev, batch_size, pad_id)
        rows[-1]["dev_loss"] = loss
        if loss < state["best"]:
            state.update(best=loss, best_step=state["step"], stale=0)
            _save_adapter(model, best_dir)
        else:
            state["stale"] += 1
        log.info("step %d: dev loss %.4f (best %.4f)", state["step"], loss, state["best"])
        return state["stale"] >= patience

    stopped = state.get("stopped", False)
    bar = tqdm(total=total_steps, initial=state["step"], desc="sft", disable=not progress)
    while not stopped and state["epoch"] < epochs:
        # The epoch's order depends only on (seed, epoch): a resumed run skips what it did.
        order = torch.randperm(
            len(train), generator=torch.Generator().manual_seed(seed + state["epoch"])
        )
        batches = [order[i : i + batch_size].tolist() for i in range(0, len(train), batch_size)]
        micro, in_group, group_loss = state["micro"], 0, 0.0
        while micro < len(batches):
            batch = collate([train[i] for i in batches[micro]], pad_id)
            loss_sum, n_tok = answer_loss(model, batch)
            group = min(accum, len(batches) - (micro - in_group))
            # mean answer-token loss per micro-batch, averaged over the accumulation group;
            # backprop right away so only one micro-batch's graph is alive
            (loss_sum / max(n_tok, 1) / group).backward()
            group_loss += loss_sum.item() / max(n_tok, 1) / group
            micro += 1
            in_group += 1
            if in_group < group:
                continue
            torch.nn.utils.clip_grad_norm_(params, float(cfg.get("max_grad_norm", 1.0)))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_loss, in_group, group_loss = group_loss, 0, 0.0
            state["step"] += 1
            state["micro"] = micro
            rows.append(
                {
                    "step": state["step"],
                    "epoch": state["epoch"] + 1,
                    "train_loss": step_loss,
                    "dev_loss": None,
                    "lr": scheduler.get_last_lr()[0],
                }
            )
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            end_of_epoch = micro == len(batches)
            if (eval_every and state["step"] % eval_every == 0) or end_of_epoch:
                stopped = evaluate()
            if end_of_epoch:
                state.update(epoch=state["epoch"] + 1, micro=0)
            state["stopped"] = stopped
            if (ckpt_every and state["step"] % ckpt_every == 0) or end_of_epoch or stopped:
                checkpoint()
            if stop_after is not None and state["step"] >= stop_after:
                raise SimulatedInterrupt(f"stopped after step {state['step']}")
            if stopped:
                log.info("early stopping at step %d", state["step"])
                break
    bar.close()
    if not best_dir.is_dir():
        raise ValueError("SFT: no dev evaluation happened; check training.sft.eval_every")
    _finalize(best_dir, adapter_dir, state, len(train), len(dev), qlora)
    frame = pd.DataFrame(rows, columns=["step", "epoch", "train_loss", "dev_loss", "lr"])
    if log_csv is not None:
        write_csv(log_csv, frame, index=False)
    return frame


def _finalize(best_dir: Path, adapter_dir: Path, state: dict, n_train: int, n_dev: int, qlora):
    """Copy the best adapter to the rule's output, with a note of where it came from."""
    adapter_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{adapter_dir.name}.", dir=adapter_dir.parent))
    try:
        shutil.copytree(best_dir, tmp, dirs_exist_ok=True)
        info = {
            "best_step": state["best_step"],
            "best_dev_loss": state["best"],
            "steps": state["step"],
            "n_train": n_train,
            "n_dev": n_dev,
            "qlora": bool(qlora),
        }
        (tmp / "sft_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if adapter_dir.exists():
            shutil.rmtree(adapter_dir)
        os.replace(tmp, adapter_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
