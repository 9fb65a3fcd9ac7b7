"""``medclr prepare openi``: the REAL 3,851 Indiana reports (report-only) and a generated Kaggle layout with images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclr.cli import main
from medclr.data import Manifest, PrepareOptions, prepare, read_manifest
from medclr.data.sources.openi import PROBLEM_LABELS, parse_problems, problem_labels
from medclr.data.splits import hash_split
from medclr.errors import MedclrInputError
from medclr.io.report_sources import INDIANA_COLUMNS
from tests.io.cxr_fixtures import phantom, quantize, write_png

N_REAL = 3851
N_EMPTY = 25


def _options(root: Path, **kw: object) -> PrepareOptions:
    return PrepareOptions(root=root, workers=1, progress=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def real(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, pd.DataFrame]:
    out = tmp_path_factory.mktemp("openi") / "m.parquet"
    report = prepare("openi", _options(real_data / "indiana_reports"), out)
    return read_manifest(out), pd.read_csv(report.quarantine_path)


def test_real_reports_rows_and_empty_ones_quarantined(real: tuple[Manifest, pd.DataFrame], real_data: Path) -> None:
    manifest, quarantine = real
    assert len(manifest) == N_REAL - N_EMPTY and manifest.info.n_quarantined == N_EMPTY
    assert len(quarantine) == N_EMPTY and (quarantine["reason"] == "empty report").all()
    assert (quarantine["modality"] == "report").all()
    csv = pd.read_csv(real_data / "indiana_reports" / "indiana_reports.csv", keep_default_na=False)
    empty = csv[(csv["findings"].str.strip() == "") & (csv["impression"].str.strip() == "")]
    assert sorted(quarantine["study_id"]) == sorted(f"openi-{u}" for u in empty["uid"])
    assert "openi-16" in set(quarantine["study_id"])
    assert manifest.modalities == ["report"] and manifest.frame["cxr_path"].isna().all()
    assert manifest.info.roots == {} and manifest.info.extra["images"] is None


def test_real_report_text(real: tuple[Manifest, pd.DataFrame]) -> None:
    frame = real[0].frame.set_index("study_id")
    reports = frame["report"].astype(str).to_dict()
    first = reports["openi-1"]
    assert first.startswith("The cardiac silhouette and mediastinum size are within normal limits.")
    assert first.endswith("Normal chest x-ray.")  # x-XXXX restored, findings then impression
    assert not frame["report"].str.contains("XXXX").any()
    assert (frame["report"].str.len() > 0).all()
    assert reports["openi-3"].startswith("No displaced rib fractures")  # impression only


def test_real_labels_from_problems(real: tuple[Manifest, pd.DataFrame]) -> None:
    manifest = real[0]
    assert manifest.info.label_sets == {"problems": list(PROBLEM_LABELS)}
    assert "mesh_problems" in manifest.info.label_policy
    frame = manifest.frame.set_index("study_id")
    assert frame.loc["openi-1", "label/No Finding"] == 1.0 and frame.loc["openi-1", "label/Cardiomegaly"] == 0.0
    assert frame.loc["openi-2", "label/Cardiomegaly"] == 1.0 and frame.loc["openi-2", "label/No Finding"] == 0.0
    uid4 = frame.loc["openi-4"]  # COPD; Bullous Emphysema; Pulmonary Fibrosis; Cicatrix; Opacity x4
    assert uid4["label/Lung Opacity"] == 1.0 and uid4["label/No Finding"] == 0.0 and uid4["label/Edema"] == 0.0
    not_indexed = frame["meta/problems"] == "No Indexing"
    assert not_indexed.sum() == 92
    assert np.isnan(manifest.label_matrix()[not_indexed.to_numpy()]).all()
    assert not np.isnan(manifest.label_matrix()[~not_indexed.to_numpy()]).any()
    sums = frame.loc[~not_indexed, [f"label/{n}" for n in PROBLEM_LABELS]].sum()
    assert sums["label/No Finding"] == 1379 - N_EMPTY  # the 25 empty reports are all "normal"
    assert sums["label/Cardiomegaly"] == 345 and sums["label/Pleural Effusion"] == 149


def test_real_split_is_hash_of_uid(real: tuple[Manifest, pd.DataFrame]) -> None:
    frame = real[0].frame
    assert frame["split"].tolist() == hash_split(frame["subject_id"].tolist())
    shares = frame["split"].value_counts(normalize=True)
    assert 0.77 < shares["train"] < 0.83 and 0.08 < shares["val"] < 0.12 and 0.08 < shares["test"] < 0.12


def test_problem_parsing_and_mapping() -> None:
    assert parse_problems("Cardiomegaly;Pulmonary Artery") == ["Cardiomegaly", "Pulmonary Artery"]
    assert parse_problems(None) == [] and parse_problems(" ; ") == []
    labels = problem_labels(["Calcified Granuloma"])  # abnormal but not a mapped label
    assert labels["No Finding"] == 0.0 and sum(labels.values()) == 0.0
    labels = problem_labels(["Hydropneumothorax", "Catheters, Indwelling"])
    assert labels["Pneumothorax"] == 1.0 and labels["Support Devices"] == 1.0
    assert all(math.isnan(v) for v in problem_labels(["No Indexing"]).values())
    assert all(math.isnan(v) for v in problem_labels([]).values())


def _report(uid: int, findings: str, impression: str, problems: str = "normal") -> dict[str, object]:
    return {"uid": uid, "MeSH": problems, "Problems": problems, "image": "Xray Chest PA and Lateral",
            "indication": "Cough.", "comparison": "None.", "findings": findings, "impression": impression}


def _kaggle_layout(root: Path) -> None:
    """Reports, projections and images/images_normalized PNGs in the Kaggle mirror's layout."""
    reports = [
        _report(1, "Heart size normal. Lungs clear.", "Normal chest x-XXXX."),
        _report(2, "Large right effusion.", "Effusion.", "Pleural Effusion"),
        _report(3, "Lungs clear.", "No acute disease."),  # only a lateral image
        _report(4, "Lungs clear.", "Normal."),  # frontal image listed but not downloaded
        _report(5, "Opacity at the left base.", "Pneumonia.", "Opacity;Pneumonia"),  # truncated PNG
        _report(6, "", ""),  # empty report
        _report(7, "No images at all for this report.", "Normal."),
        _report(2, "A second row with uid 2.", "Duplicate."),
    ]
    root.mkdir()
    pd.DataFrame(reports, columns=list(INDIANA_COLUMNS)).to_csv(root / "indiana_reports.csv", index=False)
    projections = [(1, "1_IM-0001-4001.dcm.png", "Frontal"), (1, "1_IM-0001-3001.dcm.png", "Lateral"),
                   (2, "2_IM-0652-2001.dcm.png", "Lateral"), (2, "2_IM-0652-1001.dcm.png", "Frontal"),
                   (3, "3_IM-1384-2001.dcm.png", "Lateral"), (4, "4_IM-2050-1001.dcm.png", "Frontal"),
                   (5, "5_IM-2117-1003002.dcm.png", "Frontal"), (5, "5_IM-2117-1004003.dcm.png", "Frontal")]
    pd.DataFrame(projections, columns=["uid", "filename", "projection"]).to_csv(root / "indiana_projections.csv",
                                                                                index=False)
    images = root / "images" / "images_normalized"
    images.mkdir(parents=True)
    for _, name, _ in projections:
        if not name.startswith("4_"):
            write_png(images / name, quantize(phantom(), 8))
    bad = images / "5_IM-2117-1003002.dcm.png"
    bad.write_bytes(bad.read_bytes()[:60])


def test_kaggle_layout_with_images_and_bad_rows(tmp_path: Path) -> None:
    root = tmp_path / "openi"
    _kaggle_layout(root)
    report = prepare("openi", _options(root), tmp_path / "m.parquet")
    quarantine = pd.read_csv(report.quarantine_path)
    reasons = dict(zip(quarantine["study_id"], quarantine["reason"], strict=True))
    assert len(quarantine) == 4 and report.n_rows == 4
    assert reasons["openi-4"] == "image file not found"
    assert reasons["openi-6"] == "empty report"
    assert reasons["openi-2"].startswith("duplicate uid 2")
    assert "openi-5" in reasons and quarantine["modality"].tolist()[quarantine["study_id"].tolist().index("openi-5")] \
        == "cxr"
    m = read_manifest(tmp_path / "m.parquet")
    frame = m.frame.set_index("study_id")
    assert frame["cxr_path"].dropna().to_dict() == {"openi-1": "images/images_normalized/1_IM-0001-4001.dcm.png",
                                                    "openi-2": "images/images_normalized/2_IM-0652-1001.dcm.png"}
    assert frame["cxr_view"].dropna().to_dict() == {"openi-1": "FRONTAL", "openi-2": "FRONTAL"}
    assert frame["label/Pleural Effusion"].to_dict() == {"openi-1": 0.0, "openi-2": 1.0, "openi-3": 0.0, "openi-7": 0.0}
    assert frame["report"].to_dict()["openi-1"] == "Heart size normal. Lungs clear. Normal chest x-ray."
    assert m.modalities == ["cxr", "report"]
    assert m.resolve("cxr", "images/images_normalized/1_IM-0001-4001.dcm.png").is_file()
    assert m.info.extra["images"] == "images/images_normalized"
    assert frame["cxr_path"].notna().sum() == 2


def test_missing_root_and_reports_csv(tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="does not exist"):
        prepare("openi", _options(tmp_path / "absent"), tmp_path / "m.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedclrInputError, match="Indiana reports CSV not found"):
        prepare("openi", _options(tmp_path / "empty"), tmp_path / "m.parquet")
    (tmp_path / "empty" / "indiana_reports.csv").write_text("uid,report\n1,x\n")
    with pytest.raises(MedclrInputError, match="lacks column"):
        prepare("openi", _options(tmp_path / "empty"), tmp_path / "m.parquet")


def test_cli_prepare_openi(real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(real_data / "indiana_reports")
    code = main(["prepare", "openi", "--root", root, "--out", str(tmp_path / "o.parquet"), "--workers", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"{N_REAL - N_EMPTY} studies" in out and f"{N_EMPTY} quarantined" in out and "modalities: report" in out
