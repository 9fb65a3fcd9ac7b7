"""``medclr prepare chexpert`` on generated CheXpert-v1.0-small trees with the exact real layout."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from medclr.cli import main
from medclr.data import Manifest, PrepareOptions, prepare, read_manifest
from medclr.data.sources.chexpert import relative_image_path
from medclr.errors import MedclrInputError
from tests.data.cxr_layouts import ChexpertImage, truncate, write_chexpert

TRAIN = [
    ChexpertImage(1, 1, 1, True, "PA", labels={"Cardiomegaly": 1.0, "Edema": -1.0, "No Finding": 0.0}),
    ChexpertImage(1, 1, 2, False, labels={"Cardiomegaly": 1.0, "Edema": -1.0, "No Finding": 0.0}),
    ChexpertImage(1, 2, 1, True, "AP", labels={"Pleural Effusion": 1.0}),
    ChexpertImage(1, 2, 2, True, "PA", labels={"Pleural Effusion": 1.0}),  # PA wins over view1 AP
    ChexpertImage(2, 1, 1, False, sex="Male", labels={"No Finding": 1.0}),  # lateral only -> quarantined
    ChexpertImage(3, 1, 1, True, "AP", labels={"Edema": "x"}),  # unparseable cell -> quarantined
    ChexpertImage(4, 1, 1, True, "AP", sex="Unknown", labels={"Fracture": 1.0}),  # truncated JPEG
    ChexpertImage(5, 1, 1, True, "AP", write_file=False),  # file missing
]
VALID = [
    ChexpertImage(64541, 1, 1, True, "AP", age=55, labels={n: 0.0 for n in ("Edema", "Cardiomegaly")},
                  table="valid"),
    ChexpertImage(64542, 1, 1, True, "PA", labels={"Atelectasis": 1.0, "Edema": 0.0}, table="valid"),
    ChexpertImage(64542, 1, 2, False, labels={"Atelectasis": 1.0, "Edema": 0.0}, table="valid"),
]
TEST = [ChexpertImage(64741, 1, 1, True, "AP", labels={"Consolidation": 1.0, "Edema": 0.0}, table="test")]
GOOD = {"patient00001_study1", "patient00001_study2", "patient64541_study1", "patient64542_study1"}
QUARANTINED = {"patient00002_study1", "patient00003_study1", "patient00004_study1", "patient00005_study1"}


def _options(root: Path, **kw: object) -> PrepareOptions:
    return PrepareOptions(root=root, workers=1, progress=False, **kw)  # type: ignore[arg-type]


def _write(root: Path, images: list[ChexpertImage], **kw: object) -> Path:
    dataset = write_chexpert(root, images, **kw)  # type: ignore[arg-type]
    truncate(dataset / TRAIN[6].path(), 0.3)
    return dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("chexpert"), [*TRAIN, *VALID])


@pytest.fixture(scope="module")
def manifest(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("out") / "m.parquet"
    prepare("chexpert", _options(dataset), out)
    return read_manifest(out)


def test_one_row_per_study_and_official_splits(manifest: Manifest) -> None:
    frame = manifest.frame.set_index("study_id")
    assert set(frame.index) == GOOD
    assert frame["split"].value_counts().to_dict() == {"train": 2, "val": 2}
    assert frame.loc["patient64542_study1", "subject_id"] == "patient64542"
    assert frame["report"].isna().all() and manifest.modalities == ["cxr"]
    assert "valid.csv -> val" in manifest.info.split_protocol


def test_frontal_image_is_kept_pa_first(manifest: Manifest) -> None:
    frame = manifest.frame.set_index("study_id")
    assert frame.loc["patient00001_study1", "cxr_path"] == "train/patient00001/study1/view1_frontal.jpg"
    assert frame.loc["patient00001_study1", "meta/n_images"] == 2
    assert frame.loc["patient00001_study2", "cxr_path"] == "train/patient00001/study2/view2_frontal.jpg"
    assert frame.loc["patient00001_study2", "cxr_view"] == "PA"
    assert frame.loc["patient64541_study1", "cxr_view"] == "AP"
    for rel in frame["cxr_path"]:
        assert manifest.resolve("cxr", rel).is_file()
    assert manifest.info.roots["cxr"].endswith("CheXpert-v1.0-small")


def test_labels_u_ignore_blank_nan_and_demographics(manifest: Manifest) -> None:
    frame = manifest.frame.set_index("study_id")
    assert len(manifest.labels) == 14
    assert frame.loc["patient00001_study1", "label/Cardiomegaly"] == 1.0
    assert frame.loc["patient00001_study1", "label/No Finding"] == 0.0
    assert math.isnan(frame.loc["patient00001_study1", "label/Edema"])  # uncertain -> NaN (U-Ignore)
    assert math.isnan(frame.loc["patient00001_study1", "label/Fracture"])  # blank -> NaN
    assert frame.loc["patient64541_study1", "label/Edema"] == 0.0
    assert frame.loc["patient64541_study1", "meta/age"] == 55 and frame.loc["patient64541_study1", "meta/sex"] == "F"
    assert "U-Ignore" in manifest.info.label_policy["uncertain"]


@pytest.mark.parametrize(("policy", "value"), [("zeros", 0.0), ("ones", 1.0)])
def test_uncertain_policy_variants(dataset: Path, tmp_path: Path, policy: str, value: float) -> None:
    prepare("chexpert", _options(dataset, uncertain=policy), tmp_path / "m.parquet")
    manifest = read_manifest(tmp_path / "m.parquet")
    row = manifest.frame.set_index("study_id").loc["patient00001_study1"]
    assert row["label/Edema"] == value and math.isnan(row["label/Fracture"])
    assert {"zeros": "U-Zeros", "ones": "U-Ones"}[policy] in manifest.info.label_policy["uncertain"]


def test_quarantine_reasons(manifest: Manifest) -> None:
    assert manifest.path is not None
    q = pd.read_csv(manifest.path.with_name("m.quarantine.csv")).set_index("study_id")
    assert set(q.index) == QUARANTINED and manifest.info.n_quarantined == 4
    assert "no frontal image" in q.loc["patient00002_study1", "reason"]
    assert "label 'Edema' is 'x'" in q.loc["patient00003_study1", "reason"]
    assert "cannot decode the JPEG" in q.loc["patient00004_study1", "reason"]
    assert q.loc["patient00005_study1", "reason"] == "file not found"


def test_parent_root_test_set_and_unprefixed_paths(tmp_path: Path) -> None:
    """--root above the dataset folder; Path without the release prefix; test_labels.csv -> test."""
    _write(tmp_path / "chexpert", [*TRAIN, *VALID, *TEST], path_prefix=False)
    report = prepare("chexpert", _options(tmp_path / "chexpert"), tmp_path / "m.parquet")
    assert report.split_counts == {"train": 2, "val": 2, "test": 1}
    frame = read_manifest(tmp_path / "m.parquet").frame.set_index("study_id")
    assert frame.loc["patient64741_study1", "cxr_path"] == "test/patient64741/study1/view1_frontal.jpg"
    assert frame.loc["patient64741_study1", "label/Consolidation"] == 1.0
    assert pd.isna(frame.loc["patient64741_study1", "cxr_view"])  # the test table has no AP/PA column


def test_relative_image_path() -> None:
    assert relative_image_path("CheXpert-v1.0-small/train/patient1/study1/view1_frontal.jpg") == (
        "train/patient1/study1/view1_frontal.jpg"
    )
    assert relative_image_path("CheXpert-v1.0/valid/p/s/v.jpg") == "valid/p/s/v.jpg"
    assert relative_image_path("test\\patient9/study1/view1_frontal.jpg") == "test/patient9/study1/view1_frontal.jpg"


def test_missing_root_and_tables(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(MedclrInputError, match="dataset root does not exist"):
        prepare("chexpert", _options(tmp_path / "nowhere"), tmp_path / "m.parquet")
    with pytest.raises(MedclrInputError, match=r"no CheXpert train\.csv"):
        prepare("chexpert", _options(tmp_path), tmp_path / "m.parquet")
    broken = _write(tmp_path / "broken", TRAIN)
    (broken / "valid.csv").unlink()
    with pytest.raises(MedclrInputError, match=r"CheXpert valid\.csv not found"):
        prepare("chexpert", _options(broken), tmp_path / "m.parquet")
    (broken / "valid.csv").write_text("Path,Sex\nx,Male\n")
    with pytest.raises(MedclrInputError, match="lacks column"):
        prepare("chexpert", _options(broken), tmp_path / "m.parquet")


def test_cli_prepare_chexpert(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.parquet"
    assert main(["prepare", "chexpert", "--root", str(dataset.parent), "--out", str(out), "--workers", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "4 studies (train 2, val 2, test 0" in stdout and "4 quarantined" in stdout
