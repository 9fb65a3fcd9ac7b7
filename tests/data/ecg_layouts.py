"""Write exact MIMIC-IV-ECG v1.0 and PhysioNet/CinC-2021 trees at test time, from plain lists of records.

MIMIC-IV-ECG v1.0 as distributed on PhysioNet (Gow et al., 2023)::

    ROOT/record_list.csv              subject_id, study_id, file_name, ecg_time, path
    ROOT/machine_measurements.csv     subject_id, study_id, cart_id, ecg_time, report_0 .. report_17, bandwidth,
                                      filtering, rr_interval, p_onset, p_end, qrs_onset, qrs_end, t_end,
                                      p_axis, qrs_axis, t_axis
    ROOT/waveform_note_links.csv      subject_id, study_id, waveform_path, note_id, note_seq, charttime
    ROOT/files/p1000/p10000032/s40689238/40689238.{hea,dat}     500 Hz, 10 s, 12 leads, WFDB format 16

``path`` is the record without extension; the group folder is ``p`` + the first four digits of the subject id.
The header names the leads in the order I, II, III, aVR, aVF, aVL, V1-V6 (aVF before aVL, unlike the
standard display order), so readers must match leads by name.

CinC 2021: ``NAME.hea`` + ``NAME.mat`` anywhere under ROOT, header comments ``# Age``, ``# Sex``, ``# Dx``
(SNOMED-CT codes). :func:`write_cinc_record` copies a real ``.mat`` signal file from the public sample data and
writes its header, so the signal is real and only the comments vary.

Writing is fast: one WFDB record is made with ``wfdb.wrsamp`` per (length, seed) and every study gets a copy
of its ``.dat`` and a header with its own record name, so a 1,000-study tree takes about a second.
"""

from __future__ import annotations

import csv
import functools
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import wfdb

MIMIC_ECG_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
RECORD_LIST_COLUMNS = ("subject_id", "study_id", "file_name", "ecg_time", "path")
REPORT_COLUMNS = tuple(f"report_{i}" for i in range(18))
MEASUREMENT_COLUMNS = (
    "bandwidth",
    "filtering",
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
MACHINE_COLUMNS = ("subject_id", "study_id", "cart_id", "ecg_time", *REPORT_COLUMNS, *MEASUREMENT_COLUMNS)
NOTE_LINK_COLUMNS = ("subject_id", "study_id", "waveform_path", "note_id", "note_seq", "charttime")
FS = 500.0
N_SAMPLES = 5000  # 10 s at 500 Hz
_TEMPLATE = "TEMPLATE"


def default_measurements() -> dict[str, object]:
    """Machine measurements of a normal sinus-rhythm ECG as MIMIC-IV-ECG writes them (ms and degrees)."""
    return {
        "bandwidth": "0.005-150 Hz",
        "filtering": "60 Hz notch Baseline filter",
        "rr_interval": 659,
        "p_onset": 40,
        "p_end": 128,
        "qrs_onset": 170,
        "qrs_end": 258,
        "t_end": 518,
        "p_axis": 81,
        "qrs_axis": 77,
        "t_axis": 79,
    }


@dataclass
class EcgStudy:
    """One MIMIC-IV-ECG study: the row of each table and (unless ``write_files`` is False) its WFDB record."""

    subject_id: int
    study_id: int
    ecg_time: str = "2180-07-23 08:44:00"
    statements: Sequence[str | None] = ("Sinus rhythm", "Normal ECG")
    cart_id: int = 6848296
    measurements: Mapping[str, object] = field(default_factory=default_measurements)
    note_id: str | None = None
    write_files: bool = True
    in_measurements: bool = True

    @property
    def path(self) -> str:
        """``files/p1000/p10000032/s40689238/40689238`` (record without extension)."""
        return mimic_ecg_path(self.subject_id, self.study_id)


def mimic_ecg_path(subject_id: int, study_id: int) -> str:
    """``record_list.csv``'s ``path``: ``files/p`` + the subject id's first 4 digits + ``/pSUBJECT/sSTUDY/STUDY``."""
    return f"files/p{str(subject_id)[:4]}/p{subject_id}/s{study_id}/{study_id}"


@functools.lru_cache(maxsize=8)
def _template(n_samples: int, seed: int) -> tuple[str, bytes]:
    """(header text with record name ``TEMPLATE``, .dat bytes) of a 12-lead format-16 record in MIMIC lead order."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / FS
    lead_i, lead_ii = np.sin(2 * np.pi * 1.2 * t), 0.8 * np.sin(2 * np.pi * 1.2 * t + 0.4)
    limb = {
        "I": lead_i,
        "II": lead_ii,
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2,
        "aVL": lead_i - lead_ii / 2,
        "aVF": lead_ii - lead_i / 2,
    }
    chest = {f"V{k}": rng.normal(0, 0.2, n_samples) for k in range(1, 7)}
    channels = limb | chest
    signal = np.stack([channels[name] for name in MIMIC_ECG_LEADS], axis=1)  # [T, 12] in file order
    with tempfile.TemporaryDirectory() as tmp:
        wfdb.wrsamp(
            _TEMPLATE,
            fs=FS,
            units=["mV"] * 12,
            sig_name=list(MIMIC_ECG_LEADS),
            p_signal=signal,
            fmt=["16"] * 12,
            adc_gain=[200.0] * 12,
            baseline=[0] * 12,
            write_dir=tmp,
        )
        return (Path(tmp) / f"{_TEMPLATE}.hea").read_text(), (Path(tmp) / f"{_TEMPLATE}.dat").read_bytes()


def write_wfdb_copy(record: Path, n_samples: int = N_SAMPLES, seed: int = 0) -> Path:
    """Write ``record.hea`` + ``record.dat`` (12 leads, MIMIC order, 500 Hz); return the header path."""
    header, data = _template(n_samples, seed)
    record.parent.mkdir(parents=True, exist_ok=True)
    (record.parent / f"{record.name}.dat").write_bytes(data)
    hea = record.parent / f"{record.name}.hea"
    hea.write_text(header.replace(_TEMPLATE, record.name))
    return hea


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})


def _machine_row(study: EcgStudy) -> dict[str, object]:
    row: dict[str, object] = {
        "subject_id": study.subject_id,
        "study_id": study.study_id,
        "cart_id": study.cart_id,
        "ecg_time": study.ecg_time,
    }
    row |= {col: (study.statements[i] if i < len(study.statements) else None) for i, col in enumerate(REPORT_COLUMNS)}
    return row | dict(study.measurements)


def write_mimic_iv_ecg(
    root: Path, studies: Sequence[EcgStudy], *, n_samples: int = N_SAMPLES, with_notes: bool = False
) -> Path:
    """Write the MIMIC-IV-ECG v1.0 tree for ``studies`` under ``root``; return ``root``.

    Every study is listed in ``record_list.csv``; ``in_measurements=False`` leaves it out of
    ``machine_measurements.csv``; ``write_files=False`` writes no WFDB files. ``with_notes`` adds
    ``waveform_note_links.csv`` for the studies that have a ``note_id``.
    """
    root.mkdir(parents=True, exist_ok=True)
    for i, study in enumerate(studies):
        if study.write_files:
            write_wfdb_copy(root / study.path, n_samples, seed=i % 4)
    records = [
        {
            "subject_id": s.subject_id,
            "study_id": s.study_id,
            "file_name": s.study_id,
            "ecg_time": s.ecg_time,
            "path": s.path,
        }
        for s in studies
    ]
    _write_csv(root / "record_list.csv", RECORD_LIST_COLUMNS, records)
    _write_csv(
        root / "machine_measurements.csv", MACHINE_COLUMNS, [_machine_row(s) for s in studies if s.in_measurements]
    )
    if with_notes:
        links = [
            {
                "subject_id": s.subject_id,
                "study_id": s.study_id,
                "waveform_path": f"{s.path}",
                "note_id": s.note_id,
                "note_seq": 1,
                "charttime": s.ecg_time,
            }
            for s in studies
            if s.note_id
        ]
        _write_csv(root / "waveform_note_links.csv", NOTE_LINK_COLUMNS, links)
    return root


def truncate_signal(root: Path, study: EcgStudy, keep_bytes: int = 1000) -> None:
    """Cut the study's ``.dat`` to ``keep_bytes`` (a truncated download)."""
    dat = root / f"{study.path}.dat"
    dat.write_bytes(dat.read_bytes()[:keep_bytes])


def remove_signal(root: Path, study: EcgStudy) -> None:
    """Delete the study's ``.dat`` (its header stays)."""
    (root / f"{study.path}.dat").unlink()


def inflate_sig_len(root: Path, study: EcgStudy, factor: int = 2) -> None:
    """Rewrite the header's record line so that ``sig_len`` exceeds the samples the ``.dat`` holds."""
    hea = root / f"{study.path}.hea"
    lines = hea.read_text().splitlines()
    fields = lines[0].split()
    fields[3] = str(int(fields[3]) * factor)
    hea.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")


# ---------------------------------------------------------------------------------------------- CinC 2021
def write_cinc_record(
    directory: Path,
    name: str,
    source_mat: Path,
    *,
    dx: str | None = "426783006",
    age: str = "62",
    sex: str = "Female",
    extra_comments: Sequence[str] = ("Rx: Unknown", "Hx: Unknown", "Sx: Unknown"),
) -> Path:
    """Write ``NAME.hea`` + ``NAME.mat`` in CinC-2021 form, the signal copied from a real ``.mat`` (12 x 5000).

    ``dx`` is the raw text after ``# Dx: `` (``None`` leaves the line out). Returns the header path.
    """
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_mat, directory / f"{name}.mat")
    source_header = source_mat.with_suffix(".hea").read_text().splitlines()
    n_sig = int(source_header[0].split()[1])
    old = source_mat.stem
    lines = [source_header[0].replace(old, name, 1)]
    lines += [line.replace(f"{old}.mat", f"{name}.mat", 1) for line in source_header[1 : 1 + n_sig]]
    lines += [f"# Age: {age}", f"# Sex: {sex}"]
    if dx is not None:
        lines.append(f"# Dx: {dx}")
    lines += [f"# {c}" for c in extra_comments]
    hea = directory / f"{name}.hea"
    hea.write_text("\n".join(lines) + "\n")
    return hea


def write_cinc_mappings(directory: Path, real_cinc: Path) -> None:
    """Copy the official ``dx_mapping_scored.csv`` / ``dx_mapping_unscored.csv`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("dx_mapping_scored.csv", "dx_mapping_unscored.csv"):
        shutil.copyfile(real_cinc / name, directory / name)
