"""SFT with LoRA: the training text, loss masking, real tiny training and exact resuming."""

from __future__ import annotations

import json

import pytest
import torch

from multilabel_llm.engine.loading import bundled_model_cfg, load_tokenizer, tiny_random_llama
from multilabel_llm.engine.testing import TOY_PROMPT_CFG, toy_dataset
from multilabel_llm.sft import (
    IGNORE,
    SimulatedInterrupt,
    build_examples,
    encode_example,
    latest_checkpoint,
    train_sft,
    zero_shot_builder,
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(bundled_model_cfg())


CFG = {
    "seed": 0,
    "lora": {"r": 8, "alpha": 128, "dropout": 0.1, "target_modules": None},
    "lr": 1e-2,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.1,
    "batch_size": 4,
    "grad_accum": 1,
    "max_grad_norm": 1.0,
    "epochs": 3,
    "max_seq_length": 128,
    "append_eos": True,
    "max_train_examples": 12,
    "max_dev_examples": 4,
    "eval_every": 3,
    "checkpoint_every": 2,
    "keep_checkpoints": 2,
    "patience": 5,
}


def test_training_text_has_no_demos_and_json_answer(tokenizer):
    ds = toy_dataset()
    builder = zero_shot_builder(TOY_PROMPT_CFG, ds)
    assert builder.demos == []
    prompt = builder.prompt("I love it")
    assert prompt.startswith("Classify the following inputs")
    assert prompt.endswith("Input: I love it")
    assert prompt.count("Input:") == 1  # the query only
    # gold labels follow the prompt's label order, in the prompt's JSON format + newline
    assert builder.completion(["joy", "surprise"]) == '\n{"label": ["joy", "surprise"]}\n'
    assert builder.completion([]) == '\n{"label": ["none"]}\n'


def test_loss_mask_covers_only_the_answer(tokenizer):
    ids, labels = encode_example(tokenizer, "Input: hi", '\n{"label": ["joy"]}\n', 64, True)
    answer = tokenizer('\n{"label": ["joy"]}\n', add_special_tokens=False)["input_ids"]
    n_prompt = len(tokenizer("Input: hi")["input_ids"])
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == answer + [tokenizer.eos_token_id]
    assert ids[n_prompt:] == labels[n_prompt:]


def test_long_prompt_is_cut_from_the_left(tokenizer):
    prompt = "word " * 200 + "Input: the end"
    ids, labels = encode_example(tokenizer, prompt, " joy\n", 32, True)
    assert len(ids) == 32
    kept = [t for t, lab in zip(ids, labels, strict=True) if lab == IGNORE]
    assert tokenizer.decode(kept).endswith("Input: the end")  # the query survives
    assert [lab for lab in labels if lab != IGNORE][-1] == tokenizer.eos_token_id


def test_examples_are_seeded_samples_of_the_split(tokenizer):
    ds = toy_dataset()
    builder = zero_shot_builder(TOY_PROMPT_CFG, ds)
    a = build_examples(ds, "train", builder, tokenizer, 128, cap=5, seed=1)
    b = build_examples(ds, "train", builder, tokenizer, 128, cap=5, seed=1)
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 5
    assert all(e.id.startswith("tr") for e in a)


def _fresh(tokenizer):
    model, _ = tiny_random_llama(tokenizer, seed=0, hidden=32)
    return model


def _adapter_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def test_tiny_sft_trains_resumes_exactly(tokenizer, tmp_path):
    ds = toy_dataset()
    full = tmp_path / "full"
    log = train_sft(
        _fresh(tokenizer), tokenizer, ds, TOY_PROMPT_CFG, CFG,
        full / "adapter", full / "ckpt", full / "log.csv", progress=False,
    )  # fmt: skip
    # 12 examples / batch 4 = 3 steps per epoch, 3 epochs
    assert log["step"].tolist() == list(range(1, 10))
    dev = log.dropna(subset=["dev_loss"])
    assert dev["step"].tolist() == [3, 6, 9]
    assert dev["dev_loss"].iloc[-1] < dev["dev_loss"].iloc[0] - 0.02
    assert log["train_loss"].iloc[-3:].mean() < log["train_loss"].iloc[:3].mean()
    info = json.loads((full / "adapter" / "sft_info.json").read_text())
    assert info["best_step"] == int(dev.loc[dev["dev_loss"].idxmin(), "step"])
    assert (full / "adapter" / "adapter_config.json").is_file()
    assert (full / "log.csv").is_file()
    # keep_checkpoints=2: only the last two step-* dirs remain
    assert sorted(p.name for p in (full / "ckpt").glob("step-*")) == [
        "step-0000008",
        "step-0000009",
    ]

    # Killed after step 4 (checkpoint at 4), then rerun: same result as the uninterrupted run.
    cut = tmp_path / "cut"
    with pytest.raises(SimulatedInterrupt):
        train_sft(
            _fresh(tokenizer), tokenizer, ds, TOY_PROMPT_CFG, CFG,
            cut / "adapter", cut / "ckpt", progress=False, stop_after=4,
        )  # fmt: skip
    assert latest_checkpoint(cut / "ckpt").name == "step-0000004"
    assert not (cut / "adapter").exists()
    resumed = train_sft(
        _fresh(tokenizer), tokenizer, ds, TOY_PROMPT_CFG, CFG,
        cut / "adapter", cut / "ckpt", progress=False,
    )  # fmt: skip
    assert resumed["train_loss"].tolist() == pytest.approx(log["train_loss"].tolist(), rel=1e-5)
    a, b = _adapter_tensors(full / "adapter"), _adapter_tensors(cut / "adapter")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_grad_accumulation_counts_optimizer_steps(tokenizer, tmp_path):
    # 12 examples, batch 4, accum 2: 3 micro-batches -> steps of 2 + 1 per epoch
    cfg = {**CFG, "grad_accum": 2, "epochs": 2, "eval_every": 0, "checkpoint_every": 0}
    log = train_sft(
        _fresh(tokenizer), tokenizer, toy_dataset(), TOY_PROMPT_CFG, cfg,
        tmp_path / "adapter", tmp_path / "ckpt", progress=False,
    )  # fmt: skip
    assert log["step"].tolist() == [1, 2, 3, 4]
    assert log["dev_loss"].notna().tolist() == [False, True, False, True]  # epoch ends


def test_adapter_loads_for_inference(tokenizer, tmp_path):
    from peft import PeftModel

    ds = toy_dataset()
    cfg = {**CFG, "epochs": 1, "eval_every": 0}
    train_sft(
        _fresh(tokenizer), tokenizer, ds, TOY_PROMPT_CFG, cfg,
        tmp_path / "adapter", tmp_path / "ckpt", progress=False,
    )  # fmt: skip
    merged = PeftModel.from_pretrained(_fresh(tokenizer), str(tmp_path / "adapter"))
    merged = merged.merge_and_unload().eval()
    out = merged(torch.tensor([[1, 2, 3]])).logits
    assert out.shape == (1, 3, len(tokenizer))


def test_unknown_scheduler_is_rejected(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="lr_scheduler"):
        train_sft(
            _fresh(tokenizer), tokenizer, toy_dataset(), TOY_PROMPT_CFG,
            {**CFG, "lr_scheduler": "cosine"}, tmp_path / "a", tmp_path / "c", progress=False,
        )  # fmt: skip


def test_sft_trains_on_the_template_inference_uses():
    """A renamed dataset (hatexplain_demo) resolves its template by loader, as inference does."""
    import dataclasses

    from multilabel_llm.prompts import pick_template, resolve_prompt

    ds = dataclasses.replace(toy_dataset(), name="toyemo_demo")
    cfg = {
        **TOY_PROMPT_CFG,
        "templates": {
            **TOY_PROMPT_CFG["templates"],
            "toyloader": {"instruction": "LOADER {labels}\n", "example": "Q: {text}\nA: {label}\n"},
        },
    }
    inference = resolve_prompt(cfg, ds.name, pick_template(cfg, "toyloader", ds.name))
    builder = zero_shot_builder(cfg, ds, loader="toyloader")
    assert builder.spec.instruction == inference.instruction == "LOADER {labels}\n"
    assert builder.prompt("hi").startswith("LOADER")
