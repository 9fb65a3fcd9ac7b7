"""``medclr prepare files``: any folder of the user's own X-rays and ECGs, judged by content, no PHI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from medclr.cli import main
from medclr.data import PrepareOptions, prepare, read_manifest
from medclr.data.sources.files import classify, list_files
from medclr.errors import MedclrInputError
from tests.io.cxr_fixtures import native_dicom, phantom, quantize, write_jpeg, write_png
from tests.io.ecg_fixtures import standard_dicom_ecg, synthetic_ecg, write_wfdb

SIIM = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


def _options(root: Path, **kw: object) -> PrepareOptions:
    return PrepareOptions(root=root, workers=1, progress=False, **kw)  # type: ignore[arg-type]


def _quarantine(path: Path) -> dict[str, tuple[str, str]]:
    """The quarantine CSV as ``{study_id: (modality, reason)}``."""
    table = pd.read_csv(path, dtype=str)
    return {s: (m, r) for s, m, r in zip(table["study_id"], table["modality"], table["reason"], strict=True)}


def test_real_siim_dicom_without_phi(real_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.parquet"
    report = prepare("files", _options(real_data / "siim_dicom"), out)
    assert report.n_rows == 1 and report.n_quarantined == 0 and report.split_counts["test"] == 1
    m = read_manifest(out)
    row = m.frame.iloc[0]
    assert row["study_id"] == SIIM == row["cxr_path"] == row["subject_id"]
    assert row["cxr_view"] == "PA" and pd.isna(row["ecg_path"])
    assert m.modalities == ["cxr"] and m.resolve("cxr", row["cxr_path"]).is_file()
    patient_id = str(pydicom.dcmread(real_data / "siim_dicom" / SIIM, stop_before_pixels=True).PatientID)
    assert len(patient_id) > 8 and patient_id.encode() not in out.read_bytes()


def test_real_wfdb_samples(real_data: Path, tmp_path: Path) -> None:
    report = prepare("files", _options(real_data / "wfdb_samples"), tmp_path / "m.parquet")
    m = read_manifest(tmp_path / "m.parquet")
    assert m.frame["study_id"].tolist() == ["s0010_re"]  # 15 leads incl. the standard 12
    assert m.frame["ecg_path"].tolist() == ["s0010_re"] and m.frame["ecg_fs"].tolist() == [1000.0]
    quarantine = _quarantine(report.quarantine_path)
    assert sorted(quarantine) == ["100", "a103l", "v102s"]  # 2-lead / monitor records
    assert quarantine["100"][0] == "ecg" and "12 standard leads" in quarantine["100"][1]
    extra = m.info.extra
    assert extra["n_files"] == 10 and extra["n_ecg_found"] == 4 and extra["n_wfdb_companion_files"] == 6
    assert extra["n_ignored_files"] == 0


def _mixed(root: Path) -> None:
    """X-rays and ECGs of every supported kind, broken files, and things that are neither."""
    img = quantize(phantom(), 8)
    (root / "patient_a" / "ecg").mkdir(parents=True)
    (root / "patient_b").mkdir()
    write_png(root / "patient_a" / "chest.png", img)
    write_jpeg(root / "patient_a" / "chest_lat.jpg", img)
    native_dicom(root / "patient_b" / "cxr.dcm", img, bits_stored=8, ViewPosition="AP",
                 PatientName="Doe^Johnathan", PatientID="MRN-99812345")
    native_dicom(root / "patient_b" / "IM0001", img, bits_stored=8)  # DICOM without an extension
    standard_dicom_ecg(root / "patient_b" / "ecg.dcm", fs=500.0, n_samples=2500)
    write_wfdb(root / "patient_a" / "ecg", "rest", synthetic_ecg(1000, 500.0), fs=500.0)
    write_png(root / "patient_b" / "really_png.dcm", img)  # a PNG named .dcm: content decides
    (root / "patient_b" / "empty.png").write_bytes(b"")  # named like an image: kept, then quarantined
    jpeg = (root / "patient_a" / "chest_lat.jpg").read_bytes()
    (root / "patient_a" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (root / "notes.txt").write_text("follow-up in 3 months\n")
    (root / "patient_a" / "labs.csv").write_text("test,value\nHb,13.1\n")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


def test_generated_mixed_folder(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    _mixed(root)
    out = tmp_path / "m.parquet"
    report = prepare("files", _options(root), out)
    m = read_manifest(out)
    frame = m.frame.set_index("study_id")
    assert sorted(frame.index) == ["patient_a/chest.png", "patient_a/chest_lat.jpg", "patient_a/ecg/rest",
                                   "patient_b/IM0001", "patient_b/cxr.dcm", "patient_b/ecg.dcm",
                                   "patient_b/really_png.dcm"]
    assert (frame["split"] == "test").all() and not m.labels
    assert frame["cxr_view"].dropna().to_dict() == {"patient_b/cxr.dcm": "AP"}
    assert frame["ecg_path"].dropna().to_dict() == {"patient_a/ecg/rest": "patient_a/ecg/rest",
                                                    "patient_b/ecg.dcm": "patient_b/ecg.dcm"}
    assert frame["ecg_fs"].dropna().to_dict() == {"patient_a/ecg/rest": 500.0, "patient_b/ecg.dcm": 500.0}
    assert frame["cxr_path"].notna().sum() == 5 and frame["ecg_path"].notna().sum() == 2
    assert all(m.resolve("cxr", p).is_file() for p in frame["cxr_path"].dropna())
    quarantine = _quarantine(report.quarantine_path)
    assert sorted(quarantine) == ["patient_a/cut.jpg", "patient_b/empty.png"]
    assert "empty file" in quarantine["patient_b/empty.png"][1]
    assert "truncated" in quarantine["patient_a/cut.jpg"][1].lower()
    extra = m.info.extra
    assert extra["n_ignored_files"] == 3
    assert extra["ignored_files"] == [".DS_Store", "notes.txt", "patient_a/labs.csv"]
    assert extra["n_wfdb_companion_files"] == 1
    data = out.read_bytes()
    assert b"Doe" not in data and b"MRN-99812345" not in data and b"Synthetic" not in data  # no PHI


def test_classify_and_listing(tmp_path: Path) -> None:
    _mixed(tmp_path)
    assert classify(tmp_path / "notes.txt") is None
    assert classify(tmp_path / "patient_b" / "ecg.dcm") == ("ecg", 500.0, None)
    assert classify(tmp_path / "patient_b" / "cxr.dcm") == ("cxr", None, "AP")
    assert classify(tmp_path / "patient_b" / "really_png.dcm") == ("cxr", None, None)
    assert [p.as_posix() for p in list_files(tmp_path)] == [  # files of a folder before its sub-folders, sorted
        ".DS_Store", "notes.txt", "patient_a/chest.png", "patient_a/chest_lat.jpg", "patient_a/cut.jpg",
        "patient_a/labs.csv", "patient_a/ecg/rest.dat", "patient_a/ecg/rest.hea", "patient_b/IM0001",
        "patient_b/cxr.dcm", "patient_b/ecg.dcm", "patient_b/empty.png", "patient_b/really_png.dcm",
    ]


def test_no_usable_files_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="does not exist"):
        prepare("files", _options(tmp_path / "absent"), tmp_path / "m.parquet")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("hello")
    with pytest.raises(MedclrInputError, match=r"no X-ray or ECG files found \(1 other files, e.g. a.txt\)"):
        prepare("files", _options(tmp_path / "docs"), tmp_path / "m.parquet")


def test_cli_prepare_files(real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "both"
    shutil.copytree(real_data / "siim_dicom", root / "xray")
    for name in ("s0010_re.hea", "s0010_re.dat", "s0010_re.xyz"):
        (root / "ecg").mkdir(exist_ok=True)
        shutil.copy(real_data / "wfdb_samples" / name, root / "ecg" / name)
    code = main(["prepare", "files", "--root", str(root), "--out", str(tmp_path / "f.parquet"), "--workers", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 studies" in out and "test 2" in out and "modalities: cxr, ecg" in out and "0 quarantined" in out
