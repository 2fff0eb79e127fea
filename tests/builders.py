"""Small in-process fixtures for tests and the benchmarks (no files needed): a toy dataset and
prompt, the bundled model, tiny random Llamas sharing its tokenizer, and a random Llama-8B-shaped
model for the GPU benchmark."""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
import torch

from multilabel_llm.data.canonical import CanonicalDataset, dist_column
from multilabel_llm.engine.loading import bundled_model_cfg, load_model, load_tokenizer

__all__ = [
    "TOY_LABELS",
    "TOY_PROMPT_CFG",
    "bundled_model",
    "bundled_model_cfg",
    "llama8b_random",
    "save_tiny_checkpoint",
    "tiny_model",
    "tiny_random_llama",
    "toy_dataset",
]

TOY_LABELS = ["joy", "optimism", "admiration", "surprise", "fear", "sadness", "anger"]

_TRAIN = [
    ("I can't believe we actually won the whole thing!", ["joy", "surprise"]),
    ("This is the best news I've heard all year, so happy for you", ["joy"]),
    ("Things will get better, I'm sure of it.", ["optimism"]),
    ("I really respect how you handled that situation.", ["admiration"]),
    ("Wow, I did not see that coming at all.", ["surprise"]),
    ("I'm terrified of what happens next.", ["fear"]),
    ("I miss her so much, it hurts.", ["sadness"]),
    ("This makes me furious, how dare they.", ["anger"]),
    ("Scared and sad that it ended like this.", ["fear", "sadness"]),
    ("What an amazing player, hope he keeps it up!", ["admiration", "optimism"]),
    ("Angry and honestly a bit scared of these people.", ["anger", "fear"]),
    ("So proud of you, and so happy!", ["admiration", "joy"]),
    ("Hopefully tomorrow is a brighter day, I'm excited.", ["joy", "optimism"]),
    ("Ugh, lost my keys again and now I'm late, so annoyed.", ["anger", "sadness"]),
    ("Just a normal day at the office.", []),
]
_QUERIES = [
    (
        "Problem is that picture is there before you ever set foot in the cabin. Just creepy.",
        ["fear"],
    ),
    ("Can I speak to the Suns' manager?", ["surprise"]),
    ("I love this so much, thank you!", ["joy"]),
    ("This guy is a legend, absolutely incredible work.", ["admiration"]),
    ("I'm worried this will all fall apart and I'm upset about it.", ["fear", "sadness"]),
    ("Why would anyone do that? Makes me so mad.", ["anger"]),
    ("Fingers crossed it works out for everyone.", ["optimism"]),
    ("Nothing much to say really.", []),
]


def toy_dataset(n_queries: int | None = None, repeat: int = 1) -> CanonicalDataset:
    """GoEmotions-shaped (7 pooled labels) dataset: 15 train rows and dev queries."""
    rows = []
    for i, (text, labs) in enumerate(_TRAIN):
        rows.append((f"tr{i}", "train", text, labs))
    queries = _QUERIES * repeat
    for i, (text, labs) in enumerate(queries[: n_queries or len(queries)]):
        suffix = "" if i < len(_QUERIES) else f" ({i // len(_QUERIES)})"
        rows.append((f"q{i}", "dev", text + suffix, labs))
    frame = pd.DataFrame(rows, columns=["id", "split", "text", "labels"])
    frame["annotators"] = [["a1", "a2"] for _ in rows]
    frame["annotator_labels"] = [[labs, labs[:1]] for *_, labs in rows]
    frame["n_annotators"] = 2
    for lab in TOY_LABELS:
        frame[dist_column(lab)] = [
            sum(lab in a for a in al) / 2 for al in frame["annotator_labels"]
        ]
    return CanonicalDataset("goemotions", list(TOY_LABELS), True, frame)


TOY_PROMPT_CFG = {
    "name": "json_10shot",
    "n_shots": 10,
    "multilabel_ratio": 0.5,
    "label_order": "dataset",
    "seed": 0,
    "max_new_tokens": 18,
    "label_format": "json",
    "templates": {
        "default": {
            "instruction": (
                "Classify the following inputs into none, one, or multiple the following "
                "emotions per input: {labels}. Output exactly these emotions and no others.\n"
            ),
            "example": "Input: {text}\n{label}\n",
        }
    },
}


@lru_cache(maxsize=1)
def bundled_model():
    """The real bundled SmolLM2-135M-Instruct in float32 on CPU (cached per process)."""
    return load_model(bundled_model_cfg(), device="cpu")


@lru_cache(maxsize=1)
def tiny_model():
    """A tiny random Llama with the bundled tokenizer (cached per process)."""
    return tiny_random_llama(load_tokenizer(bundled_model_cfg()), seed=0)


def save_tiny_checkpoint(path, seed: int = 0, hidden: int = 64, layers: int = 4) -> dict:
    """A tiny random Llama (bundled tokenizer) saved as a real checkpoint dir under ``path``,
    so tests load it through ``from_pretrained`` (placement, offload); returns its model
    config (``path`` source)."""
    from pathlib import Path

    tokenizer = load_tokenizer(bundled_model_cfg())
    model, _ = tiny_random_llama(tokenizer, seed=seed, hidden=hidden, layers=layers)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return {"name": f"tiny-random-{layers}l", "path": str(path), "size_class": "tiny"}


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
