"""MIMIC-IV-ECG v1.0 (Gow et al., PhysioNet 2023): ~800,000 diagnostic 12-lead ECGs of ~160,000 MIMIC-IV patients.

Layout read as distributed (https://physionet.org/content/mimic-iv-ecg/1.0/; tables documented at
https://mimic.mit.edu/docs/IV/modules/ecg/)::

    ROOT/record_list.csv            subject_id, study_id, file_name, ecg_time, path
    ROOT/machine_measurements.csv   subject_id, study_id, cart_id, ecg_time, report_0 .. report_17, bandwidth,
                                    filtering, rr_interval, p_onset, p_end, qrs_onset, qrs_end, t_end,
                                    p_axis, qrs_axis, t_axis
    ROOT/waveform_note_links.csv    (optional) subject_id, study_id, waveform_path, note_id, note_seq, charttime
    ROOT/files/p1000/p10000032/s40689238/40689238.{hea,dat}     WFDB, 500 Hz, 10 s, 12 leads

``path`` is the WFDB record without extension. The headers list the leads as I, II, III, aVR, aVF, aVL, V1-V6
(aVF before aVL); :func:`medclr.io.read_ecg` matches leads by name. The tables may also be gzipped (``.csv.gz``).

- **One row per ECG study** (``study_id``); ``study_time`` = ``ecg_time`` (date-shifted as all of MIMIC; the
  cart's clock, not synchronised with the hospital's, see the PhysioNet usage notes).
- **Report**: the machine's statements ``report_0 .. report_17`` joined as sentences
  (:func:`medclr.io.report_sources.machine_report_text`). A study without a machine_measurements row or with no
  statement keeps its ECG with ``report`` null and NaN labels (counted in ``info.extra``).
- **Split**: none is official; a patient-level hash of ``subject_id`` (:mod:`medclr.data.splits`, 80/10/10).
- **Labels**: MIMIC-IV-ECG has no diagnostic labels. :data:`MACHINE_LABEL_RULES` derives a few from the
  machine statements by keyword rules: *machine-statement derived, noisy* (the cart's algorithm, not a
  cardiologist). A statement whose match is preceded in its clause by a hedge (``possible``, ``probable``,
  ``consider``, ``cannot rule out``, ``borderline``, ``voltage criteria`` as in "Minimal voltage criteria for
  LVH"...) is uncertain and follows ``--uncertain``
  (nan / zeros / ones); a statement saying the finding is gone (``no longer present``) does not count, and in
  ``A has replaced B`` only ``A`` counts. Rules and policy are written into the manifest and the data card.
- **meta/**: the machine measurements (intervals in ms, axes in degrees; the sentinel 29999 that the table
  holds where the cart measured nothing, e.g. the P wave in atrial fibrillation, becomes NaN), ``cart_id``,
  ``bandwidth``, ``filtering`` and, with ``waveform_note_links.csv``, ``note_id`` of the cardiologist's note.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from medclr.data.manifest import LABEL_PREFIX, Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult
from medclr.data.splits import hash_split, hash_split_protocol
from medclr.data.validate import Problem
from medclr.errors import MedclrInputError
from medclr.io.report_sources import machine_report_text
from medclr.io.tables import read_table

RECORD_LIST = "record_list.csv"
MEASUREMENTS = "machine_measurements.csv"
NOTE_LINKS = "waveform_note_links.csv"
RECORD_COLUMNS = ("subject_id", "study_id", "ecg_time", "path")
REPORT_COLUMNS = tuple(f"report_{i}" for i in range(18))
NUMERIC_MEASUREMENTS = (
    "rr_interval",
    "p_onset",
    "p_end",
    "qrs_onset",
    "qrs_end",
    "t_end",
    "p_axis",
    "qrs_axis",
    "t_axis",
)
TEXT_MEASUREMENTS = ("cart_id", "bandwidth", "filtering")
NOT_MEASURED = 29999  # value of a measurement the cart could not make (observed in the released table)
ECG_FS = 500.0
_EXPECTED = f"the MIMIC-IV-ECG v1.0 release ({RECORD_LIST}, {MEASUREMENTS}, files/)"
_UNCERTAIN = {"nan": math.nan, "zeros": 0.0, "ones": 1.0}


@dataclass(frozen=True)
class StatementRule:
    """A machine-statement label: positive where ``pattern`` matches a statement (case-insensitive)."""

    name: str
    pattern: str
    meaning: str


MACHINE_LABEL_RULES: tuple[StatementRule, ...] = (
    StatementRule("AFIB", r"\batrial fibrillation\b|\bafib\b", "atrial fibrillation"),
    StatementRule("AFLT", r"\batrial flutter\b", "atrial flutter"),
    StatementRule("SBRAD", r"\bsinus bradycardia\b", "sinus bradycardia"),
    StatementRule("STACH", r"\bsinus tachycardia\b", "sinus tachycardia"),
    StatementRule("1AVB", r"\b(?:1st|first)[\s-]+degree\s+a-?v\s+block\b", "first-degree AV block"),
    StatementRule(
        "LBBB",
        r"(?<!incomplete )\bleft bundle[\s-]+branch block\b|(?<!incomplete )\blbbb\b",
        "left bundle branch block (not 'incomplete')",
    ),
    StatementRule(
        "RBBB",
        r"(?<!incomplete )\bright bundle[\s-]+branch block\b|(?<!incomplete )\brbbb\b",
        "right bundle branch block (not 'incomplete')",
    ),
    StatementRule("LVH", r"\bleft ventricular hypertrophy\b|\blvh\b", "left ventricular hypertrophy"),
    StatementRule(
        "MI",
        r"\binfarct(?:ion)?\b|\bacute mi\b|\bstemi\b",
        "infarct of any territory or age ('Inferior infarct - age undetermined', 'acute MI', 'STEMI')",
    ),
    StatementRule("NORM", r"^normal ecg$", "the statement 'Normal ECG' exactly (not 'Normal ECG except for rate')"),
)
HEDGE = re.compile(
    r"\b(?:possible|possibly|probable|probably|consider|cannot rule out|cannot be excluded|cannot exclude|"
    r"may be|might be|suggests?|suspected|questionable|borderline|voltage criteria)\b",
    re.IGNORECASE,
)
NEGATION = re.compile(r"\b(?:no longer|not present|now absent|resolved|no evidence of)\b", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r",|;|:|\bwith\b|\band\b|\bor\b", re.IGNORECASE)
_REPLACED = re.compile(r"\breplaced\b", re.IGNORECASE)
_COMPILED = tuple(re.compile(rule.pattern, re.IGNORECASE) for rule in MACHINE_LABEL_RULES)
LABEL_NAMES = tuple(rule.name for rule in MACHINE_LABEL_RULES)
POSITIVE, HEDGED, ABSENT = 2, 1, 0


@lru_cache(maxsize=65536)
def statement_states(statement: str) -> tuple[int, ...]:
    """Per rule: 2 asserted, 1 hedged, 0 absent, for one machine statement (cached: statements repeat a lot).

    >>> dict(zip(LABEL_NAMES, statement_states("Sinus rhythm with possible 1st degree A-V block")))["1AVB"]
    1
    """
    text = statement.strip().rstrip(".;").strip()
    if NEGATION.search(text):
        return (ABSENT,) * len(_COMPILED)
    text = _REPLACED.split(text, maxsplit=1)[0]
    states = []
    for pattern in _COMPILED:
        match = pattern.search(text)
        if match is None:
            states.append(ABSENT)
            continue
        clause = _CLAUSE_BREAK.split(text[: match.start()])[-1]
        states.append(HEDGED if HEDGE.search(clause) else POSITIVE)
    return tuple(states)


def machine_labels(statements: Sequence[object], uncertain: str = "nan") -> dict[str, float]:
    """``{label: 1.0 | 0.0 | uncertain value}`` from a study's statements; all NaN when there is none."""
    texts = [s for s in statements if isinstance(s, str) and s.strip()]
    if not texts:
        return dict.fromkeys(LABEL_NAMES, math.nan)
    best = np.max(np.array([statement_states(s) for s in texts]), axis=0)  # [n_rules]
    hedged = _UNCERTAIN[uncertain]
    return {
        name: 1.0 if b == POSITIVE else hedged if b == HEDGED else 0.0
        for name, b in zip(LABEL_NAMES, best, strict=True)
    }


def table_path(root: Path, name: str) -> Path:
    """``ROOT/name`` or ``ROOT/name.gz``; a clear error if neither exists."""
    found = optional_table(root, name)
    if found is None:
        raise MedclrInputError(
            root / name, f"MIMIC-IV-ECG table {name} not found", f"pass the folder that holds {_EXPECTED}"
        )
    return found


def optional_table(root: Path, name: str) -> Path | None:
    """``ROOT/name`` or ``ROOT/name.gz`` if either exists, else None."""
    return next((p for p in (root / name, root / f"{name}.gz") if p.is_file()), None)


def _read_str_table(path: Path, what: str, required: Sequence[str]) -> pd.DataFrame:
    return read_table(path, what, required, dtype=str, keep_default_na=False, na_values=[""])


def _whole(values: pd.Series) -> pd.Series:
    """Canonical integer text of each id cell (``"10000032"``), NA where it is not a whole number."""
    numbers = pd.to_numeric(values, errors="coerce")
    ok = numbers.notna() & (numbers == np.floor(numbers)) & (numbers >= 0)
    return pd.Series(
        [str(int(n)) if good else pd.NA for n, good in zip(numbers, ok, strict=True)],
        index=values.index,
        dtype="string",
    )


def read_ecg_tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``record_list``, ``machine_measurements`` and (if present) ``waveform_note_links``, all cells as text."""
    records = _read_str_table(table_path(root, RECORD_LIST), f"MIMIC-IV-ECG {RECORD_LIST}", RECORD_COLUMNS)
    machine_path = table_path(root, MEASUREMENTS)
    measures = _read_str_table(machine_path, f"MIMIC-IV-ECG {MEASUREMENTS}", ("subject_id", "study_id", "report_0"))
    notes_path = optional_table(root, NOTE_LINKS)
    notes = (
        None
        if notes_path is None
        else _read_str_table(notes_path, f"MIMIC-IV-ECG {NOTE_LINKS}", ("study_id", "note_id"))
    )
    return records, measures, notes


@SOURCES.register("mimic-iv-ecg")
def prepare_mimic_iv_ecg(options: PrepareOptions) -> SourceResult:
    """Read MIMIC-IV-ECG v1.0 as distributed (see the module docstring). ``--root`` or ``--ecg-root``."""
    root_arg = options.root if options.root is not None else options.ecg_root
    root = PrepareOptions(root=root_arg).require_root("mimic-iv-ecg", _EXPECTED)
    if options.uncertain not in _UNCERTAIN:
        raise MedclrInputError(None, f"unknown uncertain-label policy {options.uncertain!r}", "use nan, zeros or ones")
    records, measures, notes = read_ecg_tables(root)
    rows, rejected, counts = _rows(records, measures, notes, options)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame.insert(2, "split", hash_split(frame["subject_id"]))
    info = ManifestInfo(
        source="mimic-iv-ecg",
        roots={"ecg": str(root)},
        split_protocol=f"{hash_split_protocol('subject_id')}; MIMIC-IV-ECG has no official split",
        label_sets={"machine": list(LABEL_NAMES)},
        label_policy=label_policy(options.uncertain),
        extra={
            "version": "MIMIC-IV-ECG v1.0 (PhysioNet, 2023)",
            "report": "machine statements report_0..report_17 joined as sentences",
            "label_rules": {
                rule.name: {"pattern": rule.pattern, "meaning": rule.meaning} for rule in MACHINE_LABEL_RULES
            },
            "not_measured_sentinel": NOT_MEASURED,
            **counts,
        },
    )
    return SourceResult(Manifest(frame, info), rejected)


_POLICY_WORDS = {"nan": "NaN (U-Ignore)", "zeros": "0 (U-Zeros)", "ones": "1 (U-Ones)"}


def label_policy(uncertain: str) -> dict[str, str]:
    """The label policy written into MIMIC-IV-ECG (and paired) manifests."""
    return {
        "machine_statements": "machine-statement derived, noisy: keyword rules (info.extra.label_rules) on the cart's "
        "statements report_0..17; 1 if a statement asserts the finding, 0 if none mentions it, NaN without any "
        "statement; a statement saying the finding is no longer present does not count; in 'A has replaced B' "
        "only A counts",
        "uncertain": f"{uncertain}: a finding preceded in its clause by a hedge (possible, probable, consider, "
        f"cannot rule out, borderline, voltage criteria, ...) is {_POLICY_WORDS[uncertain]}",
    }


def _joined(records: pd.DataFrame, measures: pd.DataFrame) -> tuple[pd.DataFrame, set[str]]:
    """record_list left-joined with machine_measurements on study_id; and the study ids measured twice."""
    records = records.assign(subject_key=_whole(records["subject_id"]), study_key=_whole(records["study_id"]))
    measures = measures.assign(subject_key=_whole(measures["subject_id"]), study_key=_whole(measures["study_id"]))
    repeated = set(measures.loc[measures["study_key"].duplicated(keep=False), "study_key"].dropna())
    keep = [c for c in (*REPORT_COLUMNS, *TEXT_MEASUREMENTS, *NUMERIC_MEASUREMENTS) if c in measures.columns]
    measured = measures.dropna(subset=["study_key"]).drop_duplicates("study_key")
    measured = measured[["study_key", "subject_key", *keep]].rename(columns={"subject_key": "measured_subject"})
    measured["measured_subject_id"] = measures.loc[measured.index, "subject_id"]
    columns = ["subject_id", "study_id", "ecg_time", "path", "subject_key", "study_key"]
    return records[columns].merge(measured, on="study_key", how="left"), repeated


def _rows(
    records: pd.DataFrame, measures: pd.DataFrame, notes: pd.DataFrame | None, options: PrepareOptions
) -> tuple[list[dict[str, object]], list[Problem], dict[str, int]]:
    joined, repeated = _joined(records, measures)
    note_ids = _note_ids(notes)
    times = pd.to_datetime(joined["ecg_time"], errors="coerce", format="ISO8601")
    columns = list(joined.columns)
    rows: list[dict[str, object]] = []
    rejected: list[Problem] = []
    seen: set[str] = set()
    n_without_report = 0
    values = zip(*(joined[c].tolist() for c in columns), strict=True)
    for cells, when in tqdm(
        zip(values, times, strict=True),
        total=len(joined),
        desc="reading MIMIC-IV-ECG tables",
        unit="ecg",
        disable=not options.progress,
        leave=False,
    ):
        record = dict(zip(columns, cells, strict=True))
        problem = _record_problem(record, when, seen, repeated)
        if problem is not None:
            rejected.append(problem)
            continue
        seen.add(str(record["study_key"]))
        row = _row(record, when, options.uncertain)
        row["meta/note_id"] = note_ids.get(str(record["study_key"]))
        n_without_report += row["report"] is None
        rows.append(row)
    counts = {"n_records": len(joined), "n_rows": len(rows), "n_without_machine_report": n_without_report}
    return rows, rejected, counts


def _note_ids(notes: pd.DataFrame | None) -> dict[str, str]:
    if notes is None:
        return {}
    keys = _whole(notes["study_id"])
    return {
        str(k): str(n) for k, n in zip(keys, notes["note_id"], strict=True) if not _missing(k) and isinstance(n, str)
    }


def _record_problem(record: dict[str, object], when: object, seen: set[str], repeated: set[str]) -> Problem | None:
    """Why a joined record_list row cannot be used, or None."""
    study, subject, measured_subject = record["study_key"], record["subject_key"], record["measured_subject"]
    path = record["path"] if isinstance(record["path"], str) else ""
    study_id = str(study) if not _missing(study) else f"study_id={record['study_id']!r}"
    parts = PurePosixPath(path).parts
    reason = None
    if _missing(study) or _missing(subject):
        reason = (
            f"{RECORD_LIST}: subject_id {record['subject_id']!r} / study_id {record['study_id']!r} not whole numbers"
        )
    elif study in seen:
        reason = f"{RECORD_LIST}: study_id listed twice"
    elif not path or PurePosixPath(path).is_absolute() or ".." in parts or "\\" in path:
        reason = f"{RECORD_LIST}: path {path!r} is not a relative record path (files/pNNNN/pSUBJECT/sSTUDY/STUDY)"
    elif _missing(when):
        reason = f"{RECORD_LIST}: ecg_time {record['ecg_time']!r} is not a date-time"
    elif study in repeated:
        reason = f"{MEASUREMENTS}: study_id on more than one row (ambiguous machine report)"
    elif not _missing(measured_subject) and measured_subject != subject:
        reason = f"{MEASUREMENTS}: subject_id {record['measured_subject_id']!r} differs from {RECORD_LIST}'s {subject}"
    return None if reason is None else Problem(study_id, "row", path, reason)


def _row(record: dict[str, object], when: object, uncertain: str) -> dict[str, object]:
    study = str(record["study_key"])
    statements = [record.get(c) for c in REPORT_COLUMNS]
    try:
        report: str | None = machine_report_text(dict(zip(REPORT_COLUMNS, statements, strict=True)), source=study)
    except MedclrInputError:
        report = None
    row: dict[str, object] = {
        "study_id": study,
        "subject_id": str(record["subject_key"]),
        "ecg_path": str(record["path"]),
        "ecg_fs": ECG_FS,
        "report": report,
        "study_time": when,
    }
    row |= {f"{LABEL_PREFIX}{name}": value for name, value in machine_labels(statements, uncertain).items()}
    for column in TEXT_MEASUREMENTS:
        value = record.get(column)
        row[f"meta/{column}"] = str(value) if isinstance(value, str) else None
    for column in NUMERIC_MEASUREMENTS:
        row[f"meta/{column}"] = _measurement(record.get(column))
    return row


def _missing(value: object) -> bool:
    """None, NaN, NaT or pandas NA (cells of a joined table)."""
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _measurement(value: object) -> float:
    if not isinstance(value, str | int | float):
        return math.nan
    try:
        number = float(value)
    except ValueError:
        return math.nan
    return math.nan if not math.isfinite(number) or number == NOT_MEASURED else number
