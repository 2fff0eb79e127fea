"""Prompts as the paper builds them: instruction + n demonstrations + query (plain text, or
as one chat turn with `chat_template: true`).

A prompt config (config/prompt/<name>.yaml) holds the defaults and a ``templates`` map keyed
by dataset name (``default`` when the dataset has no entry). A template entry may override
any top-level key, so one prompt config covers every dataset's wording and label format::

    templates:
      default: {instruction: "...{labels}...\\n", example: "Input: {text}\\n{label}\\n"}
      mfrc: {instruction: ..., example: "Input: {text}\\nMoral foundation(s): {label}\\n",
             label_format: comma}

The prompt is ``instruction + demos + query`` stripped (the reference code's choice), where a
demo is ``example`` filled with the demo's text and formatted gold labels and the query is
``example`` cut just before ``{label}``. ``{labels}`` in the instruction reads "a, b, c and d".
Placeholders are filled in one pass over the *template*, so a text that itself contains
``{label}`` or ``{text}`` goes in verbatim.

``chat_template: true`` (default false: the paper's prompts are plain) renders that same text
as one user turn with the tokenizer's chat template and its generation prompt, as
instruction-tuned classifiers such as Llama Guard expect. The template's head, the
instruction and the demos come before the query, so the shared-prefix engine still computes
them once (the prefix is the rendered prompt cut where the query starts). The builder renders
with the run's tokenizer (:meth:`PromptBuilder.attach_tokenizer`); a template that writes the
tokenizer's BOS itself loses that BOS in the text, since tokenising adds it again.

``max_new_tokens: auto`` sizes the generation budget from the longest possible answer (every
label, in the prompt's label format, plus what closes it) under the run's tokenizer
(``PromptBuilder.max_new_tokens``, called where the run is planned).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field

import pandas as pd

from multilabel_llm import NONE_LABEL

LABEL_FORMATS = ("json", "comma", "llama_guard")
LABEL_ORDERS = ("dataset", "alphabetical", "reverse", "random")
SAMPLINGS = ("auto", "multilabel", "uniform", "random")
LABEL_SCORINGS = ("first_token", "lookahead")
AUTO = "auto"
# Tokens ``max_new_tokens: auto`` adds to the longest answer's count: room for a capitalised
# label, an extra space or a non-canonical split without cutting the answer.
AUTO_SLACK = 4
_PLACEHOLDER = re.compile(r"\{(text|label|labels)\}")
TEMPLATE_KEYS = (
    "instruction",
    "example",
    "label_format",
    "max_new_tokens",
    "sampling",
    "stop",
    "n_shots",
    "multilabel_ratio",
)


# Llama Guard 3's native answer (label_format: llama_guard): "safe", or "unsafe" and a line
# of violated category codes ("unsafe\nS1,S3"). ``unsafe`` is a label where the dataset has
# it (the content-safety loader's ``unsafe_label``), as the second paper reports it.
UNSAFE = "unsafe"
SAFE = "safe"
# Llama Guard 3's policy as its chat template writes it (MLCommons hazard taxonomy)
LLAMA_GUARD_3_POLICY = (
    ("S1", "Violent Crimes"),
    ("S2", "Non-Violent Crimes"),
    ("S3", "Sex Crimes"),
    ("S4", "Child Exploitation"),
    ("S5", "Defamation"),
    ("S6", "Specialized Advice"),
    ("S7", "Privacy"),
    ("S8", "Intellectual Property"),
    ("S9", "Indiscriminate Weapons"),
    ("S10", "Hate"),
    ("S11", "Self-Harm"),
    ("S12", "Sexual Content"),
    ("S13", "Elections"),
    ("S14", "Code Interpreter Abuse"),
)
_LLAMA_GUARD_MARK = "<BEGIN UNSAFE CONTENT CATEGORIES>"


def llama_guard_user_turn(query: str, role: str = "User") -> str:
    """The user turn Llama Guard 3's chat template writes around a one-message conversation
    (its policy, the conversation, the answer instructions). Tokenizers whose template is
    Llama Guard's get the query alone and write this themselves; any other chat template (a
    stand-in, Llama 3.1 Instruct) gets this text as its user turn, so the prompt reads the
    same."""
    policy = "".join(f"{code}: {name}.\n" for code, name in LLAMA_GUARD_3_POLICY)
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations "
        "according our safety policy with the below categories.\n\n"
        f"{_LLAMA_GUARD_MARK}\n{policy}<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{role}: {query.strip()}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above "
        "conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second "
        "line must include a comma-separated list of violated categories."
    )


def renders_llama_guard_policy(tokenizer) -> bool:
    """Whether the tokenizer's own chat template is Llama Guard's (it writes the policy)."""
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
        )
    except Exception:  # a template that refuses a bare user turn is not Llama Guard's
        return False
    return _LLAMA_GUARD_MARK in text


def llama_guard_done(text: str) -> bool:
    """Stop rule of the native answer: after the "safe" line, after the category line that
    follows "unsafe", or after a first line that is neither (nothing more to read). Llama
    Guard ends with EOS right there; this stops a model that does not."""
    lines = text.lstrip().split("\n")
    if len(lines) < 2:
        return False
    first = lines[0].strip().lower()
    return first != UNSAFE or len(lines) >= 3


def format_llama_guard(labels) -> str:
    cats = [lab for lab in labels if lab.lower() != UNSAFE]
    if not cats and UNSAFE not in [lab.lower() for lab in labels]:
        return SAFE
    return UNSAFE + ("\n" + ",".join(cats) if cats else "")


def parse_llama_guard(text: str, labels) -> ParsedOutput:
    """Parse "safe" / "unsafe\nS1,S3" (leading blank lines as Llama Guard writes them).
    ``safe``: no label (a ``none`` span where the word starts). ``unsafe``: the ``unsafe``
    label where the dataset has it, then the codes of the second line; codes outside the
    label set are ``unknown``. Any other first line is unparseable."""
    known = {lab.lower(): lab for lab in labels}
    body = text.lstrip()
    offset = len(text) - len(body)
    first, _, rest = body.partition("\n")
    word = first.strip().lower()
    start = offset + len(first) - len(first.lstrip())
    if word == SAFE:
        return ParsedOutput([], spans=[(NONE_LABEL, start)])
    if word != UNSAFE:
        truncated = (
            bool(word) and "\n" not in body and (SAFE.startswith(word) or UNSAFE.startswith(word))
        )
        return ParsedOutput(None, truncated=truncated)
    out, spans, unknown = [], [], []
    if UNSAFE in known:
        out.append(known[UNSAFE])
        spans.append((known[UNSAFE], start))
    line = rest.split("\n", 1)[0]
    pos = offset + len(first) + 1
    cut = "\n" not in rest and bool(line)  # no line end yet: the last code may go on
    parts = line.split(",") if line.strip() else []
    for n, part in enumerate(parts):
        code = part.strip()
        at = pos + len(part) - len(part.lstrip())
        pos += len(part) + 1
        if cut and n == len(parts) - 1 and code.lower() not in known:
            break  # a code being written ("S1" of "S10" is a code: read as written)
        if code.lower() in known and known[code.lower()] != known.get(UNSAFE):
            if known[code.lower()] not in out:
                out.append(known[code.lower()])
            spans.append((known[code.lower()], at))
        elif code:
            unknown.append(code)
    return ParsedOutput(out, unknown=unknown, spans=spans, truncated=cut)


@dataclass
class PromptSpec:
    """One dataset's resolved prompt settings (a prompt config + its template entry)."""

    name: str
    instruction: str
    example: str
    label_format: str = "json"
    n_shots: int = 10
    multilabel_ratio: float = 0.5
    sampling: str = "auto"
    label_order: str = "dataset"
    seed: int = 0
    max_new_tokens: int | str = AUTO  # a count, or "auto" (longest answer, see module doc)
    stop: list[str] = field(default_factory=lambda: ["Input:", "Question:"])
    strip: bool = True
    label_scoring: str = "first_token"  # or "lookahead" (engine/hf/tracer.py, docs/label_tokens.md)
    chat_template: bool = False  # one user turn in the tokenizer's chat template (module doc)

    def __post_init__(self):
        where = f"prompt {self.name!r}"
        if self.label_format not in LABEL_FORMATS:
            raise ValueError(f"{where}: label_format {self.label_format!r} not in {LABEL_FORMATS}")
        if self.label_order not in LABEL_ORDERS:
            raise ValueError(f"{where}: label_order {self.label_order!r} not in {LABEL_ORDERS}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"{where}: sampling {self.sampling!r} not in {SAMPLINGS}")
        if not isinstance(self.chat_template, bool):
            raise ValueError(
                f"{where}: chat_template must be true or false, got {self.chat_template!r}"
            )
        if self.label_scoring not in LABEL_SCORINGS:
            raise ValueError(
                f"{where}: label_scoring {self.label_scoring!r} not in {LABEL_SCORINGS}"
            )
        budget = self.max_new_tokens
        if budget != AUTO and (isinstance(budget, bool) or not isinstance(budget, int)):
            raise ValueError(
                f"{where}: max_new_tokens {budget!r} must be a positive integer or 'auto'"
            )
        if budget != AUTO and budget < 1:
            raise ValueError(f"{where}: max_new_tokens {budget} must be >= 1 (or 'auto')")
        if not 0.0 <= float(self.multilabel_ratio) <= 1.0:
            raise ValueError(f"{where}: multilabel_ratio {self.multilabel_ratio} not in [0, 1]")
        if "{text}" not in self.example or "{label}" not in self.example:
            raise ValueError(f"{where}: example template needs {{text}} and {{label}}")
        if self.example.index("{text}") > self.example.index("{label}"):
            raise ValueError(f"{where}: example template must put {{text}} before {{label}}")


def resolve_prompt(prompt_cfg: dict, dataset: str, template: str | None = None) -> PromptSpec:
    """Merge the template entry for ``template`` (or ``dataset``, else ``default``)."""
    templates = prompt_cfg.get("templates") or {}
    name = prompt_cfg.get("name", "<prompt>")
    key = template or (dataset if dataset in templates else "default")
    if key not in templates:
        raise ValueError(
            f"prompt {name!r}: no template {key!r} (have {sorted(templates)}); add one or a "
            "'default' entry under templates"
        )
    merged = {k: v for k, v in prompt_cfg.items() if k in PromptSpec.__dataclass_fields__}
    for k, v in (templates[key] or {}).items():
        if k not in TEMPLATE_KEYS:
            raise ValueError(
                f"prompt {name!r}: templates.{key}.{k} unknown; allowed {TEMPLATE_KEYS}"
            )
        merged[k] = v
    merged["name"] = name
    if "stop" in merged and merged["stop"] is not None:
        merged["stop"] = list(merged["stop"])
    for k in ("instruction", "example"):
        if k not in merged:
            raise ValueError(f"prompt {name!r}: template {key!r} lacks {k!r}")
    return PromptSpec(**merged)


@dataclass(frozen=True)
class ResolvedPrompt:
    """A prompt config resolved once for one dataset, before a model is loaded. The engine
    takes this, not the raw config; what needs the tokenizer it resolves in its run plan."""

    spec: PromptSpec  # the template entry merged over the defaults
    capitalised: bool = True  # label_forms: also score "Joy", "joy"
    leading_space: bool = True  # label_forms: also score " joy", ": joy"


def resolve_prompt_config(prompt_cfg: dict, dataset: str, template: str | None = None):
    """``prompt_cfg`` resolved for ``dataset`` (template as in :func:`resolve_prompt`)."""
    forms = prompt_cfg.get("label_forms", {})
    capitalised, space = (bool(forms.get(k, True)) for k in ("capitalised", "leading_space"))
    return ResolvedPrompt(resolve_prompt(prompt_cfg, dataset, template), capitalised, space)


def pick_template(prompt_cfg: dict, *candidates) -> str:
    """First of ``candidates`` (e.g. the dataset's loader, then its name) with a template."""
    templates = prompt_cfg.get("templates") or {}
    for key in candidates:
        if key and key in templates:
            return key
    return "default"


def join_labels(labels) -> str:
    """ "a, b, c and d" (the instruction's label list)."""
    labels = list(labels)
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def order_labels(labels, order: str, seed: int = 0) -> list[str]:
    labels = list(labels)
    if order == "dataset":
        return labels
    if order == "alphabetical":
        return sorted(labels)
    if order == "reverse":
        return sorted(labels, reverse=True)
    if order == "random":
        rng = random.Random(seed)
        rng.shuffle(labels)
        return labels
    raise ValueError(f"label_order {order!r} not in {LABEL_ORDERS}")


def fill(template: str, **values: str) -> str:
    """Replace ``{text}``/``{label}``/``{labels}`` in one pass over ``template``: what is put
    in is never searched again, so user text containing a placeholder stays verbatim."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def format_labels(labels, label_format: str) -> str:
    labels = list(labels)
    if label_format == "json":
        # ensure_ascii=False: "Ärger" must appear as the model reads and writes it, not \u00c4
        return json.dumps({"label": labels or [NONE_LABEL]}, ensure_ascii=False)
    if label_format == "comma":
        return ", ".join(labels) or NONE_LABEL
    if label_format == "llama_guard":
        return format_llama_guard(labels)
    raise ValueError(f"label_format {label_format!r} not in {LABEL_FORMATS}")


@dataclass
class ParsedOutput:
    labels: list[str] | None  # None = unparseable; [] = the model said none
    unknown: list[str] = field(default_factory=list)
    spans: list[tuple[str, int]] = field(default_factory=list)  # (label or none, char start)
    truncated: bool = False  # the list was cut off (budget or EOS); read up to the cut


_LABEL_LIST = re.compile(r'"label"\s*:\s*\[')


def _scan_list(text: str, start: int, known: dict):
    """Walk the ``"label": [...`` list after ``start``: (items, spans, state, end).

    ``spans`` are where each item's text starts (escapes such as \\u00c4 decoded, so the
    position is the raw one). ``state`` is "closed" (``end`` just past "]"), "cut" (the text
    ends inside the list; a trailing unclosed item is kept only if it is a whole label name)
    or "bad" (anything else: a stray character, no list).
    """
    head = _LABEL_LIST.search(text, start)
    if head is None:
        return [], [], "bad", start
    items, spans, pos, n = [], [], head.end(), len(text)
    decoder = json.JSONDecoder()
    expect_item = True
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos == n:
            return items, spans, "cut", n
        if text[pos] == "]":
            return items, spans, "closed", pos + 1
        if text[pos] == "," and not expect_item:
            pos, expect_item = pos + 1, True
            continue
        if text[pos] != '"' or not expect_item:
            return items, spans, "bad", pos
        try:
            item, after = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:  # unclosed string: the cut fragment
            fragment = text[pos + 1 :].rstrip()
            if fragment.lower() in known or fragment.lower() == NONE_LABEL:
                items.append(fragment)
                spans.append((fragment, pos + 1))
            return items, spans, "cut", n
        items.append(item)
        spans.append((item, pos + 1))
        pos, expect_item = after, False


def _json_items(text: str, start: int, known: dict):
    """(items, spans, truncated) of ``{"label": [...]}``, or None. Strict JSON from the first
    "{" to the last "}" first; else a list the text stops inside (the budget ran out), read
    up to the cut. Text after a closed list (other than "}") makes it unparseable."""
    end = text.rfind("}")
    obj = None
    if end > start:
        try:
            obj = json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            obj = None
    if obj is not None:
        items = obj.get("label") if isinstance(obj, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            return None
        found, spans, state, _ = _scan_list(text, start, known)
        if state != "closed" or found != items:  # e.g. "label" key nested elsewhere
            spans = []
        return items, spans, False
    items, spans, state, after = _scan_list(text, start, known)
    if state == "cut" or (state == "closed" and not text[after:].strip()):
        return items, spans, True
    return None


def parse_output(text: str, labels, label_format: str) -> ParsedOutput:
    """Parse a generated label list; never raises (unparseable -> ``labels=None``).

    ``spans`` gives where each listed label (or ``none``) starts in ``text``, so the trace can
    say which generated step starts which label. A list cut off before it closes (the
    generation budget ran out) is read up to the cut, with ``truncated=True``: complete items
    count, a trailing fragment only if it is a whole label name.
    """
    if label_format == "llama_guard":
        return parse_llama_guard(text, labels)
    known = {lab.lower(): lab for lab in labels}
    truncated = False
    if label_format == "json":
        start = text.find("{")
        found = _json_items(text, start, known) if start >= 0 else None
        if found is None:
            return ParsedOutput(None)
        items, spans, truncated = found
    else:
        body = text.lstrip()
        offset = len(text) - len(body)
        line = body.split("\n", 1)[0]
        if not line.strip():
            return ParsedOutput(None)
        items, spans, pos = [], [], 0
        for part in line.split(","):
            stripped = part.strip()
            lead = len(part) - len(part.lstrip())
            items.append(stripped)
            spans.append((stripped, offset + pos + lead))
            pos += len(part) + 1
        if "\n" not in body:  # no line end: the list may stop mid-label
            last = items[-1].lower()
            if not last or (
                last not in known
                and last != NONE_LABEL
                and any(k.startswith(last) for k in [*known, NONE_LABEL])
            ):
                truncated = True
                items, spans = items[:-1], spans[:-1]
    out, unknown, label_spans = [], [], []
    for item, pos in spans:
        key = item.strip().lower()
        if key == NONE_LABEL:
            label_spans.append((NONE_LABEL, pos))
        elif key in known:
            if known[key] not in out:
                out.append(known[key])
            label_spans.append((known[key], pos))
        elif key:
            unknown.append(item)
    if truncated and not label_spans:
        return ParsedOutput(None, unknown=unknown, truncated=True)  # cut before any label
    if items and not label_spans:
        return ParsedOutput(None, unknown=unknown)  # only unknown words: not a label list
    return ParsedOutput(out, unknown=unknown, spans=label_spans, truncated=truncated)


def fallback_labels(text: str, labels) -> list[str]:
    """Labels mentioned anywhere in ``text`` (whole words), for unparseable outputs."""
    low = text.lower()
    return [lab for lab in labels if re.search(rf"\b{re.escape(lab.lower())}\b", low)]


def sample_demos(pool: pd.DataFrame, spec: PromptSpec, labels, multilabel: bool) -> pd.DataFrame:
    """The demos every query of a run shares (seeded; the reference resets its seed per call).

    multilabel: round(n * ratio) examples with >1 gold label, the rest with exactly one,
    shuffled; uniform: n // (L + 1) per label and none, topped up at random; random: any.
    """
    n = int(spec.n_shots)
    rng = random.Random(spec.seed)
    if n == 0:
        return pool.iloc[:0]
    if len(pool) < n:
        raise ValueError(f"prompt {spec.name!r}: demo pool has {len(pool)} examples, need {n}")
    sampling = spec.sampling
    if sampling == "auto":
        sampling = "multilabel" if multilabel else "uniform"
    n_labels = pool["labels"].map(len)
    idx = list(range(len(pool)))
    if sampling == "multilabel":
        multi = [i for i in idx if n_labels.iloc[i] > 1]
        single = [i for i in idx if n_labels.iloc[i] == 1]
        n_multi = min(round(n * float(spec.multilabel_ratio)), len(multi))
        if n - n_multi > len(single):
            raise ValueError(
                f"prompt {spec.name!r}: need {n - n_multi} single-label demos, pool has "
                f"{len(single)} (and {len(multi)} multi-label); set the prompt's "
                f"multilabel_ratio (prompts.<slot>.multilabel_ratio, or templates.<dataset>."
                f"multilabel_ratio) to 1.0 for a pool without single-label rows, or sampling: "
                f"random"
            )
        chosen = rng.sample(multi, n_multi) + rng.sample(single, n - n_multi)
    elif sampling == "uniform":
        per = n // (len(labels) + 1)
        chosen = []
        for lab in [*labels, NONE_LABEL]:
            if lab == NONE_LABEL:
                cands = [i for i in idx if n_labels.iloc[i] == 0]
            else:
                cands = [i for i in idx if lab in pool["labels"].iloc[i]]
            cands = [i for i in cands if i not in chosen]
            chosen += rng.sample(cands, min(per, len(cands)))
        rest = [i for i in idx if i not in chosen]
        chosen += rng.sample(rest, n - len(chosen))
    else:
        chosen = rng.sample(idx, n)
    rng.shuffle(chosen)
    return pool.iloc[chosen]


def demo_pool_frame(dataset, demo_split: str = "train", exclude=(), pool_ids=None):
    """Demo candidates: the split minus ``exclude``, or the shared pool ``pool_ids``, which
    must not contain an id the run scores (its demos would show the answer)."""
    pool = dataset.split(demo_split)
    if pool_ids is None:
        return pool[~pool["id"].isin(set(exclude))]
    pool_ids = set(pool_ids)
    leaked = sorted(pool_ids & set(exclude))
    if leaked:
        raise ValueError(
            f"dataset {dataset.name}: {len(leaked)} scored ids are in the shared demo pool "
            f"(e.g. {leaked[:3]}); the pool must exclude every evaluated test set"
        )
    return pool[pool["id"].isin(pool_ids)]


def select_demo_pool(dataset, demo_split: str, evaluated: dict[str, list[str]], need: int):
    """The dataset's shared demo pool: ``demo_split`` minus every id any evaluated test set
    holds (``evaluated``: test-set name -> ids), in dataset order; at least ``need`` ids."""
    split = dataset.split(demo_split)
    taken = set().union(*evaluated.values()) if evaluated else set()
    pool = [i for i in split["id"] if i not in taken]
    if len(pool) < need:
        overlap = {name: len(set(ids) & set(split["id"])) for name, ids in evaluated.items()}
        raise ValueError(
            f"dataset {dataset.name}: the demo pool (split {demo_split!r}, {len(split)} "
            f"examples, minus the evaluated test sets) has {len(pool)} examples, the prompts "
            f"need {need}; test-set ids inside {demo_split!r}: {overlap}. Make those test sets "
            f"smaller or draw them from another split"
        )
    return pool


@dataclass
class PromptBuilder:
    """Builds the shared prefix and the per-query prompts of one (dataset, prompt) run."""

    spec: PromptSpec
    labels: list[str]  # in the order the prompt presents them
    demos: list[tuple[str, list[str]]]
    tokenizer: object | None = field(default=None, repr=False, compare=False)  # chat_template

    def attach_tokenizer(self, tokenizer) -> PromptBuilder:
        """The run's tokenizer, whose chat template ``chat_template: true`` renders with."""
        if self.spec.chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"prompt {self.spec.name!r}: chat_template: true, but the model's tokenizer has "
                f"no chat template; set chat_template: false for this model"
            )
        self.tokenizer = tokenizer
        return self

    def _chat(self, body: str) -> str:
        """``body`` as one user turn + the generation prompt, in the tokenizer's template."""
        if self.tokenizer is None:
            raise ValueError(
                f"prompt {self.spec.name!r}: chat_template: true needs the run's tokenizer "
                f"(PromptBuilder.attach_tokenizer) before prompts are built"
            )
        tok = self.tokenizer
        if self.spec.label_format == "llama_guard" and not renders_llama_guard_policy(tok):
            body = llama_guard_user_turn(body)  # what Llama Guard's own template writes
        text = tok.apply_chat_template(
            [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
        )
        bos = getattr(tok, "bos_token", None)
        # tokenising adds the BOS again where the tokenizer adds one: keep a single BOS
        if bos and text.startswith(bos) and tok("").input_ids[:1] == [tok.bos_token_id]:
            text = text[len(bos) :]
        return text

    def _body(self, text: str) -> str:
        full = self.instruction() + "".join(self.block(t, labs) for t, labs in self.demos)
        full += self.query(text)
        return full.strip() if self.spec.strip else full

    @classmethod
    def from_dataset(
        cls, spec: PromptSpec, dataset, demo_split: str = "train", exclude=(), pool_ids=None
    ):
        """Demos drawn from ``demo_split`` minus ``exclude``, or, given ``pool_ids`` (the
        dataset's shared demo pool, rules/data.smk), from that pool: every run of a prompt
        then shows the same demonstrations."""
        labels = order_labels(dataset.labels, spec.label_order, spec.seed)
        pool = demo_pool_frame(dataset, demo_split, exclude, pool_ids)
        demos = sample_demos(pool, spec, labels, dataset.multilabel)
        rank = {lab: i for i, lab in enumerate(labels)}
        pairs = [
            (text, sorted(labs, key=rank.__getitem__))
            for text, labs in zip(demos["text"], demos["labels"], strict=True)
        ]
        return cls(spec, labels, pairs)

    def format(self, labels) -> str:
        return format_labels(labels, self.spec.label_format)

    def instruction(self) -> str:
        return fill(self.spec.instruction, labels=join_labels(self.labels))

    def block(self, text: str, labels) -> str:
        return fill(self.spec.example, text=text, label=self.format(labels))

    def prefix(self) -> str:
        """Instruction + demos: identical for every query of the run (with a chat template,
        also the template's head: the rendered prompt cut where the query starts)."""
        text = self.instruction() + "".join(self.block(t, labs) for t, labs in self.demos)
        text = text.lstrip() if self.spec.strip else text
        if not self.spec.chat_template:
            return text
        marker = "\x00query\x00"  # a text no template or demo contains
        rendered = self._chat(self._body(marker))
        lead = self.query(marker).split(marker, 1)[0]  # the query block before its text
        if not text and self.spec.strip:
            lead = lead.lstrip()  # no instruction or demos: the stripped body starts here
        at = rendered.find(marker)
        cut = at - len(lead)
        if at < 0 or cut < 0 or rendered[cut:at] != lead:
            raise ValueError(
                f"prompt {self.spec.name!r}: the chat template changed the query's text, so "
                f"its fixed head cannot be found; use chat_template: false with this tokenizer"
            )
        return rendered[:cut]

    def query(self, text: str) -> str:
        # cut the *template* at {label}, then fill: a "{label}" inside the text stays text
        return fill(self.spec.example.split("{label}", 1)[0], text=text)

    def prompt(self, text: str) -> str:
        body = self._body(text)
        return self._chat(body) if self.spec.chat_template else body

    def completion(self, labels) -> str:
        """What a perfect answer looks like right after ``prompt`` (incl. stripped space;
        with a chat template the answer starts its own turn, so nothing stripped returns)."""
        head = self.spec.example.split("{label}", 1)[0]
        stripped = head[len(head.rstrip()) :] if self.spec.strip else ""
        if self.spec.chat_template:
            stripped = ""
        tail = self.spec.example.split("{label}", 1)[1]
        return stripped + self.format(labels) + tail

    def answer_tokens(self, tokenizer) -> int:
        """Tokens of the longest possible answer: every label, in the prompt's order and
        label format, up to the token that ends it (the JSON brace or the line end, where
        ``StopRule`` stops), tokenised alone as the model would write it after the prompt."""
        text = self.completion(self.labels)
        if self.spec.label_format == "json":
            end = text.index("}", text.index("{")) + 1
        elif self.spec.label_format == "llama_guard":
            end = len(text)  # "unsafe", the code line; EOS follows
        else:
            body = len(text) - len(text.lstrip())
            end = text.find("\n", body)
            end = len(text) if end < 0 else end + 1
        ids = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        # count up to the token that holds the end character (a merged '"]}\n' counts once)
        return sum(1 for a, _ in ids["offset_mapping"] if a < end)

    def max_new_tokens(self, tokenizer) -> int:
        """The run's generation budget: the configured count, or for ``auto`` the longest
        answer's tokens plus ``AUTO_SLACK``."""
        if self.spec.chat_template and self.tokenizer is None:
            # the run's planner sizes the budget first, with the tokenizer that also renders
            self.attach_tokenizer(tokenizer)
        if self.spec.max_new_tokens == AUTO:
            return self.answer_tokens(tokenizer) + AUTO_SLACK
        return int(self.spec.max_new_tokens)


# What shapes a prompt's text (workflow/standins.py learns these formats); label order, ICL
# ratio, seeds and hidden states do not.
FORMAT_KEYS = ("n_shots", "label_format", "strip", "chat_template")
TEMPLATE_FORMAT_KEYS = ("instruction", "example", "label_format", "n_shots")


def prompt_formats(prompt_cfgs) -> list[dict]:
    """The distinct prompt formats among ``prompt_cfgs``: only the keys that shape the text.

    Pass an experiment's prompt configs through this, so that a stand-in's spec (and so its
    rebuilds) changes only when a format does, not with label order or hidden states.
    """
    formats = []
    for cfg in prompt_cfgs:
        slim = {k: cfg[k] for k in FORMAT_KEYS if k in cfg}
        slim["templates"] = {
            name: {k: v for k, v in (entry or {}).items() if k in TEMPLATE_FORMAT_KEYS}
            for name, entry in (cfg.get("templates") or {}).items()
        }
        if slim not in formats:
            formats.append(slim)
    return formats
