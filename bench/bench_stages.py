"""Benchmark every model-bound stage against its plain per-example Hugging Face path.

Stages, each on the same prompts both ways (results compared in the run):

* ``traces``: the shared-prefix ``TraceEngine`` vs ``generate(output_scores=True)`` per prompt;
* ``unary`` / ``binary``: breakdown scoring batched over the shared prefix
  (``score_next_token``) vs one full forward per prompt;
* ``marginalise``: ``batched_marginals`` (many examples' searches per forward) vs today's
  per-example search (``marginal_label_probs``) at the demo's budget;
* ``attention``: the batched shared-prefix attention pass vs one full eager forward per
  example (rows of every generated position).

Per stage: ms/example both ways, the speedup, and the compute floor: the FLOPs of the tokens
the stage must process (2 x non-embedding parameters x tokens: the shared prefix once, then
each example's own tokens; plus 2 x d_model x vocab per logits row it keeps) over a matmul
peak measured in the same run; ``x floor`` is the fast path's time over that floor.
Default: the bundled SmolLM2-135M, float32, CPU, 2 threads, GoEmotions demo prompts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(device, dtype=torch.float32, seconds: float = 1.0) -> float:
    """Best sustained GFLOP/s of square matmuls (the roofline the floor divides by)."""
    best = 0.0
    for n in (512, 1024, 2048):
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        a @ b  # warm-up
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            reps += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def param_counts(model) -> tuple[int, int, int]:
    """(non-embedding parameters, d_model, vocab): the input embedding and an untied LM head
    are not per-token matmul work (the head is counted per logits row kept)."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    skip = {emb.data_ptr(), head.data_ptr()}
    n = sum(p.numel() for p in model.parameters() if p.data_ptr() not in skip)
    return n, emb.shape[1], head.shape[0]


class Floor:
    def __init__(self, model, gflops: float):
        self.params, self.d, self.vocab = param_counts(model)
        self.gflops = gflops

    def seconds(self, tokens: int, logit_cols: int = 0) -> float:
        flops = 2 * self.params * tokens + 2 * self.d * logit_cols
        return flops / (self.gflops * 1e9)


def timed(fn, device):
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def workload(args, model=None, tok=None):
    """The demo prompts for every stage; ``model``/``tok`` default to the bundled model (the
    GPU check passes its random-weight checkpoint with the bundled tokenizer)."""
    from multilabel_llm.data import prepare
    from multilabel_llm.data.prompts import PromptBuilder, pick_template, resolve_prompt
    from multilabel_llm.engine.label_tokens import detect_label_tokens
    from multilabel_llm.engine.loading import bundled_model_cfg, load_model
    from multilabel_llm.engine.tracing import StopRule, common_prefix_len

    ds_cfg = yaml.safe_load((ROOT / "config/dataset/goemotions_demo.yaml").read_text())
    prompt_cfg = yaml.safe_load((ROOT / "config/prompt/json_10shot.yaml").read_text())
    ds = prepare(ds_cfg, ROOT)
    spec = resolve_prompt(prompt_cfg, ds.name, pick_template(prompt_cfg, ds_cfg["loader"], ds.name))
    demo_split = ds_cfg.get("demo_split", "train")
    builder = PromptBuilder.from_dataset(spec, ds, demo_split=demo_split)
    if model is None:
        model, tok = load_model(bundled_model_cfg(), device=args.device)
    texts = ds.split("dev")["text"].tolist()[: args.n]
    prompts = [tok(builder.prompt(text)).input_ids for text in texts]
    pre = tok(builder.prefix()).input_ids
    return {
        "ds": ds,
        "demo_split": demo_split,
        "model": model,
        "tok": tok,
        "texts": texts,
        "prompts": prompts,
        "prefix": pre[: common_prefix_len(pre, prompts)],
        "tokens": detect_label_tokens(tok, ds.labels, spec.label_format),
        "rule": StopRule(tok, spec.label_format, spec.stop),
        "label_format": spec.label_format,
        "new": builder.max_new_tokens(tok),
    }


def demo_search_settings() -> dict:
    """The token_marginalization method's params with the demo experiment's overrides."""
    params = yaml.safe_load((ROOT / "config/method/token_marginalization.yaml").read_text())
    params = dict(params["params"])
    demo = yaml.safe_load((ROOT / "config/experiment/demo.yaml").read_text())
    params.update(demo["methods"]["token_marginalization"].get("params", {}))
    params.pop("estimate", None)
    return params


def stage_traces(w, args, floor, device):
    from multilabel_llm.engine.hf.tracer import TraceEngine, reference_trace

    model, tok, prompts, prefix = w["model"], w["tok"], w["prompts"], w["prefix"]
    ref_n = min(args.ref_n, len(prompts))
    reference_trace(model, tok, prompts[0], w["tokens"], w["rule"], 2)  # warm-up

    def fast():
        engine = TraceEngine(model, tok, w["tokens"], w["rule"], w["new"], args.batch_size)
        engine.set_prefix(prefix)  # the prefix cache is part of the fast path's cost
        return engine.run(prompts)

    def plain():
        return [
            reference_trace(model, tok, p, w["tokens"], w["rule"], w["new"])[0]
            for p in prompts[:ref_n]
        ]

    refs, t_ref = timed(plain, device)
    raws, t_fast = timed(fast, device)
    w["raws"], w["trace_refs"] = raws, refs
    same = sum(a.gen_ids == b.gen_ids for a, b in zip(raws, refs, strict=False))
    diff = max(
        (
            float(np.abs(a.form_logits - b.form_logits).max())
            for a, b in zip(raws, refs, strict=False)
            if a.form_logits.shape == b.form_logits.shape
        ),
        default=float("nan"),
    )
    n_pre = len(prefix)
    tokens = n_pre + sum(
        len(p) - n_pre + len(r.gen_ids) - 1 for p, r in zip(prompts, raws, strict=True)
    )
    rows = sum(len(r.gen_ids) for r in raws)  # greedy needs every step's full logits row
    return {
        "ref": t_ref / ref_n,
        "fast": t_fast / len(prompts),
        "floor": floor.seconds(tokens, rows * floor.vocab) / len(prompts),
        "check": f"same tokens {same}/{ref_n}, max |logit diff| {diff:.1e}",
        "equality": {
            "compared": ref_n,
            "same": same,
            "max_diff": diff,
            "scale": max(float(np.abs(b.form_logits).max(initial=0.0)) for b in refs),
        },
    }


def stage_breakdown(kind, w, args, floor, device):
    from multilabel_llm import NONE_LABEL
    from multilabel_llm.engine import breakdown as bd
    from multilabel_llm.engine.label_tokens import answer_tokens
    from multilabel_llm.engine.tracing import common_prefix_len

    model, tok, ds = w["model"], w["tok"], w["ds"]
    pool = ds.split(w["demo_split"])
    choices = [*ds.labels, NONE_LABEL]
    if kind == "unary":
        prefix = bd.unary_prefix(pool, ds.labels)
        queries = [bd.unary_query(t, lab) for t in w["texts"] for lab in choices]
        answers = ["reasonable", "unreasonable"]
    else:
        import itertools

        prefix = bd.binary_prefix(pool, ds.labels)
        pairs = list(itertools.combinations(choices, 2))
        queries = [bd.binary_query(t, a, b) for t in w["texts"] for a, b in pairs]
        answers = ["a", "b"]
    per_example = len(queries) // len(w["texts"])
    ref_q = min(len(queries), args.ref_prompts)
    forms = answer_tokens(tok, answers)
    form_ids = torch.as_tensor(forms.form_ids)

    @torch.inference_mode()
    def plain():
        out = []
        for q in queries[:ref_q]:
            ids = torch.as_tensor([tok(prefix + q).input_ids], device=device)
            logits = model(ids, use_cache=False, logits_to_keep=1).logits[0, -1].float().cpu()
            out.append(logits[form_ids].numpy())
        return forms.reduce(np.stack(out))

    def fast():
        return bd.score_next_token(
            model, tok, prefix, queries, answers, args.breakdown_batch, desc=kind
        )

    ref, t_ref = timed(plain, device)
    got, t_fast = timed(fast, device)
    w[f"breakdown_{kind}"] = (prefix, queries, answers, got, t_fast)  # the vLLM column's
    diff = float(np.abs(got[:ref_q] - ref).max())
    prompts = [tok(prefix + q).input_ids for q in queries]
    pre = tok(prefix).input_ids
    cut = common_prefix_len(pre, prompts)
    tokens = cut + sum(len(p) - cut for p in prompts)
    return {
        "ref": t_ref / ref_q * per_example,
        "fast": t_fast / len(w["texts"]),
        "floor": floor.seconds(tokens, len(prompts) * len(forms.forms)) / len(w["texts"]),
        "check": f"{per_example} prompts/example, max |logit diff| {diff:.1e} ({ref_q} prompts)",
        "equality": {
            "compared": ref_q,
            "same": None,
            "max_diff": diff,
            "scale": float(np.abs(ref).max()),
        },
    }


def stage_marginalise(w, args, floor, device):
    from multilabel_llm.data.prompts import parse_output
    from multilabel_llm.engine.hf.marginalization import batched_marginals, marginal_label_probs
    from multilabel_llm.engine.hf.search_settings import SearchSettings
    from multilabel_llm.engine.tracing import common_prefix_len

    model, tok, prompts, ds = w["model"], w["tok"], w["prompts"], w["ds"]
    params = demo_search_settings()
    settings = SearchSettings.from_params(params)
    ref_n = min(args.ref_n, len(prompts))

    def parse(text):
        return parse_output(text, ds.labels, w["label_format"]).labels

    stop = {"is_complete": w["rule"].text_done, "finalize_text": w["rule"].truncate}

    def plain():
        return [
            marginal_label_probs(model, tok, "", ds.labels, parse, prompt_ids=p, **params, **stop)
            for p in prompts[:ref_n]
        ]

    def fast():
        return batched_marginals(
            model, tok, prompts, ds.labels, parse, settings, batch_size=args.batch_size, **stop
        )

    refs, t_ref = timed(plain, device)
    got, t_fast = timed(fast, device)
    same = sum(
        [p.tokens for p in a.paths] == [p.tokens for p in b.paths]
        for a, b in zip(got, refs, strict=False)
    )
    diff = max(float(np.abs(a.lower - b.lower).max()) for a, b in zip(got, refs, strict=False))
    cut = common_prefix_len(prompts[0], prompts)
    # each expansion after the root needs at least its one new token
    tokens = cut + sum(len(p) - cut + r.n_expansions - 1 for p, r in zip(prompts, got, strict=True))
    rows = sum(r.n_expansions for r in got)
    return {
        "ref": t_ref / ref_n,
        "fast": t_fast / len(prompts),
        "floor": floor.seconds(tokens, rows * floor.vocab) / len(prompts),
        "check": (
            f"budget {settings.max_paths} paths/{settings.expansion_budget} expansions, "
            f"same paths {same}/{ref_n}, max |mass diff| {diff:.1e}, "
            f"{np.mean([r.n_expansions for r in got]):.1f} expansions/example"
        ),
        "equality": {"compared": ref_n, "same": same, "max_diff": diff, "scale": 1.0},
    }


def stage_attention(w, args, floor, device):
    from multilabel_llm.engine.hf.attention import attention_rows, attention_rows_plain
    from multilabel_llm.engine.tracing import common_prefix_len

    model, tok, prompts = w["model"], w["tok"], w["prompts"]
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    seqs = [list(p) + list(r.gen_ids) for p, r in zip(prompts, w["raws"], strict=True)]
    # every generated position's row (the pass reads the counted label steps among them)
    queries = [list(range(len(p) - 1, len(s) - 1)) for p, s in zip(prompts, seqs, strict=True)]
    ref_n = min(args.ref_n, len(seqs))
    cut = common_prefix_len(prompts[0], prompts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    with torch.inference_mode():
        ref, t_ref = timed(
            lambda: attention_rows_plain(model, seqs[:ref_n], queries[:ref_n]), device
        )
        got, t_fast = timed(
            lambda: attention_rows(model, seqs, queries, cut, pad, args.attention_batch), device
        )
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("sdpa")
    diff = max(float(np.abs(a - b).max()) for a, b in zip(got, ref, strict=False))
    tokens = cut + sum(len(s) - cut for s in seqs)
    return {
        "ref": t_ref / ref_n,
        "fast": t_fast / len(seqs),
        "floor": floor.seconds(tokens) / len(seqs),
        "check": f"max |attention row diff| {diff:.1e} ({ref_n} examples)",
        "equality": {
            "compared": ref_n,
            "same": None,
            "max_diff": diff,
            "scale": max(float(np.abs(r).max(initial=0.0)) for r in ref),
        },
    }


STAGES = ["traces", "unary", "binary", "marginalise", "attention"]


def checked_stages(stages: list[str]) -> list[str]:
    """``stages`` in table order, with ``traces`` added when ``attention`` needs its tokens;
    raises ValueError naming unknown stages."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown {unknown}; allowed {STAGES}")
    if "attention" in stages and "traces" not in stages:
        stages = ["traces", *stages]  # the attention pass reads the traced tokens
    return [name for name in STAGES if name in stages]


def run_stage(name, w, args, floor, device) -> dict:
    """One row of the table: ``ref``/``fast``/``floor`` in s/example, ``check`` (text) and
    ``equality`` (compared, same, max_diff and the reference's scale, for a verdict)."""
    if name in ("unary", "binary"):
        return stage_breakdown(name, w, args, floor, device)
    return globals()[f"stage_{name}"](w, args, floor, device)


def vllm_column(
    w, args, stages, hf_seconds, model_cfg=None, device="cpu", tokenizer_dir=None
) -> list[str]:
    """The same prompts on the vLLM engine: ms/example and agreement with ours.

    ``hf_seconds``: our engine's seconds per example by stage, from this run. ``model_cfg``
    (default: the bundled model) is the model ``w`` was traced with; ``tokenizer_dir`` serves a
    checkpoint saved without its tokenizer (the GPU check's random ones)."""
    from multilabel_llm.engine.loading import bundled_model_cfg, load_tokenizer, resolve_checkpoint
    from multilabel_llm.engine.model_spec import ModelSpec
    from multilabel_llm.engine.tracing import softmax_rows as _softmax
    from multilabel_llm.engine.vllm.backend import VLLMBackend, engine_settings, vllm_python

    cfg = model_cfg or {**bundled_model_cfg(), "backend": "vllm", "vllm": {"cpu_kv_cache_gb": 1}}
    spec = ModelSpec.from_config(cfg, device=device)
    settings = engine_settings(cfg, spec, resolve_checkpoint(cfg), None)
    if tokenizer_dir:
        settings["tokenizer"] = str(tokenizer_dir)
    start = time.perf_counter()
    env = {"VLLM_CPU_KVCACHE_SPACE": "1"} if device == "cpu" else {}
    tok = w["tok"] if tokenizer_dir else load_tokenizer(cfg)
    backend = VLLMBackend(settings, tok, python=vllm_python(cfg), env=env)
    backend.start()
    where = "CPU build" if device == "cpu" else device
    lines = [f"vLLM {backend.version} ({where}) start-up {time.perf_counter() - start:.1f} s"]
    try:
        for name in [s for s in stages if s in ("traces", "unary", "binary")]:
            if name == "traces":
                tracer = backend.tracer(w["tokens"], w["rule"], w["new"], args.batch_size)
                tracer.set_prefix(w["prefix"])
                tracer.run(w["prompts"][:2])  # warm-up, as the HF stage's
                raws, secs = timed(lambda t=tracer: t.run(w["prompts"]), torch.device(device))
                same = sum(a.gen_ids == b.gen_ids for a, b in zip(raws, w["raws"], strict=True))
                tv = max(
                    float(
                        0.5
                        * np.abs(
                            _softmax(w["tokens"].reduce(a.form_logits))
                            - _softmax(w["tokens"].reduce(b.form_logits))
                        )
                        .sum(-1)
                        .max()
                    )
                    for a, b in zip(raws, w["raws"], strict=True)
                    if a.gen_ids == b.gen_ids
                )
                check = f"same tokens {same}/{len(raws)}, max label TV {tv:.1e}"
                per = secs / len(w["prompts"])
            else:
                from multilabel_llm.engine import breakdown as bd

                prefix, queries, answers, ours, _ = w[f"breakdown_{name}"]
                got, secs = timed(
                    lambda p=prefix, q=queries, a=answers: bd.score_next_token(
                        backend, w["tok"], p, q, a
                    ),
                    torch.device(device),
                )
                diff = float(np.abs(_softmax(got)[:, 0] - _softmax(ours)[:, 0]).max())
                check = f"max |p diff| {diff:.1e} over {len(queries)} prompts"
                per = secs / len(w["texts"])
            ratio = per / hf_seconds[name]
            lines.append(
                f"{name:12s} ours {1000 * hf_seconds[name]:8.1f} ms/ex  vLLM {1000 * per:8.1f} "
                f"ms/ex  vLLM / ours {ratio:5.2f}x  | {check}"
            )
    finally:
        backend.close()
    return lines


def format_row(name: str, r: dict) -> str:
    return (
        f"{name:12s} plain {1000 * r['ref']:8.1f} ms/ex  fast {1000 * r['fast']:7.1f} ms/ex"
        f"  speedup {r['ref'] / r['fast']:5.1f}x  floor {1000 * r['floor']:6.1f} ms/ex"
        f"  {r['fast'] / r['floor']:5.1f}x floor  | {r['check']}"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=16, help="examples for the fast paths")
    ap.add_argument("--ref-n", type=int, default=8, help="examples for the plain paths")
    ap.add_argument("--ref-prompts", type=int, default=48, help="plain breakdown prompts")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--breakdown-batch", type=int, default=32)
    ap.add_argument("--attention-batch", type=int, default=8)
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument(
        "--vllm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the vLLM column (traces, unary, binary; needs `make vllm`)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        stages = checked_stages(args.stages.split(","))
    except ValueError as err:
        ap.error(f"--stages: {err}")
    load0 = os.getloadavg()[0]
    w = workload(args)
    peak = matmul_peak(device)
    floor = Floor(w["model"], peak)
    print(
        f"bundled SmolLM2-135M float32 device={device} threads={args.threads} n={len(w['prompts'])}"
        f" ref_n={args.ref_n} prefix={len(w['prefix'])} tokens; non-embedding params "
        f"{floor.params / 1e6:.1f}M; matmul peak {peak:.0f} GFLOP/s; load {load0:.2f}",
        flush=True,
    )
    hf_seconds = {}
    for name in stages:
        row = run_stage(name, w, args, floor, device)
        hf_seconds[name] = row["fast"]
        print(format_row(name, row), flush=True)
    if args.vllm and device.type == "cpu":
        for line in vllm_column(w, args, stages, hf_seconds):
            print(line, flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} (start {load0:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
