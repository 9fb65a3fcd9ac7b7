"""Compressed DICOM: each supported transfer syntax, really encoded, decoded by each pydicom plugin that supports it.

Fixtures are encoded at test time (pydicom's RLE and OpenJPEG encoders, Pillow's JPEG, imagecodecs' libjpeg-turbo
lossless/12-bit, CharLS and OpenJPH), so the decoders meet streams from independent encoders. Lossless syntaxes
must give the stored pixels exactly; lossy ones stay within a small tolerance of the native image.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import get_decoder
from pydicom.pixels import pixel_array as pydicom_pixel_array
from pydicom.uid import UID, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

import medclr.io.dicom as dicom_module
from medclr.errors import MedclrInputError
from medclr.io.cxr import read_cxr
from medclr.io.dicom import PLUGIN_ORDER, _auto_plugins, read_dicom
from tests.io.cxr_fixtures import (
    CODECS,
    Codec,
    codec_dicom,
    dicom_dataset,
    encapsulated,
    native_dicom,
    phantom,
    quantize,
    save,
    window_for,
)

pytest.importorskip("imagecodecs", reason="the codec fixtures need imagecodecs (dev extra)")

CASES = [pytest.param(codec, plugin, id=f"{codec.name}-{plugin}") for codec in CODECS for plugin in codec.plugins]
BT601 = np.array([0.299, 0.587, 0.114])


def test_every_expected_decoder_plugin_is_installed() -> None:
    for codec in CODECS:
        available = set(get_decoder(codec.syntax).available_plugins)
        assert set(codec.plugins) <= available, (codec.name, available)


@pytest.mark.parametrize(("codec", "plugin"), CASES)
def test_syntax_with_plugin(tmp_path: Path, codec: Codec, plugin: str) -> None:
    path, stored = codec_dicom(tmp_path / "c.dcm", codec)
    native = read_dicom(native_dicom(tmp_path / "n.dcm", stored, bits_stored=codec.bits, **window_for(codec.bits)))
    decoded = read_dicom(path, decoding_plugin=plugin)
    raw = pydicom_pixel_array(pydicom.dcmread(path), index=0, decoding_plugin=plugin)
    assert decoded.transfer_syntax == codec.syntax.name and decoded.voi == "window"
    if codec.lossless:
        np.testing.assert_array_equal(raw, stored)
        np.testing.assert_array_equal(decoded.pixels, native.pixels)
    else:
        error = np.abs(decoded.pixels - native.pixels)
        assert error.max() < 0.02 and error.mean() < 0.002, (error.max(), error.mean())
        assert not np.array_equal(raw, stored)  # the fixture really is lossy


def test_jpeg_ls_near_lossless_respects_near() -> None:
    codec = next(c for c in CODECS if c.name == "jpeg-ls-near-lossless")  # encoded with NEAR = 2
    stored = quantize(phantom(), codec.bits)
    ds = codec.encode(dicom_dataset(stored, bits_stored=codec.bits), stored)
    for plugin in codec.plugins:
        raw = pydicom_pixel_array(ds, index=0, decoding_plugin=plugin).astype(np.int64)
        assert 0 < np.abs(raw - stored).max() <= 2


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_read_cxr_picks_a_working_decoder(tmp_path: Path, codec: Codec) -> None:
    path, _ = codec_dicom(tmp_path / "c.dcm", codec)
    img, meta = read_cxr(path)
    assert img.shape == (64, 64) and img.dtype == np.float32 and meta.transfer_syntax == codec.syntax.name


@pytest.mark.parametrize("plugin", ["gdcm", "pillow", "pylibjpeg"])
def test_jpeg_baseline_colour(tmp_path: Path, plugin: str) -> None:
    grey = phantom()
    rgb = quantize(np.stack([grey, grey**2, 1 - grey], axis=-1), 8)
    ds = dicom_dataset(rgb, bits_stored=8, photometric="YBR_FULL_422")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95, subsampling=0)  # JFIF: YCbCr, as the syntax expects
    path = save(encapsulated(ds, JPEGBaseline8Bit, [buffer.getvalue()], lossy=True), tmp_path / "rgb.dcm")
    decoded = read_dicom(path, decoding_plugin=plugin)
    assert np.abs(decoded.pixels - rgb.astype(np.float64) @ BT601 / 255.0).max() < 0.03
    assert (decoded.photometric, decoded.voi) == ("YBR_FULL_422", "full_range")


@pytest.mark.parametrize(("syntax", "plugins"), [(RLELossless, ("pydicom", "pylibjpeg")),
                                                 (JPEG2000Lossless, ("gdcm", "pillow", "pylibjpeg"))])
@pytest.mark.parametrize("bits", [12, 16])
def test_signed_pixels_compressed(tmp_path: Path, syntax: UID, plugins: tuple[str, ...], bits: int) -> None:
    stored = quantize(phantom(), bits, signed=True)
    native = read_dicom(native_dicom(tmp_path / "n.dcm", stored, bits_stored=bits, signed=True)).pixels
    ds = dicom_dataset(stored, bits_stored=bits, signed=True)
    ds.compress(syntax, encoding_plugin="pydicom" if syntax == RLELossless else "pylibjpeg")
    path = save(ds, tmp_path / "c.dcm")
    for plugin in plugins:
        np.testing.assert_array_equal(read_dicom(path, decoding_plugin=plugin).pixels, native)


def test_multi_frame_rle_first_frame(tmp_path: Path) -> None:
    frames = np.stack([quantize(phantom(), 16), quantize(1 - phantom(), 16)])
    ds = dicom_dataset(frames, bits_stored=16, n_frames=2, **window_for(16))
    ds.compress(RLELossless, encoding_plugin="pydicom")
    img, meta = read_cxr(save(ds, tmp_path / "mf.dcm"))
    single, _ = read_cxr(native_dicom(tmp_path / "f0.dcm", frames[0], bits_stored=16, **window_for(16)))
    np.testing.assert_array_equal(img, single)
    assert meta.n_frames == 2 and meta.transfer_syntax == "RLE Lossless"


# --- what does not decode, and the errors that say why ----------------------------------------------------------

@pytest.mark.parametrize("plugin", ["gdcm", "pillow"])
def test_twelve_bit_jpeg_extended_needs_pylibjpeg(tmp_path: Path, plugin: str) -> None:
    codec = next(c for c in CODECS if c.name == "jpeg-extended-12bit")
    path, _ = codec_dicom(tmp_path / "c.dcm", codec)
    with pytest.raises(MedclrInputError, match="12-bit") as info:
        read_dicom(path, decoding_plugin=plugin)
    assert "pylibjpeg" in str(info.value)


def test_missing_plugin_names_the_package(tmp_path: Path) -> None:
    codec = next(c for c in CODECS if c.syntax == JPEGLSLossless)
    path, _ = codec_dicom(tmp_path / "c.dcm", codec)
    with pytest.raises(MedclrInputError, match="pyjpegls") as info:
        read_dicom(path, decoding_plugin="pyjpegls")  # pydicom knows this plugin; its package is not installed
    assert "gdcm" in str(info.value) and "pylibjpeg" in str(info.value)  # the installed alternatives


def test_no_installed_decoder_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    codec = next(c for c in CODECS if c.syntax == JPEG2000Lossless)
    path, _ = codec_dicom(tmp_path / "c.dcm", codec)
    nothing = SimpleNamespace(is_available=False, available_plugins=(), missing_dependencies=["x"])
    monkeypatch.setattr(dicom_module, "get_decoder", lambda uid: nothing)  # as on a machine without the codecs
    with pytest.raises(MedclrInputError, match="no installed decoder") as info:
        read_cxr(path)
    assert "pylibjpeg-openjpeg" in str(info.value) and "python-gdcm" in str(info.value)


def test_unsupported_transfer_syntax(tmp_path: Path) -> None:
    ds = dicom_dataset(quantize(phantom(), 8), bits_stored=8)
    mpeg2 = UID("1.2.840.10008.1.2.4.100")
    path = save(encapsulated(ds, mpeg2, [b"\x00\x00\x01\xb3" + b"\x00" * 60]), tmp_path / "m.dcm")
    with pytest.raises(MedclrInputError, match="MPEG2") as info:
        read_cxr(path)
    assert "uncompressed" in str(info.value)


@pytest.mark.parametrize("codec", [c for c in CODECS if c.syntax in (JPEGBaseline8Bit, JPEG2000Lossless, RLELossless)],
                         ids=lambda c: c.name)
def test_corrupt_compressed_pixels(tmp_path: Path, codec: Codec) -> None:
    path, _ = codec_dicom(tmp_path / "c.dcm", codec)
    bad = encapsulated(pydicom.dcmread(path), codec.syntax, [b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2])
    with pytest.raises(MedclrInputError, match=r"cannot decode|pixel data|end marker"):
        read_cxr(save(bad, tmp_path / "bad.dcm"))


def test_gdcm_is_only_a_last_resort() -> None:
    """gdcm aborted the process on corrupt JPEG/J2K in the fuzz tests: auto-selection skips it when it can."""
    for codec in CODECS:
        order = _auto_plugins(get_decoder(codec.syntax))
        assert "gdcm" not in order and order == sorted(order, key=PLUGIN_ORDER.index)
    only_gdcm = SimpleNamespace(available_plugins=("gdcm",), is_encapsulated=True)
    assert _auto_plugins(only_gdcm) == ["gdcm"]  # type: ignore[arg-type]


def test_rust_panic_in_the_rle_decoder_is_an_input_error(tmp_path: Path) -> None:
    # 16-bit: 2 segments of 140 replicate runs (128 bytes each) where 4096 bytes fit; pylibjpeg-rle 2.2 panics
    frame = struct.pack("<16I", 2, 64, 64 + 280, *[0] * 13) + b"\x81\x07" * 280
    ds = encapsulated(dicom_dataset(quantize(phantom(), 16), bits_stored=16), RLELossless, [frame])
    path = save(ds, tmp_path / "panic.dcm")
    with pytest.raises(MedclrInputError, match="cannot decode"):
        read_dicom(path, decoding_plugin="pylibjpeg")  # a pyo3 PanicException is a BaseException
