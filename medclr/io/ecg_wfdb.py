"""WFDB records (``rec.hea`` + ``rec.dat``, or CinC-2021 ``rec.hea`` + ``rec.mat``) -> :class:`RawEcg`.

A WFDB record is a text header and one or more binary signal files. The header's record line
``name n_sig fs sig_len`` and one signal line per channel
``file fmt[xspf][:skew][+offset] gain(baseline)/units adc_res adc_zero init checksum block name`` fully
determine how many bytes each signal file must hold. The CinC-2021 ``.mat`` files are format 16 behind a
24-byte MATLAB v4 preamble (``16x1+24``), so ``wfdb`` reads them like any other record.

Before :func:`wfdb.rdrecord` touches the data, the header is parsed with wfdb's own line grammar and the
implied sizes are checked against the files on disk: a truncated signal file or a corrupted ``sig_len``
(which could ask for gigabytes) is a clear :class:`MedclrInputError`, not a reshape error or an allocation.
On its own, ``wfdb`` 4.3 raises ``ValueError: Samples were not loaded correctly`` (or a reshape error) for a
truncated signal file, and never returns fewer samples silently; the pre-check gives the better message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import wfdb
from wfdb.io.header import parse_header_content, rx_record, rx_signal

from medclr.errors import MedclrInputError
from medclr.io.ecg_raw import RawEcg, resolve_fs

# Bytes per sample of each WFDB signal format (212 packs 2 samples in 3 bytes, 310/311 3 in 4).
_BYTES_PER_SAMPLE: dict[str, Fraction] = {
    "8": Fraction(1),
    "16": Fraction(2),
    "24": Fraction(3),
    "32": Fraction(4),
    "61": Fraction(2),
    "80": Fraction(1),
    "160": Fraction(2),
    "212": Fraction(3, 2),
    "310": Fraction(4, 3),
    "311": Fraction(4, 3),
}
_COMPRESSED_FORMATS = frozenset({"508", "516", "524"})  # FLAC: the size on disk does not bound the length
MAX_SAMPLES = 2**26  # samples over all channels (512 MiB as float64): 12 leads x 93 min at 1 kHz
_MAX_HEADER_BYTES = 10 * 2**20
_FIX_CORRUPT = "the .hea header is not a valid WFDB header; re-export or re-download the record"


@dataclass(frozen=True)
class WfdbHeader:
    """The parts of a single-segment WFDB header that fix the record's size and channel names."""

    n_sig: int
    fs: float | None  # None when the record line omits it (WFDB would then assume 250 Hz)
    sig_len: int | None
    file_names: tuple[str, ...]  # per channel
    formats: tuple[str, ...]
    samps_per_frame: tuple[int, ...]
    skews: tuple[int, ...]
    byte_offsets: tuple[int, ...]
    sig_names: tuple[str, ...]
    units: tuple[str, ...]  # "mV" where the header gives none (the WFDB default)


def read_wfdb(header_path: Path, fs: float | None) -> RawEcg:
    """Read a single-segment WFDB record whose header is ``header_path`` (channels ``[C, T]`` in their units)."""
    header = parse_wfdb_header(header_path)
    sig_len = check_signal_files(header_path, header)
    record = _rdrecord(header_path)
    p_signal = getattr(record, "p_signal", None)
    if not isinstance(record, wfdb.Record) or not isinstance(p_signal, np.ndarray):
        raise MedclrInputError(header_path, "wfdb returned no signal for this record", _FIX_CORRUPT)
    names = tuple(str(name) for name in record.sig_name or ())
    if p_signal.shape != (sig_len, header.n_sig) or names != header.sig_names:
        raise MedclrInputError(
            header_path,
            f"header and data disagree: header says {header.n_sig} channels x {sig_len} samples, "
            f"wfdb read {p_signal.shape[1] if p_signal.ndim == 2 else '?'} x {p_signal.shape[0]}",
            "re-export the record so that the header matches its signal files",
        )
    rate = resolve_fs(header_path, header.fs, fs, "the WFDB header")
    signal = p_signal.T.astype(np.float64)  # [C, T]
    return RawEcg(names=names, lead_names=names, units=header.units, signal=signal, fs=rate)


def parse_wfdb_header(header_path: Path) -> WfdbHeader:
    """Parse the record and signal lines with wfdb's own regular expressions (as :func:`wfdb.rdheader` does)."""
    if header_path.stat().st_size > _MAX_HEADER_BYTES:
        raise MedclrInputError(header_path, "header file is larger than 10 MiB", _FIX_CORRUPT)
    raw = header_path.read_bytes()
    lines, _comments = parse_header_content(raw.decode("ascii", errors="ignore"))  # as wfdb reads it; no comments
    record = rx_record.match(lines[0]) if lines else None
    if record is None:
        raise MedclrInputError(header_path, "WFDB header has no valid record line", _FIX_CORRUPT)
    if record.group("n_seg"):
        raise MedclrInputError(
            header_path,
            "multi-segment WFDB records are not supported",
            "merge the segments first (wfdb.rdrecord(..., m2s=True) then wfdb.wrsamp)",
        )
    try:
        n_sig = int(record.group("n_sig"))
        fs = float(record.group("fs")) if record.group("fs") else None
        sig_len = int(record.group("sig_len")) if record.group("sig_len") else None
        signals = [_parse_signal_line(line) for line in lines[1:]]
    except (ValueError, OverflowError) as exc:
        raise MedclrInputError(header_path, f"corrupt WFDB header ({exc})", _FIX_CORRUPT) from exc
    if n_sig < 1 or len(signals) != n_sig:
        raise MedclrInputError(
            header_path, f"WFDB header declares {n_sig} signals but has {len(signals)} signal lines", _FIX_CORRUPT
        )
    columns = list(zip(*signals, strict=True))
    units = _signal_units(header_path, raw, len(lines))
    return WfdbHeader(
        n_sig=n_sig,
        fs=fs,
        sig_len=sig_len,
        file_names=tuple(map(str, columns[0])),
        formats=tuple(map(str, columns[1])),
        samps_per_frame=tuple(map(int, columns[2])),
        skews=tuple(map(int, columns[3])),
        byte_offsets=tuple(map(int, columns[4])),
        sig_names=tuple(map(str, columns[5])),
        units=units,
    )


def _signal_units(header_path: Path, raw: bytes, n_lines: int) -> tuple[str, ...]:
    """Units of each signal line, read from the header decoded as UTF-8 (else Latin-1).

    wfdb decodes headers as ASCII and drops other bytes, which turns ``µV`` into ``V``: a factor of 10^6.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines, _comments = parse_header_content(text)
    if len(lines) != n_lines:
        raise MedclrInputError(header_path, "WFDB header has non-ASCII signal lines", _FIX_CORRUPT)
    matches = [rx_signal.match(line) for line in lines[1:]]
    return tuple((match.group("units") if match else "") or "mV" for match in matches)


def _parse_signal_line(line: str) -> tuple[str, str, int, int, int, str]:
    """``(file_name, fmt, samps_per_frame, skew, byte_offset, sig_name)`` of one signal line."""
    match = rx_signal.match(line)
    if match is None:
        raise ValueError(f"invalid signal line {line[:40]!r}")
    spf, skew, offset = (int(match.group(key) or default) for key, default in _SIGNAL_DEFAULTS)
    if spf < 1:
        raise ValueError("samples per frame must be at least 1")
    return match.group("file_name"), match.group("fmt"), spf, skew, offset, match.group("sig_name").strip()


_SIGNAL_DEFAULTS = (("samps_per_frame", 1), ("skew", 0), ("byte_offset", 0))


def check_signal_files(header_path: Path, header: WfdbHeader) -> int:
    """Check each signal file against the header; return the record length in samples (frames).

    Raises :class:`MedclrInputError` for a missing or truncated signal file, an unknown format, or a record
    over :data:`MAX_SAMPLES`. Without ``sig_len`` in the header the length is inferred from the file size,
    as WFDB does.
    """
    lengths: list[int] = []
    for file_name in dict.fromkeys(header.file_names):
        channels = [i for i, name in enumerate(header.file_names) if name == file_name]
        lengths.append(_check_one_file(header_path, header, file_name, channels))
    sig_len = header.sig_len if header.sig_len is not None else min(lengths)
    frame = sum(header.samps_per_frame)
    if sig_len < 1 or sig_len * frame > MAX_SAMPLES or max(header.skews) > sig_len:
        raise MedclrInputError(
            header_path,
            f"WFDB record of {sig_len} samples x {frame} values per frame is empty, corrupt or larger than "
            f"{MAX_SAMPLES} values",
            "check the header; read long recordings in windows with wfdb.rdrecord(sampfrom=, sampto=)",
        )
    return sig_len


def _check_one_file(header_path: Path, header: WfdbHeader, file_name: str, channels: list[int]) -> int:
    """Frames that ``file_name`` holds (huge for FLAC); raise if it is missing or shorter than the header says."""
    path = header_path.with_name(file_name)
    formats = sorted({header.formats[i] for i in channels})
    if len(formats) > 1:
        problem = f"signals stored in {file_name!r} declare different formats ({', '.join(formats)})"
        raise MedclrInputError(header_path, problem, _FIX_CORRUPT)
    fmt = formats[0]
    if fmt not in _BYTES_PER_SAMPLE and fmt not in _COMPRESSED_FORMATS:
        raise MedclrInputError(header_path, f"unsupported WFDB signal format {fmt!r} for {file_name!r}", _FIX_CORRUPT)
    if file_name in ("", "~") or not path.is_file():
        raise MedclrInputError(
            header_path, f"signal file {file_name!r} named by the header is missing", "copy the signal file beside it"
        )
    if fmt in _COMPRESSED_FORMATS:
        if header.sig_len is None:
            raise MedclrInputError(header_path, "FLAC-compressed WFDB record without a length", _FIX_CORRUPT)
        return header.sig_len
    frame_bytes = sum(header.samps_per_frame[i] for i in channels) * _BYTES_PER_SAMPLE[fmt]
    available = path.stat().st_size - header.byte_offsets[channels[0]]
    frames = math.floor(max(available, 0) / frame_bytes)
    if header.sig_len is not None and frames < header.sig_len:
        raise MedclrInputError(
            header_path,
            f"signal file {file_name!r} holds {frames} samples but the header says {header.sig_len} "
            "(truncated file or header/data mismatch)",
            "re-copy the complete .dat/.mat file, or fix sig_len in the header",
        )
    return frames


def _rdrecord(header_path: Path) -> wfdb.Record:
    """:func:`wfdb.rdrecord` in physical units, with its errors turned into :class:`MedclrInputError`."""
    try:
        with np.errstate(all="ignore"):  # extreme gains in a corrupt header overflow: inf samples, reported later
            return wfdb.rdrecord(str(header_path.with_suffix("")), physical=True)
    # broad on purpose (library boundary): wfdb raises bare ValueError/IndexError/TypeError/... on bad records
    except Exception as exc:
        problem = f"wfdb cannot read this record ({type(exc).__name__}: {exc})"
        raise MedclrInputError(header_path, problem, _FIX_CORRUPT) from exc
