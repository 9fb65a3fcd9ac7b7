"""``medclr prepare ms-cxr`` on a generated MS-CXR CSV over a generated MIMIC-CXR-JPG / DICOM tree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from medclr.cli import main
from medclr.data import Manifest, PrepareOptions, prepare, read_manifest
from medclr.data.sources.ms_cxr import box_problem
from medclr.errors import MedclrInputError
from tests.data.cxr_layouts import (
    MimicLabels,
    MsCxrBox,
    mimic_images_for_boxes,
    truncate,
    write_mimic_cxr_jpg,
    write_mimic_images,
    write_ms_cxr,
)

W, H = 40, 48
A, B, C, D, E, F, G = (f"{c * 8}-0000aaaa-1111bbbb-2222cccc-3333dddd" for c in "abcdefg")
BOXES = [
    MsCxrBox(A, 10000032, 50414267, "Cardiomegaly", "Mild cardiomegaly", 8, 20, 24, 16, split="train"),
    MsCxrBox(A, 10000032, 50414267, "Pleural Effusion", "Small bilateral effusions", 1, 36, 10, 8, split="train"),
    MsCxrBox(A, 10000032, 50414267, "Pleural Effusion", "Small bilateral effusions", 28, 36, 11, 8, split="train"),
    MsCxrBox(B, 10000764, 57375967, "Pneumothorax", "Small right apical pneumothorax", 2, 2, 12, 10, split="val"),
    # C: one phrase has a box outside the image (quarantined with its other box), the other phrase stays
    MsCxrBox(C, 10000898, 50771383, "Edema", "Mild pulmonary edema", 0, 0, 40, 48),
    MsCxrBox(C, 10000898, 50771383, "Consolidation", "Left lower lobe consolidation", 20, 30, 10, 10),
    MsCxrBox(C, 10000898, 50771383, "Consolidation", "Left lower lobe consolidation", 30, 30, 15, 10),
    MsCxrBox(D, 10000935, 51178377, "Atelectasis", "Bibasilar atelectasis", 5, 5, 0, 10),  # zero width
    MsCxrBox(E, 10001038, 58224467, "Lung Opacity", "Right lower opacity", "abc", 5, 10, 10),  # not a number
    MsCxrBox(F, 10001122, 51503356, "Pneumonia", "Right lower lobe pneumonia", 5, 5, 10, 10),  # truncated image
    MsCxrBox(G, 10001176, 53186264, "Edema", "Edema", 5, 5, 10, 10, split="train"),
    MsCxrBox(G, 10001176, 53186264, "Edema", "Edema", 6, 6, 10, 10, split="test"),  # splits disagree
]


def _options(root: Path, **kw: object) -> PrepareOptions:
    return PrepareOptions(root=root, workers=1, progress=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ms-cxr/`` (the CSV) beside ``mimic-cxr/`` (MIMIC-CXR-JPG with its tables)."""
    root = tmp_path_factory.mktemp("world")
    images = mimic_images_for_boxes(BOXES)
    mimic = write_mimic_cxr_jpg(root / "mimic-cxr", images, [MimicLabels(i.subject_id, i.study_id) for i in images])
    truncate(mimic / images[5].path("jpg"), 0.3)
    write_ms_cxr(root / "ms-cxr", BOXES)
    return root


@pytest.fixture(scope="module")
def manifest(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("out") / "m.parquet"
    prepare("ms-cxr", _options(world / "ms-cxr"), out)
    return read_manifest(out)


def _quarantine(manifest: Manifest) -> pd.DataFrame:
    assert manifest.path is not None
    return pd.read_csv(manifest.path.with_name(f"{manifest.path.stem}.quarantine.csv"))


def test_one_row_per_image_with_grouped_boxes(manifest: Manifest) -> None:
    frame = manifest.frame.set_index("study_id")
    assert set(frame.index) == {A, B, C}
    grounding = json.loads(frame.loc[A, "grounding"])
    assert grounding == [
        {"phrase": "Mild cardiomegaly", "label": "Cardiomegaly", "boxes": [[8, 20, 24, 16]], "image_size": [W, H]},
        {"phrase": "Small bilateral effusions", "label": "Pleural Effusion",
         "boxes": [[1, 36, 10, 8], [28, 36, 11, 8]], "image_size": [W, H]},
    ]
    assert frame.loc[A, "meta/n_phrases"] == 2 and frame.loc[A, "meta/n_boxes"] == 3
    assert frame.loc[A, "subject_id"] == "10000032" and frame.loc[A, "meta/mimic_study_id"] == "50414267"
    assert frame["report"].isna().all()


def test_splits_paths_and_mimic_tables(manifest: Manifest) -> None:
    frame = manifest.frame.set_index("study_id")
    assert frame["split"].to_dict() == {A: "train", B: "val", C: "test"}
    # the CSV names the .dcm; the tree is MIMIC-CXR-JPG, so the .jpg of the same image is used
    assert frame.loc[A, "cxr_path"] == f"files/p10/p10000032/s50414267/{A}.jpg"
    for rel in frame["cxr_path"]:
        assert manifest.resolve("cxr", rel).is_file()
    assert manifest.info.roots["cxr"].endswith("mimic-cxr")
    assert (frame["cxr_view"] == "PA").all() and (frame["meta/mimic_split"] == "train").all()
    assert "MS-CXR split column" in manifest.info.split_protocol


def test_labels_present_categories_only(manifest: Manifest) -> None:
    frame = manifest.frame.set_index("study_id")
    assert frame.loc[A, "label/Cardiomegaly"] == 1.0 and frame.loc[A, "label/Pleural Effusion"] == 1.0
    assert math.isnan(frame.loc[A, "label/Pneumothorax"])  # not annotated is unknown, never negative
    assert frame.loc[C, "label/Edema"] == 1.0 and math.isnan(frame.loc[C, "label/Consolidation"])
    assert manifest.labels[:2] == ["Atelectasis", "Cardiomegaly"]  # the eight findings in MS-CXR order
    assert "not exhaustively labelled" in manifest.info.label_policy["categories"]


def test_bad_boxes_and_images_are_quarantined_with_reasons(manifest: Manifest) -> None:
    q = _quarantine(manifest)
    reasons = q.groupby("study_id")["reason"].apply(" | ".join)
    assert set(reasons.index) == {C, D, E, F, G}
    assert "outside the 40x48 image" in reasons[C] and "1 good box(es) dropped" in reasons[C]
    assert "non-positive size" in reasons[D]
    assert "not all numbers" in reasons[E]
    assert "cannot decode the JPEG" in reasons[F]
    assert "split" in reasons[G]
    assert (q.loc[q["study_id"] == C, "modality"] == "grounding").all()
    assert C in set(manifest.frame["study_id"])  # its good phrase keeps the image


def test_v1_0_0_without_split_and_explicit_cxr_root(tmp_path: Path) -> None:
    """PhysioNet v0.1 (CSV v1.0.0, no split): every image is test; --cxr-root names a DICOM tree."""
    good = BOXES[:4]
    dicom = tmp_path / "mimic-cxr-dicom"
    write_mimic_images(dicom, mimic_images_for_boxes(good), "dcm")
    write_ms_cxr(tmp_path / "ms-cxr", good, version="1.0.0")
    report = prepare("ms-cxr", _options(tmp_path / "ms-cxr", cxr_root=dicom), tmp_path / "m.parquet")
    assert report.split_counts == {"train": 0, "val": 0, "test": 2} and report.n_quarantined == 0
    manifest = read_manifest(tmp_path / "m.parquet")
    assert manifest.frame["cxr_path"].str.endswith(".dcm").all()
    assert "every image -> test" in manifest.info.split_protocol
    assert "cxr_view" not in manifest.frame.columns  # no MIMIC tables found: nothing invented


def test_newest_csv_version_is_read(tmp_path: Path, world: Path) -> None:
    folder = tmp_path / "ms-cxr"
    write_ms_cxr(folder, BOXES[:1], version="1.0.0")
    write_ms_cxr(folder, BOXES[:4], version="1.1.0")
    report = prepare("ms-cxr", _options(folder, cxr_root=world / "mimic-cxr"), tmp_path / "m.parquet")
    assert report.n_rows == 2


def test_box_problem() -> None:
    assert box_problem([0, 0, 40, 48], 40, 48) == ""
    assert box_problem([-0.5, 0, 40.5, 48], 40, 48) == ""  # within the 1-pixel tolerance
    assert "outside" in box_problem([10, 10, 35, 10], 40, 48)
    assert "non-positive" in box_problem([10, 10, 5, -1], 40, 48)
    assert "not all numbers" in box_problem([math.nan, 1, 1, 1], 40, 48)


def test_missing_root_csv_and_cxr_root(tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="dataset root does not exist"):
        prepare("ms-cxr", _options(tmp_path / "nowhere"), tmp_path / "m.parquet")
    with pytest.raises(MedclrInputError, match=r"no MS_CXR_Local_Alignment_v\*\.csv here"):
        prepare("ms-cxr", _options(tmp_path), tmp_path / "m.parquet")
    write_ms_cxr(tmp_path / "alone", BOXES[:1])
    with pytest.raises(MedclrInputError, match="pass --cxr-root"):
        prepare("ms-cxr", _options(tmp_path / "alone"), tmp_path / "m.parquet")


def test_cli_prepare_ms_cxr(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.parquet"
    argv = ["prepare", "ms-cxr", "--root", str(world / "ms-cxr"), "--cxr-root", str(world / "mimic-cxr"),
            "--out", str(out), "--workers", "1"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "3 studies (train 1, val 1, test 1" in stdout and "quarantined" in stdout
