"""Benchmark: shared-prefix batched tracing vs. per-example ``generate(output_scores=True)``.

Default: the bundled SmolLM2-135M (float32, CPU, 2 threads) on the demo prompts.
GPU: ``--model llama8b-random --dtype bfloat16 --device cuda --prefix-tokens 1000
--query-tokens 60 --new-tokens 16 --n 64`` (random Llama-3.1-8B-shaped weights, synthetic
token prompts, no early stop so both paths do identical work). The last line is
``speedup <N>x``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from multilabel_llm.engine.hf.tracer import TraceEngine, reference_trace
from multilabel_llm.engine.label_tokens import LabelTokens, detect_label_tokens
from multilabel_llm.engine.loading import DTYPES, bundled_model_cfg, load_model
from multilabel_llm.engine.tracing import StopRule, common_prefix_len
from tests.builders import llama8b_random


class NeverStop(StopRule):
    def __init__(self):
        self.stop, self.eos_ids = [], set()

    def done(self, gen_ids):
        return False


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def demo_workload(args):
    """The demo's real prompts: GoEmotions excerpt (dev split), json_10shot, bundled model."""
    import yaml

    from multilabel_llm.data import prepare
    from multilabel_llm.data.prompts import PromptBuilder, pick_template, resolve_prompt

    root = Path(__file__).resolve().parents[1]
    ds_cfg = yaml.safe_load((root / "config/dataset/goemotions_demo.yaml").read_text())
    prompt_cfg = yaml.safe_load((root / "config/prompt/json_10shot.yaml").read_text())
    ds = prepare(ds_cfg, root)
    spec = resolve_prompt(prompt_cfg, ds.name, pick_template(prompt_cfg, ds_cfg["loader"], ds.name))
    builder = PromptBuilder.from_dataset(spec, ds, demo_split=ds_cfg.get("demo_split", "train"))
    model, tok = load_model(bundled_model_cfg(), device=args.device)
    texts = ds.split("dev")["text"].tolist()[: args.n]
    prompts = [tok(builder.prompt(text)).input_ids for text in texts]
    pre = tok(builder.prefix()).input_ids
    prefix = pre[: common_prefix_len(pre, prompts)]
    tokens = detect_label_tokens(tok, ds.labels, spec.label_format)
    return (
        model,
        tok,
        prompts,
        prefix,
        tokens,
        StopRule(tok, spec.label_format, spec.stop),
        args.new_tokens or builder.max_new_tokens(tok),
    )


def random_workload(args):
    from transformers import AutoTokenizer  # noqa: F401  (tokenizer only decodes ids here)

    dtype = DTYPES[args.dtype]
    model = llama8b_random(dtype=dtype, device=args.device, layers=args.layers)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prefix = torch.randint(1000, vocab - 1000, (args.prefix_tokens,), generator=g).tolist()
    prompts = [
        prefix + torch.randint(1000, vocab - 1000, (args.query_tokens,), generator=g).tolist()
        for _ in range(args.n)
    ]
    ids = torch.randint(1000, vocab - 1000, (16,), generator=g).tolist()
    labels = [f"l{i}" for i in range(7)] + ["none"]
    forms = [
        {"label": labels[i % 8], "token_id": t, "text": str(t), "primary": i < 8}
        for i, t in enumerate(ids)
    ]

    class IdTok:
        pad_token_id = 0
        eos_token_id = None

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(map(str, ids))

    return (
        model,
        IdTok(),
        prompts,
        prefix,
        LabelTokens(labels, forms),
        NeverStop(),
        args.new_tokens or 16,
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bundled", choices=["bundled", "llama8b-random"])
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=16, help="queries for the fast path")
    ap.add_argument("--ref-n", type=int, default=None, help="queries for the reference path")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--prefix-tokens", type=int, default=1000)
    ap.add_argument("--query-tokens", type=int, default=60)
    ap.add_argument("--new-tokens", type=int, default=None)
    ap.add_argument("--layers", type=int, default=32)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    make = demo_workload if args.model == "bundled" else random_workload
    model, tok, prompts, prefix, tokens, rule, new = make(args)
    ref_n = min(args.ref_n or args.n, len(prompts))
    print(
        f"model={args.model} dtype={args.dtype} device={device} threads={args.threads} "
        f"n={len(prompts)} ref_n={ref_n} prefix={len(prefix)} tokens "
        f"mean prompt={np.mean([len(p) for p in prompts]):.0f} tokens new={new}",
        flush=True,
    )

    # Warm-up both paths once (allocators, kernels) outside the timed region.
    reference_trace(model, tok, prompts[0], tokens, rule, 2)
    warm = TraceEngine(model, tok, tokens, rule, 2, 2)
    warm.set_prefix(prefix)
    warm.run(prompts[:2])
    sync(device)

    start = time.perf_counter()
    refs = [reference_trace(model, tok, p, tokens, rule, new)[0] for p in prompts[:ref_n]]
    sync(device)
    t_ref = (time.perf_counter() - start) / ref_n

    start = time.perf_counter()
    engine = TraceEngine(model, tok, tokens, rule, new, args.batch_size)
    engine.set_prefix(prefix)  # timed: the prefix cache is part of the fast path's cost
    fast = engine.run(prompts)
    sync(device)
    t_fast = (time.perf_counter() - start) / len(prompts)

    same = sum(a.gen_ids == b.gen_ids for a, b in zip(fast, refs, strict=False))
    diffs = [
        float(np.abs(a.form_logits - b.form_logits).max())
        for a, b in zip(fast, refs, strict=False)
        if a.form_logits.shape == b.form_logits.shape
    ]
    diff = max(diffs, default=float("nan"))
    print(f"reference generate(output_scores=True): {1000 * t_ref:.1f} ms/example")
    print(f"fast shared-prefix path:                 {1000 * t_fast:.1f} ms/example")
    print(f"same generated tokens: {same}/{ref_n}; max |label logit diff| = {diff:.2e}")
    print(f"speedup {t_ref / t_fast:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
