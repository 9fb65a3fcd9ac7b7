"""Tell a file's format from its content (magic bytes), never from its extension alone.

Extensions lie (``.dcm`` PNGs, extension-less DICOM from PACS exports, ``.mat`` WFDB signal files), so each
reader asks :func:`sniff_format` first. The only extension-based rules are those of formats without a magic
number: WFDB records (a ``.hea`` header beside the path) and CSV text.
"""

from __future__ import annotations

import codecs
from os import PathLike
from pathlib import Path
from typing import Literal

from medclr.errors import MedclrInputError

FileFormat = Literal["dicom", "png", "jpeg", "wfdb", "csv", "unknown"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_PREAMBLE = 128
_WFDB_SIGNAL_SUFFIXES = (".hea", ".dat", ".mat", "")


def wfdb_header_path(path: Path) -> Path | None:
    """The ``.hea`` header of a WFDB record given as ``rec``, ``rec.hea``, ``rec.dat`` or ``rec.mat``."""
    if path.suffix.lower() not in _WFDB_SIGNAL_SUFFIXES:
        return None
    header = path.with_suffix(".hea") if path.suffix else path.with_name(path.name + ".hea")
    return header if header.is_file() else None


def _looks_like_dicom_without_preamble(head: bytes) -> bool:
    """Raw DICOM data sets (no 128-byte preamble) start with a group 0x0002 or 0x0008 tag, little endian."""
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[4:6].isalpha()


def sniff_format(path: str | PathLike[str]) -> FileFormat:
    """Return the format of ``path`` judged by its bytes; raise :class:`MedclrInputError` if it is missing."""
    p = Path(path)
    if wfdb_header_path(p) is not None:
        return "wfdb"
    if not p.exists():
        raise MedclrInputError(p, "file not found", "check the path (for a WFDB record, the .hea file must exist)")
    if p.is_dir():
        raise MedclrInputError(p, "is a directory, not a file", "pass the path of one image or ECG record")
    with p.open("rb") as f:
        head = f.read(_DICOM_PREAMBLE + 4)
    if head[_DICOM_PREAMBLE : _DICOM_PREAMBLE + 4] == b"DICM" or _looks_like_dicom_without_preamble(head):
        return "dicom"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if p.suffix.lower() in (".csv", ".txt", ".tsv") and _is_text(head):
        return "csv"
    if p.suffix.lower() in (".dcm", ".dicom") and len(head) >= 8:
        return "dicom"  # implicit-VR data set without preamble: no magic number; pydicom decides
    return "unknown"


def _is_text(head: bytes) -> bool:
    """UTF-8 without NUL bytes; ``head`` is cut at a fixed length, so a split trailing character is fine."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head
