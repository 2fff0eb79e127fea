"""The paper's own numbers and a cell-by-cell comparison of a run's tables with them.

``data/paper_reference/`` holds the paper's Tables 1, 2, 4, 5, 6 and 7 and the numbers its text
states, transcribed into tidy CSVs (one row per printed cell; see that folder's README).
:func:`compare_tables` lays every cell of those tables beside the run's own value:

    table, row, column, metric, ours, ci_low, ci_high, paper, diff, paper_in_ci,
    status, paper_text, ours_from

* ``paper`` is numeric only where the paper prints a number; its N/A, N/S and "-" cells keep
  their marker in ``paper_text`` and never compare as numbers (``status`` "paper N/A", …).
* ``status`` "not run": the paper reports the cell, this run did not produce it.
* ``diff`` = ours − paper; ``paper_in_ci``: the paper's printed value, widened by half a unit
  of its last printed digit (0.91 stands for [0.905, 0.915]), overlaps our bootstrap interval.
  Empty where our table has no interval (Tables 1, 4, 6, 7).

Our rows and columns are matched to the paper's through the explicit tables below (method
display names, dataset names, model ids, label-order settings), never by fuzzy matching; what
has no counterpart in the paper is listed per table in the rendering.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from multilabel_llm.core.io import write_csv, write_text

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


# ---------------------------------------------------------------------------- our tables


@dataclass
class OurCell:
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    source: str = ""
    applicable: bool = True


@dataclass
class TableComparison:
    """One paper table beside ours: ``cells`` (COMPARISON_COLUMNS), what of ours has no paper
    counterpart (``unmatched``) and which run the numbers come from (``ours_label``)."""

    key: str
    cells: pd.DataFrame
    produced: bool = True
    ours_label: str = ""
    unmatched: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TABLE_TITLES.get(self.key, self.key)


def read_produced(path: str | os.PathLike) -> pd.DataFrame:
    """A produced table; an empty file (a run with nothing to report) is an empty frame."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _put(cells: dict, unmatched: list, key: tuple, cell: OurCell) -> None:
    if key in cells:
        unmatched.append(f"{cell.source} (duplicate of {cells[key].source} for {'/'.join(key)})")
    else:
        cells[key] = cell


def _alignment_cells(produced, datasets, roles_model):
    cells, unmatched = {}, []
    if produced.empty:
        return cells, unmatched
    slots = [c[: -len("_status")] for c in produced.columns if c.endswith("_status")]
    paper_ds = {}
    for slot in slots:
        key = dataset_key(slot, datasets.get(slot))
        if key is None:
            unmatched.append(f"dataset {slot} (no paper dataset)")
        else:
            paper_ds[slot] = key
    for rec in produced.to_dict("records"):
        row = method_row(rec.get("display_name"), rec.get("method"))
        if row is None:
            unmatched.append(f"method {rec.get('display_name', rec.get('method'))} (no paper row)")
            continue
        for slot, key in paper_ds.items():
            status = rec.get(f"{slot}_status", "missing")
            for ours_metric, metric in ALIGNMENT_METRICS.items():
                col = f"{slot}_{ours_metric}"
                value = _num(rec.get(col))
                # an untrained row (alignment_tables.mark_untrained) is not a result to compare
                if status in ("missing", "untrained") or (status == "ok" and math.isnan(value)):
                    continue
                source = f"{roles_model or '?'} / {slot} / {rec.get('method')}"
                _put(
                    cells,
                    unmatched,
                    (row, key, metric),
                    OurCell(
                        value,
                        _num(rec.get(f"{col}_ci_low")),
                        _num(rec.get(f"{col}_ci_high")),
                        source,
                        applicable=status != "not_applicable",
                    ),
                )
    return cells, unmatched


def _long_cells(produced, row_of, column_of, metrics, source_of):
    """Cells of a long table (one record per run) through ``row_of``/``column_of`` mappers."""
    cells, unmatched = {}, []
    for rec in produced.to_dict("records"):
        row, column = row_of(rec), column_of(rec)
        if row is None or column is None:
            unmatched.append(f"{source_of(rec)} (no paper row/column)")
            continue
        for ours_metric, metric in metrics.items():
            if ours_metric not in rec:
                continue
            value = _num(rec[ours_metric])
            if math.isnan(value):
                continue
            _put(cells, unmatched, (row, column, metric), OurCell(value, source=source_of(rec)))
    return cells, unmatched


def our_cells(
    key: str,
    produced: pd.DataFrame,
    datasets: Mapping[str, Mapping] | None = None,
    models: Mapping[str, Mapping] | None = None,
    roles: Mapping[str, Mapping] | None = None,
) -> tuple[dict, list[str]]:
    """``{(paper row, paper dataset/model/column, metric): OurCell}`` of a produced table, and
    what of it has no paper counterpart. Dataset columns/rows come back as the paper's dataset
    keys (``DATASET_NAMES`` values); the comparison resolves the paper's spellings."""
    datasets, models, roles = dict(datasets or {}), dict(models or {}), dict(roles or {})
    if key in ("table2", "table5"):
        return _alignment_cells(produced, datasets, (roles.get(key) or {}).get("model"))
    if produced.empty:
        return {}, []

    def ds(rec):
        return dataset_key(str(rec.get("dataset")), datasets.get(str(rec.get("dataset"))))

    def mdl(rec):
        return model_column(str(rec.get("model")), models)

    def src(*cols):
        return lambda rec: " / ".join(str(rec.get(c)) for c in cols if c in rec)

    if key == "table4":
        return _long_cells(produced, ds, mdl, {"pct_never": "%"}, src("model", "dataset"))
    if key == "table6":
        return _long_cells(produced, mdl, ds, ATTENTION_METRICS, src("model", "dataset"))
    if key == "table7":
        metrics = {"pct_alphabetical": "%", "pct_prompt": "%"}
        cells, unmatched = {}, []
        for rec in produced.to_dict("records"):
            row = LABEL_ORDERS.get(str(rec.get("setting")))
            source = f"label order {rec.get('setting')} ({rec.get('n_runs', '?')} runs, n={rec.get('n', '?')})"
            if row is None:
                unmatched.append(f"{source} (no paper row)")
                continue
            for col, column in (("pct_alphabetical", "Alphabetical"), ("pct_prompt", "Prompt")):
                value = _num(rec.get(col))
                if not math.isnan(value):
                    _put(
                        cells, unmatched, (row, column, metrics[col]), OurCell(value, source=source)
                    )
        return cells, unmatched
    if key == "table1":
        cells, unmatched = {}, []
        for rec in produced.to_dict("records"):
            row = ds(rec)
            if row is None:
                unmatched.append(f"dataset {rec.get('dataset')} (no paper row)")
                continue
            for col, (column, metric, scale) in TABLE1_COLUMNS.items():
                value = _num(rec.get(col)) * scale
                if not math.isnan(value):
                    cell = OurCell(value, source=f"{rec.get('dataset')}")
                    _put(cells, unmatched, (row, column, metric), cell)
        return cells, unmatched
    raise ValueError(f"no comparison for table {key!r}; known: {list(TABLES)}")


# ---------------------------------------------------------------------------- comparison


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _half_unit(text: str) -> float:
    """Half a unit of the last printed digit: the rounding a printed value hides."""
    decimals = _decimals(text)
    # a hair more, so that a bound equal to the rounding edge is not lost to float error
    return 0.5 * 10.0**-decimals + 1e-9


def paper_in_interval(paper: float, paper_text: str, low: float, high: float) -> bool | None:
    """Whether the printed value (± its rounding) overlaps ``[low, high]``; None without one."""
    if any(math.isnan(x) for x in (paper, low, high)):
        return None
    half = _half_unit(paper_text)
    return bool(paper + half >= low and paper - half <= high)


def _resolve(label: str) -> str:
    """A paper row/column label as a lookup key: a dataset's spelling becomes its key."""
    return PAPER_DATASETS.get(label, label)


def compare_table(
    key: str,
    produced: pd.DataFrame | None,
    reference: pd.DataFrame | None = None,
    datasets: Mapping[str, Mapping] | None = None,
    models: Mapping[str, Mapping] | None = None,
    roles: Mapping[str, Mapping] | None = None,
) -> TableComparison:
    """Every reference cell of paper table ``key`` beside our value (``produced`` None: the
    run did not produce the table; every reported cell is "not run")."""
    reference = load_reference(tables=[key]) if reference is None else reference
    ref = reference[reference["key"] == key] if "key" in reference.columns else reference
    if ref.empty:
        raise ValueError(f"no reference cells for table {key!r}")
    cells, unmatched = (
        ({}, []) if produced is None else our_cells(key, produced, datasets, models, roles)
    )
    used = set()
    rows = []
    for rec in ref.to_dict("records"):
        lookup = (_resolve(rec["row"]), _resolve(rec["column"]), rec["metric"])
        ours = cells.get(lookup)
        if ours is not None:
            used.add(lookup)
        paper = float(rec["paper"])
        out = {
            "table": TABLE_TITLES.get(key, key),
            "row": rec["row"],
            "column": rec["column"],
            "metric": rec["metric"],
            "ours": ours.value if ours else math.nan,
            "ci_low": ours.ci_low if ours else math.nan,
            "ci_high": ours.ci_high if ours else math.nan,
            "paper": paper,
            "diff": math.nan,
            "paper_in_ci": None,
            "paper_text": rec["value"],
            "ours_from": ours.source if ours else "",
        }
        if rec["status"] != "reported":
            out["status"] = f"paper {rec['value']}"
        elif ours is None:
            out["status"] = NOT_RUN
        elif not ours.applicable:
            out["status"] = "ours N/A"
        else:
            out["status"] = COMPARED
            out["diff"] = round(ours.value - paper, 10)  # no float noise in the CSV
            out["paper_in_ci"] = paper_in_interval(paper, rec["value"], ours.ci_low, ours.ci_high)
        rows.append(out)
    # our cells on a paper row and column the paper's table does not have (e.g. SemEval in
    # Table 2): no paper cell to set them against
    ref_rows = {_resolve(r) for r in ref["row"]}
    ref_columns = {_resolve(c) for c in ref["column"]}
    extra = []
    for r, c, m in cells:
        if (r, c, m) in used:
            continue
        if c not in ref_columns:
            extra.append(f"column {c}")
        elif r not in ref_rows:
            extra.append(f"row {r}")
        else:
            extra.append(f"{r} / {c} / {m}")
    title = TABLE_TITLES.get(key, key)
    unmatched += [f"{e}: not in the paper's {title}" for e in sorted(set(extra))]
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    frame["paper_in_ci"] = frame["paper_in_ci"].astype("boolean")
    label = ""
    if key in ("table2", "table5") and roles and roles.get(key):
        label = _alignment_label(key, dict(roles[key]), models or {})
    return TableComparison(key, frame, produced is not None, label, _dedupe(unmatched))


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _alignment_label(key: str, spec: dict, models: Mapping[str, Mapping]) -> str:
    model = spec.get("model", "?")
    column = model_column(model, models)
    where = ", ".join(f"{k} {spec[k]}" for k in ("prompt", "testset") if spec.get(k))
    text = f"model slot {model}" + (f" ({where})" if where else "")
    if column is None or column not in ALIGNMENT_MODELS.get(key, ()):
        text += f"; not the paper's model ({PAPER_MODEL_TEXT[key]})"
    return text


@dataclass
class Comparison:
    tables: list[TableComparison]

    @property
    def cells(self) -> pd.DataFrame:
        frames = [t.cells for t in self.tables if not t.cells.empty]
        if not frames:
            return pd.DataFrame(columns=COMPARISON_COLUMNS)
        return pd.concat(frames, ignore_index=True)


def compare_tables(
    produced: Mapping[str, str | os.PathLike | pd.DataFrame],
    reference: pd.DataFrame | None = None,
    datasets: Mapping[str, Mapping] | None = None,
    models: Mapping[str, Mapping] | None = None,
    roles: Mapping[str, Mapping] | None = None,
    tables: Iterable[str] = TABLES,
) -> Comparison:
    """Compare the produced tables (``{table key: CSV path or frame}``; keys as in ``TABLES``)
    with the paper; tables not produced stay in the output with every cell "not run"."""
    unknown = sorted(set(produced) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown paper tables {unknown}; known: {list(TABLES)}")
    tables = list(tables)
    reference = load_reference(tables=tables) if reference is None else reference
    out = []
    for key in tables:
        source = produced.get(key)
        frame = (
            None
            if source is None
            else (source if isinstance(source, pd.DataFrame) else read_produced(source))
        )
        out.append(compare_table(key, frame, reference, datasets, models, roles))
    return Comparison(out)


# ---------------------------------------------------------------------------- rendering

MARK_IN, MARK_OUT = "✓", "✗"


def _fmt(value: float, digits: int) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _cell_text(rec: Mapping, digits: int) -> tuple[str, str]:
    """(text, css class) of one grid cell: ours [CI] vs paper, and the verdict."""
    status = rec["status"]
    if status in (COMPARED, NOT_RUN):  # as precise as the paper
        digits = max(digits, _decimals(rec["paper_text"]))
    if math.isnan(rec["ours"]):
        ours = NOT_RUN if status == NOT_RUN else "—"
    else:
        ours = _fmt(rec["ours"], digits)
        if not math.isnan(rec["ci_low"]):
            ours += f" [{_fmt(rec['ci_low'], digits)}, {_fmt(rec['ci_high'], digits)}]"
    if status == "ours N/A":
        ours += " (N/A)"
    text = f"{ours} vs {rec['paper_text']}"
    verdict = rec["paper_in_ci"]
    if status != COMPARED:
        css = "notrun" if status == NOT_RUN else "marker"
    elif verdict is pd.NA or verdict is None:
        css = "nointerval"
    else:
        text += f" {MARK_IN if verdict else MARK_OUT}"
        css = "in" if verdict else "out"
    return text, css


def _header(column: str, metric: str) -> str:
    if metric in ("%", "kappa"):  # the column says it (Tables 1, 4, 7)
        return column
    if metric in ("n", "per example"):  # Table 1's "Annotators (per example)"
        return f"{column} ({metric})"
    return f"{column} {metric}"


def _grid(table: TableComparison) -> tuple[list[str], list[list[tuple[str, str]]], list[str]]:
    """Paper layout: header, rows of (text, css) cells, row labels."""
    digits = TABLE_DIGITS.get(table.key, 2)
    cells = table.cells
    columns = list(dict.fromkeys(zip(cells["column"], cells["metric"], strict=True)))
    rows = list(dict.fromkeys(cells["row"]))
    index = {(r["row"], r["column"], r["metric"]): r for r in cells.to_dict("records")}
    body = []
    for row in rows:
        line = []
        for column, metric in columns:
            rec = index.get((row, column, metric))
            line.append(_cell_text(rec, digits) if rec else ("", ""))
        body.append(line)
    return [_header(c, m) for c, m in columns], body, rows


def summary(comparison: Comparison) -> pd.DataFrame:
    """Per table: cells the paper reports, how many we compared, how many of those have the
    paper's value in our interval, how many are not run, and the median |diff|."""
    rows = []
    for table in comparison.tables:
        cells = table.cells
        compared = cells[cells["status"] == COMPARED]
        with_ci = compared["paper_in_ci"].dropna()
        rows.append(
            {
                "table": table.title,
                "shows": TABLE_SUBJECTS.get(table.key, ""),
                "paper": PAPER_MODEL_TEXT.get(table.key, ""),
                "ours": (table.ours_label or "produced") if table.produced else "not produced",
                "reported": int(cells["paper"].notna().sum()),
                "compared": len(compared),
                "paper_in_ci": f"{int(with_ci.sum())}/{len(with_ci)}" if len(with_ci) else "",
                "not_run": int((cells["status"] == NOT_RUN).sum()),
                "median_abs_diff": float(compared["diff"].abs().median())
                if len(compared)
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


INTRO = (
    f"Each cell: ours [95% bootstrap CI] vs the paper's printed value. {MARK_IN}: the paper's value "
    f"(± its rounding) lies in our interval; {MARK_OUT}: it does not; no mark: our table has no "
    "interval. 'not run': the paper reports the cell, this run did not produce it. N/A, N/S "
    "and - are the paper's own markers (not applicable, not supplied, not reported) and are "
    "never compared as numbers. Tidy cell-by-cell values: paper_comparison.csv."
)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def _summary_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    frame = summary(comparison)
    header = [
        "Table",
        "Shows",
        "Paper",
        "Ours",
        "Reported",
        "Compared",
        "Paper in our CI",
        "Not run",
        "Median |diff|",
    ]
    rows = [
        [
            r["table"],
            r["shows"],
            r["paper"],
            r["ours"],
            str(r["reported"]),
            str(r["compared"]),
            r["paper_in_ci"] or "–",
            str(r["not_run"]),
            _fmt(r["median_abs_diff"], 3) or "–",
        ]
        for r in frame.to_dict("records")
    ]
    return header, rows


def comparison_markdown(comparison: Comparison, title: str = "Side by side with the paper") -> str:
    lines = [f"# {title}", "", INTRO, ""]
    header, rows = _summary_rows(comparison)
    lines += _md_table(header, rows)
    for table in comparison.tables:
        lines += ["", f"## {table.title}: {TABLE_SUBJECTS.get(table.key, '')}", ""]
        if not table.produced:
            lines.append("Not produced by this experiment: every cell is 'not run'.")
            continue
        if table.ours_label:
            lines += [f"Ours: {table.ours_label}. Paper: {PAPER_MODEL_TEXT[table.key]}.", ""]
        if table.key in TABLE_NOTES:
            lines += [TABLE_NOTES[table.key], ""]
        head, body, labels = _grid(table)
        lines += _md_table(
            ["", *head],
            [[lab, *[t for t, _ in line]] for lab, line in zip(labels, body, strict=True)],
        )
        if table.unmatched:
            lines += ["", "Ours without a paper counterpart: " + "; ".join(table.unmatched) + "."]
    return "\n".join(lines) + "\n"


CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 1.5em; color: #222; }
h1 { font-size: 1.2em; } h2 { font-size: 1.05em; margin-top: 1.6em; }
p { max-width: 70em; color: #444; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.8em; margin-top: 0.6em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f3f4f6; } td.label, th.label { text-align: left; }
td.in { background: #e6f4ea; } td.out { background: #fce8e6; }
td.notrun { background: #f1f1f1; color: #777; font-style: italic; } td.marker { color: #777; }
"""


def _html_table(header: list[str], rows: list[list[tuple[str, str]]]) -> str:
    head = "".join(
        f'<th class="label">{html.escape(h)}</th>' if k == 0 else f"<th>{html.escape(h)}</th>"
        for k, h in enumerate(header)
    )
    body = []
    for row in rows:
        tds = "".join(
            f'<td class="{css}">{html.escape(text)}</td>'
            if css
            else f"<td>{html.escape(text)}</td>"
            for text, css in row
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def comparison_html(comparison: Comparison, title: str = "Side by side with the paper") -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(INTRO)}</p>",
    ]
    header, rows = _summary_rows(comparison)
    parts.append(
        _html_table(
            header, [[(c, "label" if k < 4 else "") for k, c in enumerate(r)] for r in rows]
        )
    )
    for table in comparison.tables:
        parts.append(
            f"<h2>{html.escape(table.title)}: {html.escape(TABLE_SUBJECTS.get(table.key, ''))}</h2>"
        )
        if not table.produced:
            parts.append("<p>Not produced by this experiment: every cell is 'not run'.</p>")
            continue
        if table.ours_label:
            parts.append(
                f"<p>Ours: {html.escape(table.ours_label)}. "
                f"Paper: {html.escape(PAPER_MODEL_TEXT[table.key])}.</p>"
            )
        if table.key in TABLE_NOTES:
            parts.append(f"<p>{html.escape(TABLE_NOTES[table.key])}</p>")
        head, body, labels = _grid(table)
        parts.append(
            _html_table(
                ["", *head],
                [[(lab, "label"), *line] for lab, line in zip(labels, body, strict=True)],
            )
        )
        if table.unmatched:
            parts.append(
                "<p>Ours without a paper counterpart: "
                + html.escape("; ".join(table.unmatched))
                + ".</p>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_comparison(
    comparison: Comparison,
    csv_path: str | os.PathLike,
    md_path: str | os.PathLike | None = None,
    html_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    cells = comparison.cells
    write_csv(csv_path, cells, index=False)
    if md_path is not None:
        write_text(md_path, comparison_markdown(comparison))
    if html_path is not None:
        write_text(html_path, comparison_html(comparison))
    return cells
