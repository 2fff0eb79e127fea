"""Supervised fine-tuning with LoRA (paper §5.2.3, §A.5): the "SFT" rows of Table 2.

Training text = the run's prompt *without demonstrations* (instruction + query block) followed
by the gold label list in the prompt's format; the loss covers only the answer tokens. The
adapter is later applied at inference with the usual 10-shot prompt (the engine's
``load_model(model_cfg, adapter=...)``).

Training runs on transformers' ``Trainer`` (as the reference's trl ``SFTTrainer`` does): peft
LoRA, QLoRA (4-bit nf4 + ``prepare_model_for_kbit_training``) when ``qlora: true``, optional
gradient checkpointing, constant LR after warmup, gradient clipping, dev-loss early stopping
(``EarlyStoppingCallback``) and resumable checkpoints (adapter, optimizer, scheduler, RNG
states, position in the epoch). What this module adds around it:

* **Fingerprinted checkpoints.** Every checkpoint (and the final adapter's ``sft_info.json``)
  carries a digest of everything that decides its content: the training config, the base
  model's identity (resolved checkpoint, revision, dtype, quantisation, a probe of the loaded
  weights) and the encoded train/dev examples (ids, prompt, tokenizer, ``max_seq_length``).
  A rerun resumes only checkpoints with the same digest; on a mismatch it discards them all
  and trains from scratch. A checkpoint without its fingerprint file (killed mid-save) is
  never resumed.
* **Finished runs are not trained again**: when the latest checkpoint reached the last step
  or the early-stopping patience, the best checkpoint's adapter is copied as it is.
* **Dev evaluations** every ``eval_every`` optimizer steps and at each epoch end; every
  evaluation writes a checkpoint (so the best adapter is always a checkpoint), plus one every
  ``checkpoint_every`` steps.
* **Early stopping never sees evaluated ids**: ``exclude`` (test set name -> ids) is taken out
  of the dev split before the ``max_dev_examples`` sample is drawn (GoEmotions and SemEval
  test sets come from dev).

Deviations from the reference: no sequence packing (each example is padded in its batch); the
optimizer is ``training.sft.optim`` (the paper config keeps the reference's paged AdamW with
QLoRA; the CPU demo uses torch's AdamW).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multilabel_llm.core.io import write_csv, write_text
from multilabel_llm.data.canonical import CanonicalDataset
from multilabel_llm.data.prompts import PromptBuilder, order_labels, pick_template, resolve_prompt
from multilabel_llm.supervised.sft_checkpoints import (
    CHECKPOINT_PREFIX,
    FINGERPRINT_FILE,
    STATE_FILE,
    _best_step,
    _changed,
    _finalize,
    _finished,
    _read_fingerprint,
    latest_checkpoint,
)

log = logging.getLogger(__name__)

IGNORE = -100
# Keys of training.sft that do not change what is trained (where and how often it is saved).
NOT_CONTENT = ("resources", "keep_checkpoints", "checkpoint_every")
REQUIRED = ("lora", "lr", "batch_size", "epochs", "max_seq_length")
GPU_EXTRA = "pip install '.[gpu]'"


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
    exclude=(),
) -> list[SFTExample]:
    """The split's examples minus ``exclude`` ids, a seeded sample of ``cap`` when set."""
    frame = dataset.split(split)
    if len(exclude):
        frame = frame[~frame["id"].astype(str).isin({str(i) for i in exclude})]
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


class _Examples(torch.utils.data.Dataset):
    def __init__(self, examples: list[SFTExample]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> SFTExample:
        return self.examples[i]


# ------------------------------------------------------------------------- model loading


def qlora_missing() -> list[str]:
    """What 4-bit QLoRA needs and this machine lacks (empty when it can run)."""
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package")
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU")
    return missing


def check_qlora(qlora: bool) -> None:
    """``qlora: true`` without bitsandbytes or CUDA is an error, never plain LoRA instead."""
    missing = qlora_missing() if qlora else []
    if missing:
        raise ValueError(
            "training.sft.qlora is true (4-bit QLoRA) but this machine lacks "
            + " and ".join(missing)
            + f": run on a CUDA GPU with the gpu extra installed ({GPU_EXTRA}), "
            "or set training.sft.qlora: false for plain LoRA"
        )


def training_load_kwargs(
    model_cfg: dict, qlora: bool, resources: dict | None = None, arch_config=None
) -> dict:
    """``from_pretrained`` kwargs for training: the shared model spec's, with QLoRA as 4-bit.

    One policy for every backend (engine/model_spec.py): the configured dtype on CUDA
    (default bfloat16), float32 on CPU (bf16 matmuls on CPU are slow and lose the LoRA update
    in rounding); with the checkpoint's ``arch_config`` the layers are placed over the job's
    GPUs (one GPU when they fit, else balanced, an error when they fit nowhere). QLoRA is the
    spec's 4-bit nf4 + double quantisation with bf16 compute (the reference's recipe).
    """
    from multilabel_llm.engine.model_spec import ModelSpec

    cfg = {**model_cfg, "quantization": "4bit" if qlora else model_cfg.get("quantization")}
    return ModelSpec.from_config(cfg, resources).from_pretrained_kwargs(arch_config)


def describe_load(kwargs: dict) -> str:
    """What the weights are actually held as (the log line the old code got wrong)."""
    if "quantization_config" in kwargs:
        return "4-bit nf4 weights (double quant), bfloat16 compute"
    return str(kwargs.get("dtype")).removeprefix("torch.")


def load_for_training(model_cfg: dict, qlora: bool = False):
    """(model, tokenizer, qlora): the engine's checkpoint resolution, training-ready.

    The one place SFT loads a model, so the placement/quantisation policy can move to the
    shared model spec without touching the training loop.
    """
    from transformers import AutoModelForCausalLM

    from multilabel_llm.engine.loading import load_tokenizer, resolve_checkpoint

    qlora = bool(qlora)
    check_qlora(qlora)
    checkpoint = resolve_checkpoint(model_cfg)
    arch_config = None
    if torch.cuda.is_available():  # placement over the job's GPUs needs the architecture
        from transformers import AutoConfig

        arch_config = AutoConfig.from_pretrained(
            checkpoint,
            revision=model_cfg.get("revision"),
            trust_remote_code=bool(model_cfg.get("trust_remote_code")),
        )
    kwargs = training_load_kwargs(model_cfg, qlora, arch_config=arch_config)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, **kwargs)
    log.info(
        "loaded %s for training: %s%s",
        checkpoint,
        describe_load(kwargs),
        f", device_map={kwargs['device_map']}" if "device_map" in kwargs else "",
    )
    return model, load_tokenizer(model_cfg), qlora


def add_lora(model, lora_cfg: dict, qlora: bool = False, gradient_checkpointing: bool = False):
    """Wrap ``model`` with a peft LoRA (r, alpha, dropout, target_modules from config)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if qlora:
        # casts norms to fp32, freezes the base, enables input grads for checkpointing
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    try:
        config = LoraConfig(
            r=int(lora_cfg["r"]),
            lora_alpha=int(lora_cfg["alpha"]),
            lora_dropout=float(lora_cfg["dropout"]),
            target_modules=lora_cfg.get("target_modules"),
            task_type="CAUSAL_LM",
        )
    except KeyError as err:
        raise ValueError(f"training.sft.lora: missing key {err} (needs r, alpha, dropout)") from err
    with warnings.catch_warnings():
        # peft reads the attribute transformers 5 renamed; the warning is not ours to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, config)


# ------------------------------------------------------------------------- fingerprints


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def examples_digest(examples: list[SFTExample]) -> str:
    """Ids and token ids: covers the data, the prompt, the tokenizer and the length cap."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(ex.id.encode() + b"\0")
        digest.update(np.asarray(ex.input_ids, dtype=np.int64).tobytes())
        digest.update(np.asarray(ex.labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def base_model_identity(model, model_cfg: dict | None = None) -> dict:
    """The base model as configured (checkpoint/hub id + revision + snapshot, dtype) and as
    loaded (parameter dtype, 4-bit or not, a cheap probe of the weights)."""
    from multilabel_llm.engine.identity import checkpoint_identity, weight_probe

    identity = {
        "dtype": str(getattr(model, "dtype", None)),
        "quantized_4bit": bool(getattr(model, "is_loaded_in_4bit", False)),
        "class": type(model).__name__,
        "weights": weight_probe(model),
    }
    if model_cfg:
        identity["checkpoint"] = checkpoint_identity(model_cfg)
        identity["configured_dtype"] = model_cfg.get("dtype")
    return identity


def sft_fingerprint(
    cfg: dict, base: dict, train: list[SFTExample], dev: list[SFTExample]
) -> tuple[str, dict]:
    """(digest, parts) of everything that decides the adapter a run writes."""
    import peft
    import transformers

    parts = {
        "training": {k: v for k, v in sorted(cfg.items()) if k not in NOT_CONTENT},
        "model": base,
        "train": {"n": len(train), "digest": examples_digest(train)},
        "dev": {"n": len(dev), "digest": examples_digest(dev)},
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
    }
    return _digest(parts), parts


def prepare_checkpoints(checkpoint_dir: Path, digest: str, parts: dict) -> Path | None:
    """Delete checkpoints that are stale (another fingerprint) or incomplete; the latest one
    left, or None. Folders of the earlier hand-written loop (``step-*``, ``best``) go too."""
    if not checkpoint_dir.is_dir():
        return None
    stale, incomplete = [], []
    for path in sorted(checkpoint_dir.iterdir()):
        if not path.is_dir():
            continue
        if path.name.startswith(CHECKPOINT_PREFIX):
            saved = _read_fingerprint(path)
            if saved is None or not (path / STATE_FILE).is_file():
                incomplete.append(path)
            elif saved.get("digest") != digest:
                stale.append((path, _changed(saved, parts)))
        elif path.name.startswith("step-") or path.name == "best":
            stale.append((path, ["(old checkpoint format)"]))
    if stale:
        what = sorted({k for _, keys in stale for k in keys})
        log.warning(
            "SFT: %d checkpoint(s) in %s were written for another %s: discarded, training "
            "from scratch",
            len(stale),
            checkpoint_dir,
            ", ".join(what),
        )
    if incomplete:
        log.info("SFT: removing %d incompletely written checkpoint(s)", len(incomplete))
    for path in [p for p, _ in stale] + incomplete:
        shutil.rmtree(path, ignore_errors=True)
    return latest_checkpoint(checkpoint_dir)


# ------------------------------------------------------------------------- trainer glue


def _trainer_callbacks(fingerprint: dict, stop_after: int | None, patience: int):
    from transformers import EarlyStoppingCallback, TrainerCallback

    class FingerprintCallback(TrainerCallback):
        """Writes the run's fingerprint into each checkpoint, last: a checkpoint without it
        was cut off mid-save and is never resumed."""

        def on_save(self, args, state, control, **kwargs):
            path = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
            if path.is_dir():
                write_text(path / FINGERPRINT_FILE, json.dumps(fingerprint, indent=1, default=str))

    class EvalEachEpoch(TrainerCallback):
        """Dev loss at every epoch end (besides every eval_every steps), and a checkpoint at
        every evaluation, so the best adapter and the patience counter are always saved."""

        def __init__(self):
            self.last_eval = -1

        def on_epoch_end(self, args, state, control, **kwargs):
            if state.global_step != self.last_eval:
                control.should_evaluate = True

        def on_evaluate(self, args, state, control, **kwargs):
            self.last_eval = state.global_step
            control.should_save = True

    class Interrupt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if stop_after is not None and state.global_step >= stop_after:
                raise SimulatedInterrupt(f"stopped after step {state.global_step}")

    class DevLossEarlyStopping(EarlyStoppingCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            pass  # the best adapter is copied from its checkpoint, not loaded at the end

    return [
        FingerprintCallback(),
        EvalEachEpoch(),
        DevLossEarlyStopping(early_stopping_patience=patience),
        Interrupt(),
    ]


def training_log(state: dict) -> pd.DataFrame:
    """One row per optimizer step from the trainer's log history (dev loss where evaluated)."""
    rows: dict[int, dict] = {}
    for entry in state.get("log_history", []):
        step = int(entry.get("step", 0))
        row = rows.setdefault(
            step,
            {"step": step, "epoch": None, "train_loss": None, "dev_loss": None, "lr": None},
        )
        if "loss" in entry:
            row.update(train_loss=entry["loss"], lr=entry.get("learning_rate"))
            row["epoch"] = math.ceil(entry["epoch"] - 1e-9) if "epoch" in entry else None
        if "eval_loss" in entry:
            row["dev_loss"] = entry["eval_loss"]
    frame = pd.DataFrame(
        [r for s, r in sorted(rows.items()) if r["train_loss"] is not None],
        columns=["step", "epoch", "train_loss", "dev_loss", "lr"],
    )
    return frame


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_cfg(cfg: dict) -> None:
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise ValueError(f"training.sft: missing key(s) {missing} (see config/training/)")
    if cfg.get("lr_scheduler", "constant") != "constant":
        raise ValueError(
            f"training.sft.lr_scheduler: {cfg.get('lr_scheduler')!r} unsupported; "
            "expected 'constant' (after warmup, as the reference)"
        )
    for key in ("batch_size", "epochs"):
        if int(cfg[key]) < 1:
            raise ValueError(f"training.sft.{key}: {cfg[key]!r}, expected an integer >= 1")
    for key in ("eval_every", "checkpoint_every"):
        if int(cfg.get(key) or 0) < 0:
            raise ValueError(f"training.sft.{key}: {cfg[key]!r}, expected 0 (off) or a step count")
    optim = str(cfg.get("optim") or "adamw_torch")
    if "8bit" in optim or optim.startswith("paged_"):
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError(
                f"training.sft.optim: {optim!r} needs bitsandbytes ({GPU_EXTRA}); "
                "use adamw_torch without it"
            )


def _checkpointing_args(enabled: bool) -> dict:
    """Gradient checkpointing under the name this transformers version uses (renamed
    ``activation_checkpointing`` in 5.x, the old name warns)."""
    import dataclasses

    from transformers import TrainingArguments

    if not enabled:
        return {}
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else "gradient_checkpointing"
    )
    # non-reentrant: works with frozen inputs (LoRA) without enable_input_require_grads
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def _training_args(
    cfg: dict, checkpoint_dir: Path, n_train: int, model, progress: bool, qlora: bool
):
    from transformers import TrainingArguments

    batch_size, accum = int(cfg["batch_size"]), int(cfg.get("grad_accum", 1))
    epochs = int(cfg["epochs"])
    total_steps = math.ceil(math.ceil(n_train / batch_size) / accum) * epochs
    eval_every = int(cfg.get("eval_every") or 0)
    ckpt_every = int(cfg.get("checkpoint_every") or 0)
    seed = int(cfg.get("seed", 0))
    dtype = getattr(model, "dtype", torch.float32)
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=accum,
        num_train_epochs=epochs,
        learning_rate=float(cfg["lr"]),
        weight_decay=float(cfg.get("weight_decay", 0.0)),
        max_grad_norm=float(cfg.get("max_grad_norm", 1.0)),
        # the reference's paged AdamW with QLoRA (bitsandbytes is there then), torch's otherwise
        optim=str(cfg.get("optim") or ("paged_adamw_32bit" if qlora else "adamw_torch")),
        lr_scheduler_type="constant_with_warmup",
        # an integer step count: a float < 1 would be read as a ratio, 1.0 as one step
        warmup_steps=int(math.ceil(float(cfg.get("warmup_ratio", 0.0)) * total_steps)),
        eval_strategy="steps" if eval_every else "epoch",
        eval_steps=eval_every or None,
        # evaluations save too (callback); with checkpoint_every 0 only they do
        save_strategy="steps",
        save_steps=ckpt_every or total_steps + 1,
        save_total_limit=max(1, int(cfg.get("keep_checkpoints", 2))),
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        load_best_model_at_end=False,
        restore_callback_states_from_checkpoint=True,
        logging_strategy="steps",
        logging_steps=1,
        prediction_loss_only=True,
        remove_unused_columns=False,
        **_checkpointing_args(bool(cfg.get("gradient_checkpointing", False))),
        bf16=cuda and dtype == torch.bfloat16,
        fp16=cuda and dtype == torch.float16,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        report_to="none",
        disable_tqdm=not progress,
    )


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
    model_cfg: dict | None = None,
    exclude: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Fine-tune ``model`` with LoRA; write the best adapter to ``adapter_dir``.

    Resumes from the latest checkpoint in ``checkpoint_dir`` when its fingerprint matches this
    run (else discards them all). ``model_cfg`` names the base checkpoint in the fingerprint;
    ``exclude`` maps test set names to ids kept out of the dev examples. Returns the training
    log (one row per optimizer step; ``dev_loss`` filled where dev was evaluated).
    ``stop_after`` raises :class:`SimulatedInterrupt` before the step after that many (tests).
    """
    from transformers import Trainer

    _check_cfg(cfg)
    check_qlora(qlora)
    seed = int(cfg.get("seed", 0))
    _seed_everything(seed)
    adapter_dir, checkpoint_dir = Path(adapter_dir), Path(checkpoint_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = int(tokenizer.pad_token_id)
    # the model's tokenizer renders `chat_template: true` prompts, as at inference
    builder = zero_shot_builder(prompt_cfg, dataset, loader).attach_tokenizer(tokenizer)
    max_len, eos = int(cfg["max_seq_length"]), bool(cfg.get("append_eos", True))
    excluded = sorted({str(i) for ids in (exclude or {}).values() for i in ids})
    train = build_examples(
        dataset, "train", builder, tokenizer, max_len, eos, cfg.get("max_train_examples"), seed
    )
    dev = build_examples(
        dataset, "dev", builder, tokenizer, max_len, eos, cfg.get("max_dev_examples"), seed,
        exclude=excluded,
    )  # fmt: skip
    if not train or not dev:
        n_dev_all = len(dataset.split("dev"))
        raise ValueError(
            f"SFT on {dataset.name}: needs train and dev examples (got {len(train)} train, "
            f"{len(dev)} dev; {n_dev_all} dev before leaving out the ids of the evaluated test "
            f"sets {sorted(exclude or {})}): early stopping needs dev examples no test set uses"
        )
    n_left_out = int(dataset.split("dev")["id"].astype(str).isin(set(excluded)).sum())
    log.info(
        "SFT on %s: %d train, %d dev examples (%d dev examples left out: in test sets %s)",
        dataset.name,
        len(train),
        len(dev),
        n_left_out,
        sorted(exclude or {}),
    )
    cap = cfg.get("max_dev_examples")
    if cap is not None and len(dev) < int(cap):
        log.warning(
            "SFT on %s: only %d dev examples are outside the evaluated test sets "
            "(training.sft.max_dev_examples is %d): early stopping reads those",
            dataset.name,
            len(dev),
            int(cap),
        )
    digest, parts = sft_fingerprint(cfg, base_model_identity(model, model_cfg), train, dev)
    fingerprint = {"digest": digest, "parts": parts}
    patience = int(cfg.get("patience", 3))
    latest = prepare_checkpoints(checkpoint_dir, digest, parts)
    if latest is not None and _finished(latest, patience):
        log.info("SFT: %s finished this exact run before: not training again", latest)
    else:
        gc = bool(cfg.get("gradient_checkpointing", False))
        model = add_lora(model, cfg["lora"], qlora=qlora, gradient_checkpointing=gc)
        if progress:
            model.print_trainable_parameters()
        trainer = Trainer(
            model=model,
            args=_training_args(cfg, checkpoint_dir, len(train), model, progress, qlora),
            train_dataset=_Examples(train),
            eval_dataset=_Examples(dev),
            data_collator=lambda batch: collate(batch, pad_id),
            callbacks=_trainer_callbacks(fingerprint, stop_after, patience),
        )
        if not progress:
            from transformers import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # it prints every log line to stdout
        if latest is not None:
            log.info("SFT: resuming from %s", latest)
        trainer.train(resume_from_checkpoint=str(latest) if latest is not None else None)
        latest = latest_checkpoint(checkpoint_dir)
    # The last step is always checkpointed (an evaluation happens there), so the latest
    # checkpoint's state is the whole run's, resumed or not.
    state = json.loads((latest / STATE_FILE).read_text(encoding="utf-8"))
    frame = training_log(state)
    best = checkpoint_dir / f"{CHECKPOINT_PREFIX}{_best_step(state)}"
    info = {
        "fingerprint": digest,
        "best_step": _best_step(state),
        "best_dev_loss": state.get("best_metric"),
        "steps": int(state["global_step"]),
        "n_train": len(train),
        "n_dev": len(dev),
        "dev_left_out": n_left_out,
        "dev_excluded_testsets": sorted(exclude or {}),
        "qlora": bool(qlora),
    }
    _finalize(best, adapter_dir, info, fingerprint)
    if log_csv is not None:
        write_csv(log_csv, frame, index=False)
    return frame
