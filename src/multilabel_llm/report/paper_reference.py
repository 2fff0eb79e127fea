"""The paper's own numbers and how our rows and columns map to the paper's.

``data/paper_reference/`` holds the paper's Tables 1, 2, 4, 5, 6 and 7 and the numbers its text
states, transcribed into tidy CSVs (one row per printed cell; see that folder's README).
:func:`load_reference` reads them; the tables below match our method display names, dataset
names, model ids and label-order settings to the paper's, never by fuzzy matching. The
comparison itself is :mod:`multilabel_llm.report.paper_comparison`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

# ---------------------------------------------------------------------------- reference data

REFERENCE_COLUMNS = (
    "table",
    "section",
    "row",
    "column",
    "metric",
    "value",
    "status",
    "bold",
    "note",
)
# status of a printed cell -> the marker the paper prints (None: a number)
STATUS_MARKERS = {
    "reported": None,
    "not_applicable": "N/A",
    "not_supplied": "N/S",
    "not_reported": "-",
    "upper_bound": "<",
}
# the paper tables a run can produce, in the paper's order; "text_values" is reference only
TABLES = ("table1", "table2", "table4", "table5", "table6", "table7")
TABLE_TITLES = {
    "table1": "Table 1",
    "table2": "Table 2",
    "table4": "Table 4",
    "table5": "Table 5",
    "table6": "Table 6",
    "table7": "Table 7",
}
# what each paper table shows, for the rendering
TABLE_SUBJECTS = {
    "table1": "annotation statistics (§3)",
    "table2": "distribution alignment, Llama3 70B Instruct (§5.4)",
    "table4": "second-highest label never predicted later, % (§D.3)",
    "table5": "distribution alignment, Llama3 8B (§D.4)",
    "table6": "average attention to input / label tokens, % (§D.6)",
    "table7": "outputs following alphabetical / prompt label order, % (§D.9)",
}
# least digits our values show; a cell shows at least as many as the paper prints there
TABLE_DIGITS = {"table1": 0, "table2": 2, "table4": 1, "table5": 2, "table6": 3, "table7": 1}
COMPARISON_COLUMNS = [
    "table",
    "row",
    "column",
    "metric",
    "ours",
    "ci_low",
    "ci_high",
    "paper",
    "diff",
    "paper_in_ci",
    "status",
    "paper_text",
    "ours_from",
]
NOT_RUN = "not run"
COMPARED = "compared"


def default_reference_dir() -> Path:
    """``data/paper_reference`` of the checkout this module lives in."""
    return Path(__file__).resolve().parents[3] / "data" / "paper_reference"


def read_reference(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Reference CSVs as one frame, with ``key`` (the file stem: ``table2``, ``text_values``)
    and ``paper`` (float; NaN unless the paper prints a number in that cell)."""
    frames = []
    for path in map(Path, paths):
        # read as text: pandas would turn the paper's "N/A" into NaN
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = set(REFERENCE_COLUMNS) - set(frame.columns)
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        bad = sorted(set(frame["status"]) - set(STATUS_MARKERS))
        if bad:
            raise ValueError(f"{path}: unknown status {bad}; allowed: {list(STATUS_MARKERS)}")
        reported = frame["status"] == "reported"
        paper = pd.to_numeric(frame["value"].where(reported), errors="coerce")
        if paper[reported].isna().any():
            values = frame.loc[reported & paper.isna(), "value"].tolist()
            raise ValueError(f"{path}: reported cells that are not numbers: {values}")
        frames.append(
            frame.assign(key=path.stem, paper=paper, bold=frame["bold"].str.lower() == "true")
        )
    if not frames:
        raise ValueError("no reference CSVs given")
    return pd.concat(frames, ignore_index=True)


def load_reference(
    directory: str | os.PathLike | None = None, tables: Iterable[str] | None = None
) -> pd.DataFrame:
    """:func:`read_reference` of ``tables`` (file stems; default: every CSV of ``directory``,
    by default this checkout's ``data/paper_reference``)."""
    directory = Path(directory) if directory is not None else default_reference_dir()
    names = list(tables) if tables is not None else sorted(p.stem for p in directory.glob("*.csv"))
    if not names:
        raise FileNotFoundError(f"no reference CSVs in {directory}")
    return read_reference(directory / f"{name}.csv" for name in names)


# ---------------------------------------------------------------------------- mappings

# our method display_name (config/method/*.yaml) -> the paper's row in Tables 2 and 5
METHOD_ROWS = {
    "Compare-to-None": "Compare-to-None",
    "Hard Predictions": "Hard Predictions",
    "Unary Breakdown": "Unary Breakdown",
    "Binary Breakdown": "Binary Breakdown",
    "Max-Over-Generations": "Max-Over-Generations",
    "BERT (Demux)": "BERT",
    "Linear Probing": "Linear Probing",
    "SFT Outputs": "SFT Outputs",
    "SFT Max-Over-Generations": "SFT Max-Over-Generations",
}
# method slot -> paper row, for a slot whose display_name was changed
METHOD_SLOTS = {
    "compare_to_none": "Compare-to-None",
    "hard_predictions": "Hard Predictions",
    "unary_breakdown": "Unary Breakdown",
    "binary_breakdown": "Binary Breakdown",
    "max_over_generations": "Max-Over-Generations",
    "demux": "BERT",
    "probes": "Linear Probing",
    "sft_outputs": "SFT Outputs",
    "sft_max_over_generations": "SFT Max-Over-Generations",
}
# Not in Tables 2/5: compare_to_none_platt, binary_breakdown_outcomes (Fig. 8),
# token_marginalization and constant (§A.6); they are listed as "no paper row".

# our dataset (config `name`, slot or display_name) -> the paper's dataset
DATASET_NAMES = {
    "hatexplain": "hatexplain",
    "hatexplain_demo": "hatexplain",
    "msp_podcast": "msp_podcast",
    "goemotions": "goemotions",
    "goemotions_demo": "goemotions",
    "mfrc": "mfrc",
    "semeval": "semeval",
    "boxes": "boxes",
}
# every spelling the paper uses for a dataset (Tables 2/5 print "Hatexplain", "MSPPodcast")
PAPER_DATASETS = {
    "Hatexplain": "hatexplain",
    "HateXplain": "hatexplain",
    "MSPPodcast": "msp_podcast",
    "MSP-Podcast": "msp_podcast",
    "GoEmotions": "goemotions",
    "MFRC": "mfrc",
    "SemEval": "semeval",
    "Boxes": "boxes",
}
# our model (hf_id, config `name` or the paper experiment's slot) -> the paper's model column
# (Tables 4, 6); a "<slot>-sft" model maps to the SFT column of its size
MODEL_NAMES = {
    "meta-llama/Llama-3.1-8B": "8B Base",
    "meta-llama/Llama-3.1-8B-Instruct": "8B Instruct",
    "meta-llama/Llama-3.1-70B": "70B Base",
    "meta-llama/Llama-3.3-70B-Instruct": "70B Instruct",
    "llama-3.1-8b": "8B Base",
    "llama-3.1-8b-instruct": "8B Instruct",
    "llama-3.1-70b": "70B Base",
    "llama-3.3-70b-instruct": "70B Instruct",
    "llama3-8b": "8B Base",
    "llama3-8b-instruct": "8B Instruct",
    "llama3-70b": "70B Base",
    "llama3-70b-instruct": "70B Instruct",
}
SFT_SUFFIX = "-sft"
# the model each alignment table reports, as MODEL_NAMES spells it (Table 5's caption says
# "Llama 3 8B" without base/instruct; the paper experiment fills it with 8B Instruct)
ALIGNMENT_MODELS = {"table2": ("70B Instruct",), "table5": ("8B Instruct", "8B Base")}
PAPER_MODEL_TEXT = {
    "table2": "Llama3 70B Instruct",
    "table5": "Llama3 8B",
    "table4": "Llama3 8B/70B Base, Instruct, SFT",
    "table6": "Llama3 8B Base and Instruct",
    "table7": "Llama3 8B Base and Instruct, pooled",
    "table1": "datasets",
}
# what a reader must know to read a table's comparison
TABLE_NOTES = {
    "table1": "The paper prints 'Cohen's Kappa' without saying how it pools many raters; ours "
    "is Fleiss' kappa. Shares in %.",
    "table2": "F1 is example-F1.",
    "table4": "Model columns by Hugging Face id (Llama-3.1-8B, -8B-Instruct, -70B, "
    "Llama-3.3-70B-Instruct); a '<slot>-sft' model fills the SFT column of its size.",
    "table5": "F1 is example-F1. The paper's BERT and SFT rows repeat Table 2's.",
    "table6": "Average attention per token, %, from the second and later labels. The paper's "
    "8B Instruct MFRC cells repeat its GoEmotions cells.",
    "table7": "The paper pools Llama3 8B Base and Instruct (Random: 3 seeds); ours pools the "
    "models and datasets of the study that lists Table 7.",
}
# prompt label_order (config/prompt/*.yaml) -> Table 7 row; "dataset" order is not in Table 7
LABEL_ORDERS = {"alphabetical": "Alphabetical", "random": "Random", "reverse": "Reverse"}
# produced column -> (paper metric); alignment tables
ALIGNMENT_METRICS = {"nll": "NLL", "l1": "L1", "example_f1": "F1"}
# Table 6: produced column -> paper metric
ATTENTION_METRICS = {
    "pct_per_token_input": "Input",
    "pct_per_token_label": "Label",
    "pct_per_token_first_token": "1st Tokens",
}
# Table 1: produced column -> (paper column, paper metric, scale to the paper's unit)
TABLE1_COLUMNS = {
    "annotators": ("Annotators", "n", 1.0),
    "annotators_per_example": ("Annotators", "per example", 1.0),
    "kappa": ("Cohen's Kappa", "kappa", 1.0),
    "labels_0": ("0 labels", "%", 100.0),
    "labels_1": ("1 label", "%", 100.0),
    "labels_2": ("2 labels", "%", 100.0),
    "labels_3plus": ("3+ labels", "%", 100.0),
}


def _first_hit(candidates: Iterable, table: Mapping) -> str | None:
    for cand in candidates:
        if cand is not None and str(cand) in table:
            return table[str(cand)]
    return None


def dataset_key(dataset: str, info: Mapping | None = None) -> str | None:
    """The paper dataset of our ``dataset`` (a slot or config name), or None."""
    info = info or {}
    candidates = [info.get("display_name"), info.get("name"), dataset]
    return _first_hit(candidates, DATASET_NAMES) or _first_hit(candidates, PAPER_DATASETS)


def model_column(model: str, models: Mapping[str, Mapping] | None = None) -> str | None:
    """The paper's model column (``8B Base`` … ``70B SFT``) of our model slot, or None;
    ``models`` maps slots to their config (``hf_id``, ``name``)."""
    models = models or {}
    if model.endswith(SFT_SUFFIX):
        hit = model_column(model[: -len(SFT_SUFFIX)], models)
        return f"{hit.split()[0]} SFT" if hit else None
    info = models.get(model) or {}
    return _first_hit([info.get("hf_id"), info.get("name"), model], MODEL_NAMES)


def method_row(display_name: str | None, slot: str | None = None) -> str | None:
    return _first_hit([display_name], METHOD_ROWS) or _first_hit([slot], METHOD_SLOTS)
