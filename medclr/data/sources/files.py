"""Any folder of the user's own chest X-rays and ECGs -> an unlabelled manifest (for embedding, indexing, search).

The folder is walked recursively and every file is judged by its content (:func:`medclr.io.sniff_format`),
never by its name alone:

- a DICOM with a ``WaveformSequence`` is an ECG (``ecg_path``, ``ecg_fs`` from its first waveform group);
  any other DICOM is an X-ray (``cxr_path``, ``cxr_view`` from ``ViewPosition`` when present);
- PNG and JPEG files are X-rays;
- a WFDB ``.hea`` header is an ECG record (``ecg_path`` = the record path without extension, ``ecg_fs``
  from the header); the record's other files (``.dat``, ``.mat``, ``.atr``, ``.xyz``...: same folder and
  stem) belong to it and are not counted again;
- a file named like an image (``.dcm``, ``.dicom``, ``.png``, ``.jpg``, ``.jpeg``) whose bytes are none of
  these is kept as an X-ray row, so that the record check quarantines it with its reason (e.g. an empty or
  truncated download) instead of it vanishing;
- everything else (notes, CSV tables, spreadsheets, ``.DS_Store``...) is ignored and counted:
  ``info.extra["n_ignored_files"]`` and the first few names in ``info.extra["ignored_files"]``. CSV ECG
  exports are not indexed here (read them with :func:`medclr.io.read_ecg`).

Rows: one per file or WFDB record; ``study_id`` is the POSIX path relative to the root (without extension
for WFDB records) and ``subject_id`` equals it: no patient identity is read. **PHI**: only ``ViewPosition``
and the waveform sampling rate are read from DICOM headers; patient tags are never read or written, and the
ids come from file paths only. There are no labels and no reports; every row is in split ``test`` (this is an
inference / indexing manifest, not a training set). The record check of ``medclr prepare`` then quarantines
files that cannot be read as a 12-lead ECG or an X-ray (e.g. a 2-lead Holter record), each with its reason.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import pandas as pd
from tqdm.auto import tqdm

from medclr.data.manifest import Manifest, ManifestInfo
from medclr.data.prepare import SOURCES, PrepareOptions, SourceResult
from medclr.errors import MedclrInputError
from medclr.io.sniff import sniff_format

Kind = Literal["cxr", "ecg"]
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")
WFDB_HEADER = ".hea"
N_IGNORED_EXAMPLES = 10
_DICOM_TAGS = ["WaveformSequence", "ViewPosition"]  # the only tags read: never patient attributes
_EXPECTED = "chest X-rays (DICOM, PNG, JPEG) and/or ECGs (WFDB .hea records, DICOM waveforms), in any sub-folders"


def list_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` as a path relative to it, in sorted (deterministic) order."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath).relative_to(root)
        found.extend(base / name for name in sorted(filenames) if (Path(dirpath) / name).is_file())
    return found


def _dicom_facts(path: Path) -> tuple[Kind, float | None, str | None]:
    """``(kind, ecg sampling rate, view position)`` from the two DICOM tags medclr reads here."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_DICOM_TAGS, force=True)
    except Exception:  # noqa: BLE001 - unreadable DICOM: the record check reports the precise reason
        return "cxr", None, None
    if "WaveformSequence" in ds:
        try:
            fs = float(ds.WaveformSequence[0].SamplingFrequency)
        except (AttributeError, IndexError, TypeError, ValueError):
            fs = None
        return "ecg", fs if fs is not None and math.isfinite(fs) else None, None
    view = ds.get("ViewPosition")
    return "cxr", None, str(view).strip().upper() if view is not None and str(view).strip() else None


def classify(path: Path) -> tuple[Kind, float | None, str | None] | None:
    """What a (non-WFDB) file is: ``(kind, ecg_fs, cxr_view)``, or ``None`` for a file to ignore."""
    try:
        fmt = sniff_format(path)
    except (MedclrInputError, OSError):
        fmt = "unknown"
    if fmt == "dicom":
        return _dicom_facts(path)
    if fmt in ("png", "jpeg") or (fmt == "unknown" and path.suffix.lower() in IMAGE_SUFFIXES):
        return "cxr", None, None
    return None


def wfdb_fs(header: Path) -> float | None:
    """The sampling rate a WFDB header states (``None`` if it cannot be parsed: the check reports why)."""
    from medclr.io.ecg_wfdb import parse_wfdb_header

    try:
        return parse_wfdb_header(header).fs
    except (MedclrInputError, OSError, ValueError):
        return None


def _row(study_id: str, kind: Kind, fs: float | None, view: str | None) -> dict[str, object]:
    return {
        "study_id": study_id,
        "subject_id": study_id,
        "split": "test",
        "cxr_path": study_id if kind == "cxr" else None,
        "cxr_view": view,
        "ecg_path": study_id if kind == "ecg" else None,
        "ecg_fs": fs,
    }


@SOURCES.register("files")
def prepare_files(options: PrepareOptions) -> SourceResult:
    """Index a folder of the user's own X-rays and ECGs (see the module docstring)."""
    root = options.require_root("files", _EXPECTED)
    files = list_files(root)
    records = {f.with_suffix("") for f in files if f.suffix == WFDB_HEADER}
    rows: list[dict[str, object]] = []
    ignored: list[str] = []
    n_companions = 0
    for rel in tqdm(files, desc="sniffing files", unit="file", disable=not options.progress, leave=False):
        if rel.suffix == WFDB_HEADER:
            rows.append(_row(rel.with_suffix("").as_posix(), "ecg", wfdb_fs(root / rel), None))
        elif rel.with_suffix("") in records:
            n_companions += 1
        elif (facts := classify(root / rel)) is not None:
            rows.append(_row(rel.as_posix(), *facts))
        else:
            ignored.append(rel.as_posix())
    if not rows:
        examples = ", ".join(ignored[:3]) or "none"
        raise MedclrInputError(root, f"no X-ray or ECG files found ({len(ignored)} other files, e.g. {examples})",
                               f"pass a folder that holds {_EXPECTED}")
    frame = pd.DataFrame(rows)
    info = ManifestInfo(
        source="files",
        roots={"cxr": str(root), "ecg": str(root)},
        split_protocol="none: every row is 'test' (an inference / indexing manifest of the user's own files)",
        extra={
            "n_files": len(files),
            "n_cxr_found": int(frame["cxr_path"].notna().sum()),
            "n_ecg_found": int(frame["ecg_path"].notna().sum()),
            "n_wfdb_companion_files": n_companions,
            "n_ignored_files": len(ignored),
            "ignored_files": ignored[:N_IGNORED_EXAMPLES],
            "judged_by": "file content (medclr.io.sniff_format); DICOM waveform vs image by WaveformSequence",
        },
    )
    return SourceResult(Manifest(frame, info), [])
