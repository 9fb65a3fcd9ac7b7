"""``medclr prepare mimic-cxr`` on generated MIMIC-CXR-JPG / MIMIC-CXR (DICOM) trees with exact real layouts."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclr.cli import main
from medclr.data import Manifest, PrepareOptions, prepare, read_manifest
from medclr.errors import MedclrInputError
from tests.data.cxr_layouts import (
    MimicImage,
    MimicLabels,
    MimicReport,
    mimic_report,
    truncate,
    write_mimic_cxr_dicom,
    write_mimic_cxr_jpg,
    write_mimic_reports,
    write_mimic_reports_zip,
    write_mimic_tables,
)

S1, S2, S3, S4, S5 = 10000032, 10000764, 10000898, 10000935, 10001038
IMAGES = [
    # study 50414267: PA + lateral -> the PA image; labels with an uncertain cell
    MimicImage(S1, 50414267, "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "PA"),
    MimicImage(S1, 50414267, "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "LATERAL"),
    # study 53189527: portable AP only, written time 08:47:16 as the number 84716.0
    MimicImage(S1, 53189527, "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "AP", study_date=21800626,
               study_time=84716.0),
    # study 57375967: AP sorts first by dicom_id, PA must still win
    MimicImage(S2, 57375967, "0a0fa0bb-8d9ef4e7-0c6e0e0f-0d4a9c11-11111111", "AP", split="validate"),
    MimicImage(S2, 57375967, "ffae8c4b-1c0a7b33-6d4b8f40-7c3e9b1a-22222222", "PA", split="validate"),
    # study 50771383: lateral only -> quarantined
    MimicImage(S3, 50771383, "5c0a1d6c-93a4f66b-0b1d8f6a-14c4b8e9-33333333", "LATERAL"),
    # study 51178377: blank ViewPosition, the view code says postero-anterior; test split
    MimicImage(S4, 51178377, "8959e402-2175d68d-edba5a6c-baab51c3-44444444", "", split="test",
               view_meaning="postero-anterior"),
    # study 58224467: no report anywhere -> kept, report null
    MimicImage(S5, 58224467, "9a2bc0a1-6e13c5a2-9d2f1b0e-1f3d8a7c-55555555", "AP"),
    # study 52654671: report with no content -> kept, report null
    MimicImage(S5, 52654671, "a1b2c3d4-a1b2c3d4-a1b2c3d4-a1b2c3d4-66666666", "PA"),
    # study 56699142: truncated JPEG -> quarantined by the file check
    MimicImage(S5, 56699142, "b1b2c3d4-a1b2c3d4-a1b2c3d4-a1b2c3d4-77777777", "PA"),
    # study 59216400: image file missing -> quarantined by the file check
    MimicImage(S5, 59216400, "c1b2c3d4-a1b2c3d4-a1b2c3d4-a1b2c3d4-88888888", "PA", write_file=False),
    # study 53911762: unparseable label cell -> quarantined
    MimicImage(S5, 53911762, "d1b2c3d4-a1b2c3d4-a1b2c3d4-a1b2c3d4-99999999", "PA"),
    # study 54205396: StudyTime 25:00 -> quarantined
    MimicImage(S5, 54205396, "e1b2c3d4-a1b2c3d4-a1b2c3d4-a1b2c3d4-aaaaaaaa", "PA", study_time=250000.0),
    # study 55123908: report is not UTF-8 -> quarantined
    MimicImage(S5, 55123908, "f1b2c3d4-a1b2c3d4-a1b2c3d4-a1b2c3d4-bbbbbbbb", "PA"),
    # study 57021345: not in the split table -> quarantined
    MimicImage(S5, 57021345, "01b2c3d4-a1b2c3d4-a1b2c3d4-a1b2c3d4-cccccccc", "PA", in_split_table=False),
]
LABELS = [
    MimicLabels(S1, 50414267, {"Cardiomegaly": 1.0, "Edema": -1.0, "Pneumothorax": 0.0}),
    MimicLabels(S1, 53189527, {"No Finding": 1.0}),
    MimicLabels(S2, 57375967, {"Pleural Effusion": 1.0, "Atelectasis": -1.0}),
    MimicLabels(S3, 50771383, {"No Finding": 1.0}),
    # 51178377 has no labeler row -> NaN labels
    MimicLabels(S5, 58224467, {"Support Devices": 1.0}),
    MimicLabels(S5, 52654671, {}),
    MimicLabels(S5, 56699142, {}),
    MimicLabels(S5, 59216400, {}),
    MimicLabels(S5, 53911762, {"Edema": "maybe"}),
    MimicLabels(S5, 54205396, {}),
    MimicLabels(S5, 55123908, {}),
    MimicLabels(S5, 57021345, {}),
]
FINDINGS = "PA and lateral views of the chest. The heart is mildly\n enlarged. No pneumothorax."
REPORTS = [
    MimicReport(S1, 50414267, mimic_report(FINDINGS, "Mild cardiomegaly.")),
    MimicReport(S1, 53189527, mimic_report("Lungs are clear.", "No acute process.")),
    MimicReport(S2, 57375967, mimic_report("Small left effusion.", "Left effusion, ___ atelectasis.")),
    MimicReport(S3, 50771383, mimic_report("Lateral only.", "Normal.")),
    MimicReport(S4, 51178377, "FINAL REPORT\n IMPRESSION: Normal chest.\n"),
    MimicReport(S5, 52654671, "                 FINAL REPORT\n INDICATION: ___\n IMPRESSION: ___\n"),
    MimicReport(S5, 56699142, mimic_report("Clear.", "Normal.")),
    MimicReport(S5, 59216400, mimic_report("Clear.", "Normal.")),
    MimicReport(S5, 53911762, mimic_report("Clear.", "Normal.")),
    MimicReport(S5, 54205396, mimic_report("Clear.", "Normal.")),
    MimicReport(S5, 55123908, b"FINDINGS: heart size \xff\xfe normal.\n"),
    MimicReport(S5, 57021345, mimic_report("Clear.", "Normal.")),
]
GOOD = {"50414267", "53189527", "57375967", "51178377", "58224467", "52654671"}
QUARANTINED = {"50771383", "56699142", "59216400", "53911762", "54205396", "55123908", "57021345"}


def _options(root: Path, **kw: object) -> PrepareOptions:
    return PrepareOptions(root=root, workers=1, progress=False, **kw)  # type: ignore[arg-type]


def _corrupt(folder: Path, fmt: str) -> None:
    truncate(folder / IMAGES[9].path(fmt), 0.4)


@pytest.fixture(scope="module")
def jpg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MIMIC-CXR-JPG 2.1.0 and the extracted reports side by side under one root."""
    root = tmp_path_factory.mktemp("mimic")
    jpg = write_mimic_cxr_jpg(root / "mimic-cxr-jpg" / "2.1.0", IMAGES, LABELS)
    _corrupt(jpg, "jpg")
    write_mimic_reports(root / "mimic-cxr-reports", REPORTS)
    return root


@pytest.fixture(scope="module")
def jpg_manifest(jpg_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("out") / "m.parquet"
    prepare("mimic-cxr", _options(jpg_root), out)
    return read_manifest(out)


def _quarantine(manifest: Manifest) -> pd.DataFrame:
    assert manifest.path is not None
    return pd.read_csv(manifest.path.with_name(f"{manifest.path.stem}.quarantine.csv"), dtype=str)


def test_one_row_per_study_with_official_splits(jpg_manifest: Manifest) -> None:
    frame = jpg_manifest.frame.set_index("study_id")
    assert set(frame.index) == GOOD
    assert frame["split"].to_dict() == {"50414267": "train", "53189527": "train", "57375967": "val",
                                        "51178377": "test", "58224467": "train", "52654671": "train"}
    assert frame.loc["57375967", "subject_id"] == str(S2)
    assert jpg_manifest.info.n_quarantined == len(QUARANTINED)
    assert "validate -> val" in jpg_manifest.info.split_protocol


def test_frontal_choice_pa_over_ap_and_view_code_fallback(jpg_manifest: Manifest) -> None:
    frame = jpg_manifest.frame.set_index("study_id")
    assert frame.loc["50414267", "cxr_view"] == "PA" and frame.loc["50414267", "meta/n_images"] == 2
    assert frame.loc["50414267", "meta/dicom_id"] == IMAGES[0].dicom_id
    assert frame.loc["57375967", "cxr_view"] == "PA" and frame.loc["57375967", "meta/dicom_id"] == IMAGES[4].dicom_id
    assert frame.loc["53189527", "cxr_view"] == "AP"
    assert frame.loc["51178377", "cxr_view"] == "PA"  # blank ViewPosition, view code "postero-anterior"
    assert "PA, then AP" in jpg_manifest.info.extra["image_choice"]


def test_paths_are_relative_posix_and_resolve(jpg_manifest: Manifest) -> None:
    frame = jpg_manifest.frame.set_index("study_id")
    assert frame.loc["50414267", "cxr_path"] == f"files/p10/p{S1}/s50414267/{IMAGES[0].dicom_id}.jpg"
    for rel in frame["cxr_path"]:
        assert not Path(rel).is_absolute() and "\\" not in rel
        assert jpg_manifest.resolve("cxr", rel).is_file()
    assert jpg_manifest.info.roots["cxr"].endswith("mimic-cxr-jpg/2.1.0")
    assert jpg_manifest.info.extra["layout"] == "MIMIC-CXR-JPG (.jpg)"


def test_labels_u_ignore_and_blank_is_nan(jpg_manifest: Manifest) -> None:
    frame = jpg_manifest.frame.set_index("study_id")
    assert len(jpg_manifest.labels) == 14 and jpg_manifest.info.label_sets["chexpert"][0] == "No Finding"
    assert frame.loc["50414267", "label/Cardiomegaly"] == 1.0
    assert frame.loc["50414267", "label/Pneumothorax"] == 0.0
    assert math.isnan(frame.loc["50414267", "label/Edema"])  # uncertain -> NaN
    assert math.isnan(frame.loc["50414267", "label/Fracture"])  # blank -> NaN
    assert np.isnan(frame.loc["51178377", [f"label/{n}" for n in jpg_manifest.labels]].to_numpy(float)).all()
    assert jpg_manifest.info.extra["studies_without_labels"] == 1
    assert "U-Ignore" in jpg_manifest.info.label_policy["uncertain"]
    assert "CheXpert" in jpg_manifest.info.label_policy["labeler"]


@pytest.mark.parametrize(("policy", "value", "name"), [("zeros", 0.0, "U-Zeros"), ("ones", 1.0, "U-Ones")])
def test_uncertain_policies(jpg_root: Path, tmp_path: Path, policy: str, value: float, name: str) -> None:
    prepare("mimic-cxr", _options(jpg_root, uncertain=policy), tmp_path / "m.parquet")
    manifest = read_manifest(tmp_path / "m.parquet")
    frame = manifest.frame.set_index("study_id")
    assert frame.loc["50414267", "label/Edema"] == value and frame.loc["57375967", "label/Atelectasis"] == value
    assert math.isnan(frame.loc["50414267", "label/Fracture"])  # blank stays unknown under every policy
    assert name in manifest.info.label_policy["uncertain"]


def test_report_text_findings_then_impression(jpg_manifest: Manifest) -> None:
    frame = jpg_manifest.frame.set_index("study_id")
    assert frame.loc["50414267", "report"] == (
        "PA and lateral views of the chest. The heart is mildly enlarged. No pneumothorax. Mild cardiomegaly."
    )
    assert frame.loc["57375967", "report"] == "Small left effusion. Left effusion, atelectasis."
    assert frame.loc["51178377", "report"] == "Normal chest."
    assert pd.isna(frame.loc["58224467", "report"]) and pd.isna(frame.loc["52654671", "report"])
    assert jpg_manifest.info.extra["studies_without_report"] == 1
    assert jpg_manifest.info.extra["reports_without_text"] == 1


def test_study_time_from_date_and_time(jpg_manifest: Manifest) -> None:
    frame = jpg_manifest.frame.set_index("study_id")
    assert frame.loc["50414267", "study_time"] == pd.Timestamp("2180-05-06 21:30:14.531")
    assert frame.loc["53189527", "study_time"] == pd.Timestamp("2180-06-26 08:47:16")


def test_quarantine_lists_every_bad_study_with_a_reason(jpg_manifest: Manifest) -> None:
    q = _quarantine(jpg_manifest).set_index("study_id")
    assert set(q.index) == QUARANTINED
    assert "no frontal image" in q.loc["50771383", "reason"] and q.loc["50771383", "modality"] == "cxr"
    assert q.loc["56699142", "modality"] == "cxr" and "cannot decode the JPEG" in q.loc["56699142", "reason"]
    assert q.loc["59216400", "modality"] == "cxr"
    assert "'Edema' is 'maybe'" in q.loc["53911762", "reason"]
    assert "StudyDate/StudyTime" in q.loc["54205396", "reason"]
    assert q.loc["55123908", "modality"] == "report" and "not UTF-8" in q.loc["55123908", "reason"]
    assert "not in mimic-cxr-2.0.0-split.csv" in q.loc["57021345", "reason"]


def test_dicom_layout_with_reports_in_the_tree(tmp_path: Path) -> None:
    """MIMIC-CXR v2 (DICOM + reports beside the studies) with the JPG tables copied in, uncompressed."""
    root = write_mimic_cxr_dicom(tmp_path / "mimic-cxr", IMAGES, REPORTS)
    write_mimic_tables(root, IMAGES, LABELS, gz=False)
    _corrupt(root, "dcm")
    report = prepare("mimic-cxr", _options(root), tmp_path / "m.parquet")
    manifest = read_manifest(tmp_path / "m.parquet")
    frame = manifest.frame.set_index("study_id")
    assert set(frame.index) == GOOD and report.n_quarantined == len(QUARANTINED)
    assert frame.loc["50414267", "cxr_path"].endswith(f"{IMAGES[0].dicom_id}.dcm")
    assert manifest.info.extra["layout"] == "MIMIC-CXR (.dcm)"
    assert frame.loc["53189527", "report"] == "Lungs are clear. No acute process."
    q = _quarantine(manifest).set_index("study_id")
    assert q.loc["56699142", "modality"] == "cxr"


def test_reports_read_from_the_zip(tmp_path: Path) -> None:
    jpg = write_mimic_cxr_jpg(tmp_path / "physionet" / "mimic-cxr-jpg" / "2.0.0", IMAGES, LABELS)
    _corrupt(jpg, "jpg")
    write_mimic_reports_zip(tmp_path / "physionet" / "mimic-cxr-reports.zip", REPORTS, prefix="mimic-cxr-reports/")
    prepare("mimic-cxr", _options(tmp_path / "physionet"), tmp_path / "m.parquet")
    manifest = read_manifest(tmp_path / "m.parquet")
    frame = manifest.frame.set_index("study_id")
    assert set(frame.index) == GOOD
    assert frame.loc["53189527", "report"] == "Lungs are clear. No acute process."
    q = _quarantine(manifest).set_index("study_id")
    assert "mimic-cxr-reports.zip!" in q.loc["55123908", "path"]


def test_missing_root_and_tables_are_one_line_errors(tmp_path: Path, jpg_root: Path) -> None:
    with pytest.raises(MedclrInputError, match="dataset root does not exist"):
        prepare("mimic-cxr", _options(tmp_path / "nowhere"), tmp_path / "m.parquet")
    partial = tmp_path / "partial"
    shutil.copytree(jpg_root / "mimic-cxr-jpg", partial)
    (partial / "2.1.0" / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    with pytest.raises(MedclrInputError, match=r"mimic-cxr-2\.0\.0-split\.csv\(\.gz\) not found"):
        prepare("mimic-cxr", _options(partial), tmp_path / "m.parquet")
    with pytest.raises(MedclrInputError, match="unknown uncertain-label policy"):
        prepare("mimic-cxr", _options(jpg_root, uncertain="half"), tmp_path / "m.parquet")


def test_no_images_under_files_is_a_clear_error(tmp_path: Path) -> None:
    write_mimic_tables(tmp_path, IMAGES, LABELS)
    (tmp_path / "files").mkdir()
    with pytest.raises(MedclrInputError, match=r"no \.jpg or \.dcm image"):
        prepare("mimic-cxr", _options(tmp_path), tmp_path / "m.parquet")


def test_cli_prepare_mimic_cxr(jpg_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.parquet"
    code = main(["prepare", "mimic-cxr", "--root", str(jpg_root), "--out", str(out), "--uncertain", "ones",
                 "--workers", "1"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "6 studies (train 4, val 1, test 1" in stdout and f"{len(QUARANTINED)} quarantined" in stdout
    assert read_manifest(out).frame.set_index("study_id").loc["50414267", "label/Edema"] == 1.0


def test_unparseable_metadata_ids_are_quarantined(tmp_path: Path) -> None:
    root = write_mimic_cxr_jpg(tmp_path / "jpg", IMAGES[:3], LABELS[:2], gz=False)
    write_mimic_reports(root, REPORTS[:2])
    metadata = root / "mimic-cxr-2.0.0-metadata.csv"
    table = pd.read_csv(metadata, dtype=str)
    bad = {**table.iloc[0].to_dict(), "dicom_id": "deadbeef", "subject_id": "1000O032"}  # letter O, not zero
    pd.concat([table, pd.DataFrame([bad])]).to_csv(metadata, index=False)
    report = prepare("mimic-cxr", _options(root), tmp_path / "m.parquet")
    assert report.n_rows == 2 and report.n_quarantined == 1
    q = pd.read_csv(tmp_path / "m.quarantine.csv")
    assert q.loc[0, "study_id"] == "deadbeef" and "'1000O032'" in q.loc[0, "reason"]
