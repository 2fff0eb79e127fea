"""A cell-by-cell comparison of a run's tables with the paper's own numbers.

The paper's numbers come from :mod:`multilabel_llm.report.paper_reference`.
:func:`compare_tables` lays every cell of those tables beside the run's own value:

    table, row, column, metric, ours, ci_low, ci_high, paper, diff, paper_in_ci,
    status, paper_text, ours_from

* ``paper`` is numeric only where the paper prints a number; its N/A, N/S and "-" cells keep
  their marker in ``paper_text`` and never compare as numbers (``status`` "paper N/A", …).
* ``status`` "not run": the paper reports the cell, this run did not produce it.
* ``diff`` = ours − paper; ``paper_in_ci``: the paper's printed value, widened by half a unit
  of its last printed digit (0.91 stands for [0.905, 0.915]), overlaps our bootstrap interval.
  Empty where our table has no interval (Tables 1, 4, 6, 7).

Our rows and columns are matched to the paper's through the explicit tables of
:mod:`~multilabel_llm.report.paper_reference` (method
display names, dataset names, model ids, label-order settings), never by fuzzy matching; what
has no counterpart in the paper is listed per table in the rendering.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from multilabel_llm.report.paper_reference import (
    ALIGNMENT_METRICS,
    ALIGNMENT_MODELS,
    ATTENTION_METRICS,
    COMPARED,
    COMPARISON_COLUMNS,
    LABEL_ORDERS,
    NOT_RUN,
    PAPER_DATASETS,
    PAPER_MODEL_TEXT,
    TABLE1_COLUMNS,
    TABLE_TITLES,
    TABLES,
    dataset_key,
    load_reference,
    method_row,
    model_column,
)

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
                # an untrained row (scoring.alignment.mark_untrained) is not a result to compare
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


def printed_decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _half_unit(text: str) -> float:
    """Half a unit of the last printed digit: the rounding a printed value hides."""
    decimals = printed_decimals(text)
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
