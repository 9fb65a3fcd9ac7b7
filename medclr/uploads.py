"""Uploads: read and validate an uploaded X-ray or ECG by its content, and de-identify what is shown of it.

**Uploads** are judged by their bytes (DICOM preamble ``DICM``, PNG/JPEG magic, a WFDB record line, a zip's
``PK``), never by the name; the size is capped (:data:`MAX_UPLOAD_BYTES`). They are decoded in a temporary folder
(RAM-backed ``/dev/shm`` where it exists) that is deleted before the call returns: nothing is cached on disk.
**De-identification**: displayed DICOM attributes come from :func:`medclr.io.phi.safe_dicom_header` (an allowlist
minus the PS3.15 Annex E basic-profile attributes), then any value that contains the value of a profile attribute
of the same file is dropped as well; file names (a DICOM's is often its SOP Instance UID) are never kept.

Used through :class:`medclr.inference.Engine` (``engine.read_upload(name, data)``), which re-exports the public
names; :func:`read_file` also reads the indexed studies the app loads as cases.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from wfdb.io.header import rx_record, rx_signal

from medclr.errors import MedclrInputError
from medclr.io.phi import PHI_KEYWORDS, safe_dicom_header

__all__ = ["MAX_UPLOAD_BYTES", "CxrView", "Upload", "ram_dir", "read_file", "read_upload", "read_uploads"]

MAX_UPLOAD_BYTES = 50 * 2**20  # per upload (all files together); .streamlit/config.toml says the same
MAX_ZIP_MEMBERS = 64
Kind = Literal["cxr", "ecg"]
_UID_LIKE = re.compile(r"\d+(?:\.\d+){3,}")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"PK\x03\x04", "zip"))
_SUFFIX = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg", "csv": ".csv"}
_BLOBS = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_FORMATS = "a chest X-ray (DICOM, PNG, JPEG) or an ECG (WFDB .hea + .dat/.mat together or zipped, DICOM, CSV)"


@dataclass(frozen=True)
class CxrView:
    """What the viewer windows: ``values [H, W]`` (DICOM modality units; PNG/JPEG stored values), the default
    VOI ``center``/``width`` in the same units (from the DICOM when it has one), and whether to invert."""

    values: np.ndarray
    center: float
    width: float
    inverted: bool
    voi: str  # where the default window came from


@dataclass(frozen=True)
class Upload:
    """A validated X-ray (``array [H, W]`` float32 display image in [0, 1]) or ECG (``[12, T]`` float32 mV at ``fs``):
    a short ``info`` summary, the de-identified DICOM ``header`` and, for X-rays, the :class:`CxrView`. No file
    name is kept (a DICOM's name is often its SOP Instance UID)."""

    kind: Kind
    format: str
    array: np.ndarray
    info: dict[str, str]
    header: dict[str, str]
    fs: float | None = None
    view: CxrView | None = None

    @property
    def label(self) -> str:
        """A one-line description, e.g. ``X-ray (DICOM, 1024 x 1024 px)`` or ``ECG (WFDB, 500 Hz, 10.0 s)``."""
        if self.kind == "cxr":
            return f"X-ray ({self.format}, {self.array.shape[0]} x {self.array.shape[1]} px)"
        fs = self.fs or 1.0
        return f"ECG ({self.format}, {fs:g} Hz, {self.array.shape[1] / fs:.1f} s)"


# ---------------------------------------------------------------------------------------------------- reading
def read_upload(name: str, data: bytes, *, csv_fs: float | None = None,
                max_bytes: int = MAX_UPLOAD_BYTES) -> Upload:
    """One file (or a zip of one record) -> :class:`Upload`; see :func:`read_uploads`."""
    uploads = read_uploads([(name, data)], csv_fs=csv_fs, max_bytes=max_bytes)
    if len(uploads) != 1:
        raise MedclrInputError(_safe_name(name), f"holds {len(uploads)} studies", "upload one study at a time")
    return uploads[0]


def read_uploads(files: Sequence[tuple[str, bytes]], *, csv_fs: float | None = None,
                 max_bytes: int = MAX_UPLOAD_BYTES) -> list[Upload]:
    """Uploaded ``(name, bytes)`` -> validated uploads, in order. WFDB headers are paired with the signal files
    they name (or, for a one-file record, the one unnamed binary upload); zips are opened in memory. At most
    ``max_bytes`` in all (and per zip once unpacked); ``csv_fs`` is the sampling rate of a CSV ECG."""
    total = sum(len(d) for _, d in files)
    if total > max_bytes:
        raise MedclrInputError(None, f"the upload is {total / 2**20:.1f} MB; the limit is "
                               f"{max_bytes / 2**20:.0f} MB", "upload one study at a time")
    items = [(Path(n).name, d) for name, data in files for n, d in _unzip(name, data, max_bytes)]
    kinds = [_sniff(d) for _, d in items]
    binaries = {n: d for (n, d), k in zip(items, kinds, strict=True) if k == "binary"}
    out: list[Upload] = []
    with tempfile.TemporaryDirectory(prefix="medclr-upload-", dir=ram_dir()) as tmp:
        for i, ((name, data), kind) in enumerate(zip(items, kinds, strict=True)):
            if kind == "binary":
                continue
            folder = Path(tmp) / str(i)
            folder.mkdir()
            try:
                path = _wfdb_files(folder, name, data, binaries) if kind == "wfdb" else folder / f"u{_SUFFIX[kind]}"
                if kind != "wfdb":
                    path.write_bytes(data)
                out.append(read_file(path, kind, csv_fs=csv_fs))
            except MedclrInputError as err:
                raise MedclrInputError(_safe_name(name), err.problem, err.fix) from None
            except Exception as err:  # noqa: BLE001 - untrusted content: decoders raise anything on a bad file
                raise MedclrInputError(_safe_name(name), f"cannot be decoded ({type(err).__name__})",
                                       f"upload {_FORMATS}") from None
    if binaries:
        raise MedclrInputError(_safe_name(next(iter(binaries))), "is not an image, ECG or WFDB header (binary "
                               "data no uploaded header names)", f"upload {_FORMATS}")
    return out


def read_file(path: Path, kind: str, *, csv_fs: float | None = None) -> Upload:
    """A file on disk (an upload's temporary copy or an indexed study) -> :class:`Upload`; ``kind`` is the sniffed
    format (``dicom``, ``png``, ``jpeg``, ``wfdb``, ``csv``) or the modality (``cxr``, ``ecg``)."""
    from medclr.io import read_cxr, read_ecg

    with path.open("rb") if path.is_file() else io.BytesIO() as f:
        is_dicom = _sniff(f.read(132)) == "dicom"
    ds = pydicom.dcmread(path, force=True) if is_dicom else None
    if kind in ("ecg", "wfdb", "csv") or (ds is not None and "WaveformSequence" in ds):
        signal, meta = read_ecg(path, fs=csv_fs if path.suffix.lower() == ".csv" else None)
        info = {"Format": meta.format.upper(), "Sampling rate": f"{meta.fs:g} Hz",
                "Duration": f"{meta.duration_s:.1f} s"}
        info.update({"Derived leads": ", ".join(meta.derived_leads)} if meta.derived_leads else {})
        return Upload("ecg", meta.format.upper(), signal, info, _deidentified(ds), fs=meta.fs)
    image, cm = read_cxr(path)
    info = {"Format": cm.format.upper(), "Size": f"{cm.height} x {cm.width} px", "Bits": str(cm.bits_stored)}
    info.update({"Modality": cm.modality} if cm.modality else {})
    info.update({"View": cm.view_position} if cm.view_position else {})
    info.update({"Pixel spacing": "{:.3g} x {:.3g} mm".format(*cm.pixel_spacing_mm)} if cm.pixel_spacing_mm else {})
    return Upload("cxr", cm.format.upper(), image, info, _deidentified(ds), view=_view(ds, image, cm.bits_stored))


def _view(ds: Dataset | None, image: np.ndarray, bits: int) -> CxrView:
    """Modality values and the DICOM's first window for the viewer; stored values and the full range otherwise."""
    from pydicom.pixels import apply_modality_lut

    try:
        if ds is not None and int(ds.get("SamplesPerPixel", 1)) == 1:
            values = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)
            values = values[0] if values.ndim == 3 else values
            lo, hi = float(values.min()), float(values.max())
            inverted = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1" or \
                str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE"
            center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
            if center is not None and width is not None and width > 0:
                return CxrView(values, center, width, inverted, "DICOM window")
            return CxrView(values, (lo + hi) / 2, max(hi - lo, 1e-6), inverted, "image min-max")
    except Exception:  # noqa: BLE001 - a DICOM read_cxr decoded but pydicom alone cannot: show the display image
        pass
    top = float(2**bits - 1)
    return CxrView((image * top).astype(np.float32), top / 2, top, False, "full range")


def _first(value: Any) -> float | None:
    try:
        return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)
    except (TypeError, ValueError, IndexError):
        return None


def _deidentified(ds: Dataset | None) -> dict[str, str]:
    """:func:`safe_dicom_header` minus any value that contains an identifying (PS3.15 basic profile) value."""
    if ds is None:
        return {}
    phi = {str(e.value).strip() for e in (*ds.iterall(), *ds.file_meta) if e.VR not in _BLOBS
           and (e.keyword in PHI_KEYWORDS or e.VR in ("PN", "UI", "DA", "DT"))}
    phi = {v for v in phi if len(v) >= 4}
    return {k: v for k, v in safe_dicom_header(ds).items() if not any(p in v for p in phi)}


def _sniff(data: bytes) -> str:
    """``dicom``, ``png``, ``jpeg``, ``zip``, ``wfdb`` (a header), ``csv`` (other text) or ``binary``."""
    head = data[:132]
    if head[128:132] == b"DICM" or (head[:2] in (b"\x02\x00", b"\x08\x00") and head[4:6].isalpha()):
        return "dicom"
    kind = next((k for magic, k in _MAGIC if data.startswith(magic)), None)
    if kind:
        return kind
    sample = data[:65536]
    try:
        text = sample.decode("utf-8") if b"\x00" not in sample else None
    except UnicodeDecodeError:
        text = None
    if text is None:
        return "binary"
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    is_header = len(lines) >= 2 and rx_record.match(lines[0]) is not None and rx_signal.match(lines[1]) is not None
    return "wfdb" if is_header and "," not in lines[0] else "csv"


def _wfdb_files(folder: Path, name: str, header: bytes, binaries: dict[str, bytes]) -> Path:
    """Write a WFDB header under its record name and the signal files it names; return the header's path."""
    from medclr.io.ecg_wfdb import parse_wfdb_header

    text = header.decode("utf-8", errors="replace")
    record = next(ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")).split()[0]
    path = folder / f"{Path(record.split('/')[0]).name}.hea"
    path.write_bytes(header)
    wanted = list(dict.fromkeys(Path(f).name for f in parse_wfdb_header(path).file_names))
    for file in wanted:
        match = file if file in binaries else (next(iter(binaries)) if len(wanted) == len(binaries) == 1 else None)
        if match is None:
            raise MedclrInputError(None, f"the WFDB header names the signal file '{file}', which was not uploaded",
                                   "upload the .hea together with its .dat/.mat (select both, or zip them)")
        (folder / file).write_bytes(binaries.pop(match))
    return path


def _unzip(name: str, data: bytes, limit: int) -> list[tuple[str, bytes]]:
    """A zip's files (in memory; folders, dot files and __MACOSX skipped), or ``[(name, data)]`` for other files."""
    if not data.startswith(b"PK\x03\x04"):
        return [(name, data)]
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")
                       and "__MACOSX" not in m.filename]
            if len(members) > MAX_ZIP_MEMBERS or sum(m.file_size for m in members) > limit:
                raise MedclrInputError(_safe_name(name), "the zip is too large", "zip one study (<= 50 MB)")
            out = [(m.filename, zf.open(m).read(limit + 1)) for m in members]
            if sum(len(d) for _, d in out) > limit:
                raise MedclrInputError(_safe_name(name), "the zip is too large", "zip one study (<= 50 MB)")
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as err:
        raise MedclrInputError(_safe_name(name), f"unreadable zip ({err})", "re-create the zip") from None
    if any(d.startswith(b"PK\x03\x04") for _, d in out):
        raise MedclrInputError(_safe_name(name), "holds another zip", "zip the record's files directly")
    return out


def _safe_name(name: str) -> str:
    """An upload's name for messages: the base name with anything UID-like (a DICOM file name) masked."""
    return _UID_LIKE.sub("<UID>", Path(name).name)[:80] or "upload"


def ram_dir() -> str | None:
    """``/dev/shm`` (RAM-backed) for temporary files where it is writable, else ``None`` (the system default)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
