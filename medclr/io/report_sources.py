"""Report text from dataset tables: Indiana/Open-i CSV, PTB-XL statements and reports, MIMIC-IV-ECG.

Built on :mod:`medclr.io.reports`. Tables keep every row: a row whose text is empty gets ``text == ""``
and ``empty == True`` instead of being dropped, so counts stay auditable. Read that flag as
``frame["empty"]``: ``frame.empty`` is pandas' own "has no rows" property.

Decisions:

- Indiana ``text`` = findings then impression, each cleaned (``XXXX`` removed, see
  :func:`~medclr.io.reports.clean_report_text`), joined with one space. Empty fields are missing; the
  literal ``"None"`` (``comparison`` of 567 real rows) is kept as text, not read as NaN. ``x-XXXX`` is the
  Open-i de-identifier eating the "ray" of "x-ray" (66 real rows) and is restored as ``x-ray``.
- ECG statements (PTB-XL descriptions, MIMIC-IV-ECG ``report_*``) are sentences: each is stripped of
  trailing ``.``/``;``, they are joined with ``". "`` and the text ends with ``"."``
  (``"Sinus rhythm. Borderline ECG."``). A machine statement that starts in lower case
  (``"with rapid ventricular response"``) continues the previous one and is joined with a space.
- PTB-XL ``report`` (German, some English and Swedish) keeps its language and words; only the export's
  encoding damage is repaired: upper-case umlauts inside lower-case words (``vorhofflimmern
  supraventrikulÄre`` -> ``supraventrikuläre``), ``#`` for ``ü`` (``f#r`` -> ``für``), the code-page 437
  ``á`` for ``ß`` between letters, box-drawing debris ``ó¿ ó¬ ó½ ó©``; whitespace collapses.
"""

from __future__ import annotations

import ast
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

import pandas as pd

from medclr.errors import MedclrInputError
from medclr.io.reports import report_text
from medclr.io.tables import read_table

__all__ = [
    "INDIANA_COLUMNS",
    "MACHINE_REPORT_COLUMNS",
    "SCP_STATEMENT_COLUMNS",
    "load_scp_statements",
    "machine_report_text",
    "parse_scp_codes",
    "ptbxl_report_text",
    "ptbxl_statement_text",
    "read_indiana_reports",
    "read_machine_reports",
]

INDIANA_COLUMNS = ("uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression")
"""Header of the Open-i ``indiana_reports.csv``; ``uid``, ``findings`` and ``impression`` are required."""
SCP_STATEMENT_COLUMNS = ("description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")
"""Required columns of PTB-XL ``scp_statements.csv`` (its first, unnamed column holds the SCP codes)."""
MACHINE_REPORT_COLUMNS = ("subject_id", "study_id", "ecg_time", *(f"report_{i}" for i in range(18)))
"""Report columns of MIMIC-IV-ECG ``machine_measurements.csv`` (``report_1`` .. ``report_17`` optional)."""

_CATEGORIES = ("diagnostic", "form", "rhythm")
_CODES_FIX = "scp_codes must look like \"{'NORM': 100.0, 'SR': 0.0}\" (SCP code -> likelihood 0-100)"
_X_RAY = re.compile(r"\b([xX])-XXXX\b")
_STATEMENT_END = re.compile(r"[\s.;]+$")
_PTBXL_DEBRIS = re.compile(r"ó[¿¬½©]")
_PTBXL_HASH_UE = re.compile(r"(?<![^\sa-z])#(?=[a-z])")
_PTBXL_SZ = re.compile(r"(?<=[a-zäöü])á(?=[a-zäöü])")
_PTBXL_UMLAUT = re.compile(r"(?<=[a-zäöüåß])[ÄÖÜÅ]|[ÄÖÜÅ](?=[a-zäöüåß])")
_SPACES = re.compile(r"\s+")


def _text_or_empty(value: object) -> str:
    """A table cell as text: missing (None, NaN, pandas NA) -> ``""``."""
    return value if isinstance(value, str) else ""


def read_indiana_reports(csv_path: str | PathLike[str], *, placeholder: str = "") -> pd.DataFrame:
    """Read Open-i ``indiana_reports.csv``: its columns plus ``text`` (findings + impression) and ``empty``.

    ``placeholder`` replaces ``XXXX`` (default: removed). Rows are kept in file order, empty ones flagged.
    """
    required = ("uid", "findings", "impression")
    frame = read_table(csv_path, "Indiana reports CSV", required, keep_default_na=False, na_values=[""])
    texts: list[str] = []
    for uid, findings, impression in zip(frame["uid"], frame["findings"], frame["impression"], strict=True):
        sections = {
            k: _X_RAY.sub(r"\1-ray", _text_or_empty(v)) for k, v in (("findings", findings), ("impression", impression))
        }
        try:
            texts.append(report_text(sections, placeholder=placeholder, source=f"{csv_path} uid {uid}"))
        except MedclrInputError:
            texts.append("")
    frame["text"] = pd.Series(texts, index=frame.index, dtype="str")
    frame["empty"] = frame["text"].eq("")
    return frame


def load_scp_statements(csv_path: str | PathLike[str]) -> pd.DataFrame:
    """Read PTB-XL ``scp_statements.csv``, indexed by SCP code (index name ``scp_code``), columns as in the file.

    ``diagnostic``/``form``/``rhythm`` stay as in the file (1.0 or NaN).
    """
    frame = read_table(csv_path, "PTB-XL scp_statements.csv", SCP_STATEMENT_COLUMNS, index_col=0)
    codes = frame.index
    if codes.hasnans or not all(isinstance(c, str) and c.strip() for c in codes):
        raise MedclrInputError(
            csv_path,
            "SCP statements with a missing code in the first column",
            "use the scp_statements.csv of the PTB-XL release",
        )
    duplicated = sorted(set(codes[codes.duplicated()]))
    if duplicated:
        raise MedclrInputError(
            csv_path,
            f"SCP codes listed twice: {', '.join(duplicated)}",
            "use the scp_statements.csv of the PTB-XL release",
        )
    frame.index.name = "scp_code"
    return frame


def parse_scp_codes(s: str, *, source: str | None = None) -> dict[str, float]:
    """Parse a PTB-XL ``scp_codes`` cell, a Python dict literal of SCP code -> likelihood (0-100).

    >>> parse_scp_codes("{'NORM': 100.0, 'SR': 0.0}")
    {'NORM': 100.0, 'SR': 0.0}
    """
    if not isinstance(s, str):
        raise MedclrInputError(source, f"scp_codes is {type(s).__name__}, expected text", _CODES_FIX)
    try:
        value = ast.literal_eval(s.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as err:
        raise MedclrInputError(
            source, f"scp_codes {s[:80]!r} is not a Python literal ({type(err).__name__})", _CODES_FIX
        ) from err
    if not isinstance(value, dict):
        raise MedclrInputError(source, f"scp_codes {s[:80]!r} is a {type(value).__name__}, not a dict", _CODES_FIX)
    return _checked_codes(value, source)


def _checked_codes(value: Mapping[Any, Any], source: str | None) -> dict[str, float]:
    """``{SCP code: likelihood}`` with non-empty string codes and finite likelihoods in [0, 100]."""
    codes: dict[str, float] = {}
    for code, likelihood in value.items():
        if not isinstance(code, str) or not code.strip():
            raise MedclrInputError(source, f"scp_codes key {code!r} is not an SCP code", _CODES_FIX)
        is_number = isinstance(likelihood, int | float) and not isinstance(likelihood, bool)
        if not is_number or not math.isfinite(likelihood) or not 0 <= likelihood <= 100:
            raise MedclrInputError(source, f"scp_codes likelihood of {code!r} is {likelihood!r}", _CODES_FIX)
        codes[code] = float(likelihood)
    return codes


def _category_rank(statements: pd.DataFrame, code: str) -> int:
    """0 diagnostic, 1 form, 2 rhythm (first that applies), 3 none."""
    flags = [statements.at[code, c] if c in statements.columns else None for c in _CATEGORIES]
    return next((i for i, flag in enumerate(flags) if isinstance(flag, int | float) and flag == 1), len(flags))


def _sentences(statements: Sequence[str]) -> str:
    """Join statements as sentences: ``["Sinus rhythm.", "Borderline ECG"]`` -> ``"Sinus rhythm. Borderline ECG."``."""
    stripped = (_STATEMENT_END.sub("", s) for s in statements)
    return " ".join(f"{s}." for s in stripped if s)


def ptbxl_statement_text(
    scp_codes: Mapping[str, float] | str, statements: pd.DataFrame, *, source: str | None = None
) -> str:
    """English text from SCP statement descriptions, most likely first, then diagnostic, form, rhythm.

    ``scp_codes`` is a dict or the raw ``scp_codes`` cell; ``statements`` comes from
    :func:`load_scp_statements`. Unknown codes and an empty dict raise :class:`MedclrInputError`.
    Ties keep the order of ``scp_codes``. For ecg_id 1 (``{'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}``):
    ``"normal ECG. low QRS voltages in the frontal and horizontal leads. sinus rhythm."``
    """
    if isinstance(scp_codes, str):
        codes = parse_scp_codes(scp_codes, source=source)
    else:
        codes = _checked_codes(scp_codes, source)
    if "description" not in statements.columns:
        raise MedclrInputError(
            source,
            "statements table has no 'description' column",
            "load it with medclr.io.report_sources.load_scp_statements",
        )
    unknown = [c for c in codes if c not in statements.index]
    if unknown:
        raise MedclrInputError(
            source,
            f"unknown SCP code(s) {', '.join(map(repr, unknown))} (the statements table has {len(statements)} codes)",
            "use the scp_statements.csv of the same PTB-XL release",
        )
    if not codes:
        raise MedclrInputError(source, "empty scp_codes: no statement to describe", "drop this record")
    ranked = sorted(codes, key=lambda c: (-codes[c], _category_rank(statements, c)))
    cells = [statements.at[c, "description"] for c in ranked]
    bad = [c for c, d in zip(ranked, cells, strict=True) if not isinstance(d, str) or not d.strip()]
    if bad:
        raise MedclrInputError(
            source,
            f"SCP code(s) {', '.join(bad)} have no description",
            "use the scp_statements.csv of the PTB-XL release",
        )
    return _sentences([str(d) for d in cells])


def ptbxl_report_text(report: str, *, source: str | None = None) -> str:
    """Clean a PTB-XL ``report`` cell: repair the export's encoding damage, collapse whitespace.

    >>> ptbxl_report_text("sinusrhythmus  mÄssige amplitudenkriterien f#r linkshypertrophie ")
    'sinusrhythmus mässige amplitudenkriterien für linkshypertrophie'
    """
    if not isinstance(report, str):
        raise MedclrInputError(
            source, f"PTB-XL report is {type(report).__name__}, expected text", "skip records without a report"
        )
    text = _PTBXL_DEBRIS.sub(" ", unicodedata.normalize("NFC", report))
    text = _PTBXL_HASH_UE.sub("ü", text)
    text = _PTBXL_SZ.sub("ß", text)
    text = _PTBXL_UMLAUT.sub(lambda m: m.group(0).lower(), text)
    text = _SPACES.sub(" ", text).strip()
    if not any(c.isalpha() for c in text):
        raise MedclrInputError(source, "empty PTB-XL report", "drop this report or use the SCP statement text")
    return text


def _statements(values: Sequence[object]) -> list[str]:
    """Non-empty statements in order, a lower-case one appended to the one before."""
    merged: list[str] = []
    for value in values:
        text = _STATEMENT_END.sub("", _SPACES.sub(" ", value).strip()) if isinstance(value, str) else ""
        if not text:
            continue
        if merged and text[0].islower():
            merged[-1] = f"{merged[-1]} {text}"
        else:
            merged.append(text)
    return merged


def machine_report_text(row: Mapping[str, object], *, source: str | None = None) -> str:
    """Join a MIMIC-IV-ECG row's ``report_0`` .. ``report_17`` statements as sentences.

    Missing columns, None, NaN and blank cells are skipped; no statement left raises MedclrInputError.

    >>> machine_report_text({"report_0": "Sinus rhythm", "report_1": None, "report_2": "Borderline ECG"})
    'Sinus rhythm. Borderline ECG.'
    """
    values = [row.get(f"report_{i}") for i in range(18)]
    text = _sentences(_statements(values))
    if not any(c.isalpha() for c in text):
        raise MedclrInputError(
            source,
            "machine report has no statement (report_0 .. report_17 empty)",
            "drop this ECG or mark its text missing",
        )
    return text


def read_machine_reports(csv_path: str | PathLike[str]) -> pd.DataFrame:
    """Read MIMIC-IV-ECG ``machine_measurements.csv`` into ``subject_id, study_id, ecg_time, text, empty``.

    One row per ECG in file order; ``(subject_id, study_id)`` must be unique; empty texts are flagged.
    """
    required = MACHINE_REPORT_COLUMNS[:4]
    header = read_table(csv_path, "MIMIC-IV-ECG machine_measurements.csv", required, nrows=0)
    report_cols = [c for c in MACHINE_REPORT_COLUMNS[3:] if c in header.columns]
    frame = read_table(
        csv_path,
        "MIMIC-IV-ECG machine_measurements.csv",
        required,
        usecols=[*required[:3], *report_cols],
        dtype={c: "str" for c in ["ecg_time", *report_cols]},
        keep_default_na=False,
        na_values=[""],
    )
    for key in ("subject_id", "study_id"):
        if not pd.api.types.is_integer_dtype(frame[key]):
            raise MedclrInputError(
                csv_path,
                f"column {key} holds non-integer or missing values",
                "subject_id and study_id must be whole numbers on every row",
            )
    if frame.duplicated(["subject_id", "study_id"]).any():
        raise MedclrInputError(csv_path, "repeated (subject_id, study_id) rows", "keep one row per ECG study")
    texts = []
    for values in zip(*(frame[c] for c in report_cols), strict=True):
        text = _sentences(_statements(values))
        texts.append(text if any(c.isalpha() for c in text) else "")
    out = frame[["subject_id", "study_id", "ecg_time"]].copy()
    out["text"] = pd.Series(texts, index=frame.index, dtype="str")
    out["empty"] = out["text"].eq("")
    return out
