"""MSP-Podcast v1.11 transcripts with per-worker emotion labels (single-label).

Files: ``transcripts`` (id, text: one transcript per utterance, built by the user from the
release's Transcripts/), ``labels_detailed`` (FileName, EmoDetail = "worker;single;multi;A;V;D;")
and ``labels_consensus`` (FileName, Split_Set: Train / Development / Test1 / ...). As in the
paper's code: ``.wav`` is stripped from file names, a worker label containing "other" is
dropped, utterances with no transcript or no remaining label are dropped (all logged), Test1 is
the test split, and the aggregate is the most frequent label (``tie_break`` as for HateXplain).
Labels are lowercased; their order is alphabetical (or ``labels:`` in the config).
"""

from __future__ import annotations

from multilabel_llm.data._common import (
    DatasetFormatError,
    DropLog,
    build_dataset,
    config_file,
    majority_label,
    read_table,
    require_columns,
)
from multilabel_llm.data.canonical import CanonicalDataset

LOADER = "msp_podcast"
SPLIT_SETS = {"Train": "train", "Development": "dev", "Test1": "test"}


def _strip_wav(name: str) -> str:
    return name[:-4] if name.endswith(".wav") else name


def load(cfg: dict, root) -> CanonicalDataset:
    name = cfg.get("name", LOADER)
    tie_break = cfg.get("tie_break", "first")
    transcripts_path = config_file(cfg, "transcripts", root, LOADER, "transcripts.csv (id,text)")
    detailed_path = config_file(cfg, "labels_detailed", root, LOADER, "Labels/labels_detailed.csv")
    consensus_path = config_file(
        cfg, "labels_consensus", root, LOADER, "Labels/labels_consensus.csv"
    )
    drops = DropLog(name)

    consensus = read_table(consensus_path)
    require_columns(consensus.columns, ["FileName", "Split_Set"], str(consensus_path))
    split_of = {}
    for r, (file_name, split_set) in enumerate(
        zip(consensus["FileName"], consensus["Split_Set"], strict=True)
    ):
        ex_id = _strip_wav(file_name.strip())
        if ex_id in split_of:
            raise DatasetFormatError(
                f"{consensus_path}: row {r + 2}: duplicate FileName {file_name!r}"
            )
        if split_set not in SPLIT_SETS:
            drops.drop(
                f"utterances in split sets other than {list(SPLIT_SETS)} (e.g. Test2)", ex_id
            )
            continue
        split_of[ex_id] = SPLIT_SETS[split_set]

    transcripts = read_table(transcripts_path)
    require_columns(transcripts.columns, ["id", "text"], str(transcripts_path))
    text_of = {}
    for r, (ex_id, text) in enumerate(zip(transcripts["id"], transcripts["text"], strict=True)):
        ex_id = _strip_wav(ex_id.strip())
        if ex_id in text_of:
            raise DatasetFormatError(f"{transcripts_path}: row {r + 2}: duplicate id {ex_id!r}")
        text_of[ex_id] = text

    detailed = read_table(detailed_path)
    require_columns(detailed.columns, ["FileName", "EmoDetail"], str(detailed_path))
    configured = [lab.lower() for lab in cfg.get("labels") or []]
    votes: dict[str, list[tuple[str, str]]] = {}
    for r, (file_name, detail) in enumerate(
        zip(detailed["FileName"], detailed["EmoDetail"], strict=True)
    ):
        where = f"{detailed_path}: row {r + 2}"
        ex_id = _strip_wav(file_name.strip())
        fields = detail.split(";")
        if len(fields) < 2 or not fields[0].strip():
            raise DatasetFormatError(
                f"{where}: field 'EmoDetail' must be 'worker;single;multi;...', got {detail!r}"
            )
        if ex_id not in split_of:
            continue  # the utterance's split was dropped (counted above) or it is unlabelled
        worker, label = fields[0].strip(), fields[1].strip().lower()
        if not label or "other" in label:
            drops.drop("worker labels that are empty or 'Other' (as in the paper's code)", ex_id)
            continue
        if configured and label not in configured:
            raise DatasetFormatError(
                f"{where}: field 'EmoDetail' has unknown label {label!r}; labels: {configured}"
            )
        votes.setdefault(ex_id, []).append((worker, label))

    labels = configured or sorted({lab for v in votes.values() for _, lab in v})
    records = []
    for ex_id, split in split_of.items():
        text = text_of.get(ex_id, "")
        if not text.strip():
            drops.drop("utterances without a transcript (as in the paper's code)", ex_id)
            continue
        ex_votes = votes.get(ex_id)
        if not ex_votes:
            drops.drop("utterances with no usable worker label", ex_id)
            continue
        label = majority_label([lab for _, lab in ex_votes], tie_break, labels)
        if label is None:
            drops.drop("utterances with tied worker labels (tie_break: drop)", ex_id)
            continue
        records.append(
            {"id": ex_id, "split": split, "text": text, "labels": [label],
             "annotators": [w for w, _ in ex_votes], "annotator_labels": [[lab] for _, lab in ex_votes]}
        )  # fmt: skip
    notes = {
        "source": "MSP-Podcast v1.11",
        "aggregate": f"majority label, ties: {tie_break}",
        "dropped": drops.report(),
    }
    return build_dataset(name, records, labels, False, notes, f"{LOADER}:{name}")
