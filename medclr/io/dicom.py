"""DICOM radiograph -> float32 display image in [0, 1], following the DICOM grayscale pipeline.

Stored values go through the grayscale pipeline of DICOM PS3.4 Annex N (N.2.1, Figure N.2-1): **Modality LUT**
(Rescale Slope/Intercept or a Modality LUT Sequence, PS3.3 C.11.1) -> **VOI LUT** (a VOI LUT Sequence, or Window
Center/Width with a VOI LUT Function, PS3.3 C.11.2) -> **Presentation LUT** (MONOCHROME1 and Presentation LUT
Shape INVERSE, PS3.3 C.7.6.3.1.2, C.11.6). The result is what a viewer shows: 0 black, 1 white, row 0 on top.

VOI is the first usable of: the first VOI LUT Sequence item (output scaled by its bit depth, the third value of
LUT Descriptor), the first Window Center/Width pair (:func:`apply_window`), else the min-max of the image.
Colour images (RGB, YBR_*) are converted to RGB by pydicom and then to luminance (ITU-R BT.601), scaled by
the largest stored value (``voi="full_range"``). Multi-frame images: the first frame is read.

Compressed pixels are decoded by pydicom's plugins in :data:`PLUGIN_ORDER` (pydicom's RLE, Pillow, pylibjpeg);
python-gdcm only when no other installed plugin supports the syntax (corrupt streams can make it abort the
process). Errors name the packages that would decode the syntax.

Only attributes on an allowlist are read into :class:`DicomImage`; identifying attributes
(:data:`medclr.io.phi.PHI_KEYWORDS`) never leave the pydicom data set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi, get_decoder
from pydicom.pixels import pixel_array as pydicom_pixel_array
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from medclr.errors import MedclrInputError

VoiKind = Literal["window", "voi_lut", "minmax", "full_range"]
VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]
_VOI_FUNCTIONS: dict[str, VoiFunction] = {"LINEAR": "LINEAR", "LINEAR_EXACT": "LINEAR_EXACT", "SIGMOID": "SIGMOID"}

#: Smallest accepted side in pixels: anything smaller is an icon, a thumbnail or a corrupt header, not a
#: radiograph (the smallest public CXR sets are 64x64 down-samples).
MIN_SIDE = 32
#: Largest accepted image (pixels per frame): 8192 x 8192 covers every CR/DX detector (<= 4300 x 4300 at
#: 0.1 mm) and keeps a corrupt Rows/Columns from allocating gigabytes.
MAX_PIXELS = 8192 * 8192
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422")
BT601_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights (also DICOM YBR_FULL, PS3.3 C.7.6.3.1.2)

_JPEG = "pylibjpeg + pylibjpeg-libjpeg, or python-gdcm"
_J2K = "pylibjpeg + pylibjpeg-openjpeg, or python-gdcm, or pillow"
_DECODER_PACKAGES = {  # transfer syntax UID -> what decodes it (pydicom 3 plugins)
    "1.2.840.10008.1.2.4.50": _JPEG + ", or pillow",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg + pylibjpeg-libjpeg (12-bit), or python-gdcm/pillow (8-bit)",
    **dict.fromkeys(("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"), _JPEG),  # JPEG Lossless (SV1)
    **dict.fromkeys(("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"), _JPEG + ", or pyjpegls"),  # JPEG-LS
    **dict.fromkeys(("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"), _J2K),  # JPEG 2000
    **dict.fromkeys(("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"),
                    "pylibjpeg + pylibjpeg-openjpeg>=2.4"),  # HTJ2K
    "1.2.840.10008.1.2.5": "pydicom (built in), or pylibjpeg + pylibjpeg-rle",  # RLE Lossless
}
#: Order in which installed pydicom decoding plugins are tried. python-gdcm is tried only when it is the only
#: plugin for a transfer syntax (or when asked for by name): on corrupt JPEG / JPEG 2000 data it can throw a C++
#: exception that aborts the whole Python process (found by tests/io/test_cxr_fuzz.py), which no `except` stops.
_DEFLATED = DeflatedExplicitVRLittleEndian
PLUGIN_ORDER = ("pydicom", "pillow", "pylibjpeg", "pyjpegls", "gdcm")
_CONVERT_FIX = "or convert the file to an uncompressed DICOM (e.g. `gdcmconv --raw in.dcm out.dcm`) or a PNG"


@dataclass(frozen=True)
class DicomImage:
    """A decoded DICOM image and the allowlisted attributes :class:`medclr.io.CxrMeta` is built from."""

    pixels: np.ndarray  # float32 [H, W] in [0, 1], row 0 = top as displayed
    photometric: str
    bits_stored: int
    pixel_spacing_mm: tuple[float, float] | None
    view_position: str | None
    modality: str | None
    transfer_syntax: str | None
    voi: VoiKind
    inverted: bool
    n_frames: int


@dataclass(frozen=True)
class _Header:
    """The image pixel module attributes (PS3.3 C.7.6.3) the pipeline needs, validated."""

    rows: int
    columns: int
    samples: int
    bits_stored: int
    photometric: str
    n_frames: int


def read_dicom(path: str | PathLike[str], *, decoding_plugin: str = "") -> DicomImage:
    """Read the first frame of a DICOM radiograph as a display image (see the module docstring).

    ``decoding_plugin`` forces one pydicom decoding plugin (``"pylibjpeg"``, ``"gdcm"``, ``"pillow"``,
    ``"pydicom"``, ...); the default tries every installed plugin that supports the transfer syntax in turn.
    Raises :class:`MedclrInputError` for anything that is not a readable image DICOM.
    """
    p = Path(path)
    ds, tsyntax = _read_dataset(p)
    header = _image_header(ds, p)
    stored = _decode_first_frame(ds, p, tsyntax, decoding_plugin)  # [H, W] or [H, W, 3]
    expected = (header.rows, header.columns) + ((3,) if header.samples == 3 else ())
    if stored.shape != expected:
        raise MedclrInputError(p, f"decoded pixels have shape {stored.shape}; the header says {expected}",
                               "the header does not match the pixel data; re-export the image")
    voi: VoiKind
    if header.samples == 3:
        pixels, voi, inverted = _luminance(stored, header.bits_stored), "full_range", False
    else:
        pixels, voi, inverted = _grayscale_pipeline(stored, ds, header, p)
    return DicomImage(
        np.clip(pixels, 0.0, 1.0).astype(np.float32), header.photometric, header.bits_stored, _pixel_spacing(ds),
        _upper_or_none(_get(ds, "ViewPosition")), _upper_or_none(_get(ds, "Modality")), str(tsyntax.name), voi,
        inverted, header.n_frames,
    )


def probe_dicom_image(path: str | PathLike[str]) -> tuple[int, int]:
    """Check a DICOM image without decoding it; return ``(rows, columns)``.

    The image header must be valid (as for :func:`read_dicom`), a decoder must be installed for the transfer
    syntax, and the pixel data must hold what the header implies: ``rows x columns x samples x frames`` values
    of ``BitsAllocated`` bits for native syntaxes, at least one non-empty fragment for compressed ones.
    """
    p = Path(path)
    ds, tsyntax = _read_dataset(p)
    header = _image_header(ds, p)
    decoder = _decoder(tsyntax, p)
    if not decoder.is_available:
        raise MedclrInputError(p, f"no installed decoder for {tsyntax.name} pixel data",
                               f"install {_DECODER_PACKAGES.get(str(tsyntax), 'pylibjpeg or python-gdcm')}")
    data = ds.PixelData if isinstance(ds.PixelData, bytes) else b""
    if decoder.is_encapsulated:
        if len(data) <= 16:  # basic offset table item + one empty fragment at most
            raise MedclrInputError(p, "compressed pixel data is empty", "the file is truncated; export it again")
        _check_codestream_end(ds, tsyntax, header, p)
        return header.rows, header.columns
    if tsyntax == _DEFLATED:
        return header.rows, header.columns  # inflated by pydicom on read: dcmread already failed if corrupt
    bits_allocated = _get_int(ds, "BitsAllocated", p)
    n_values = header.rows * header.columns * header.samples * header.n_frames
    expected = (n_values * bits_allocated + 7) // 8
    if len(data) < expected:
        raise MedclrInputError(p, f"pixel data holds {len(data)} bytes; the header implies {expected}",
                               "the file is truncated or its header is wrong; export it again")
    return header.rows, header.columns


def apply_window(x: np.ndarray, center: float, width: float, function: VoiFunction = "LINEAR") -> np.ndarray:
    """Map modality values ``x`` through a VOI window into [0, 1] (DICOM PS3.3 C.11.2.1.2 and C.11.2.1.3).

    With output range ``y_min = 0``, ``y_max = 1``, centre ``c`` and width ``w``:

    - ``LINEAR`` (C.11.2.1.2.1, the default; needs ``w >= 1``): ``y = 0`` if ``x <= c - 0.5 - (w - 1) / 2``,
      ``y = 1`` if ``x > c - 0.5 + (w - 1) / 2``, else ``y = (x - (c - 0.5)) / (w - 1) + 0.5``. The half-pixel
      offsets make the window cover exactly ``w`` integer input values; ``w = 1`` is a threshold at ``c - 0.5``.
    - ``LINEAR_EXACT`` (C.11.2.1.3.2; ``w > 0``): ``y = 0`` if ``x <= c - w / 2``, ``y = 1`` if
      ``x > c + w / 2``, else ``y = (x - c) / w + 0.5``.
    - ``SIGMOID`` (C.11.2.1.3.1; ``w > 0``): ``y = 1 / (1 + exp(-4 (x - c) / w))``, so ``y(c) = 0.5`` and the
      slope at ``c`` equals that of a linear ramp of width ``w``.

    Worked example, ``c = 100, w = 51``: LINEAR gives 0 up to 74.5, maps 75 to ``(75 - 99.5) / 50 + 0.5 = 0.01``,
    100 to 0.51, 124 to 0.99 and gives 1 above 124.5; LINEAR_EXACT maps 75 to ``(75 - 100) / 51 + 0.5 = 0.0098``
    and 100 to 0.5; SIGMOID maps 100 to 0.5 and ``100 + 51 / 4`` to ``1 / (1 + e^-1) = 0.731``.
    """
    x = np.asarray(x, dtype=np.float64)
    if not (math.isfinite(center) and math.isfinite(width)):
        raise ValueError(f"window centre/width must be finite, got {center}/{width}")
    if function == "LINEAR":
        if width < 1:
            raise ValueError(f"LINEAR window width must be >= 1 (PS3.3 C.11.2.1.2.1), got {width}")
        if width == 1:
            return (x > center - 0.5).astype(np.float64)
        return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    if width <= 0:
        raise ValueError(f"{function} window width must be > 0 (PS3.3 C.11.2.1.3), got {width}")
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (x - center) / width, -700.0, 700.0)))
    raise ValueError(f"unknown VOI LUT function {function!r}; expected LINEAR, LINEAR_EXACT or SIGMOID")


def _read_dataset(path: Path) -> tuple[Dataset, UID]:
    """``dcmread`` with ``force=True`` (the caller sniffed the content already) and its transfer syntax."""
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as err:  # library boundary: pydicom raises many types (struct.error, EOFError, ...)
        raise MedclrInputError(
            path, f"not a readable DICOM file ({type(err).__name__}: {_short(err)})",
            "check that the file is a complete DICOM Part 10 file (a truncated download or copy is a common cause)",
        ) from err
    file_meta = ds.file_meta
    if "TransferSyntaxUID" not in file_meta:  # raw data set without a file meta group: use how it was read
        implicit, little = ds.original_encoding
        file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    value = _get(file_meta, "TransferSyntaxUID")
    if not isinstance(value, str) or not value.strip():
        raise MedclrInputError(path, f"unreadable Transfer Syntax UID ({value!r:.60})", "re-export the image")
    return ds, UID(value.strip())


def _image_header(ds: Dataset, path: Path) -> _Header:
    """Validate the image pixel module; say what kind of object the file is when it has no image."""
    if "PixelData" not in ds:
        what = "no image pixels but float pixel data (a parametric map)" if (
            "FloatPixelData" in ds or "DoubleFloatPixelData" in ds) else "no image pixels"
        sop = _get(ds, "SOPClassUID")
        kind = f" (SOP class: {UID(str(sop)).name})" if sop else ""
        raise MedclrInputError(
            path, f"has {what}; is it an ECG waveform? use read_ecg{kind}",
            "pass a DICOM image (CR/DX chest radiograph); ECG waveforms are read by medclr.io.read_ecg",
        )
    rows, columns = _get_int(ds, "Rows", path), _get_int(ds, "Columns", path)
    samples, bits = _get_int(ds, "SamplesPerPixel", path), _get_int(ds, "BitsStored", path)
    photometric = str(_get(ds, "PhotometricInterpretation") or "").strip().upper()
    n_frames = _get_int(ds, "NumberOfFrames", path, default=1)
    if min(rows, columns) < MIN_SIDE or rows * columns > MAX_PIXELS:
        raise MedclrInputError(path, f"image is {rows}x{columns} pixels; expected between {MIN_SIDE}x{MIN_SIDE} "
                               f"and {MAX_PIXELS} pixels", "pass a full-size radiograph, not an icon or thumbnail")
    if not 8 <= bits <= 16:
        raise MedclrInputError(path, f"{bits} bits stored per sample; expected 8 to 16", "pass a CR/DX radiograph")
    valid = (samples == 1 and photometric in MONOCHROME) or (samples == 3 and photometric in COLOUR)
    if not valid:
        raise MedclrInputError(
            path, f"unsupported photometric interpretation {photometric or '(none)'} with {samples} samples/pixel",
            f"expected one of {', '.join(MONOCHROME + COLOUR)} (1 sample for MONOCHROME, 3 for colour)",
        )
    if n_frames < 1:
        raise MedclrInputError(path, f"NumberOfFrames is {n_frames}", "repair the header (it must be >= 1)")
    return _Header(rows, columns, samples, bits, photometric, n_frames)


def _decode_first_frame(ds: Dataset, path: Path, tsyntax: UID, plugin: str) -> np.ndarray:
    """Frame 0 as stored values (colour converted to RGB); errors name the packages that would decode it."""
    decoder = _decoder(tsyntax, path)
    if plugin and plugin not in decoder.available_plugins:
        missing = [dep for dep in decoder.missing_dependencies if dep.startswith(plugin)]
        why = f"missing dependencies: {missing[0]}" if missing else "no such plugin for this transfer syntax"
        raise MedclrInputError(
            path, f"the {plugin!r} decoding plugin cannot decode {tsyntax.name} here ({why})",
            f"install what it needs, or use an installed plugin: {', '.join(decoder.available_plugins) or 'none'}",
        )
    if not decoder.is_available:
        raise MedclrInputError(path, f"no installed decoder for {tsyntax.name} pixel data",
                               f"install {_DECODER_PACKAGES.get(str(tsyntax), 'pylibjpeg or python-gdcm')}")
    if decoder.is_encapsulated:
        _check_codestream_end(ds, tsyntax, _image_header(ds, path), path)
    plugins = [plugin] if plugin else _auto_plugins(decoder)
    failures: list[str] = []
    for name in plugins:
        try:
            return np.asarray(_pixel_array(ds, name))
        except _DecodeError as err:
            failures.append(f"{name or 'pydicom'}: {_short(err.__cause__ or err, 200)}")
    raise MedclrInputError(
        path, f"cannot decode the {tsyntax.name} pixel data ({'; '.join(failures)})",
        f"the pixel data may be truncated or corrupt; another decoder may help "
        f"({_DECODER_PACKAGES.get(str(tsyntax), 'pylibjpeg or python-gdcm')}), {_CONVERT_FIX}",
    )


def _check_codestream_end(ds: Dataset, tsyntax: UID, header: _Header, path: Path) -> None:
    """JPEG, JPEG-LS, JPEG 2000 and HTJ2K codestreams end with an EOI/EOC marker ``FF D9`` (then even-length
    padding). Decoders fill a cut-short codestream with grey without complaint, so check the end first."""
    if tsyntax == RLELossless:
        return  # RLE segments have no end marker; their lengths are checked by the decoder
    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=header.n_frames)
    except Exception as err:  # library boundary: malformed item tags raise ValueError/KeyError/struct.error
        raise MedclrInputError(path, f"cannot split the compressed pixel data into frames ({_short(err)})",
                               "the file is truncated or corrupt; export it again") from err
    if not frame.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise MedclrInputError(path, f"the {tsyntax.name} codestream of frame 1 has no end marker (truncated)",
                               "the file was cut short; copy or export it again")


class _DecodeError(Exception):
    """One decoding plugin failed (the cause is chained)."""


def _auto_plugins(decoder: Decoder) -> list[str]:
    """Installed plugins in :data:`PLUGIN_ORDER`; gdcm only when nothing else can decode the syntax."""
    if not decoder.is_encapsulated:
        return [""]  # native pixel data: pydicom itself, no plugin
    rank = {name: i for i, name in enumerate(PLUGIN_ORDER)}
    ordered = sorted(decoder.available_plugins, key=lambda name: rank.get(name, len(rank)))
    return [p for p in ordered if p != "gdcm"] or ordered


def _pixel_array(ds: Dataset, plugin: str) -> np.ndarray:
    try:
        return pydicom_pixel_array(ds, index=0, decoding_plugin=plugin)
    except Exception as err:  # library boundary: C decoders raise arbitrary types on corrupt data
        raise _DecodeError(str(err)) from err
    except BaseException as err:  # Rust decoders (pylibjpeg-rle, via pyo3) panic with a BaseException
        if type(err).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit, ... pass through
        raise _DecodeError(str(err)) from err


def _decoder(tsyntax: UID, path: Path) -> Decoder:
    """pydicom's decoder for ``tsyntax``; an input error when pydicom has none (MPEG, JPEG XL, private)."""
    try:
        return get_decoder(tsyntax)
    except NotImplementedError as err:
        raise MedclrInputError(
            path, f"pixel data in transfer syntax {tsyntax.name} ({tsyntax}), which no installed decoder supports",
            "medclr reads uncompressed, deflated, RLE, JPEG, JPEG-LS, JPEG 2000 and HTJ2K DICOM; " + _CONVERT_FIX,
        ) from err


def _grayscale_pipeline(stored: np.ndarray, ds: Dataset, header: _Header, path: Path
                        ) -> tuple[np.ndarray, VoiKind, bool]:
    """Modality LUT -> VOI -> presentation (inversion), PS3.4 N.2.1. Returns (image in [0, 1], voi, inverted)."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf/NaN is checked just below
            values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)  # [H, W] modality units
    except Exception as err:  # library boundary: a malformed Modality LUT raises inside pydicom
        raise MedclrInputError(path, f"cannot apply the modality LUT / rescale ({_short(err)})",
                               "repair RescaleSlope/RescaleIntercept or the Modality LUT Sequence") from err
    if not np.isfinite(values).all():
        raise MedclrInputError(path, "NaN or infinite pixel values after the modality rescale",
                               "check RescaleSlope/RescaleIntercept (they must be finite numbers)")
    display, voi = _apply_voi(values, ds)
    shape = str(_get(ds, "PresentationLUTShape") or "").strip().upper()
    inverted = header.photometric == "MONOCHROME1" or shape == "INVERSE"
    return (1.0 - display if inverted else display), voi, inverted


def _apply_voi(values: np.ndarray, ds: Dataset) -> tuple[np.ndarray, VoiKind]:
    """The first usable VOI: a VOI LUT Sequence, a window, else min-max (PS3.3 C.11.2)."""
    lut = _voi_lut(values, ds)
    if lut is not None:
        return lut, "voi_lut"
    window = _window(ds)
    if window is not None:
        center, width, function = window
        return apply_window(values, center, width, function), "window"
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values), "minmax"  # a blank image stays blank (black)
    return (values - lo) / (hi - lo), "minmax"


def _voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """The first VOI LUT Sequence item applied by pydicom, divided by ``2**bits - 1`` (LUT Descriptor[2]).

    PS3.3 C.11.2.1.1: input values below the first mapped value (LUT Descriptor[1]) take the first entry, values
    past the last entry take the last one; non-integer modality values are rounded to the nearest entry.
    """
    try:
        items = ds.get("VOILUTSequence")
        if not items:
            return None
        bits = int(items[0].LUTDescriptor[2])
        if not 1 <= bits <= 16:
            return None
        entries = np.rint(np.clip(values, -(2.0**62), 2.0**62)).astype(np.int64)  # LUTs take integer inputs
        out = np.asarray(apply_voi(entries, ds, index=0), dtype=np.float64) / float(2**bits - 1)
    except Exception:  # noqa: BLE001 - a malformed LUT falls through to the window, recorded in meta.voi
        return None
    return np.clip(out, 0.0, 1.0) if np.isfinite(out).all() else None


def _window(ds: Dataset) -> tuple[float, float, VoiFunction] | None:
    """The first (Window Center, Window Width) pair and the VOI LUT Function, if present and valid."""
    try:
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    except Exception:  # noqa: BLE001 - malformed DS values: no usable window
        return None
    known = _VOI_FUNCTIONS.get(function)
    if center is None or width is None or known is None or not (math.isfinite(center) and math.isfinite(width)):
        return None
    return (center, width, known) if width >= (1 if known == "LINEAR" else 1e-12) else None


def _luminance(rgb: np.ndarray, bits_stored: int) -> np.ndarray:
    """``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601) scaled by the largest stored value ``2**bits - 1``."""
    luma = rgb.astype(np.float64) @ np.asarray(BT601_LUMA)  # [H, W, 3] -> [H, W]
    return luma / float(2**bits_stored - 1)


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm: PixelSpacing (at the patient), else ImagerPixelSpacing (at the detector)."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = ds.get(keyword)
            spacing = (float(value[0]), float(value[1])) if value is not None and len(value) >= 2 else None
        except Exception:  # noqa: BLE001 - malformed DS: treat as absent
            spacing = None
        if spacing and all(math.isfinite(s) and s > 0 for s in spacing):
            return spacing
    return None


def _get(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)``, ``None`` when the element is absent or cannot be converted."""
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - pydicom's lazy conversion of a corrupt element can raise anything
        return None


def _get_int(ds: Dataset, keyword: str, path: Path, default: int | None = None) -> int:
    """An integer attribute; ``default`` when absent or empty (else an error), an error when unreadable."""
    try:
        value = ds[keyword].value if keyword in ds else None
        number = None if value is None or value == "" else int(value)
    except Exception as err:  # library boundary: lazy conversion of a corrupt element raises many types
        raise MedclrInputError(path, f"the DICOM attribute {keyword} is unreadable ({_short(err, 80)})",
                               "repair the header or re-export the image") from err
    number = default if number is None else number
    if number is None:
        raise MedclrInputError(path, f"the DICOM header lacks {keyword}", "pass an image DICOM with a full header")
    return number


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    return None if value is None or value == "" else float(value)


def _upper_or_none(value: Any) -> str | None:
    text = str(value).strip().upper() if value is not None else ""
    return text or None


def _short(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
