"""SFT with LoRA: the training text, loss masking, real tiny training and exact resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from multilabel_llm.engine.loading import bundled_model_cfg, load_tokenizer
from multilabel_llm.supervised.sft import (
    IGNORE,
    add_lora,
    build_examples,
    check_qlora,
    encode_example,
    load_for_training,
    train_sft,
    training_load_kwargs,
    zero_shot_builder,
)
from multilabel_llm.supervised.sft_checkpoints import latest_checkpoint
from tests.builders import TOY_PROMPT_CFG, tiny_random_llama, toy_dataset


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


def test_tiny_sft_trains_and_keeps_the_best_adapter(tokenizer, tmp_path):
    ds = toy_dataset()
    full = tmp_path / "full"
    log = train_sft(
        _fresh(tokenizer), tokenizer, ds, TOY_PROMPT_CFG, CFG,
        full / "adapter", full / "ckpt", full / "log.csv", progress=False,
    )  # fmt: skip
    # 12 examples / batch 4 = 3 steps per epoch, 3 epochs
    assert log["step"].tolist() == list(range(1, 10))
    assert log["epoch"].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    dev = log.dropna(subset=["dev_loss"])
    assert dev["step"].tolist() == [3, 6, 9]
    assert dev["dev_loss"].iloc[-1] < dev["dev_loss"].iloc[0] - 0.02
    assert log["train_loss"].iloc[-3:].mean() < log["train_loss"].iloc[:3].mean()
    info = json.loads((full / "adapter" / "sft_info.json").read_text())
    best = int(dev.loc[dev["dev_loss"].idxmin(), "step"])
    assert info["best_step"] == best and info["steps"] == 9
    assert info["best_dev_loss"] == pytest.approx(dev["dev_loss"].min())
    assert (info["n_train"], info["n_dev"]) == (12, 4)
    # the adapter is the best checkpoint's, byte for byte
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (full / "adapter" / name).read_bytes() == (
            full / "ckpt" / f"checkpoint-{best}" / name
        ).read_bytes()
    saved = pd.read_csv(full / "log.csv")
    assert saved["step"].tolist() == log["step"].tolist()
    # checkpoints at 2,3,4,6,8,9 (every 2 steps + every evaluation); keep_checkpoints=2 keeps
    # the last two, plus the best one
    kept = sorted(int(p.name.split("-")[1]) for p in (full / "ckpt").glob("checkpoint-*"))
    assert kept == sorted({8, 9, best})
    assert latest_checkpoint(full / "ckpt").name == "checkpoint-9"


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

    from multilabel_llm.data.prompts import pick_template, resolve_prompt

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


def test_early_stopping_stops_and_a_finished_run_is_not_trained_again(
    tokenizer, tmp_path, monkeypatch
):
    # lr 0: the dev loss never improves, so patience 1 stops at the second evaluation
    cfg = {**CFG, "lr": 0.0, "warmup_ratio": 0.0, "eval_every": 1, "patience": 1}
    args = (tokenizer, toy_dataset(), TOY_PROMPT_CFG, cfg, tmp_path / "a", tmp_path / "c")
    log = train_sft(_fresh(tokenizer), *args, progress=False)
    assert log["step"].tolist() == [1, 2]
    assert log["dev_loss"].iloc[0] == log["dev_loss"].iloc[1]
    assert json.loads((tmp_path / "a" / "sft_info.json").read_text())["best_step"] == 1
    before = (tmp_path / "a" / "adapter_model.safetensors").read_bytes()

    # rerun: the latest checkpoint had exhausted its patience, so nothing is trained
    from transformers import Trainer

    def no_training(*_, **__):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(Trainer, "train", no_training)
    again = train_sft(_fresh(tokenizer), *args, progress=False)
    assert again.equals(log)
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() == before


def test_early_stopping_never_sees_evaluated_test_ids(tokenizer, tmp_path):
    ds = toy_dataset()  # dev: q0..q7
    builder = zero_shot_builder(TOY_PROMPT_CFG, ds)
    kept = build_examples(ds, "dev", builder, tokenizer, 128, exclude=["q0", "q1", "q2"])
    assert [e.id for e in kept] == ["q3", "q4", "q5", "q6", "q7"]
    # the cap samples from what is left, never from the test ids
    capped = build_examples(ds, "dev", builder, tokenizer, 128, cap=4, exclude=["q0", "q1"])
    assert len(capped) == 4 and not {e.id for e in capped} & {"q0", "q1"}
    # every dev id in some test set: a clear error, before any training
    every = {"main_test_set": [f"q{i}" for i in range(5)], "multilabel": ["q5", "q6", "q7"]}
    with pytest.raises(ValueError, match=r"0 dev.*8 dev before.*main_test_set.*multilabel"):
        train_sft(
            _fresh(tokenizer), tokenizer, ds, TOY_PROMPT_CFG, CFG, tmp_path / "a",
            tmp_path / "c", progress=False, exclude=every,
        )  # fmt: skip


def test_qlora_without_bitsandbytes_or_cuda_is_an_error(monkeypatch):
    check_qlora(False)  # plain LoRA needs neither
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        ValueError, match=r"training\.sft\.qlora.*CUDA GPU.*pip install '\.\[gpu\]'"
    ):
        check_qlora(True)
    # never a silent fallback to plain LoRA: loading refuses before reading any weights
    with pytest.raises(ValueError, match=r"training\.sft\.qlora"):
        load_for_training(bundled_model_cfg(), qlora=True)

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a)
    )
    with pytest.raises(ValueError, match="lacks the bitsandbytes package:") as err:
        check_qlora(True)
    assert "CUDA" not in str(err.value).split(":")[0]


def test_training_load_kwargs_follow_the_model_config(monkeypatch):
    from multilabel_llm.engine import model_spec

    cfg = {"name": "m", "hf_id": "org/m", "dtype": "bfloat16", "revision": "abc123"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = training_load_kwargs(cfg, qlora=False)
    assert cpu == {"dtype": torch.float32, "revision": "abc123"}  # CPU trains in float32

    # a simulated 4 x 80 GB job: SFT takes the shared spec's placement and quantisation
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(model_spec, "visible_gpus", lambda: 4)
    monkeypatch.setattr(model_spec, "free_gpu_memory", lambda n: (80 * 2**30,) * n)
    monkeypatch.setattr(model_spec, "bitsandbytes_available", lambda: True)
    fixtures = Path(__file__).parents[1] / "fixtures" / "model_configs"
    small = model_spec.load_arch_config(fixtures / "llama_3_1_8b.json")  # weights on meta only
    one = training_load_kwargs({**cfg, "trust_remote_code": True}, False, arch_config=small)
    assert one["dtype"] == torch.bfloat16 and one["device_map"] == {"": 0}
    assert one["revision"] == "abc123" and one["trust_remote_code"] is True
    large = model_spec.load_arch_config(fixtures / "llama_3_1_70b.json")
    four = training_load_kwargs(cfg, False, resources={"gpu": 4}, arch_config=large)
    assert set(four["device_map"].values()) == {0, 1, 2, 3}  # 140 GB of bf16 over 4 GPUs

    q = training_load_kwargs(cfg, qlora=True, arch_config=large)  # 4-bit 70B: one GPU
    assert q["device_map"] == {"": 0}
    quant = q["quantization_config"]
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4"
    assert quant.bnb_4bit_use_double_quant and quant.bnb_4bit_compute_dtype == torch.bfloat16


def test_gradient_checkpointing_trains_the_same_steps(tokenizer, tmp_path):
    cfg = {**CFG, "epochs": 1, "max_train_examples": 8, "eval_every": 0, "checkpoint_every": 0}
    runs = [
        train_sft(
            _fresh(tokenizer),
            tokenizer,
            toy_dataset(),
            TOY_PROMPT_CFG,
            {**cfg, "gradient_checkpointing": gc},
            tmp_path / f"a{gc}",
            tmp_path / f"c{gc}",
            progress=False,
        )  # fmt: skip
        for gc in (False, True)
    ]
    # recomputed activations (non-reentrant, RNG preserved): the same losses
    assert runs[1]["train_loss"].tolist() == pytest.approx(runs[0]["train_loss"].tolist(), 1e-6)


def test_qlora_path_prepares_the_base_for_kbit_training():
    # prepare_model_for_kbit_training on a model flagged as 4-bit (bitsandbytes needs CUDA):
    # gradient checkpointing on, norms upcast to float32, only the LoRA weights train
    base = _fresh(load_tokenizer(bundled_model_cfg())).to(torch.bfloat16)
    base.is_loaded_in_4bit = True
    model = add_lora(base, CFG["lora"], qlora=True, gradient_checkpointing=True)
    base = model.get_base_model()
    assert base.is_gradient_checkpointing
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(
        p.dtype == torch.float32 for n, p in model.named_parameters() if "norm" in n
    )  # norms upcast for stable k-bit training
