"""medclr.io.read_cxr: real NIH PNGs and a real SIIM DICOM as they are, synthetic DICOM/PNG/JPEG known values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi_lut, convert_color_space

from medclr.errors import MedclrInputError
from medclr.io.cxr import CxrMeta, pil_to_float, read_cxr
from medclr.io.dicom import apply_window, read_dicom
from tests.io.cxr_fixtures import (
    NATIVE_SYNTAXES,
    dicom_dataset,
    native_dicom,
    phantom,
    quantize,
    save,
    window_for,
    write_jpeg,
    write_png,
)

BT601 = np.array([0.299, 0.587, 0.114])


def _check_image(img: np.ndarray, meta: CxrMeta) -> None:
    assert img.dtype == np.float32 and img.ndim == 2
    assert img.shape == (meta.height, meta.width)
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0


def _band(img: np.ndarray, r0: float, r1: float, c0: float, c1: float) -> float:
    h, w = img.shape
    return float(img[int(r0 * h) : int(r1 * h), int(c0 * w) : int(c1 * w)].mean())


def _spine_minus_lungs(img: np.ndarray) -> float:
    """Vertical spine/mediastinum column minus the two lung fields: > 0 upright, ~0 or < 0 if transposed."""
    lungs = (_band(img, 0.3, 0.6, 0.15, 0.35) + _band(img, 0.3, 0.6, 0.65, 0.85)) / 2
    return _band(img, 0.3, 0.7, 0.45, 0.55) - lungs


def _bottom_minus_top(img: np.ndarray) -> float:
    """Rows 65-95 % (diaphragm, heart, abdomen: bright) minus rows 5-35 % (apices, neck); negated by a flip."""
    return _band(img, 0.65, 0.95, 0.15, 0.85) - _band(img, 0.05, 0.35, 0.15, 0.85)


# --- real files ---------------------------------------------------------------------------------------------------

def test_real_nih_pngs_match_pillow_and_are_upright(real_data: Path) -> None:
    paths = sorted((real_data / "nih_chestxray14" / "images").glob("*.png"))
    assert len(paths) == 24
    bottom_minus_top = []
    for path in paths:
        img, meta = read_cxr(path)
        _check_image(img, meta)
        assert img.shape == (1024, 1024) and meta.format == "png" and meta.bits_stored == 8
        assert (meta.voi, meta.inverted, meta.n_frames, meta.transfer_syntax) == ("full_range", False, 1, None)
        with Image.open(path) as raw:
            assert meta.photometric == raw.mode
            if raw.mode == "L":  # same pixels as Pillow, same place: no flip, no transpose, no inversion
                np.testing.assert_array_equal(img, np.asarray(raw, dtype=np.float32) / 255)
            else:  # one NIH file is RGBA (grey in RGB, opaque alpha)
                np.testing.assert_allclose(img, np.asarray(raw.convert("L"), dtype=np.float32) / 255, atol=1 / 255)
        assert _spine_minus_lungs(img) > 0.05, path.name
        assert _spine_minus_lungs(img.T) < 0.05, path.name
        bottom_minus_top.append(_bottom_minus_top(img))
        assert bottom_minus_top[-1] > 0.02, path.name  # fails for every file if flipped upside down
    assert np.mean(bottom_minus_top) > 0.2


def test_real_siim_dicom(real_data: Path) -> None:
    (path,) = sorted((real_data / "siim_dicom").glob("*.dcm"))
    img, meta = read_cxr(path)
    _check_image(img, meta)
    assert (meta.format, meta.modality, meta.view_position, meta.photometric) == ("dicom", "CR", "PA", "MONOCHROME2")
    assert (meta.height, meta.width, meta.bits_stored, meta.n_frames) == (1024, 1024, 8, 1)
    assert meta.pixel_spacing_mm == pytest.approx((0.168, 0.168))
    assert meta.transfer_syntax == "JPEG Baseline (Process 1)"
    assert (meta.voi, meta.inverted) == ("minmax", False)  # no window in the file: min-max, recorded
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64)
    np.testing.assert_allclose(img, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
    assert _spine_minus_lungs(img) > 0.05 > _spine_minus_lungs(img.T)
    assert _bottom_minus_top(img) > 0.1 > _bottom_minus_top(np.flipud(img))
    patient = str(pydicom.dcmread(path).PatientName)
    assert patient and patient not in repr(meta)


@pytest.mark.parametrize("plugin", ["gdcm", "pillow", "pylibjpeg"])
def test_real_siim_dicom_every_jpeg_decoder(real_data: Path, plugin: str) -> None:
    (path,) = sorted((real_data / "siim_dicom").glob("*.dcm"))
    reference, _ = read_cxr(path)
    decoded = read_dicom(path, decoding_plugin=plugin)
    np.testing.assert_allclose(decoded.pixels, reference, atol=3 / 254)  # IDCTs differ by a grey level or two


# --- DICOM grayscale pipeline ------------------------------------------------------------------------------------

def test_monochrome1_is_the_inverse_of_monochrome2(tmp_path: Path) -> None:
    stored = quantize(phantom(), 12)
    v2, m2 = read_cxr(native_dicom(tmp_path / "m2.dcm", stored, bits_stored=12, **window_for(12)))
    v1, m1 = read_cxr(native_dicom(tmp_path / "m1.dcm", stored, bits_stored=12, photometric="MONOCHROME1",
                                   **window_for(12)))
    np.testing.assert_allclose(v1, 1.0 - v2, atol=1e-6)
    assert (m1.inverted, m2.inverted, m1.photometric) == (True, False, "MONOCHROME1")


def test_presentation_lut_inverse_inverts_monochrome2(tmp_path: Path) -> None:
    stored = quantize(phantom(), 8)
    plain, _ = read_cxr(native_dicom(tmp_path / "a.dcm", stored, bits_stored=8))
    inverse, meta = read_cxr(native_dicom(tmp_path / "b.dcm", stored, bits_stored=8, PresentationLUTShape="INVERSE"))
    np.testing.assert_allclose(inverse, 1.0 - plain, atol=1e-6)
    assert meta.inverted and meta.voi == "minmax"


def test_rescale_slope_intercept_then_window(tmp_path: Path) -> None:
    stored = quantize(phantom(), 12)
    path = native_dicom(tmp_path / "r.dcm", stored, bits_stored=12, RescaleSlope=2.0, RescaleIntercept=-1024.0,
                        WindowCenter=1000.0, WindowWidth=3001.0)
    img, meta = read_cxr(path)
    expected = apply_window(stored.astype(np.float64) * 2.0 - 1024.0, 1000.0, 3001.0)
    np.testing.assert_allclose(img, expected, atol=1e-6)
    assert meta.voi == "window" and ((img > 0.05) & (img < 0.95)).mean() > 0.3
    assert np.abs(img - apply_window(stored, 1000.0, 3001.0)).max() > 0.1  # the rescale mattered


def test_negative_slope_with_minmax_flips_the_grey_scale(tmp_path: Path) -> None:
    stored = quantize(phantom(), 10)
    plain, _ = read_cxr(native_dicom(tmp_path / "a.dcm", stored, bits_stored=10))
    negated, meta = read_cxr(native_dicom(tmp_path / "b.dcm", stored, bits_stored=10, RescaleSlope=-1.0,
                                          RescaleIntercept=0.0))
    np.testing.assert_allclose(negated, 1.0 - plain, atol=1e-6)
    assert meta.voi == "minmax" and not meta.inverted


def test_window_known_values() -> None:
    x = np.array([74.0, 74.5, 75.0, 100.0, 124.0, 124.5, 125.0, 112.75])
    linear = apply_window(x, 100.0, 51.0, "LINEAR")
    np.testing.assert_allclose(linear[:7], [0.0, 0.0, 0.01, 0.51, 0.99, 1.0, 1.0], atol=1e-12)
    exact = apply_window(x, 100.0, 51.0, "LINEAR_EXACT")
    np.testing.assert_allclose(exact[:4], [0.0, 0.0, 0.5 - 25 / 51, 0.5], atol=1e-12)
    sigmoid = apply_window(x, 100.0, 51.0, "SIGMOID")
    np.testing.assert_allclose(sigmoid[[3, 7]], [0.5, 1 / (1 + np.exp(-1.0))], atol=1e-12)
    np.testing.assert_array_equal(apply_window(x, 100.0, 1.0), (x > 99.5).astype(float))  # w = 1: a threshold
    with pytest.raises(ValueError, match=">= 1"):
        apply_window(x, 100.0, 0.5, "LINEAR")
    with pytest.raises(ValueError, match="> 0"):
        apply_window(x, 100.0, 0.0, "SIGMOID")


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_matches_pydicom_reference(tmp_path: Path, function: str) -> None:
    stored = quantize(phantom(), 12)
    # two windows: the first pair is used
    attrs: dict[str, Any] = {"WindowCenter": [1500.0, 9.0], "WindowWidth": [801.0, 2.0], "VOILUTFunction": function}
    img, meta = read_cxr(native_dicom(tmp_path / "w.dcm", stored, bits_stored=12, **attrs))
    ds = dicom_dataset(stored, bits_stored=12, **attrs)
    reference = apply_voi_lut(stored, ds, prefer_lut=False) / 4095.0  # pydicom outputs [0, 2**bits - 1]
    np.testing.assert_allclose(img, reference, atol=1e-6)
    assert meta.voi == "window"


@pytest.mark.parametrize("width", [0.0, -5.0])
def test_unusable_window_falls_back_to_minmax(tmp_path: Path, width: float) -> None:
    stored = quantize(phantom(), 12)
    img, meta = read_cxr(native_dicom(tmp_path / "w.dcm", stored, bits_stored=12, WindowCenter=100.0,
                                      WindowWidth=width))
    assert meta.voi == "minmax" and img.min() == 0.0 and img.max() == 1.0


def _voi_lut_item(first_mapped: int, bits: int, data: np.ndarray) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(data), first_mapped, bits]
    item.LUTData = [int(v) for v in data]
    item["LUTData"].VR = "US"
    return item


def test_voi_lut_sequence_is_used_before_the_window(tmp_path: Path) -> None:
    stored = quantize(phantom(), 8)
    lut = np.round(np.linspace(0, 1, 100) ** 0.5 * 4095).astype(np.uint16)  # 100 entries from value 50, 12-bit
    ds = dicom_dataset(stored, bits_stored=8, WindowCenter=10.0, WindowWidth=5.0)
    ds.VOILUTSequence = [_voi_lut_item(50, 12, lut)]
    img, meta = read_cxr(save(ds, tmp_path / "lut.dcm"))
    index = np.clip(stored.astype(int) - 50, 0, 99)  # below the first mapped value: entry 0; above: the last
    np.testing.assert_allclose(img, lut[index] / 4095.0, atol=1e-6)
    assert meta.voi == "voi_lut"


@pytest.mark.parametrize("bits", [8, 10, 12, 14, 16])
@pytest.mark.parametrize("signed", [False, True])
def test_bit_depths_signed_and_unsigned(tmp_path: Path, bits: int, signed: bool) -> None:
    stored = quantize(phantom(), bits, signed=signed)
    img, meta = read_cxr(native_dicom(tmp_path / "b.dcm", stored, bits_stored=bits, signed=signed))
    values = stored.astype(np.float64)
    np.testing.assert_allclose(img, (values - values.min()) / (values.max() - values.min()), atol=1e-6)
    assert (meta.bits_stored, meta.voi) == (bits, "minmax")


def test_multi_frame_reads_the_first_frame(tmp_path: Path) -> None:
    frames = np.stack([quantize(phantom(), 12), quantize(1 - phantom(), 12), quantize(phantom().T, 12)])
    img, meta = read_cxr(native_dicom(tmp_path / "mf.dcm", frames, bits_stored=12, n_frames=3, **window_for(12)))
    single, _ = read_cxr(native_dicom(tmp_path / "sf.dcm", frames[0], bits_stored=12, **window_for(12)))
    np.testing.assert_array_equal(img, single)
    assert meta.n_frames == 3


def test_rgb_and_ybr_dicom_become_luminance(tmp_path: Path) -> None:
    grey = phantom()
    rgb = np.stack([grey, grey ** 2, 1 - grey], axis=-1)
    stored = quantize(rgb, 8)
    img, meta = read_cxr(native_dicom(tmp_path / "rgb.dcm", stored, bits_stored=8, photometric="RGB"))
    np.testing.assert_allclose(img, stored.astype(np.float64) @ BT601 / 255.0, atol=1e-6)
    assert (meta.photometric, meta.voi, meta.inverted) == ("RGB", "full_range", False)
    ybr = convert_color_space(stored, "RGB", "YBR_FULL")
    img2, meta2 = read_cxr(native_dicom(tmp_path / "ybr.dcm", ybr, bits_stored=8, photometric="YBR_FULL"))
    np.testing.assert_allclose(img2, img, atol=2 / 255)  # YBR rounding
    assert meta2.photometric == "YBR_FULL"


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # "pa " on purpose: read_cxr upper-cases
def test_pixel_spacing_and_view_position(tmp_path: Path) -> None:
    stored = quantize(phantom(), 8)
    cases = [
        ({"PixelSpacing": [0.2, 0.15], "ImagerPixelSpacing": [0.1, 0.1], "ViewPosition": "pa "}, (0.2, 0.15), "PA"),
        ({"ImagerPixelSpacing": [0.139, 0.14], "ViewPosition": "LL"}, (0.139, 0.14), "LL"),
        ({"PixelSpacing": [-1.0, 0.1], "ViewPosition": ""}, None, None),
        ({}, None, None),
    ]
    for i, (attrs, spacing, view) in enumerate(cases):
        _, meta = read_cxr(native_dicom(tmp_path / f"{i}.dcm", stored, bits_stored=8, **attrs))
        assert meta.pixel_spacing_mm == (pytest.approx(spacing) if spacing else None)
        assert meta.view_position == view and meta.modality == "DX"


@pytest.mark.parametrize("syntax", NATIVE_SYNTAXES, ids=lambda s: s.name)
def test_native_transfer_syntaxes(tmp_path: Path, syntax: pydicom.uid.UID) -> None:
    stored = quantize(phantom(), 12)
    img, meta = read_cxr(native_dicom(tmp_path / "n.dcm", stored, bits_stored=12, transfer_syntax=syntax,
                                      **window_for(12)))
    np.testing.assert_allclose(img, apply_window(stored, 2048, 4096), atol=1e-6)
    assert meta.transfer_syntax == syntax.name


def test_raw_data_set_without_preamble_or_file_meta(tmp_path: Path) -> None:
    stored = quantize(phantom(), 8)
    ds = dicom_dataset(stored, bits_stored=8)
    del ds.file_meta
    path = tmp_path / "raw.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)  # no preamble, no (0002,xxxx) group
    img, meta = read_cxr(path)
    assert meta.transfer_syntax == "Implicit VR Little Endian" and img.shape == stored.shape


# --- PNG / JPEG --------------------------------------------------------------------------------------------------

def test_png_8_and_16_bit(tmp_path: Path) -> None:
    img8, meta8 = read_cxr(write_png(tmp_path / "a.png", quantize(phantom(), 8)))
    np.testing.assert_allclose(img8, quantize(phantom(), 8) / 255.0, atol=1e-7)
    assert (meta8.photometric, meta8.bits_stored, meta8.voi) == ("L", 8, "full_range")
    img16, meta16 = read_cxr(write_png(tmp_path / "b.png", quantize(phantom(), 16)))
    np.testing.assert_allclose(img16, quantize(phantom(), 16) / 65535.0, atol=1e-7)
    assert (meta16.photometric, meta16.bits_stored) == ("I;16", 16)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_pillow_modes(mode: str) -> None:
    values = quantize(phantom(), 16)
    raw = values.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    img = Image.fromarray(values.astype(np.int32)) if mode == "I" else Image.frombytes(mode, values.shape[::-1], raw)
    pixels, bits = pil_to_float(img)
    np.testing.assert_allclose(pixels, values / 65535.0, atol=1e-7)
    assert (img.mode, bits) == (mode, 16)


def test_colour_png_modes_become_luminance(tmp_path: Path) -> None:
    grey = quantize(phantom(), 8)
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)
    expected = rgb.astype(np.float64) @ BT601 / 255.0
    img, meta = read_cxr(write_png(tmp_path / "rgb.png", rgb))
    np.testing.assert_allclose(img, expected, atol=1e-6)
    assert meta.photometric == "RGB" and meta.bits_stored == 8
    rgba, meta_a = read_cxr(write_png(tmp_path / "rgba.png", rgb, mode="RGBA"))
    np.testing.assert_allclose(rgba, expected, atol=1e-6)
    la, meta_la = read_cxr(write_png(tmp_path / "la.png", grey, mode="LA"))
    np.testing.assert_allclose(la, grey / 255.0, atol=1e-7)
    pal, meta_p = read_cxr(write_png(tmp_path / "p.png", grey, mode="P"))  # web palette: approximate
    assert np.abs(pal - grey / 255.0).mean() < 0.05
    assert (meta_a.photometric, meta_la.photometric, meta_p.photometric) == ("RGBA", "LA", "P")


def test_jpeg_grey_and_rgb(tmp_path: Path) -> None:
    grey = quantize(phantom(), 8)
    img, meta = read_cxr(write_jpeg(tmp_path / "g.jpg", grey))
    assert (meta.format, meta.photometric, meta.bits_stored, meta.voi) == ("jpeg", "L", 8, "full_range")
    assert np.abs(img - grey / 255.0).mean() < 0.01
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    img_rgb, meta_rgb = read_cxr(write_jpeg(tmp_path / "c.jpg", rgb))
    assert meta_rgb.photometric == "RGB" and np.abs(img_rgb - grey / 255.0).mean() < 0.01


@pytest.mark.parametrize(("orientation", "k"), [(1, 0), (3, 2), (6, -1), (8, 1)])
@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, k: int, fmt: str) -> None:
    grey = quantize(phantom(48, 64), 8)
    write = write_jpeg if fmt == "jpeg" else write_png
    img, meta = read_cxr(write(tmp_path / f"o.{fmt}", grey, exif_orientation=orientation))
    expected = np.rot90(grey / 255.0, k=k)  # k=-1: rotate 90 degrees clockwise to display (EXIF 6)
    assert img.shape == expected.shape == (meta.height, meta.width)
    assert np.abs(img - expected).mean() < 0.01


def test_dispatch_is_by_content_not_extension(tmp_path: Path) -> None:
    png = write_png(tmp_path / "looks_like.dcm", quantize(phantom(), 8))
    dcm = native_dicom(tmp_path / "looks_like.png", quantize(phantom(), 8), bits_stored=8)
    assert read_cxr(png)[1].format == "png" and read_cxr(dcm)[1].format == "dicom"


# --- privacy -----------------------------------------------------------------------------------------------------

PHI_VALUES: dict[str, Any] = {
    "PatientName": "Doe^Jane^Q", "PatientID": "PID-98765", "PatientBirthDate": "19550505", "PatientSex": "F",
    "PatientAge": "066Y", "OtherPatientIDs": "OTHER-4242", "AccessionNumber": "ACC-1234567",
    "InstitutionName": "St Example Hospital", "InstitutionAddress": "1 Example Road, Springfield",
    "ReferringPhysicianName": "House^Gregory", "OperatorsName": "Tech^Terry", "StudyDate": "20210314",
    "StudyTime": "101112", "SeriesDate": "20210315", "AcquisitionDateTime": "20210314101500",
    "DeviceSerialNumber": "SN-0xDEADBEEF", "StationName": "XRAY-ROOM-7", "StudyID": "STUDY-777",
    "SeriesDescription": "Jane Doe chest two views", "ImageComments": "call Jane on 555-0100",
}


def _phi_dicom(tmp_path: Path) -> tuple[Path, Dataset]:
    ds = dicom_dataset(quantize(phantom(), 12), bits_stored=12, ViewPosition="AP", PixelSpacing=[0.2, 0.2],
                       Manufacturer="ACME", KVP=110.0, **window_for(12), **PHI_VALUES)
    ds.add_new(0x00091010, "LO", "SECRET-PRIVATE-VALUE")
    ds.add_new(0x00091001, "LO", "ACME PRIVATE")  # private creator
    return save(ds, tmp_path / "phi.dcm"), ds


def test_phi_never_reaches_meta_or_the_display_header(tmp_path: Path) -> None:
    from medclr.io.phi import safe_dicom_header

    path, ds = _phi_dicom(tmp_path)
    img, meta = read_cxr(path)
    header = safe_dicom_header(pydicom.dcmread(path))
    shown = repr(meta) + repr(header)
    secrets = [*PHI_VALUES.values(), "SECRET-PRIVATE-VALUE", "Doe", "Jane", "98765", "2021", str(ds.SOPInstanceUID),
               str(ds.StudyInstanceUID), str(ds.file_meta.MediaStorageSOPInstanceUID)]
    for secret in secrets:
        if secret != "F":  # a one-letter sex code would match inside other words; checked as a key below
            assert secret not in shown, secret
    assert not set(header) & set(PHI_VALUES)
    assert (meta.view_position, header["ViewPosition"], header["Rows"], header["Modality"]) == ("AP", "AP", "64", "DX")
    assert header["PixelSpacing"] == "0.2\\0.2" and header["Manufacturer"] == "ACME" and header["KVP"] == "110.0"
    assert not any(key.endswith(("Date", "Time", "UID")) for key in header)
    assert all(isinstance(value, str) and value for value in header.values()) and img.shape == (64, 64)


def test_phi_keywords_follow_ps3_15_table_e1_1() -> None:
    from pydicom.datadict import repeater_has_keyword, tag_for_keyword

    from medclr.io.phi import DISPLAY_KEYWORDS, PHI_KEYWORDS

    named = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "OtherPatientIDs",
             "AccessionNumber", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "InstitutionName",
             "InstitutionAddress", "ReferringPhysicianName", "OperatorsName", "PerformingPhysicianName", "StudyDate",
             "StudyTime", "AcquisitionDateTime", "DeviceSerialNumber", "StationName", "StudyID",
             "RequestAttributesSequence", "SeriesDescription", "StudyDescription", "ImageComments", "PatientAddress",
             "MedicalRecordLocator", "ContentDate", "ProtocolName", "FrameOfReferenceUID", "OverlayData"}
    assert named <= PHI_KEYWORDS and len(PHI_KEYWORDS) > 600
    assert all(tag_for_keyword(k) is not None or repeater_has_keyword(k) for k in PHI_KEYWORDS)
    assert not DISPLAY_KEYWORDS & PHI_KEYWORDS
    assert all(tag_for_keyword(k) is not None for k in DISPLAY_KEYWORDS)
    assert not any(k.endswith(("Date", "Time", "UID")) for k in DISPLAY_KEYWORDS)


def test_safe_header_skips_corrupt_values(tmp_path: Path) -> None:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    from medclr.io.phi import safe_dicom_header

    ds = pydicom.dcmread(save(dicom_dataset(quantize(phantom(), 8), bits_stored=8, KVP=110.0), tmp_path / "x.dcm"))
    rows = Tag("Rows")  # US with 3 bytes: pydicom raises when it converts the value
    ds._dict[rows] = RawDataElement(rows, "US", 3, b"\x01\x02\x03", 0, False, True)
    kvp = Tag("KVP")  # control characters: a corrupt value, never displayed
    ds._dict[kvp] = RawDataElement(kvp, "DS", 4, b"1\x00\xff0", 0, False, True)
    header = safe_dicom_header(ds)
    assert header["Modality"] == "DX" and header["Columns"] == "64"
    assert "Rows" not in header and "KVP" not in header
    with pytest.raises(MedclrInputError, match="Rows is unreadable"):
        read_dicom(save(ds, tmp_path / "y.dcm"))
