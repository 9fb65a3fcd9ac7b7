"""``medclr prepare nih-cxr14``: the REAL 24-image excerpt, and generated copies of the NIH / Kaggle layouts."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclr.cli import main
from medclr.data import Manifest, PrepareOptions, prepare, read_manifest
from medclr.data.sources.nih_cxr14 import FINDINGS, LABELS, parse_age, parse_findings
from medclr.data.splits import hash_split
from medclr.errors import MedclrInputError
from tests.io.cxr_fixtures import phantom, quantize, write_png

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def _options(root: Path, **kw: object) -> PrepareOptions:
    return PrepareOptions(root=root, workers=1, progress=False, **kw)  # type: ignore[arg-type]


def _quarantine(path: Path) -> dict[str, tuple[str, str]]:
    """The quarantine CSV as ``{study_id: (modality, reason)}``."""
    table = pd.read_csv(path, dtype=str)
    return {s: (m, r) for s, m, r in zip(table["study_id"], table["modality"], table["reason"], strict=True)}


@pytest.fixture(scope="module")
def real(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("nih") / "m.parquet"
    prepare("nih-cxr14", _options(real_data / "nih_chestxray14"), out)
    return read_manifest(out)


def test_real_excerpt_rows_paths_and_meta(real: Manifest) -> None:
    frame = real.frame.set_index("study_id")
    assert len(frame) == 24 and real.info.n_quarantined == 0
    assert real.info.extra["data_entry_csv"] == "Data_Entry_2017_v2020_subset.csv"
    assert all(real.resolve("cxr", p).is_file() for p in frame["cxr_path"])
    assert frame.loc["00000001_000.png", "cxr_path"] == "images/00000001_000.png"
    first = frame.loc["00000001_000.png"]
    assert first["subject_id"] == "1" and first["meta/age"] == 57 and first["meta/sex"] == "M"
    assert first["cxr_view"] == "PA" and first["meta/original_width"] == 2682
    assert first["meta/pixel_spacing_x_mm"] == pytest.approx(0.143)
    assert frame.loc["00000004_000.png", "cxr_view"] == "AP"
    assert frame["cxr_view"].value_counts().to_dict() == {"PA": 21, "AP": 3}
    assert frame["meta/sex"].value_counts().to_dict() == {"F": 17, "M": 7}


def test_real_excerpt_labels(real: Manifest, real_data: Path) -> None:
    assert real.info.label_sets == {"findings": list(LABELS)} and len(LABELS) == 15
    assert "nlp_mined" in real.info.label_policy
    frame = real.frame.set_index("study_id")
    matrix = real.label_matrix()
    assert not np.isnan(matrix).any()
    names = np.array(LABELS)
    positives = {name: sorted(names[row == 1].tolist()) for name, row in zip(frame.index, matrix, strict=True)}
    assert positives["00000001_001.png"] == ["Cardiomegaly", "Emphysema"]
    assert positives["00000003_003.png"] == ["Hernia", "Infiltration"]
    assert positives["00000004_000.png"] == ["Mass", "Nodule"]
    assert positives["00000002_000.png"] == ["No Finding"]
    csv = pd.read_csv(real_data / "nih_chestxray14" / "Data_Entry_2017_v2020_subset.csv").set_index("Image Index")
    for name, found in positives.items():  # every row against the CSV
        assert found == sorted(csv.loc[name, "Finding Labels"].split("|"))
    assert frame["label/Hernia"].sum() == 8 and frame["label/No Finding"].sum() == 9


def test_real_excerpt_patient_hash_split(real: Manifest) -> None:
    frame = real.frame
    assert frame.groupby("subject_id")["split"].nunique().max() == 1  # patient-level
    assert frame["split"].tolist() == hash_split(frame["subject_id"].tolist())
    assert "hash split by Patient ID" in real.info.split_protocol


def test_parsers() -> None:
    assert parse_findings("Effusion|Infiltration") == {"Effusion", "Infiltration"}
    assert parse_findings("No Finding") == {"No Finding"}
    for bad in ("", None, "Effusion|Pneumonitis", "No Finding|Mass"):
        with pytest.raises(MedclrInputError):
            parse_findings(bad)
    assert parse_age(58) == 58 and parse_age("058Y") == 58 and parse_age("006M") == 0.5
    assert math.isnan(parse_age("414")) and math.isnan(parse_age("n/a")) and math.isnan(parse_age(None))
    assert len(FINDINGS) == 14


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, quantize(phantom(), 8))


def _kaggle_layout(root: Path, rows: list[str], images: dict[str, str], trailing_comma: bool = False) -> None:
    """A Data_Entry CSV (``rows`` without header) and PNGs at ``{name: folder}``."""
    root.mkdir(parents=True, exist_ok=True)
    end = "," if trailing_comma else ""
    text = "\n".join(line + end for line in [HEADER, *rows]) + "\n"
    (root / ("Data_Entry_2017.csv" if trailing_comma else "Data_Entry_2017_v2020.csv")).write_text(text)
    for name, folder in images.items():
        _png(root / folder / name)


ROWS = [
    "00000010_000.png,Effusion,0,10,45,F,PA,2500,2048,0.168,0.168",
    "00000010_001.png,Effusion|Mass,1,10,46,F,AP,2500,2048,0.168,0.168",
    "00000011_000.png,No Finding,0,11,30,M,PA,2500,2048,0.168,0.168",
    "00000012_000.png,Pneumonitis,0,12,50,M,PA,2500,2048,0.168,0.168",  # unknown label
    "00000013_000.png,Hernia,0,13,70,F,PA,2500,2048,0.168,0.168",  # image not downloaded
    "00000014_000.png,Nodule,0,14,61,M,PA,2500,2048,0.168,0.168",  # truncated PNG
]
IMAGES = {
    "00000010_000.png": "images_001/images",
    "00000010_001.png": "images_001/images",
    "00000011_000.png": "images_002/images",
    "00000012_000.png": "images_002/images",
    "00000014_000.png": "images_002/images",
}


def test_kaggle_layout_with_bad_rows(tmp_path: Path) -> None:
    root = tmp_path / "nih"
    _kaggle_layout(root, ROWS, IMAGES)
    (root / "images_002" / "images" / "notes.txt").write_text("not an image")
    png = root / "images_002" / "images" / "00000014_000.png"
    png.write_bytes(png.read_bytes()[:-40])
    report = prepare("nih-cxr14", _options(root), tmp_path / "m.parquet")
    assert report.n_rows == 3 and report.n_quarantined == 3
    quarantine = _quarantine(report.quarantine_path)
    assert quarantine["00000013_000.png"] == ("cxr", "image file not found")
    assert quarantine["00000012_000.png"][0] == "row" and "Pneumonitis" in quarantine["00000012_000.png"][1]
    assert quarantine["00000014_000.png"][0] == "cxr" and "PNG" in quarantine["00000014_000.png"][1]
    m = read_manifest(tmp_path / "m.parquet")
    assert m.frame["cxr_path"].tolist() == ["images_001/images/00000010_000.png", "images_001/images/00000010_001.png",
                                            "images_002/images/00000011_000.png"]
    assert m.info.extra["n_image_file_not_found"] == 1 and m.info.extra["n_images_indexed"] == 5
    second = m.frame[m.frame["study_id"] == "00000010_001.png"]
    assert second[["label/Effusion", "label/Mass", "label/Edema"]].to_numpy().tolist() == [[1.0, 1.0, 0.0]]


def test_official_lists_give_test_and_patient_level_val(tmp_path: Path) -> None:
    root = tmp_path / "nih"
    patients = [f"{i:08d}" for i in range(100, 160)]
    rows = [f"{p}_000.png,No Finding,0,{int(p)},40,F,PA,2048,2048,0.14,0.14" for p in patients]
    rows += [f"{p}_001.png,Effusion,1,{int(p)},41,F,PA,2048,2048,0.14,0.14" for p in patients]
    names = [r.split(",")[0] for r in rows]
    _kaggle_layout(root, rows, dict.fromkeys(names, "images"))
    test_patients = set(patients[:12])
    (root / "test_list.txt").write_text("\n".join(n for n in names if n[:8] in test_patients) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(n for n in names if n[:8] not in test_patients
                                                       and n != "00000159_001.png") + "\n")
    report = prepare("nih-cxr14", _options(root), tmp_path / "m.parquet")
    frame = read_manifest(tmp_path / "m.parquet").frame
    assert report.n_quarantined == 1
    assert "neither" in _quarantine(report.quarantine_path)["00000159_001.png"][1]
    assert set(frame.loc[frame["split"] == "test", "subject_id"]) == {str(int(p)) for p in test_patients}
    assert frame.groupby("subject_id")["split"].nunique().max() == 1
    counts = frame["split"].value_counts()
    assert counts["test"] == 24 and counts["val"] > 0 and counts["train"] > counts["val"]
    (root / "test_list.txt").unlink()
    with pytest.raises(MedclrInputError, match="only one of the two"):
        prepare("nih-cxr14", _options(root), tmp_path / "m2.parquet")


def test_2017_csv_with_trailing_comma_and_nih_box_layout(tmp_path: Path) -> None:
    root = tmp_path / "nih"
    _kaggle_layout(root, ROWS[:3], {n: "images" for n in list(IMAGES)[:3]}, trailing_comma=True)
    report = prepare("nih-cxr14", _options(root), tmp_path / "m.parquet")
    m = read_manifest(tmp_path / "m.parquet")
    assert report.n_rows == 3 and m.info.extra["data_entry_csv"] == "Data_Entry_2017.csv"
    assert m.frame["cxr_path"].str.startswith("images/").all()
    assert m.frame["meta/pixel_spacing_y_mm"].tolist() == pytest.approx([0.168] * 3)


def test_duplicated_image_in_two_folders_counts_once(tmp_path: Path) -> None:
    root = tmp_path / "nih"
    _kaggle_layout(root, [ROWS[0], ROWS[0]], {"00000010_000.png": "images_001/images"})
    _png(root / "images_002" / "images" / "00000010_000.png")
    prepare("nih-cxr14", _options(root), tmp_path / "m.parquet")
    m = read_manifest(tmp_path / "m.parquet")
    assert m.frame["cxr_path"].tolist() == ["images_001/images/00000010_000.png"]
    assert m.info.extra["n_duplicate_image_names"] == 1
    assert _quarantine(tmp_path / "m.quarantine.csv") == {
        "00000010_000.png": ("row", "duplicate Image Index (first row kept)")}


def test_missing_root_and_csv(tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="does not exist"):
        prepare("nih-cxr14", _options(tmp_path / "absent"), tmp_path / "m.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedclrInputError, match=r"no Data_Entry_2017\*\.csv"):
        prepare("nih-cxr14", _options(tmp_path / "empty"), tmp_path / "m.parquet")
    (tmp_path / "empty" / "Data_Entry_2017.csv").write_text("Image Index,Labels\nx.png,Mass\n")
    with pytest.raises(MedclrInputError, match="lacks column"):
        prepare("nih-cxr14", _options(tmp_path / "empty"), tmp_path / "m.parquet")


def test_cli_on_real_excerpt_with_full_csv(real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An excerpt of the images with more CSV rows than images: the extra rows are reported, not dropped."""
    root = tmp_path / "nih"
    shutil.copytree(real_data / "nih_chestxray14", root)
    with (root / "Data_Entry_2017_v2020_subset.csv").open("a") as f:
        f.write("00000099_000.png,Mass,0,99,50,M,PA,2500,2048,0.168,0.168\n")
    code = main(["prepare", "nih-cxr14", "--root", str(root), "--out", str(tmp_path / "m.parquet"), "--workers", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "24 studies" in out and "1 quarantined" in out and "modalities: cxr" in out
    assert "image file not found" in (tmp_path / "m.quarantine.csv").read_text()
