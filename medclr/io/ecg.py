"""Read a 12-lead ECG from WFDB, DICOM waveform or CSV into float32 ``[12, T]`` millivolts.

>>> signal, meta = read_ecg("records500/00000/00001_hr")          # doctest: +SKIP
>>> signal.shape, signal.dtype, meta.fs, meta.duration_s         # doctest: +SKIP
((12, 5000), dtype('float32'), 500.0, 10.0)

The contract every format follows:

- **Leads by name, never by position**: channels are matched to :data:`~medclr.io.leads.STANDARD_LEADS`
  with :func:`~medclr.io.leads.parse_lead` (``AVR``, ``Lead I (Einthoven)``, ``DII``, ``-aVR``...) and
  returned in the standard order. Other channels (Frank ``vx``, ``MLII``, ``PLETH``) are dropped and listed
  in ``meta.dropped_leads``.
- **Missing limb leads are derived** (Einthoven's law and Goldberger's equations, see
  :mod:`medclr.io.leads`) from any two recorded limb leads and listed in ``meta.derived_leads``; a missing
  chest lead V1-V6 cannot be derived and is an error. A lead that is entirely NaN counts as missing.
- **Millivolts**: units from the file (WFDB unit field, DICOM Channel Sensitivity Units, a CSV header
  suffix such as ``I (uV)``) are converted; V, mV, uV/µV/μV are understood, anything else on a standard
  lead is an error. WFDB without units means mV (the WFDB default), as does a CSV header without a suffix.
- **Nothing is resampled or cropped here**: ``expected_fs`` only checks. Resampling and crop/pad live in
  medclr's transforms, so that the geometry applied is recorded with the sample.
- Every problem with the input raises :class:`~medclr.errors.MedclrInputError` naming the file and the fix.
  ``meta`` never carries header comments or other free text (they may hold PHI).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np

from medclr.errors import MedclrInputError
from medclr.io.ecg_csv import read_csv_ecg
from medclr.io.ecg_dicom import read_dicom_ecg
from medclr.io.ecg_raw import RawEcg, millivolts_per_unit
from medclr.io.ecg_wfdb import check_signal_files, parse_wfdb_header, read_wfdb
from medclr.io.leads import complete_leads, select_leads
from medclr.io.sniff import sniff_format, wfdb_header_path

EcgFormat = Literal["wfdb", "dicom", "csv"]
FS_MIN_HZ = 50.0  # below this the QRS complex (10-40 Hz content) is not resolved: not a diagnostic ECG
FS_MAX_HZ = 20_000.0  # above this it is not an ECG recording (or the header is corrupt)
_FS_REL_TOL = 1e-3


@dataclass(frozen=True)
class EcgMeta:
    """What :func:`read_ecg` found and did. No header comments or free text: those may carry PHI.

    ``source_leads`` and ``source_units`` are the file's channels as it names them, in file order;
    ``derived_leads`` are standard limb leads computed from the recorded ones; ``dropped_leads`` are source
    channels that are not standard leads (or an inverted duplicate); ``nan_fraction`` is the fraction of NaN
    values in the returned ``[12, T]`` signal.
    """

    path: str
    format: EcgFormat
    fs: float
    n_samples: int
    source_leads: tuple[str, ...]
    derived_leads: tuple[str, ...]
    dropped_leads: tuple[str, ...]
    source_units: tuple[str, ...]
    nan_fraction: float

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds (``n_samples / fs``)."""
        return self.n_samples / self.fs


def read_ecg(
    path: str | PathLike[str],
    *,
    fs: float | None = None,
    expected_fs: float | None = None,
    max_nan_fraction: float = 0.5,
) -> tuple[np.ndarray, EcgMeta]:
    """Read a 12-lead ECG as float32 ``[12, T]`` millivolts in :data:`STANDARD_LEADS` order, and its metadata.

    ``path`` is a WFDB record (``rec``, ``rec.hea``, ``rec.dat`` or ``rec.mat``), a DICOM ECG waveform or a
    CSV with one column per lead; the format is judged by content. ``fs`` is the sampling rate in Hz for a
    CSV without a time column (for other files it may be given but must agree with the file).
    ``expected_fs`` rejects a record at another rate (resample with medclr's transforms instead);
    ``max_nan_fraction`` rejects a record with more NaN values than that (gaps, disconnected leads).
    """
    p = Path(path)
    fmt = _ecg_format(p)
    raw = _READERS[fmt](p, fs)
    _check_fs(p, raw.fs, expected_fs)
    signal, derived, dropped = _standard_leads(p, raw)  # [12, T]
    nan_fraction = float(np.isnan(signal).mean())
    if nan_fraction > max_nan_fraction:
        raise MedclrInputError(
            p,
            f"{nan_fraction:.1%} of the ECG samples are NaN (max_nan_fraction={max_nan_fraction:g})",
            "check the record for gaps or disconnected leads, or raise max_nan_fraction",
        )
    meta = EcgMeta(
        path=str(p),
        format=fmt,
        fs=raw.fs,
        n_samples=signal.shape[1],
        source_leads=raw.names,
        derived_leads=derived,
        dropped_leads=dropped,
        source_units=raw.units,
        nan_fraction=nan_fraction,
    )
    return signal.astype(np.float32), meta


def probe_ecg(path: str | PathLike[str], *, expected_fs: float | None = None) -> tuple[float, int]:
    """Check an ECG cheaply without decoding its samples where the format allows; return ``(fs, n_samples)``.

    For WFDB: the header parses, every signal file is present and as long as the header implies, the rate is
    plausible and the channel names give the 12 standard leads (limb leads derivable). Other formats are small
    and are read in full with :func:`read_ecg`. Raises :class:`MedclrInputError` like :func:`read_ecg`.
    """
    p = Path(path)
    fmt = _ecg_format(p)
    if fmt != "wfdb":
        _, meta = read_ecg(p, expected_fs=expected_fs)
        return meta.fs, meta.n_samples
    header_path = wfdb_header_path(p)
    if header_path is None:
        raise MedclrInputError(p, "WFDB header disappeared while reading", "check the path")
    header = parse_wfdb_header(header_path)
    n_samples = check_signal_files(header_path, header)
    fs = header.fs if header.fs is not None else 250.0  # the WFDB default, as wfdb applies it
    _check_fs(p, fs, expected_fs)
    selection = select_leads(header.sig_names, p)
    one_sample = {lead: np.zeros(1) for lead in selection.channel}
    complete_leads(one_sample, 1, p, ignored=selection.dropped)  # raises when leads cannot be completed
    return fs, n_samples


def _read_wfdb_record(path: Path, fs: float | None) -> RawEcg:
    header = wfdb_header_path(path)
    if header is None:  # sniff_format said "wfdb", so the header existed a moment ago
        raise MedclrInputError(path, "WFDB header disappeared while reading", "check the path")
    return read_wfdb(header, fs)


_READERS: dict[EcgFormat, Callable[[Path, float | None], RawEcg]] = {
    "wfdb": _read_wfdb_record,
    "dicom": read_dicom_ecg,
    "csv": read_csv_ecg,
}


def _ecg_format(path: Path) -> EcgFormat:
    """The ECG format of ``path`` by content; a clear error for anything else."""
    fmt = sniff_format(path)
    if fmt == "wfdb" or fmt == "dicom" or fmt == "csv":
        return fmt
    if path.suffix.lower() in (".dat", ".mat"):
        raise MedclrInputError(
            path,
            f"WFDB header {path.with_suffix('.hea').name!r} not found beside this signal file",
            "copy the .hea header next to the .dat/.mat file (the header says how to read the samples)",
        )
    hint = "; for an image use medclr.io.read_cxr" if fmt in ("png", "jpeg") else ""
    raise MedclrInputError(
        path,
        f"not an ECG file read_ecg understands (looks like: {fmt})",
        f"pass a WFDB record (.hea + .dat/.mat), a DICOM ECG waveform or a CSV with one column per lead{hint}",
    )


def _check_fs(path: Path, fs: float, expected_fs: float | None) -> None:
    """Reject implausible sampling rates and, if asked, any rate other than ``expected_fs``."""
    if not (math.isfinite(fs) and FS_MIN_HZ <= fs <= FS_MAX_HZ):
        raise MedclrInputError(
            path,
            f"sampling rate {fs:g} Hz is outside the plausible ECG range {FS_MIN_HZ:g}-{FS_MAX_HZ:g} Hz",
            "check the header (or the CSV time column / fs= argument; a time column in ms must be named time_ms)",
        )
    if expected_fs is not None and not math.isclose(fs, expected_fs, rel_tol=_FS_REL_TOL):
        raise MedclrInputError(
            path,
            f"ECG sampled at {fs:g} Hz, expected {expected_fs:g} Hz",
            "read it without expected_fs and resample with medclr's transforms (read_ecg never resamples)",
        )


def _standard_leads(path: Path, raw: RawEcg) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Match, convert to mV and complete the leads: ``([12, T] float64, derived, dropped)``."""
    n_samples = raw.signal.shape[1]
    if n_samples < 1:
        raise MedclrInputError(path, "ECG has no samples", "check that the file is complete")
    selection = select_leads(raw.lead_names, path)
    leads: dict[str, np.ndarray] = {}
    for lead, channel in selection.channel.items():
        scale = millivolts_per_unit(raw.units[channel])
        if scale is None:
            raise MedclrInputError(
                path,
                f"lead {raw.names[channel]!r} is in unit {raw.units[channel]!r}, not a voltage",
                "store the leads in V, mV or uV (WFDB unit field, DICOM Channel Sensitivity Units, CSV 'I (uV)')",
            )
        values = raw.signal[channel] * (scale * selection.sign[lead])  # [T] mV
        leads[lead] = np.where(np.isfinite(values), values, np.nan)
    signal, derived = complete_leads(leads, n_samples, path, ignored=selection.dropped)  # [12, T]
    return signal, derived, selection.dropped
