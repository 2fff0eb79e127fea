"""How much ``label_scoring: lookahead`` changes the per-step label distribution.

Traces the same prompts twice, first-token scoring (the paper) and the one-token lookahead
(engine/hf/tracer.py, docs/label_tokens.md), and prints per label step the distance between
the two renormalised distributions, how often their top label differs, and the time ratio.
Generation is identical in both runs; only the scores differ.

Default: the bundled SmolLM2-135M (CPU) on the toy GoEmotions-shaped prompts. ``--model-path``
takes any transformers checkpoint directory, e.g. a built stand-in
(``resources/standins/llama3-8b``: the real Llama 3 tokenizer, whose merged '"f'/'"s' forms
make the '"' opener matter). ``--label-format comma`` for comma lists.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from multilabel_llm import NONE_LABEL
from multilabel_llm.data.prompts import PromptBuilder, resolve_prompt
from multilabel_llm.engine.hf.tracer import TraceEngine
from multilabel_llm.engine.label_tokens import detect_label_tokens
from multilabel_llm.engine.loading import bundled_model_cfg, load_model
from multilabel_llm.engine.tracing import StopRule, common_prefix_len, finalize
from tests.builders import TOY_PROMPT_CFG, toy_dataset


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-path", help="transformers checkpoint dir (default: bundled)")
    ap.add_argument("--label-format", default="json", choices=["json", "comma"])
    ap.add_argument("--repeat", type=int, default=2, help="toy queries x repeat (8 each)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = bundled_model_cfg() if not args.model_path else {"name": "m", "path": args.model_path}
    model, tok = load_model(cfg, device="cpu")
    ds = toy_dataset(repeat=args.repeat)
    prompt_cfg = {**TOY_PROMPT_CFG, "label_format": args.label_format, "max_new_tokens": "auto"}
    spec = resolve_prompt(prompt_cfg, ds.name)
    pb = PromptBuilder.from_dataset(spec, ds)
    budget = pb.max_new_tokens(tok)
    prompts = [tok(pb.prompt(t)).input_ids for t in ds.split("dev")["text"]]
    pre = tok(pb.prefix()).input_ids
    prefix = pre[: common_prefix_len(pre, prompts)]
    lead = pb.completion([])[: -len(pb.completion([]).lstrip()) or None] or " "
    lt = detect_label_tokens(tok, ds.labels, spec.label_format, lead=lead)
    rule = StopRule(tok, spec.label_format, spec.stop)
    print(f"model {cfg.get('path') or cfg['name']}; {len(prompts)} prompts; budget {budget}")
    print(f"openers {[o['text'] for o in lt.openers]}")
    merged = [(f["label"], f["text"]) for f in lt.forms if f.get("lead") not in ("", " ")]
    print(f"forms with a non-space lead: {merged}")
    traces, seconds = {}, {}
    for scoring in ("first_token", "lookahead"):
        engine = TraceEngine(model, tok, lt, rule, budget, 8, label_scoring=scoring)
        engine.set_prefix(prefix)
        start = time.perf_counter()
        raws = engine.run(prompts)
        seconds[scoring] = time.perf_counter() - start
        traces[scoring] = [
            finalize(str(i), r, tok, lt, ds.labels, spec.label_format, rule)
            for i, r in enumerate(raws)
        ]
    rows = []
    for a, b in zip(traces["first_token"], traces["lookahead"], strict=True):
        assert a.text_out == b.text_out  # scoring never changes the generation
        for step in a.label_steps:
            p, q = np.asarray(a.step_probs[step.step]), np.asarray(b.step_probs[step.step])
            rows.append((step.label, 0.5 * np.abs(p - q).sum(), p.argmax() != q.argmax()))
    labels = [*ds.labels, NONE_LABEL]
    if not rows:
        print("no label steps (no output parsed)")
        return
    tv = np.asarray([r[1] for r in rows])
    print(f"label steps {len(rows)}: total variation first_token vs lookahead")
    print(f"  mean {tv.mean():.4f}  median {np.median(tv):.4f}  max {tv.max():.4f}")
    print(f"  top label differs at {sum(r[2] for r in rows)} of {len(rows)} label steps")
    for lab in labels:
        sub = [r[1] for r in rows if r[0] == lab]
        if sub:
            print(f"  {lab:<12} n={len(sub):<3} mean TV {np.mean(sub):.4f}")
    ratio = seconds["lookahead"] / seconds["first_token"]
    print(f"time first_token {seconds['first_token']:.2f}s lookahead {seconds['lookahead']:.2f}s")
    print(f"lookahead cost {ratio:.2f}x")


if __name__ == "__main__":
    main()
