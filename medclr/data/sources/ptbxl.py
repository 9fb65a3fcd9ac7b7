"""PTB-XL (Wagner et al., 2020; PhysioNet v1.0.3): 21,799 12-lead ECGs, 10 s, 500 Hz and 100 Hz copies.

Layout read as distributed::

    ROOT/ptbxl_database.csv     one row per ECG: ecg_id, patient_id, scp_codes, strat_fold, filename_lr/_hr, ...
    ROOT/scp_statements.csv     71 SCP-ECG statements: diagnostic / form / rhythm flags, diagnostic (sub)class
    ROOT/records500/00000/00001_hr.{hea,dat}   (records100/... *_lr at 100 Hz)

- **Split**: the official ``strat_fold`` (stratified, patient-disjoint): train folds 1-8, val 9, test 10.
- **Labels** (four label sets, as in Strodthoff et al., 2021, "Deep learning for ECG analysis: benchmarks
  and insights from PTB-XL"): ``superclass`` (NORM, MI, STTC, CD, HYP), ``subclass`` (23),
  ``form`` (19) and ``rhythm`` (12). A statement listed in ``scp_codes`` at any likelihood is positive (the
  benchmark's convention; likelihood 0 marks rhythm/form statements whose certainty was not graded) and every
  other one negative: PTB-XL annotations are complete, so there are no unknown (NaN) labels. A name that
  already names a column of an earlier set gets its set as prefix (``subclass:STTC``, ``form:NST_``).
- **Report**: English statement text built from ``scp_codes`` via the statement descriptions (the German
  free-text ``report`` is kept as ``meta/report_de``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from medclr.data.manifest import LABEL_PREFIX, Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult
from medclr.data.validate import Problem
from medclr.errors import MedclrInputError
from medclr.io.report_sources import load_scp_statements, parse_scp_codes, ptbxl_report_text, ptbxl_statement_text
from medclr.io.tables import read_table

DATABASE = "ptbxl_database.csv"
STATEMENTS = "scp_statements.csv"
DATABASE_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr")
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
SUPERCLASS_DESCRIPTIONS = {
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}
_SEX: dict[object, str] = {0: "M", 1: "F"}  # PTB-XL codes sex as 0 male, 1 female
FOLD_SPLITS = {**{f: "train" for f in range(1, 9)}, 9: "val", 10: "test"}
_EXPECTED = f"the PTB-XL release ({DATABASE}, {STATEMENTS}, records500/, records100/)"


def label_sets(statements: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """``{set: {label name: [SCP codes that make it positive]}}`` for the four PTB-XL label sets."""
    diagnostic = statements[statements["diagnostic"] == 1]
    sets: dict[str, dict[str, list[str]]] = {
        "superclass": {c: diagnostic.index[diagnostic["diagnostic_class"] == c].tolist() for c in SUPERCLASSES},
        "subclass": {
            str(sub): diagnostic.index[diagnostic["diagnostic_subclass"] == sub].tolist()
            for sub in sorted(diagnostic["diagnostic_subclass"].dropna().unique())
        },
        "form": {str(c): [str(c)] for c in statements.index[statements["form"] == 1]},
        "rhythm": {str(c): [str(c)] for c in statements.index[statements["rhythm"] == 1]},
    }
    return sets


def _column_names(sets: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, str]]:
    """``{set: {label: column name}}``; a name already taken by an earlier set is written ``set:name``."""
    taken: set[str] = set()
    out: dict[str, dict[str, str]] = {}
    for set_name, labels in sets.items():
        out[set_name] = {}
        for label in labels:
            column = f"{set_name}:{label}" if label in taken else label
            taken.add(column)
            out[set_name][label] = column
    return out


@SOURCES.register("ptbxl")
def prepare_ptbxl(options: PrepareOptions) -> SourceResult:
    """Read PTB-XL as distributed (see the module docstring). ``options.ecg_rate``: 500 (default) or 100 Hz."""
    root = options.require_root("ptbxl", _EXPECTED)
    rate = options.ecg_rate or 500
    if rate not in (100, 500):
        raise MedclrInputError(None, f"PTB-XL has 500 Hz and 100 Hz records, not {rate} Hz", "pass 500 or 100")
    database = read_table(root / DATABASE, f"PTB-XL database ({DATABASE})", DATABASE_COLUMNS)
    statements = load_scp_statements(root / STATEMENTS)
    sets = label_sets(statements)
    columns = _column_names(sets)
    rows: list[dict[str, object]] = []
    rejected: list[Problem] = []
    for record in database.to_dict("records"):
        row, problem = _row(record, statements, sets, columns, rate)
        if problem is not None:
            rejected.append(problem)
        else:
            rows.append(row)
    info = ManifestInfo(
        source="ptbxl",
        roots={"ecg": str(root)},
        split_protocol="official strat_fold: train folds 1-8, val fold 9, test fold 10 (patient-disjoint)",
        label_sets={s: list(c.values()) for s, c in columns.items()},
        label_policy={
            "scp_codes": "a statement in scp_codes at any likelihood is positive, all others negative "
            "(Strodthoff et al., 2021); no unknown labels",
        },
        extra={
            "ecg_rate_hz": rate,
            "report": "English statement descriptions from scp_codes; German free text in meta/report_de",
            "label_descriptions": {
                **{str(c): str(statements.at[c, "description"]) for c in statements.index},
                **SUPERCLASS_DESCRIPTIONS,
            },
            "label_codes": {columns[s][label]: codes for s, labels in sets.items() for label, codes in labels.items()},
        },
    )
    return SourceResult(Manifest(pd.DataFrame(rows), info), rejected)


def _row(
    record: Mapping[Any, Any],
    statements: pd.DataFrame,
    sets: dict[str, dict[str, list[str]]],
    columns: dict[str, dict[str, str]],
    rate: int,
) -> tuple[dict[str, object], Problem | None]:
    ecg_id = record["ecg_id"]
    study_id = f"ptbxl-{ecg_id}"
    path = str(record["filename_hr" if rate == 500 else "filename_lr"] or "")
    try:
        codes = parse_scp_codes(str(record["scp_codes"]), source=f"{DATABASE} ecg_id {ecg_id}")
        report = ptbxl_statement_text(codes, statements, source=f"{DATABASE} ecg_id {ecg_id}")
        fold = int(record["strat_fold"])
        patient = float(record["patient_id"])
        if fold not in FOLD_SPLITS or not math.isfinite(patient) or not path or path == "nan":
            raise MedclrInputError(None, f"invalid strat_fold {fold}, patient_id {patient} or filename {path!r}")
    except (MedclrInputError, TypeError, ValueError) as err:
        problem = err.problem if isinstance(err, MedclrInputError) else str(err)
        return {}, Problem(study_id, "row", path, problem)
    row: dict[str, object] = {
        "study_id": study_id,
        "subject_id": str(int(patient)),
        "split": FOLD_SPLITS[fold],
        "ecg_path": path,
        "ecg_fs": float(rate),
        "report": report,
        "study_time": record.get("recording_date"),
        "meta/age": record.get("age"),
        "meta/sex": _SEX.get(record.get("sex")),
        "meta/strat_fold": fold,
        "meta/report_de": _german(record.get("report")),
    }
    for set_name, labels in sets.items():
        for label, label_codes in labels.items():
            row[f"{LABEL_PREFIX}{columns[set_name][label]}"] = float(any(c in codes for c in label_codes))
    return row, None


def _german(text: object) -> str | None:
    try:
        return ptbxl_report_text(text) if isinstance(text, str) else None
    except MedclrInputError:
        return None  # e.g. a report that is a single space (ecg_id 443): no text to keep
