"""What each ECG format reader hands to :func:`medclr.io.read_ecg`: channels as the file names them, in its units.

The format readers (:mod:`~medclr.io.ecg_wfdb`, :mod:`~medclr.io.ecg_dicom`, :mod:`~medclr.io.ecg_csv`) only
decode; matching leads by name, converting to millivolts, deriving limb leads and the checks shared by all
formats happen once, in :mod:`medclr.io.ecg`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike

import numpy as np

from medclr.errors import MedclrInputError

# Millivolts per unit. Keys are case-folded, so "mv"/"MV" match and the micro sign "µ" (U+00B5) folds to the
# Greek mu "μ" (U+03BC). DICOM writes UCUM codes ("uV") with meanings ("microvolt").
_MILLIVOLTS_PER_UNIT: dict[str, float] = {
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "nv": 1e-6,
    "nanovolt": 1e-6,
    "nanovolts": 1e-6,
}


def millivolts_per_unit(unit: str) -> float | None:
    """Factor from ``unit`` to millivolts (``"uV" -> 0.001``), or ``None`` for a unit that is not a voltage."""
    return _MILLIVOLTS_PER_UNIT.get(unit.strip().casefold())


@dataclass(frozen=True)
class RawEcg:
    """Channels as decoded from one file, before lead matching and unit conversion.

    ``signal`` is ``[C, T]`` float64 in each channel's own unit (``units[c]``, ``""`` when the file gives
    none); ``names`` are the channel names exactly as in the file (reported in the metadata) and
    ``lead_names`` what is matched against the standard leads: the same, less a CSV unit suffix
    (``I (uV)`` -> ``I``), or a DICOM lead code when the code meaning is unusable. ``fs`` is in Hz.
    """

    names: tuple[str, ...]
    lead_names: tuple[str, ...]
    units: tuple[str, ...]
    signal: np.ndarray  # [C, T]
    fs: float


def resolve_fs(path: str | PathLike[str], file_fs: float | None, given_fs: float | None, source: str) -> float:
    """The sampling rate: the file's own, else the caller's ``fs=``; both given must agree (to 0.1 %)."""
    if file_fs is None:
        if given_fs is None:
            raise MedclrInputError(path, f"{source} gives no sampling rate", "pass the rate: read_ecg(path, fs=500)")
        return float(given_fs)
    if given_fs is not None and not math.isclose(file_fs, given_fs, rel_tol=1e-3):
        raise MedclrInputError(
            path,
            f"{source} says {file_fs:g} Hz but fs={given_fs:g} was passed",
            "drop fs= (this file records its own rate) or check that it is the file you meant",
        )
    return float(file_fs)
