"""Plain CSV ECGs (one column per lead, a header row of lead names) -> :class:`RawEcg`.

::

    time_s,I (uV),II (uV),III (uV),aVR (uV),aVL (uV),aVF (uV),V1 (uV),...
    0.000,-119,-55,64,86,-91,4,-69,...
    0.002,-116,-51,65,83,-89,6,-70,...

- Units come from a header suffix, ``I (uV)``, ``I [mV]`` or ``I_uV``; without one, millivolts.
- The sampling rate comes from ``fs=`` or from a time column named ``time``, ``t``, ``seconds``, ``time_s``
  or ``time_ms`` (also ``time (ms)``): ``fs = (n - 1) / (t[-1] - t[0])``, and every time stamp must lie
  within half a sample of that uniform grid. Neither: an error asking for ``fs=``.
- The delimiter is the most frequent of ``,``, ``;`` and tab in the header row; lines starting with ``#``
  are comments; empty cells and ``NaN`` are missing values. Decimal commas are not supported.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from medclr.errors import MedclrInputError
from medclr.io.ecg_raw import RawEcg, resolve_fs

_TIME_NAMES = frozenset({"time", "t", "seconds", "sec"})
_SECONDS_PER_TIME_UNIT = {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3}
_BRACKET_UNIT_RX = re.compile(r"^(?P<base>.*?)\s*\[(?P<unit>[^\]]*)\]$")
_PAREN_UNIT_RX = re.compile(r"^(?P<base>.*?)\s*\((?P<unit>[^)]*)\)$")
_SUFFIX_UNIT_RX = re.compile(r"^(?P<base>.+?)_(?P<unit>[mnuµμ]?v|ms|s)$", re.IGNORECASE)
_LEAD_DESCRIPTORS = frozenset({"einthoven", "goldberger", "wilson"})
_FIX_LAYOUT = "write one column per lead with a header row of lead names, e.g. 'time_s,I,II,III,aVR,...,V6'"


def split_unit(column: str) -> tuple[str, str | None]:
    """``"I (uV)" -> ("I", "uV")``, ``"I_mV" -> ("I", "mV")``, ``"Lead I (Einthoven)" -> (same, None)``."""
    name = column.strip()
    for rx in (_BRACKET_UNIT_RX, _PAREN_UNIT_RX, _SUFFIX_UNIT_RX):
        match = rx.match(name)
        if match is not None and match.group("unit").strip().lower() not in _LEAD_DESCRIPTORS:
            return match.group("base").strip(), match.group("unit").strip()
    return name, None


def read_csv_ecg(path: Path, fs: float | None) -> RawEcg:
    """Read a CSV ECG: channels ``[C, T]`` in the units of their headers (mV when none)."""
    text = _read_text(path)
    header_index, header_line = _header_line(path, text)
    delimiter = max((",", ";", "\t"), key=header_line.count)
    names = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter))]
    if all(_is_number(name) for name in names):
        raise MedclrInputError(path, "the first row holds numbers, not lead names", _FIX_LAYOUT)
    table = _read_table(path, text, header_index, delimiter, len(names))  # [T, C]
    if table.shape[0] == 0:
        raise MedclrInputError(path, "CSV has a header row but no samples", "check that the file is complete")
    time_column, seconds_per_unit = _find_time_column(names)
    if time_column is not None:
        file_fs = _fs_from_time(path, table[:, time_column] * seconds_per_unit, names[time_column])
        rate = resolve_fs(path, file_fs, fs, f"the time column {names[time_column]!r}")
    elif fs is not None:
        rate = float(fs)
    else:
        raise MedclrInputError(
            path,
            "CSV has no time column (time, t, seconds, time_s, time_ms) and no sampling rate was given",
            "pass the sampling rate, read_ecg(path, fs=500), or add a time column",
        )
    keep = [i for i in range(len(names)) if i != time_column]
    split = [split_unit(names[i]) for i in keep]
    return RawEcg(
        names=tuple(names[i] for i in keep),
        lead_names=tuple(base for base, _unit in split),
        units=tuple("mV" if unit is None else unit for _base, unit in split),
        signal=np.ascontiguousarray(table[:, keep].T),  # [C, T]
        fs=rate,
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MedclrInputError(path, f"CSV is not UTF-8 text ({exc.reason})", "save the CSV as UTF-8") from exc


def _header_line(path: Path, text: str) -> tuple[int, str]:
    """Index and text of the first line that is neither blank nor a ``#`` comment."""
    for index, line in enumerate(text.splitlines()):
        if line.strip() and not line.lstrip().startswith("#"):
            return index, line
    raise MedclrInputError(path, "CSV file is empty", _FIX_LAYOUT)


def _read_table(path: Path, text: str, header_index: int, delimiter: str, n_columns: int) -> np.ndarray:
    """The numeric body as float64 ``[T, C]``; a clear error naming the first cell that is not a number."""
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            header=None,
            skiprows=header_index + 1,
            comment="#",
            skipinitialspace=True,
            dtype=str,
            keep_default_na=False,
            index_col=False,
        )
    except pd.errors.EmptyDataError:
        return np.zeros((0, n_columns))
    except (pd.errors.ParserError, ValueError) as exc:
        raise MedclrInputError(path, f"CSV rows do not match the header ({exc})", _FIX_LAYOUT) from exc
    if frame.shape[1] != n_columns:
        raise MedclrInputError(
            path, f"CSV data rows have {frame.shape[1]} fields but the header names {n_columns}", _FIX_LAYOUT
        )
    cells = np.char.strip(frame.to_numpy(dtype=object).astype(str))  # [T, C]; short rows give "nan"
    cells[np.isin(np.char.lower(cells), _MISSING)] = "nan"
    try:
        return cells.astype(np.float64)
    except ValueError:
        row, column = next((r, c) for (r, c), cell in np.ndenumerate(cells) if not _is_number(str(cell)))
        raise MedclrInputError(
            path,
            f"value {str(cells[row, column])!r} in column {column + 1}, data row {row + 1} is not a number",
            "write plain numbers with '.' as the decimal separator (empty cells or NaN for missing values)",
        ) from None


_MISSING = ["", "nan", "na", "n/a", "null", "none"]


def _find_time_column(names: list[str]) -> tuple[int | None, float]:
    """Index of the time column (if any) and seconds per its unit."""
    for index, name in enumerate(names):
        base, unit = split_unit(name)
        if base.lower() in _TIME_NAMES and (unit is None or unit.lower() in _SECONDS_PER_TIME_UNIT):
            return index, _SECONDS_PER_TIME_UNIT[unit.lower()] if unit else 1.0
    return None, 1.0


def _fs_from_time(path: Path, seconds: np.ndarray, column: str) -> float:
    """Sampling rate of a uniformly sampled time column: ``(n - 1) / (t[-1] - t[0])``."""
    n = seconds.shape[0]
    span = float(seconds[-1] - seconds[0]) if n >= 2 else math.nan
    if n < 2 or not np.all(np.isfinite(seconds)) or not span > 0:
        raise MedclrInputError(
            path, f"time column {column!r} needs at least 2 finite, increasing values", "or pass fs= instead"
        )
    fs = (n - 1) / span
    grid = seconds[0] + np.arange(n) / fs  # [T]
    if float(np.max(np.abs(seconds - grid))) > 0.5 / fs:
        raise MedclrInputError(
            path,
            f"time column {column!r} is not uniformly sampled (gaps or jitter beyond half a sample at {fs:g} Hz)",
            "resample to a uniform grid before saving, or drop the time column and pass fs=",
        )
    return round(fs, 6)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
