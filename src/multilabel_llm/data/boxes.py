"""Boxes entity tracking (Kim and Schuster 2023): which objects end up in a queried box.

Two sources:
  * ``generate:`` a seeded generator (no download): boxes start with none, one or several
    objects, then a few operations move an object between boxes, put a new object into a box
    or remove one; the text ends with "Box k contains" and the target is the final content
    of box k (label order = the sorted object vocabulary).
  * ``files:`` the original JSONL release, ``{train,dev,test}`` -> e.g.
    ``<subset>/{train-subset,dev,test-subsample-states}-t5.jsonl`` (sentence_masked,
    masked_content, sample_id) and ``objects`` -> objects.txt (one comma-separated line).
    Unlike the paper's code, items are split on "," / " and " and only a leading article
    "the " is removed (its ``.replace("the", "")`` corrupted names such as "theater").
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from multilabel_llm.data._common import (
    DatasetFormatError,
    build_dataset,
    config_file,
    iter_jsonl,
    read_text,
    require_text,
)
from multilabel_llm.data.canonical import SPLITS, CanonicalDataset

LOADER = "boxes"
DEFAULT_OBJECTS = [
    "apple", "bell", "book", "brick", "car", "coin", "cross", "egg",
    "fan", "key", "map", "ring", "rose", "shoe", "stone", "watch",
]  # fmt: skip
MASK = "<extra_id_0>"


def describe_state(state: list[list[str]]) -> str:
    parts = []
    for k, objects in enumerate(state):
        parts.append(f"Box {k} contains {content_phrase(objects)}")
    return ", ".join(parts) + "."


def content_phrase(objects) -> str:
    return " and ".join(f"the {o}" for o in objects) if objects else "nothing"


def apply_operation(state: list[list[str]], op: tuple) -> None:
    """Apply ("move", obj, src, dst), ("put", obj, dst) or ("remove", obj, src) in place."""
    kind = op[0]
    if kind == "move":
        _, obj, src, dst = op
        state[src].remove(obj)
        state[dst].append(obj)
    elif kind == "put":
        _, obj, dst = op
        if any(obj in box for box in state):
            raise ValueError(f"put: {obj} is already in a box")
        state[dst].append(obj)
    elif kind == "remove":
        _, obj, src = op
        state[src].remove(obj)
    else:
        raise ValueError(f"unknown operation {kind!r}")


def operation_text(op: tuple) -> str:
    if op[0] == "move":
        return f"Move the {op[1]} from Box {op[2]} to Box {op[3]}."
    if op[0] == "put":
        return f"Put the {op[1]} into Box {op[2]}."
    return f"Remove the {op[1]} from Box {op[2]}."


def generate_example(rng: random.Random, objects, n_boxes: int, max_initial: int, n_ops: int):
    """One example: (text, target, initial state, operations). Pure function of ``rng``."""
    pool = list(objects)
    rng.shuffle(pool)
    state: list[list[str]] = []
    for _ in range(n_boxes):
        k = rng.randint(0, max_initial)
        state.append([pool.pop() for _ in range(min(k, len(pool)))])
    initial = [list(box) for box in state]
    ops = []
    for _ in range(n_ops):
        choices = []
        filled = [b for b in range(n_boxes) if state[b]]
        outside = [o for o in objects if not any(o in box for box in state)]
        if filled and n_boxes > 1:
            choices.append("move")
        if outside:
            choices.append("put")
        if filled:
            choices.append("remove")
        if not choices:
            break
        kind = rng.choice(choices)
        if kind == "move":
            src = rng.choice(filled)
            dst = rng.choice([b for b in range(n_boxes) if b != src])
            op = ("move", rng.choice(state[src]), src, dst)
        elif kind == "put":
            op = ("put", rng.choice(outside), rng.randrange(n_boxes))
        else:
            src = rng.choice(filled)
            op = ("remove", rng.choice(state[src]), src)
        apply_operation(state, op)
        ops.append(op)
    query = rng.randrange(n_boxes)
    text = " ".join(
        [describe_state(initial)] + [operation_text(op) for op in ops] + [f"Box {query} contains"]
    )
    return text, sorted(state[query]), initial, ops


def generate(cfg: dict, name: str) -> CanonicalDataset:
    gen = cfg["generate"] or {}
    objects = sorted(cfg.get("objects") or gen.get("objects") or DEFAULT_OBJECTS)
    seed = int(gen.get("seed", 0))
    n_boxes = int(gen.get("n_boxes", 5))
    max_initial = int(gen.get("max_initial", 3))
    ops_range = gen.get("n_operations", [0, 3])
    if len(set(objects)) != len(objects) or len(objects) < 2:
        raise ValueError(f"boxes config {name!r}: objects must be at least two distinct names")
    if n_boxes < 1 or max_initial < 0:
        raise ValueError(f"boxes config {name!r}: n_boxes >= 1 and max_initial >= 0 required")
    records = []
    for split in SPLITS:
        count = int(gen.get(f"n_{split}", 0))
        # one stream per split, seeded by a string (stable across Python runs and versions)
        rng = random.Random(f"boxes-{seed}-{split}")
        for i in range(count):
            n_ops = rng.randint(int(ops_range[0]), int(ops_range[1]))
            text, target, _, _ = generate_example(rng, objects, n_boxes, max_initial, n_ops)
            records.append(
                {"id": f"boxes-{split}-{i:05d}", "split": split, "text": text, "labels": target}
            )
    if not records:
        raise ValueError(f"boxes config {name!r}: generate.n_train/n_dev/n_test are all 0")
    notes = {
        "source": "seeded generator (multilabel_llm.data.boxes)",
        "generate": dict(gen, objects=objects),
    }
    return build_dataset(name, records, objects, True, notes, f"{LOADER}:{name}")


def parse_content(content: str, objects: set, where: str) -> list[str]:
    if not content.startswith(MASK):
        raise DatasetFormatError(
            f"{where}: field 'masked_content' must start with {MASK}, got {content!r}"
        )
    body = content[len(MASK) :].strip().rstrip(".").strip()
    if body in ("", "nothing"):
        return []
    items = []
    for part in re.split(r",|\band\b", body):
        item = re.sub(r"^(the|a|an)\s+", "", part.strip())
        if not item:
            continue
        if item not in objects:
            raise DatasetFormatError(f"{where}: field 'masked_content' has unknown object {item!r}")
        items.append(item)
    return items


def load_files(cfg: dict, root, name: str) -> CanonicalDataset:
    objects_path = config_file(cfg, "objects", root, LOADER, "objects.txt")
    objects = [o.strip() for o in read_text(objects_path).splitlines()[0].split(",") if o.strip()]
    known = set(objects)
    records = []
    for split in SPLITS:
        if not (cfg.get("files") or {}).get(split):
            continue
        path: Path = config_file(cfg, split, root, LOADER, f"{split} JSONL file")
        counts: dict[str, int] = {}
        for where, row in iter_jsonl(path, ("sentence_masked", "masked_content", "sample_id")):
            sentence = row["sentence_masked"]
            cut = sentence.find(MASK)
            text = require_text(sentence[:cut].strip() if cut >= 0 else sentence.strip(), where)
            sample = str(row["sample_id"])
            # many rows share a sample_id (one per queried box): number them like the paper
            k = counts.get(sample, 0)
            counts[sample] = k + 1
            records.append(
                {"id": f"{sample}-{k}", "split": split, "text": text,
                 "labels": parse_content(row["masked_content"], known, where)}
            )  # fmt: skip
    if not records:
        raise ValueError(f"dataset config {name!r}: set files.train/dev/test (JSONL) or generate:")
    labels = sorted(objects)
    return build_dataset(
        name, records, labels, True, {"source": "Boxes (Kim and Schuster 2023)"}, f"{LOADER}:{name}"
    )


def load(cfg: dict, root) -> CanonicalDataset:
    name = cfg.get("name", LOADER)
    if cfg.get("generate"):
        return generate(cfg, name)
    return load_files(cfg, root, name)
