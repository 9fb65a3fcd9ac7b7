"""Chest X-ray reader: DICOM, PNG or JPEG (judged by content) -> float32 ``[H, W]`` in [0, 1] and :class:`CxrMeta`.

The returned image is what a viewer displays: 0 is black, 1 is white, row 0 is the top.

- **DICOM** (:mod:`medclr.io.dicom`): modality LUT, VOI (VOI LUT / window / min-max), MONOCHROME1 and
  Presentation LUT Shape INVERSE inverted, colour to luminance, first frame of a multi-frame image.
- **PNG / JPEG** (Pillow): EXIF orientation applied (``ImageOps.exif_transpose``); 8-bit values divided by 255,
  16-bit values (modes ``I;16``, ``I;16B``, ``I;16L``, and ``I`` as older Pillow opens 16-bit PNGs) by 65535
  (``voi="full_range"``); colour and palette images (RGB, RGBA, LA, P, PA, CMYK, YCbCr) become the ITU-R BT.601
  luminance ``0.299 R + 0.587 G + 0.114 B``; alpha is ignored. The first frame of an animated PNG is read.
  After Pillow decodes a PNG, every chunk's CRC-32 is checked (:func:`check_png_crcs`): Pillow skips the CRCs of
  the image data (IDAT) chunks, whose zlib stream has only its own Adler-32 to catch damage.

Both paths reject images smaller than :data:`MIN_SIDE` x :data:`MIN_SIDE` (32 x 32: icons, thumbnails or corrupt
headers, not radiographs) or larger than :data:`MAX_PIXELS` (8192 x 8192), and every problem with the file is a
:class:`medclr.errors.MedclrInputError` that names the file and says what to do. ``CxrMeta.height/width`` are
the size of the returned image (the stored size, after EXIF orientation; before any resizing).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from medclr.errors import MedclrInputError
from medclr.io.dicom import BT601_LUMA, MAX_PIXELS, MIN_SIDE, VoiKind, probe_dicom_image, read_dicom
from medclr.io.sniff import PNG_MAGIC, FileFormat, sniff_format

__all__ = ["MAX_PIXELS", "MIN_SIDE", "CxrMeta", "check_png_crcs", "read_cxr"]

CxrFormat = Literal["dicom", "png", "jpeg"]
SUPPORTED = "DICOM (CR/DX/any image IOD), PNG (8/16-bit) and JPEG"
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")


@dataclass(frozen=True)
class CxrMeta:
    """What :func:`read_cxr` read and how; built from an allowlist of attributes, never from PHI."""

    path: str
    format: CxrFormat
    photometric: str  # DICOM PhotometricInterpretation, or the Pillow mode for PNG/JPEG
    height: int  # rows of the returned image (before any resizing)
    width: int  # columns of the returned image
    bits_stored: int  # 8..16
    pixel_spacing_mm: tuple[float, float] | None  # (row, col): PixelSpacing, else ImagerPixelSpacing, else None
    view_position: str | None  # DICOM ViewPosition (PA, AP, LATERAL, LL, ...), upper-case; None if absent
    modality: str | None  # CR, DX, ...
    transfer_syntax: str | None  # UID name, e.g. "JPEG 2000 Image Compression (Lossless Only)"
    voi: VoiKind  # "window" | "voi_lut" | "minmax" | "full_range" (PNG/JPEG)
    inverted: bool  # MONOCHROME1 / INVERSE presentation applied
    n_frames: int


def read_cxr(path: str | PathLike[str]) -> tuple[np.ndarray, CxrMeta]:
    """Read a chest X-ray as a float32 ``[H, W]`` display image in [0, 1] (row 0 = top) and its metadata."""
    p = Path(path)
    fmt = _sniff(p)
    if fmt == "dicom":
        img = read_dicom(p)
        meta = CxrMeta(
            path=str(p), format="dicom", photometric=img.photometric, height=img.pixels.shape[0],
            width=img.pixels.shape[1], bits_stored=img.bits_stored, pixel_spacing_mm=img.pixel_spacing_mm,
            view_position=img.view_position, modality=img.modality, transfer_syntax=img.transfer_syntax,
            voi=img.voi, inverted=img.inverted, n_frames=img.n_frames,
        )
        return img.pixels, meta
    if fmt == "png" or fmt == "jpeg":
        return _read_pillow(p, fmt)
    raise MedclrInputError(p, f"unsupported file format (detected: {fmt})",
                           f"pass a chest X-ray as {SUPPORTED}; ECG records are read by medclr.io.read_ecg")


def probe_cxr(path: str | PathLike[str]) -> tuple[int, int]:
    """Check an X-ray cheaply; return its ``(height, width)``. Raises :class:`MedclrInputError` like read_cxr.

    DICOM: the image header is valid and the pixel data is as long as it implies (native) or has fragments
    (compressed); nothing is decoded. JPEG: decoded at 1/8 scale (Pillow's draft mode, a fraction of the
    full cost) so that truncated files fail. PNG: decoded fully (the zlib stream has no cheaper check).
    """
    p = Path(path)
    fmt = _sniff(p)
    if fmt == "dicom":
        return probe_dicom_image(p)
    if fmt == "png" or fmt == "jpeg":
        return _probe_pillow(p, fmt)
    raise MedclrInputError(p, f"unsupported file format (detected: {fmt})", f"pass a chest X-ray as {SUPPORTED}")


def _probe_pillow(p: Path, fmt: Literal["png", "jpeg"]) -> tuple[int, int]:
    """Size-check and decode (JPEG at 1/8 scale in Pillow's draft mode); return ``(height, width)``."""
    with _opened(p, fmt) as img:
        width, height = img.size
        if fmt == "jpeg":
            img.draft(img.mode, (max(width // 8, 1), max(height // 8, 1)))
        img.load()
    if fmt == "png":
        check_png_crcs(p)
    return height, width


def check_png_crcs(path: str | PathLike[str]) -> None:
    """Check the CRC-32 of every chunk of the PNG at ``path`` (PNG spec, section 5.3: over the chunk type and data),
    up to its IEND chunk; raise :class:`MedclrInputError` naming the first chunk that fails or runs past the end of
    the file. Reads one chunk at a time."""
    p = Path(path)
    fix = "the file is truncated or corrupt; fetch or export it again"
    with p.open("rb") as f:
        if f.read(len(PNG_MAGIC)) != PNG_MAGIC:
            raise MedclrInputError(p, "not a PNG file (no PNG signature)", "pass a PNG, JPEG or DICOM X-ray")
        size, offset = p.stat().st_size, len(PNG_MAGIC)
        while header := f.read(8):
            length, kind = struct.unpack(">I4s", header) if len(header) == 8 else (0, header[4:])
            name = kind.decode("latin-1")
            if len(header) < 8 or offset + 12 + length > size:  # never read past the end (a damaged length)
                raise MedclrInputError(p, f"PNG chunk {name!r} at byte {offset} runs past the end of the file", fix)
            body, (stored,) = f.read(length), struct.unpack(">I", f.read(4))
            if zlib.crc32(kind + body) != stored:
                raise MedclrInputError(p, f"PNG chunk {name!r} at byte {offset} fails its CRC-32 check", fix)
            if kind == b"IEND":
                return
            offset += 12 + length


def _sniff(p: Path) -> FileFormat:
    """The content-based format; empty and unreadable files are input errors too."""
    try:
        fmt = sniff_format(p)
        size = p.stat().st_size
    except OSError as err:  # e.g. permission denied, a broken link
        raise MedclrInputError(p, f"cannot read the file ({err.strerror or err})", "check the path and its "
                               "permissions") from err
    if size == 0:
        raise MedclrInputError(p, "empty file (0 bytes)", "the copy or download did not complete; fetch it again")
    return fmt


def _read_pillow(p: Path, fmt: Literal["png", "jpeg"]) -> tuple[np.ndarray, CxrMeta]:
    """PNG/JPEG -> display image via Pillow (see the module docstring)."""
    img, n_frames = _open_oriented(p, fmt)
    pixels, bits = pil_to_float(img, p)
    height, width = pixels.shape
    meta = CxrMeta(
        path=str(p), format=fmt, photometric=img.mode, height=height, width=width, bits_stored=bits,
        pixel_spacing_mm=None, view_position=None, modality=None, transfer_syntax=None, voi="full_range",
        inverted=False, n_frames=n_frames,
    )
    return pixels, meta


@contextmanager
def _opened(p: Path, fmt: str) -> Iterator[Image.Image]:
    """Open with Pillow and check the size before anything is decoded; Pillow's errors become input errors."""
    name = fmt.upper()
    try:
        with Image.open(p) as img:
            width, height = img.size
            if min(width, height) < MIN_SIDE or width * height > MAX_PIXELS:
                raise MedclrInputError(p, f"{name} image is {height}x{width} pixels; expected between "
                                       f"{MIN_SIDE}x{MIN_SIDE} and {MAX_PIXELS} pixels",
                                       "pass a full-size radiograph, not an icon or thumbnail")
            yield img
    except MedclrInputError:
        raise
    except Image.DecompressionBombError as err:  # Pillow's own limit, checked inside Image.open
        raise MedclrInputError(p, f"{name} image is too large ({err})", "pass a radiograph of at most "
                               f"{MAX_PIXELS} pixels") from err
    except Exception as err:  # library boundary: Pillow's codecs raise many types
        raise MedclrInputError(p, f"cannot decode the {name} file ({type(err).__name__}: {err})",
                               "the file is truncated or corrupt; fetch or export it again") from err


def _open_oriented(p: Path, fmt: str) -> tuple[Image.Image, int]:
    """Open, check the size before decoding, decode fully and apply the EXIF orientation."""
    with _opened(p, fmt) as img:
        n_frames = int(getattr(img, "n_frames", 1))
        img.load()  # decode now: a truncated or corrupt file fails here, not later
        oriented = ImageOps.exif_transpose(img)  # a decoded copy, independent of the file
    if fmt == "png":
        check_png_crcs(p)
    if min(oriented.size) < MIN_SIDE:  # defensive: the orientation transforms keep the size
        raise MedclrInputError(p, f"{fmt.upper()} image has size {oriented.size}", "pass a full-size radiograph")
    return oriented, n_frames


def pil_to_float(img: Image.Image, path: str | PathLike[str] | None = None) -> tuple[np.ndarray, int]:
    """A decoded Pillow image -> (float32 ``[H, W]`` in [0, 1], bits per sample); see the module docstring."""
    mode = img.mode
    if mode == "L":
        return np.asarray(img, dtype=np.float32) / np.float32(255.0), 8
    if mode == "LA":
        return np.asarray(img, dtype=np.float32)[..., 0] / np.float32(255.0), 8
    if mode in _SIXTEEN_BIT_MODES:
        return (np.asarray(img).astype(np.float64) / 65535.0).astype(np.float32), 16
    if mode == "I":  # 32-bit signed: how older Pillow opens 16-bit grayscale PNGs
        values = np.asarray(img).astype(np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise MedclrInputError(path, f"32-bit integer pixels outside the 16-bit range "
                                   f"[{values.min():.0f}, {values.max():.0f}]", "store the image as 8/16-bit PNG")
        return (values / 65535.0).astype(np.float32), 16
    if mode in _COLOUR_MODES:
        rgb = np.asarray(img.convert("RGB"), dtype=np.float64)  # [H, W, 3]
        luma = rgb @ np.asarray(BT601_LUMA, dtype=np.float64)  # [H, W]
        return np.clip(luma / 255.0, 0.0, 1.0).astype(np.float32), 8
    raise MedclrInputError(path, f"unsupported image mode {mode!r} (e.g. bilevel or floating point)",
                           "store the radiograph as 8-bit or 16-bit grayscale (or RGB) PNG, or as JPEG")
