"""read_ecg on DICOM ECG waveforms built with pydicom (12-Lead ECG Waveform Storage, as carts export them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medclr.errors import MedclrInputError
from medclr.io.ecg import read_ecg
from medclr.io.leads import STANDARD_LEADS
from tests.io.ecg_fixtures import (
    SCPECG_LEADS,
    UV_PER_MV,
    multiplex_group,
    stack,
    standard_dicom_ecg,
    synthetic_ecg,
    write_dicom_ecg,
)

UV = 1e-3  # one microvolt in mV: the quantum of the fixtures


def _in_uv(leads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: values * UV_PER_MV for name, values in leads.items()}


def test_cart_like_dicom_reads_the_rhythm_group_not_the_median_beat(tmp_path: Path) -> None:
    path = standard_dicom_ecg(tmp_path / "ecg.dcm", fs=500, n_samples=5000, seed=1)
    signal, meta = read_ecg(path)
    assert signal.shape == (12, 5000) and signal.dtype == np.float32
    assert meta.format == "dicom" and meta.fs == 500.0 and meta.duration_s == 10.0
    assert meta.source_leads == tuple(SCPECG_LEADS[name][1] for name in STANDARD_LEADS)
    assert meta.source_leads[0] == "Lead I (Einthoven)" and meta.source_units == ("uV",) * 12
    np.testing.assert_allclose(signal, stack(synthetic_ecg(5000, 500, seed=1)), atol=UV)


def test_waveform_array_is_what_pydicom_returns_scaled_to_millivolts(tmp_path: Path) -> None:
    path = standard_dicom_ecg(tmp_path / "ecg.dcm", n_samples=1000)
    ds = pydicom.dcmread(path)
    rhythm = ds.waveform_array(1)  # [T, C] in uV (pydicom applies sensitivity, keeps units)
    np.testing.assert_allclose(read_ecg(path)[0], rhythm.T / UV_PER_MV, rtol=1e-6)


def test_leads_are_matched_by_name_in_any_channel_order(tmp_path: Path) -> None:
    leads = synthetic_ecg(600, seed=2)
    order = ["V6", "aVF", "II", "V1", "I", "V3", "aVR", "III", "V2", "aVL", "V5", "V4"]
    path = write_dicom_ecg(tmp_path / "ecg.dcm", [multiplex_group(_in_uv({n: leads[n] for n in order}), 500)])
    signal, meta = read_ecg(path)
    np.testing.assert_allclose(signal, stack(leads), atol=UV)
    assert meta.source_leads[0] == "Lead V6"


@pytest.mark.parametrize("source", ["code", "label"])
def test_codes_or_labels_name_the_leads_without_code_meanings(tmp_path: Path, source: str) -> None:
    leads = synthetic_ecg(300, seed=3)
    path = write_dicom_ecg(tmp_path / "ecg.dcm", [multiplex_group(_in_uv(leads), 500, source=source)])
    signal, meta = read_ecg(path)
    np.testing.assert_allclose(signal, stack(leads), atol=UV)
    expected = tuple(SCPECG_LEADS[n][0] for n in STANDARD_LEADS) if source == "code" else STANDARD_LEADS
    assert meta.source_leads == expected


def test_sensitivity_baseline_correction_and_millivolt_units(tmp_path: Path) -> None:
    leads = synthetic_ecg(400, seed=4)
    group = multiplex_group(leads, 250, units="mV", sensitivity=0.005, baseline=0.2, correction=0.5)
    signal, meta = read_ecg(write_dicom_ecg(tmp_path / "ecg.dcm", [group]))
    assert meta.source_units == ("mV",) * 12 and meta.fs == 250.0
    np.testing.assert_allclose(signal, stack(leads), atol=0.0025 / 2 + 1e-6)  # half a 2.5 uV step


def test_inverted_avr_channel_is_mapped_with_its_sign(tmp_path: Path) -> None:
    leads = synthetic_ecg(300, seed=5)
    channels = {("-aVR" if n == "aVR" else n): (-v if n == "aVR" else v) for n, v in leads.items()}
    signal, meta = read_ecg(write_dicom_ecg(tmp_path / "ecg.dcm", [multiplex_group(_in_uv(channels), 500)]))
    np.testing.assert_allclose(signal, stack(leads), atol=UV)
    assert "Lead -aVR" in meta.source_leads and meta.dropped_leads == ()


def test_padding_samples_become_nan(tmp_path: Path) -> None:
    leads = _in_uv(synthetic_ecg(500, seed=6))
    leads["V2"] = leads["V2"].copy()
    leads["V2"][100:150] = np.nan
    group = multiplex_group(leads, 500, padding=-32768)
    signal, meta = read_ecg(write_dicom_ecg(tmp_path / "ecg.dcm", [group]))
    assert np.isnan(signal[7, 100:150]).all() and not np.isnan(signal[7, :100]).any()
    assert meta.nan_fraction == pytest.approx(50 / 6000)


def test_missing_limb_leads_are_derived_from_a_dicom(tmp_path: Path) -> None:
    leads = synthetic_ecg(500, seed=7)
    kept = {n: v for n, v in leads.items() if n in ("I", "II") or n.startswith("V")}  # 8-lead storage
    signal, meta = read_ecg(write_dicom_ecg(tmp_path / "ecg.dcm", [multiplex_group(_in_uv(kept), 500)]))
    assert meta.derived_leads == ("III", "aVR", "aVL", "aVF")
    np.testing.assert_allclose(signal, stack(leads), atol=2 * UV)


def test_expected_fs_mismatch(tmp_path: Path) -> None:
    path = standard_dicom_ecg(tmp_path / "ecg.dcm", fs=1000, n_samples=2000)
    with pytest.raises(MedclrInputError, match=r"sampled at 1000 Hz, expected 500 Hz"):
        read_ecg(path, expected_fs=500)


def test_image_dicom_points_to_read_cxr(tmp_path: Path, real_data: Path) -> None:
    with pytest.raises(MedclrInputError, match=r"holds an image, not an ECG waveform.*read_cxr"):
        read_ecg(write_dicom_ecg(tmp_path / "image.dcm", [], with_pixels=True))
    with pytest.raises(MedclrInputError, match=r"read_cxr"):
        read_ecg(next((real_data / "siim_dicom").glob("*.dcm")))


def test_dicom_without_waveform_or_pixels(tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match=r"no Waveform Sequence"):
        read_ecg(write_dicom_ecg(tmp_path / "empty.dcm", []))


def test_truncated_waveform_data(tmp_path: Path) -> None:
    group = multiplex_group(_in_uv(synthetic_ecg(300)), 500)
    group.WaveformData = group.WaveformData[: len(group.WaveformData) // 2]
    with pytest.raises(MedclrInputError, match=r"12 channels \(12 defined\) x 300 samples need 7200 bytes"):
        read_ecg(write_dicom_ecg(tmp_path / "short.dcm", [group]))


def test_uncalibrated_channels_are_rejected(tmp_path: Path) -> None:
    group = multiplex_group(_in_uv(synthetic_ecg(300)), 500)
    for channel in group.ChannelDefinitionSequence:
        del channel.ChannelSensitivity
    with pytest.raises(MedclrInputError, match=r"lead 'Lead I \(Einthoven\)' is in unit '', not a voltage"):
        read_ecg(write_dicom_ecg(tmp_path / "raw.dcm", [group]))


def test_too_few_leads_in_a_dicom(tmp_path: Path) -> None:
    leads = synthetic_ecg(300)
    three = _in_uv({n: leads[n] for n in ("II", "V1", "V5")})
    with pytest.raises(MedclrInputError, match=r"ECG has 3 of the 12 standard leads.*missing: I, III"):
        read_ecg(write_dicom_ecg(tmp_path / "rhythm3.dcm", [multiplex_group(three, 500)]))


def test_dicom_without_preamble_or_extension_is_found_by_content(tmp_path: Path) -> None:
    path = standard_dicom_ecg(tmp_path / "ecg.dcm", n_samples=500)
    bare = tmp_path / "ECG0001"
    bare.write_bytes(path.read_bytes())
    assert read_ecg(bare)[0].shape == (12, 500)
