"""Raw files -> numpy arrays + PHI-free metadata. No torch here.

- :func:`read_cxr`: DICOM / PNG / JPEG chest X-ray -> float32 ``[H, W]`` in [0, 1] and :class:`CxrMeta`.
- :func:`read_ecg`: WFDB / DICOM waveform / CSV -> float32 ``[12, T]`` in mV, leads in :data:`STANDARD_LEADS`
  order, and :class:`EcgMeta` (``meta.fs`` is the sampling rate).
- :mod:`medclr.io.reports`: report sections, de-identification placeholders, dataset report columns.
"""

from __future__ import annotations

from os import PathLike
from typing import Literal

import numpy as np

from medclr.io import reports
from medclr.io.cxr import CxrMeta, read_cxr
from medclr.io.ecg import EcgMeta, read_ecg
from medclr.io.leads import STANDARD_LEADS
from medclr.io.sniff import sniff_format

__all__ = [
    "STANDARD_LEADS",
    "CxrMeta",
    "EcgMeta",
    "read_any",
    "read_cxr",
    "read_ecg",
    "reports",
    "sniff_format",
]


def _is_dicom_waveform(path: str | PathLike[str]) -> bool:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["WaveformSequence"], force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, KeyError, IndexError, AttributeError):
        return False  # let read_cxr give the precise error for an unreadable DICOM
    return "WaveformSequence" in ds


def read_any(path: str | PathLike[str]) -> tuple[Literal["cxr", "ecg"], np.ndarray, CxrMeta | EcgMeta]:
    """Read an X-ray or an ECG, whichever ``path`` holds (judged by content, not extension)."""
    fmt = sniff_format(path)
    if fmt in ("wfdb", "csv") or (fmt == "dicom" and _is_dicom_waveform(path)):
        signal, ecg_meta = read_ecg(path)
        return "ecg", signal, ecg_meta
    image, cxr_meta = read_cxr(path)
    return "cxr", image, cxr_meta
