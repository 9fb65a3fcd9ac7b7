"""``medclr prepare mimic-paired``: MIMIC-CXR-JPG and MIMIC-IV-ECG trees in the real layouts, paired in time."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from medclr.cli import main
from medclr.data import Manifest, PrepareOptions, prepare, read_manifest
from medclr.data.sources.mimic_paired import pair_nearest
from medclr.data.splits import hash_split
from medclr.errors import MedclrInputError
from tests.data.cxr_layouts import (
    MimicImage,
    MimicLabels,
    MimicReport,
    mimic_report,
    write_mimic_cxr_jpg,
    write_mimic_reports,
)
from tests.data.ecg_layouts import EcgStudy, truncate_signal, write_mimic_iv_ecg

# (subject, cxr study, dicom_id, StudyDate, StudyTime) and (subject, ecg study, ecg_time)
CXR = [
    (10000032, 50000001, "d-01", 21800506, 213014.531),  # ECG 20:00 the same day: gap -1.504 h
    (10000032, 50000002, "d-02", 21800507, 100000.0),  # ECG 09:00 next day: gap -1 h
    (10000033, 50000003, "d-03", 21500101, 120000.0),  # ECGs 2 h before and 2 h after: the earlier wins
    (10000034, 50000004, "d-04", 21600301, 80000.0),  # two X-rays, one ECG at 09:00: the nearer X-ray wins
    (10000034, 50000005, "d-05", 21600301, 110000.0),
    (10000035, 50000006, "d-06", 21700101, 80000.0),  # no ECG at all
    (10000037, 50000007, "d-07", 21700101, 80000.0),  # ECG 30 h later: only with --window-hours 48
    (10000038, 50000008, "d-08", 21900101, 80000.0),  # its ECG's .dat is truncated
    (10000039, 50000009, "d-09", 21900101, 80000.0),  # a lateral only: rejected by the mimic-cxr adapter
]
ECG = [
    (10000032, 40000001, "2180-05-06 20:00:00"),
    (10000032, 40000002, "2180-05-07 09:00:00"),
    (10000032, 40000003, "2180-05-20 09:00:00"),  # two weeks later: unpaired
    (10000033, 40000004, "2150-01-01 10:00:00"),
    (10000033, 40000005, "2150-01-01 14:00:00"),
    (10000034, 40000006, "2160-03-01 09:00:00"),
    (10000036, 40000007, "2170-01-01 08:00:00"),  # no X-ray at all
    (10000037, 40000008, "2170-01-02 14:00:00"),
    (10000038, 40000009, "2190-01-01 08:30:00"),
]
EXPECTED_PAIRS = {
    "50000001-40000001": -1.504036,
    "50000002-40000002": -1.0,
    "50000003-40000004": -2.0,
    "50000004-40000006": 1.0,
}


def _options(root: Path | None, **kw: object) -> PrepareOptions:
    return PrepareOptions(root=root, workers=1, progress=False, **kw)  # type: ignore[arg-type]


def _write_world(root: Path) -> Path:
    images = [
        MimicImage(s, st, d, study_date=day, study_time=t, split="validate" if s == 10000034 else "train")
        for s, st, d, day, t in CXR
    ]
    images[-1].view = "LATERAL"
    labels = [
        MimicLabels(10000032, 50000001, {"Cardiomegaly": 1.0, "Edema": -1.0, "Pneumothorax": 0.0}),
        MimicLabels(10000033, 50000003, {"No Finding": 1.0}),
    ]
    reports = [MimicReport(10000032, 50000001, mimic_report("The heart is enlarged.", "Cardiomegaly."))]
    write_mimic_cxr_jpg(root / "mimic-cxr", images, labels)
    write_mimic_reports(root / "mimic-cxr", reports)
    studies = [
        EcgStudy(
            s,
            st,
            when,
            statements=("Atrial fibrillation", "Abnormal ECG") if s == 10000032 else ("Sinus rhythm", "Normal ECG"),
        )
        for s, st, when in ECG
    ]
    write_mimic_iv_ecg(root / "mimic-iv-ecg", studies)
    truncate_signal(root / "mimic-iv-ecg", studies[-1])
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def paired(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("out") / "paired.parquet"
    report = prepare("mimic-paired", _options(world), out)
    assert report.n_rows == 4
    return read_manifest(out)


def test_pairs_nearest_ecg_within_window_each_used_once(paired: Manifest) -> None:
    frame = paired.frame.set_index("study_id")
    assert set(frame.index) == set(EXPECTED_PAIRS)
    for study, gap in EXPECTED_PAIRS.items():
        assert frame.at[study, "meta/gap_hours"] == pytest.approx(gap, abs=1e-5)
    assert frame.at["50000001-40000001", "meta/cxr_study_id"] == "50000001"
    assert frame.at["50000001-40000001", "meta/ecg_study_id"] == "40000001"
    extra = paired.info.extra
    assert (extra["n_cxr_studies"], extra["n_ecg_studies"], extra["n_paired"]) == (8, 9, 5)
    assert extra["n_cxr_rejected"] == 1 and extra["window_hours"] == 24.0


def test_row_contents_paths_report_and_labels(paired: Manifest) -> None:
    row = paired.frame.set_index("study_id").loc["50000001-40000001"]
    assert isinstance(row, pd.Series)
    assert row["subject_id"] == "10000032"
    assert row["cxr_path"] == "files/p10/p10000032/s50000001/d-01.jpg" and row["cxr_view"] == "PA"
    assert row["ecg_path"] == "files/p1000/p10000032/s40000001/40000001" and row["ecg_fs"] == 500.0
    assert paired.resolve("cxr", str(row["cxr_path"])).is_file()
    assert paired.resolve("ecg", str(row["ecg_path"])).with_suffix(".dat").is_file()
    assert row["report"] == "The heart is enlarged. Cardiomegaly."
    assert row["meta/ecg_report"] == "Atrial fibrillation. Abnormal ECG."
    assert row["study_time"] == pd.Timestamp("2180-05-06 21:30:14.531")
    assert row["meta/ecg_time"] == pd.Timestamp("2180-05-06 20:00:00")
    assert row["label/Cardiomegaly"] == 1.0 and row["label/Pneumothorax"] == 0.0
    assert math.isnan(float(row["label/Edema"]))  # uncertain -1 -> NaN (U-Ignore)
    assert math.isnan(float(row["label/Lung Opacity"]))  # blank -> NaN
    assert row["label/AFIB"] == 1.0 and row["label/NORM"] == 0.0
    assert row["meta/ecg_rr_interval"] == 659 and row["meta/dicom_id"] == "d-01"
    assert set(paired.info.label_sets) == {"chexpert", "machine"}
    assert {"cxr/uncertain", "ecg/uncertain", "ecg/machine_statements"} <= set(paired.info.label_policy)
    assert set(paired.info.roots) == {"cxr", "ecg"}


def test_one_hash_split_for_both_modalities(paired: Manifest) -> None:
    frame = paired.frame
    assert frame["split"].tolist() == hash_split(frame["subject_id"].tolist())
    assert frame.groupby("subject_id")["split"].nunique().max() == 1
    assert set(frame.loc[frame["subject_id"] == "10000034", "meta/cxr_official_split"]) == {"val"}
    assert "one split for X-ray and ECG" in paired.info.split_protocol


def test_quarantine_has_the_bad_pair_and_the_rejected_xray(paired: Manifest) -> None:
    assert paired.path is not None
    quarantine = pd.read_csv(paired.path.with_name("paired.quarantine.csv"), dtype=str).set_index("study_id")
    assert "truncated" in str(quarantine.at["50000008-40000009", "reason"])
    assert quarantine.at["50000008-40000009", "modality"] == "ecg"
    assert "no frontal image" in str(quarantine.at["50000009", "reason"])
    assert paired.info.n_quarantined == 2


def test_window_and_policy_options(world: Path, tmp_path: Path) -> None:
    prepare("mimic-paired", _options(world, window_hours=48.0, uncertain="ones"), tmp_path / "wide.parquet")
    wide = read_manifest(tmp_path / "wide.parquet").frame.set_index("study_id")
    assert wide.at["50000007-40000008", "meta/gap_hours"] == pytest.approx(30.0)
    assert wide.at["50000001-40000001", "label/Edema"] == 1.0  # U-Ones
    prepare("mimic-paired", _options(world, window_hours=1.2), tmp_path / "narrow.parquet")
    assert set(read_manifest(tmp_path / "narrow.parquet").frame["study_id"]) == {
        "50000002-40000002",
        "50000004-40000006",
    }
    with pytest.raises(MedclrInputError, match="window-hours"):
        prepare("mimic-paired", _options(world, window_hours=0.0), tmp_path / "bad.parquet")


def test_separate_roots_and_missing_roots(world: Path, tmp_path: Path) -> None:
    options = PrepareOptions(cxr_root=world / "mimic-cxr", ecg_root=world / "mimic-iv-ecg", workers=1, progress=False)
    assert prepare("mimic-paired", options, tmp_path / "sep.parquet").n_rows == 4
    with pytest.raises(MedclrInputError, match="needs both datasets"):
        prepare("mimic-paired", PrepareOptions(cxr_root=world / "mimic-cxr", progress=False), tmp_path / "m.parquet")
    with pytest.raises(MedclrInputError, match="does not exist"):
        prepare("mimic-paired", _options(tmp_path), tmp_path / "m.parquet")  # no mimic-cxr/ under it
    (tmp_path / "half" / "mimic-cxr").mkdir(parents=True)
    (tmp_path / "half" / "mimic-iv-ecg").mkdir()
    with pytest.raises(MedclrInputError, match="not found"):
        prepare("mimic-paired", _options(tmp_path / "half"), tmp_path / "m.parquet")


def test_pair_nearest_worked_example_and_ties() -> None:
    base = pd.Timestamp("2150-01-01 00:00")
    hours = lambda values: pd.Series([base + pd.Timedelta(hours=h) for h in values])  # noqa: E731
    same = lambda n: pd.Series(["1"] * n)  # noqa: E731
    assert pair_nearest(same(2), hours([0, 10]), same(3), hours([1, 9, 30]), 24.0) == [(0, 0), (1, 1)]
    assert pair_nearest(same(1), hours([5]), same(2), hours([7, 3]), 24.0) == [(0, 1)]  # tie: earlier ECG
    assert pair_nearest(same(2), hours([4, 0]), same(1), hours([2]), 24.0) == [(1, 0)]  # tie: earlier X-ray
    assert pair_nearest(same(1), hours([0]), pd.Series(["2"]), hours([0]), 24.0) == []  # other patient
    with_nat = pd.Series([pd.NaT, base])
    assert pair_nearest(same(2), with_nat, same(1), hours([0]), 24.0) == [(1, 0)]


def test_cli_prepare_paired(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.parquet"
    argv = [
        "prepare",
        "mimic-paired",
        "--root",
        str(world),
        "--out",
        str(out),
        "--workers",
        "1",
        "--window-hours",
        "24",
    ]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "4 studies" in stdout and "2 quarantined" in stdout and "cxr, ecg, report" in stdout
