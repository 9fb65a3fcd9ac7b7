"""read_ecg on real PhysioNet records (PTB-XL, CinC-2021, WFDB samples) and on generated WFDB and CSV files."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import wfdb

from medclr.errors import MedclrInputError
from medclr.io.ecg import EcgMeta, read_ecg
from medclr.io.leads import STANDARD_LEADS, canonical_lead
from tests.io.ecg_fixtures import UV_PER_MV, stack, synthetic_ecg, write_csv, write_wfdb

QUANTUM_MV = 1e-3  # PTB-XL and CinC-2021 store 1000 counts per mV


def _ptbxl_headers(real_data: Path) -> list[Path]:
    return sorted((real_data / "ptbxl").glob("records*/00000/*.hea"))


def _wfdb_reference(header: Path) -> np.ndarray:
    """``[12, T]`` float32 straight from wfdb.rdrecord, reordered by name into STANDARD_LEADS."""
    record = wfdb.rdrecord(str(header.with_suffix("")), physical=True)
    index = {canonical_lead(name): i for i, name in enumerate(record.sig_name)}
    return np.stack([record.p_signal[:, index[lead]] for lead in STANDARD_LEADS]).astype(np.float32)


def _assert_einthoven(signal: np.ndarray, tol: float = 3.5 * QUANTUM_MV, min_fraction: float = 0.995) -> None:
    """III = II - I and aVR = -(I + II)/2 (and aVL, aVF) to within rounding on nearly every sample."""
    lead_i, lead_ii = signal[0].astype(np.float64), signal[1].astype(np.float64)
    expected = {2: lead_ii - lead_i, 3: -(lead_i + lead_ii) / 2, 4: lead_i - lead_ii / 2, 5: lead_ii - lead_i / 2}
    for row, value in expected.items():
        agree = np.abs(signal[row] - value) <= tol
        assert agree.mean() >= min_fraction, f"{STANDARD_LEADS[row]}: {agree.mean():.4f} of samples agree"


# ---- real data --------------------------------------------------------------------------------------------


def test_all_ptbxl_records_read_in_standard_order_and_obey_einthoven(real_data: Path) -> None:
    headers = _ptbxl_headers(real_data)
    assert len(headers) == 1000
    for header in headers:
        signal, meta = read_ecg(header.with_suffix(""))
        n = 1000 if header.name.endswith("_lr.hea") else 5000
        assert signal.shape == (12, n) and signal.dtype == np.float32
        assert meta.fs == (100.0 if n == 1000 else 500.0) and meta.duration_s == 10.0
        assert meta.source_leads == ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
        assert meta.source_units == ("mV",) * 12 and meta.derived_leads == () and meta.dropped_leads == ()
        # 00162_hr has a 9-sample spike in aVR and aVF only: Einthoven holds on >= 99.5 % of samples.
        _assert_einthoven(signal)


def test_ptbxl_sample_equals_wfdb_rdrecord_after_reorder(real_data: Path) -> None:
    for header in _ptbxl_headers(real_data)[::10]:  # 100 records, both rates
        signal, _ = read_ecg(header)
        np.testing.assert_array_equal(signal, _wfdb_reference(header))


@pytest.mark.slow
def test_all_ptbxl_records_equal_wfdb_rdrecord(real_data: Path) -> None:
    for header in _ptbxl_headers(real_data):
        np.testing.assert_array_equal(read_ecg(header)[0], _wfdb_reference(header))


def test_all_cinc2021_records(real_data: Path) -> None:
    headers = sorted((real_data / "cinc2021").glob("*.hea"))
    assert len(headers) == 50
    lower_case_units = 0
    for header in headers:
        signal, meta = read_ecg(header.with_suffix(".mat"))
        assert signal.shape == (12, 5000) and meta.fs == 500.0 and meta.format == "wfdb"
        np.testing.assert_array_equal(signal, _wfdb_reference(header))
        lower_case_units += meta.source_units[0] == "mv"
        _assert_einthoven(signal)
    assert lower_case_units > 0  # the 'mv' headers are read as millivolts


def test_ptb_s0010_re_drops_frank_leads(real_data: Path) -> None:
    header = real_data / "wfdb_samples" / "s0010_re.hea"
    signal, meta = read_ecg(header)
    assert signal.shape == (12, 38400) and meta.fs == 1000.0
    assert meta.source_leads[:12] == tuple(name.lower() for name in STANDARD_LEADS)
    assert meta.dropped_leads == ("vx", "vy", "vz") and meta.derived_leads == ()
    assert meta.source_units == ("mV",) * 15  # no units field: WFDB's default, millivolts
    np.testing.assert_array_equal(signal, _wfdb_reference(header))
    _assert_einthoven(signal)  # 2000 counts per mV: the limb leads agree to within rounding


def test_meta_carries_no_header_comments(real_data: Path) -> None:
    _, meta = read_ecg(real_data / "wfdb_samples" / "s0010_re")
    assert {f.name for f in dataclasses.fields(EcgMeta)} == {
        "path",
        "format",
        "fs",
        "n_samples",
        "source_leads",
        "derived_leads",
        "dropped_leads",
        "source_units",
        "nan_fraction",
    }
    shown = repr(dataclasses.replace(meta, path=""))
    assert "female" not in shown and "81" not in shown  # the header comments say: age 81, female


def test_mit_bih_two_leads_is_a_clear_error(real_data: Path) -> None:
    with pytest.raises(MedclrInputError, match=r"100: ECG has 1 of the 12 standard leads.*dropped: MLII"):
        read_ecg(real_data / "wfdb_samples" / "100")


def test_cinc2015_mat_record_is_a_clear_error(real_data: Path) -> None:
    with pytest.raises(MedclrInputError, match=r"a103l\.mat: ECG has 1 of the 12.*dropped: V, PLETH"):
        read_ecg(real_data / "wfdb_samples" / "a103l.mat")


def test_image_files_point_to_read_cxr(real_data: Path) -> None:
    png = next((real_data / "nih_chestxray14").rglob("*.png"))
    with pytest.raises(MedclrInputError, match="read_cxr"):
        read_ecg(png)
    with pytest.raises(MedclrInputError, match="read_cxr"):
        read_ecg(next((real_data / "siim_dicom").glob("*")))


# ---- generated WFDB ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".hea", ".dat"])
def test_wfdb_path_forms_and_order_by_name(tmp_path: Path, suffix: str) -> None:
    leads = synthetic_ecg(1000)
    shuffled = {name: leads[name] for name in ["V3", "aVF", "I", "V1", "III", "V6", "aVR", "II"]}
    shuffled |= {"V2": leads["V2"], "aVL": leads["aVL"], "V5": leads["V5"], "V4": leads["V4"]}
    write_wfdb(tmp_path, "rec", shuffled)
    signal, meta = read_ecg(tmp_path / f"rec{suffix}")
    np.testing.assert_allclose(signal, stack(leads), atol=QUANTUM_MV)
    assert meta.source_leads == tuple(shuffled) and meta.format == "wfdb" and meta.n_samples == 1000


@pytest.mark.parametrize(("unit", "per_mv"), [("uV", UV_PER_MV), ("µV", UV_PER_MV), ("V", 1e-3), ("MV", 1.0)])
def test_wfdb_units_are_converted_to_millivolts(tmp_path: Path, unit: str, per_mv: float) -> None:
    leads = synthetic_ecg(500)
    header = write_wfdb(tmp_path, "rec", {n: v * per_mv for n, v in leads.items()}, adc_gain=1000 / per_mv)
    header.write_text(header.read_text().replace("/mV", f"/{unit}"), encoding="utf-8")
    signal, meta = read_ecg(tmp_path / "rec")
    assert meta.source_units == (unit,) * 12
    np.testing.assert_allclose(signal, stack(leads), atol=QUANTUM_MV)


def test_missing_limb_leads_are_derived_and_listed(tmp_path: Path) -> None:
    leads = synthetic_ecg(800)
    write_wfdb(tmp_path, "rec", {n: v for n, v in leads.items() if n in ("I", "II") or n.startswith("V")})
    signal, meta = read_ecg(tmp_path / "rec")
    assert meta.derived_leads == ("III", "aVR", "aVL", "aVF")
    np.testing.assert_allclose(signal, stack(leads), atol=2 * QUANTUM_MV)


def test_unknown_unit_on_a_standard_lead_is_an_error_but_not_on_a_dropped_channel(tmp_path: Path) -> None:
    leads = synthetic_ecg(200)
    write_wfdb(tmp_path, "ok", leads | {"PLETH": leads["I"]}, units=["mV"] * 12 + ["NU"])
    assert read_ecg(tmp_path / "ok")[1].dropped_leads == ("PLETH",)
    write_wfdb(tmp_path, "bad", leads, units=["mV"] * 6 + ["NU"] + ["mV"] * 5)
    with pytest.raises(MedclrInputError, match=r"lead 'V1' is in unit 'NU', not a voltage"):
        read_ecg(tmp_path / "bad")


def test_nan_fraction_is_reported_and_bounded(tmp_path: Path) -> None:
    leads = synthetic_ecg(1000)
    leads["V4"] = leads["V4"].copy()
    leads["V4"][:100] = np.nan
    write_wfdb(tmp_path, "gap", leads)
    signal, meta = read_ecg(tmp_path / "gap")
    assert meta.nan_fraction == pytest.approx(100 / 12000) and np.isnan(signal[9, :100]).all()
    with pytest.raises(MedclrInputError, match=r"0\.8% of the ECG samples are NaN \(max_nan_fraction=0\.001\)"):
        read_ecg(tmp_path / "gap", max_nan_fraction=0.001)


def test_all_nan_leads(tmp_path: Path) -> None:
    leads = synthetic_ecg(300)
    write_wfdb(tmp_path, "limb", leads | {"aVL": np.full(300, np.nan)})
    assert read_ecg(tmp_path / "limb")[1].derived_leads == ("aVL",)
    write_wfdb(tmp_path, "chest", leads | {"V5": np.full(300, np.nan)})
    with pytest.raises(MedclrInputError, match=r"missing: V5; entirely NaN: V5"):
        read_ecg(tmp_path / "chest")


def test_sampling_rate_checks(tmp_path: Path) -> None:
    write_wfdb(tmp_path, "rec", synthetic_ecg(300), fs=250)
    assert read_ecg(tmp_path / "rec", expected_fs=250)[1].fs == 250.0
    with pytest.raises(
        MedclrInputError, match=r"sampled at 250 Hz, expected 500 Hz.*resample with medclr's transforms"
    ):
        read_ecg(tmp_path / "rec", expected_fs=500)
    with pytest.raises(MedclrInputError, match=r"says 250 Hz but fs=500"):
        read_ecg(tmp_path / "rec", fs=500)
    write_wfdb(tmp_path, "slow", synthetic_ecg(300), fs=10)
    with pytest.raises(MedclrInputError, match=r"10 Hz is outside the plausible ECG range 50-20000 Hz"):
        read_ecg(tmp_path / "slow")


def test_header_without_sampling_rate_needs_fs(tmp_path: Path) -> None:
    header = write_wfdb(tmp_path, "rec", synthetic_ecg(300))
    lines = header.read_text().splitlines()
    header.write_text("\n".join(["rec 12", *lines[1:]]) + "\n")
    with pytest.raises(MedclrInputError, match=r"WFDB header gives no sampling rate.*fs=500"):
        read_ecg(header)
    assert read_ecg(header, fs=500)[1].n_samples == 300  # length inferred from the .dat size


def test_missing_header_and_missing_signal_file(tmp_path: Path) -> None:
    header = write_wfdb(tmp_path, "rec", synthetic_ecg(100))
    header.rename(tmp_path / "moved.hea")
    with pytest.raises(MedclrInputError, match=r"rec\.dat: WFDB header 'rec\.hea' not found"):
        read_ecg(tmp_path / "rec.dat")
    with pytest.raises(MedclrInputError, match="file not found"):
        read_ecg(tmp_path / "rec")
    (tmp_path / "rec.dat").unlink()
    with pytest.raises(MedclrInputError, match=r"moved\.hea: signal file 'rec\.dat' named by the header is missing"):
        read_ecg(tmp_path / "moved")


def test_truncated_signal_file_is_detected_before_wfdb(tmp_path: Path) -> None:
    header = write_wfdb(tmp_path, "rec", synthetic_ecg(1000))
    dat = tmp_path / "rec.dat"
    dat.write_bytes(dat.read_bytes()[: 24 * 600])  # whole frames: wfdb alone would raise a bare ValueError
    with pytest.raises(MedclrInputError, match=r"holds 600 samples but the header says 1000 \(truncated"):
        read_ecg(header)


def test_huge_sig_len_fails_fast_without_allocating(tmp_path: Path) -> None:
    header = write_wfdb(tmp_path, "rec", synthetic_ecg(100))
    lines = header.read_text().splitlines()
    lines[0] = "rec 12 500 900000000000"
    header.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(MedclrInputError, match="truncated file or header/data mismatch"):
        read_ecg(header)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "no valid record line"),
        ("rec 12 500 100\n", "declares 12 signals but has 0 signal lines"),
        ("rec/3 12 500 100\n", "multi-segment"),
        ("rec 12 500 100\nrec.dat 999 1000/mV 16 0 0 0 0 I\n", "declares 12 signals"),
        ("rec 1 500 100\nrec.dat 999 1000/mV 16 0 0 0 0 I\n", "unsupported WFDB signal format '999'"),
        ("\x00\xff\xfe binary", "no valid record line|corrupt"),
    ],
)
def test_corrupt_headers(tmp_path: Path, text: str, match: str) -> None:
    write_wfdb(tmp_path, "rec", synthetic_ecg(100))
    (tmp_path / "rec.hea").write_bytes(text.encode("latin-1"))
    with pytest.raises(MedclrInputError, match=match):
        read_ecg(tmp_path / "rec")


# ---- CSV --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("time_column", ["time_s", "time_ms", "t", "time", "seconds", "time (ms)", "time [s]"])
def test_csv_time_column_gives_fs(tmp_path: Path, time_column: str) -> None:
    leads = synthetic_ecg(500, fs=250)
    path = write_csv(tmp_path / "ecg.csv", leads, fs=250, time_column=time_column)
    signal, meta = read_ecg(path)
    assert meta.fs == 250.0 and meta.format == "csv" and meta.source_leads == STANDARD_LEADS
    np.testing.assert_allclose(signal, stack(leads), atol=1e-5)


def test_csv_without_time_column_needs_fs(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ecg.csv", synthetic_ecg(200), time_column=None)
    with pytest.raises(
        MedclrInputError, match=r"no time column.*Fix: pass the sampling rate, read_ecg\(path, fs=500\)"
    ):
        read_ecg(path)
    assert read_ecg(path, fs=500)[1].duration_s == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("suffix", "per_mv"), [(" (uV)", UV_PER_MV), (" [mV]", 1.0), ("_uV", UV_PER_MV), (" (µV)", UV_PER_MV), ("_V", 1e-3)]
)
def test_csv_units_from_header_suffix(tmp_path: Path, suffix: str, per_mv: float) -> None:
    leads = synthetic_ecg(200)
    path = write_csv(tmp_path / "ecg.csv", {f"{n}{suffix}": v * per_mv for n, v in leads.items()})
    signal, meta = read_ecg(path)
    np.testing.assert_allclose(signal, stack(leads), atol=1e-4)
    assert meta.source_leads[0] == f"I{suffix}"


def test_csv_semicolons_comments_bom_and_dicom_style_names(tmp_path: Path) -> None:
    leads = synthetic_ecg(100)
    named = {("Lead I (Einthoven)" if n == "I" else f"Lead {n}"): v for n, v in leads.items()}
    path = write_csv(tmp_path / "ecg.csv", named, delimiter=";")
    path.write_bytes(b"\xef\xbb\xbf# exported by a cart\n" + path.read_bytes())
    signal, meta = read_ecg(path)
    np.testing.assert_allclose(signal, stack(leads), atol=1e-5)
    assert meta.source_units == ("mV",) * 12


def test_csv_inverted_avr_and_dropped_columns(tmp_path: Path) -> None:
    leads = synthetic_ecg(100)
    columns = {("-aVR" if n == "aVR" else n): (-v if n == "aVR" else v) for n, v in leads.items()}
    path = write_csv(tmp_path / "ecg.csv", columns | {"RESP": leads["I"]})
    signal, meta = read_ecg(path)
    np.testing.assert_allclose(signal, stack(leads), atol=1e-5)
    assert meta.dropped_leads == ("RESP",) and "-aVR" in meta.source_leads


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "CSV file is empty"),
        ("\n# only a comment\n", "CSV file is empty"),
        ("time_s,I,II\n", "header row but no samples"),
        ("0.1,0.2,0.3\n0.2,0.3,0.4\n", "first row holds numbers, not lead names"),
        ("t,I,II\n0,1,2\n0.002,abc,3\n", r"value 'abc' in column 2, data row 2 is not a number"),
        ("t,I,II\n0,1,2\n0.002,1,2,3,4\n", "do not match the header"),
        ("t,I,II,V1\n0,1,2\n", "data rows have 3 fields but the header names 4"),
        ("t,I,II\n0,1,2\n0.002,1,2\n0.010,1,2\n", "not uniformly sampled"),
        ("t,I,II\n0,1,2\n0,1,2\n", "finite, increasing"),
        ("t,I (counts),II\n0,1,2\n0.002,1,2\n", "lead 'I \\(counts\\)' is in unit 'counts'"),
        ("t,I,II\n0,1,2\n0.002,1,2\n", "ECG has 2 of the 12 standard leads"),
    ],
)
def test_bad_csv(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(MedclrInputError, match=match):
        read_ecg(path)


def test_csv_fs_must_agree_with_time_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ecg.csv", synthetic_ecg(100), fs=500)
    assert read_ecg(path, fs=500)[1].fs == 500.0
    with pytest.raises(MedclrInputError, match=r"time column 'time_s' says 500 Hz but fs=250"):
        read_ecg(path, fs=250)


def test_csv_with_time_in_ms_named_time_is_caught_by_the_range_check(tmp_path: Path) -> None:
    leads = synthetic_ecg(100)
    path = write_csv(tmp_path / "ecg.csv", leads, fs=500, time_column="time_ms")
    path.write_text(path.read_text().replace("time_ms", "time", 1))
    with pytest.raises(MedclrInputError, match=r"0\.5 Hz is outside.*must be named time_ms"):
        read_ecg(path)


def test_non_ecg_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.bin"
    path.write_bytes(b"\x00\x01\x02 not an ecg")
    with pytest.raises(MedclrInputError, match="not an ECG file"):
        read_ecg(path)


def test_csv_with_a_utf8_character_split_by_the_sniff_window(tmp_path: Path) -> None:
    leads = synthetic_ecg(100)
    path = write_csv(tmp_path / "ecg.csv", {f"{n} (µV)": v * UV_PER_MV for n, v in leads.items()})
    comment = "#" + "x" * 130 + "µ\n"  # bytes 131-132: the 2-byte µ straddles the end of the sniff window
    path.write_bytes(comment.encode() + path.read_bytes())
    signal, meta = read_ecg(path)
    np.testing.assert_allclose(signal, stack(leads), atol=1e-4)
    assert meta.source_units == ("µV",) * 12
