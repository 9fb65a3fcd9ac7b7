"""Synthetic chest X-ray files written at test time: DICOM (native and really compressed), PNG and JPEG.

Nothing binary is committed: every file is built from :func:`phantom`, an asymmetric test pattern (dark top,
bright bottom, a left-to-right ramp and a bright square near the top-left corner) so that a flip, a transpose
or an inversion changes the pixels a test compares.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")  # Digital X-Ray Image Storage - For Presentation
SIDE = 64
NATIVE_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian)


def phantom(rows: int = SIDE, cols: int = SIDE) -> np.ndarray:
    """float64 [rows, cols] in [0, 1]: top-to-bottom and left-to-right ramps plus a bright top-left square."""
    y, x = np.mgrid[0:rows, 0:cols]
    img = (3.0 * y / max(rows - 1, 1) + x / max(cols - 1, 1)) / 4.0
    img[rows // 16 : rows // 4, cols // 16 : cols // 4] = 1.0
    return img


def quantize(img: np.ndarray, bits: int, signed: bool = False) -> np.ndarray:
    """[0, 1] -> integers using the full ``bits`` range, in the numpy dtype DICOM would allocate."""
    top = (1 << bits) - 1
    values = np.round(np.clip(img, 0.0, 1.0) * top).astype(np.int64)
    if signed:
        values -= 1 << (bits - 1)
    allocated = 8 if bits <= 8 else 16
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}
    return values.astype(dtype[(allocated, signed)])


def dicom_dataset(pixels: np.ndarray, *, bits_stored: int, signed: bool = False, photometric: str = "MONOCHROME2",
                  n_frames: int = 1, transfer_syntax: UID = ExplicitVRLittleEndian, **attrs: Any) -> FileDataset:
    """A DX image data set holding ``pixels`` ([H, W], [F, H, W] or [H, W, 3]) natively, plus ``attrs``."""
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2")
    rows, cols = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset("synthetic.dcm", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = int(rows), int(cols)
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
    if n_frames > 1:
        ds.NumberOfFrames = n_frames
    big_endian = transfer_syntax == ExplicitVRBigEndian
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">" if big_endian else "<")).tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def save(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a DICOM Part 10 file in its file meta transfer syntax."""
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def native_dicom(path: Path, pixels: np.ndarray, **kwargs: Any) -> Path:
    return save(dicom_dataset(pixels, **kwargs), path)


def encapsulated(ds: Dataset, transfer_syntax: UID, frames: list[bytes], *, lossy: bool = False) -> Dataset:
    """Replace the native pixels of ``ds`` by already encoded ``frames`` in ``transfer_syntax``."""
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    if lossy:
        ds.LossyImageCompression = "01"
    return ds


# --- real encoders, one per compressed transfer syntax -----------------------------------------------------------

def _pillow_jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _imagecodecs() -> Any:
    import imagecodecs  # dev extra; the codec tests need it for JPEG 12-bit/lossless, JPEG-LS and HTJ2K

    return imagecodecs


@dataclass(frozen=True)
class Codec:
    """How to build a DICOM in ``syntax`` from native pixels, and which pydicom plugins must decode it."""

    name: str
    syntax: UID
    bits: int
    lossless: bool
    plugins: tuple[str, ...]
    encode: Callable[[Dataset, np.ndarray], Dataset]  # (data set with native pixels, stored frame) -> encoded


Builder = Callable[[Dataset, np.ndarray], Dataset]


def _with_frames(syntax: UID, fn: Callable[[np.ndarray], bytes], lossy: bool) -> Builder:
    def build(ds: Dataset, frame: np.ndarray) -> Dataset:
        return encapsulated(ds, syntax, [fn(frame)], lossy=lossy)

    return build


def _pydicom_compress(syntax: UID, **kwargs: Any) -> Builder:
    def build(ds: Dataset, frame: np.ndarray) -> Dataset:
        ds.compress(syntax, encoding_plugin="pylibjpeg" if syntax != RLELossless else "pydicom", **kwargs)
        return ds

    return build


CODECS: tuple[Codec, ...] = (
    Codec("rle", RLELossless, 16, True, ("pydicom", "pylibjpeg"), _pydicom_compress(RLELossless)),
    Codec("jpeg-baseline", JPEGBaseline8Bit, 8, False, ("gdcm", "pillow", "pylibjpeg"),
          _with_frames(JPEGBaseline8Bit, _pillow_jpeg, lossy=True)),
    Codec("jpeg-extended-12bit", JPEGExtended12Bit, 12, False, ("pylibjpeg",),
          _with_frames(JPEGExtended12Bit, lambda f: _imagecodecs().jpeg8_encode(f, level=95, bitspersample=12),
                       lossy=True)),
    Codec("jpeg-lossless-p14", JPEGLossless, 16, True, ("gdcm", "pylibjpeg"),
          _with_frames(JPEGLossless, lambda f: _imagecodecs().jpeg8_encode(
              f, lossless=True, predictor=6, bitspersample=16), lossy=False)),
    Codec("jpeg-lossless-sv1", JPEGLosslessSV1, 12, True, ("gdcm", "pylibjpeg"),
          _with_frames(JPEGLosslessSV1, lambda f: _imagecodecs().jpeg8_encode(
              f, lossless=True, predictor=1, bitspersample=12), lossy=False)),
    Codec("jpeg-ls-lossless", JPEGLSLossless, 16, True, ("gdcm", "pylibjpeg"),
          _with_frames(JPEGLSLossless, lambda f: _imagecodecs().jpegls_encode(f), lossy=False)),
    Codec("jpeg-ls-near-lossless", JPEGLSNearLossless, 12, False, ("gdcm", "pylibjpeg"),
          _with_frames(JPEGLSNearLossless, lambda f: _imagecodecs().jpegls_encode(f, level=2), lossy=True)),
    Codec("jpeg2000-lossless", JPEG2000Lossless, 16, True, ("gdcm", "pillow", "pylibjpeg"),
          _pydicom_compress(JPEG2000Lossless)),
    Codec("jpeg2000", JPEG2000, 12, False, ("gdcm", "pillow", "pylibjpeg"), _pydicom_compress(JPEG2000, j2k_cr=[10])),
    Codec("htj2k-lossless", HTJ2KLossless, 16, True, ("pylibjpeg",),
          _with_frames(HTJ2KLossless, lambda f: _imagecodecs().htj2k_encode(f, reversible=True), lossy=False)),
    Codec("htj2k", HTJ2K, 12, False, ("pylibjpeg",),
          _with_frames(HTJ2K, lambda f: _imagecodecs().htj2k_encode(f, reversible=False), lossy=True)),
)


def window_for(bits: int) -> dict[str, Any]:
    """A fixed LINEAR window over the whole stored range, so codec outputs compare without min-max effects."""
    return {"WindowCenter": (1 << bits) / 2, "WindowWidth": float(1 << bits)}


def codec_dicom(path: Path, codec: Codec, img: np.ndarray | None = None) -> tuple[Path, np.ndarray]:
    """Write :func:`phantom` encoded with ``codec``; return the path and the native stored pixels."""
    frame = quantize(phantom() if img is None else img, codec.bits)
    ds = dicom_dataset(frame, bits_stored=codec.bits, **window_for(codec.bits))
    return save(codec.encode(ds, frame), path), frame


# --- PNG / JPEG --------------------------------------------------------------------------------------------------

def write_png(path: Path, pixels: np.ndarray, mode: str | None = None, exif_orientation: int | None = None) -> Path:
    """Save ``pixels`` (uint8 L/RGB/RGBA, uint16 grayscale) as PNG, optionally converted to ``mode``."""
    img = Image.fromarray(pixels)
    if mode is not None:
        img = img.convert(mode)
    kwargs: dict[str, Any] = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    img.save(path, "PNG", **kwargs)
    return path


def write_jpeg(path: Path, pixels: np.ndarray, quality: int = 95, exif_orientation: int | None = None) -> Path:
    """Save uint8 grayscale or RGB ``pixels`` as JPEG, with an EXIF Orientation tag (0x0112) if given."""
    kwargs: dict[str, Any] = {"quality": quality}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    Image.fromarray(pixels).save(path, "JPEG", **kwargs)
    return path


def to_bytes(write: Callable[[Path], Path], tmp_dir: Path, name: str) -> bytes:
    """The bytes of a file written by ``write`` (fuzz seeds)."""
    return write(tmp_dir / name).read_bytes()
