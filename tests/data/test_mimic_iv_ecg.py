"""``medclr prepare mimic-iv-ecg`` on MIMIC-IV-ECG v1.0 trees generated in the real layout (tests/data/ecg_layouts)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclr.cli import main
from medclr.data import Manifest, PrepareOptions, prepare, read_manifest
from medclr.data.sources.mimic_iv_ecg import LABEL_NAMES, machine_labels, statement_states
from medclr.data.splits import hash_split
from medclr.errors import MedclrInputError
from medclr.io import read_ecg
from tests.data.ecg_layouts import (
    EcgStudy,
    default_measurements,
    inflate_sig_len,
    remove_signal,
    truncate_signal,
    write_mimic_iv_ecg,
)

AFIB_MEASUREMENTS = {**default_measurements(), "p_onset": 29999, "p_end": 29999, "p_axis": 29999, "rr_interval": 769}


def _studies() -> list[EcgStudy]:
    """Twelve good studies of five patients, each statement pattern chosen to exercise one rule."""
    s = EcgStudy
    return [
        s(
            10000032,
            40689238,
            "2180-07-23 08:44:00",
            ("Sinus rhythm", "Possible right atrial abnormality", None, "Borderline ECG"),
            note_id="10000032-EC-1",
        ),
        s(10000032, 49036311, "2180-08-06 09:07:00", ("Sinus tachycardia", None, "Normal ECG except for rate")),
        s(
            10000635,
            43522917,
            "2137-02-07 13:58:00",
            ("Sinus bradycardia", "Left ventricular hypertrophy", "Abnormal ECG"),
        ),
        s(
            10000980,
            46642833,
            "2137-05-21 15:50:00",
            (
                "Atrial fibrillation with PVC(s) or aberrant ventricular conduction.",
                "Left ventricular hypertrophy",
                "Abnormal ECG",
            ),
            measurements=AFIB_MEASUREMENTS,
        ),
        s(
            10000980,
            41111111,
            "2137-05-22 10:00:00",
            (
                "Sinus rhythm",
                "with possible 1st degree A-V block",
                "Cannot rule out Inferior infarct - age undetermined",
            ),
        ),
        s(
            10000980,
            41111112,
            "2137-05-23 10:00:00",
            ("Sinus rhythm", "1st degree A-V block", "Incomplete right bundle branch block", "Abnormal ECG"),
        ),
        s(10001884, 45227415, "2126-06-25 06:12:00", ("Sinus rhythm", "Left bundle branch block", "Abnormal ECG")),
        s(10001884, 45227416, "2126-06-26 06:12:00", ("Atrial fibrillation is no longer present", "Normal ECG")),
        s(
            10001884,
            45227417,
            "2126-06-27 06:12:00",
            (
                "Atrial fibrillation has replaced Sinus rhythm",
                "Right bundle branch block",
                "Septal infarct - age undetermined",
            ),
        ),
        s(10002428, 47000001, "2156-04-12 14:00:00", ("Sinus rhythm", "Normal ECG")),
        s(10002428, 47000002, "2156-04-13 14:00:00", ()),  # a machine_measurements row without statements
        s(10002428, 47000003, "2156-04-14 14:00:00", in_measurements=False),  # no machine_measurements row
    ]


def _options(root: Path | None, **kw: object) -> PrepareOptions:
    return PrepareOptions(root=root, workers=1, progress=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mimic_iv_ecg(tmp_path_factory.mktemp("mimic-iv-ecg"), _studies(), with_notes=True)


@pytest.fixture(scope="module")
def manifest(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("out") / "ecg.parquet"
    report = prepare("mimic-iv-ecg", _options(tree), out)
    assert report.n_rows == 12 and report.n_quarantined == 0
    return read_manifest(out)


def _row(manifest: Manifest, study: int) -> pd.Series:
    row = manifest.frame.set_index("study_id").loc[str(study)]
    assert isinstance(row, pd.Series)
    return row


def test_one_row_per_study_with_patient_hash_split(manifest: Manifest) -> None:
    frame = manifest.frame
    assert len(frame) == 12 and frame["study_id"].is_unique
    assert frame["split"].tolist() == hash_split(frame["subject_id"].tolist())
    assert frame.groupby("subject_id")["split"].nunique().max() == 1
    assert "hash split by subject_id" in manifest.info.split_protocol
    assert manifest.info.roots["ecg"] and manifest.modalities == ["ecg", "report"]
    assert manifest.info.extra["n_without_machine_report"] == 2


def test_paths_times_and_reports(manifest: Manifest) -> None:
    first = _row(manifest, 40689238)
    assert first["subject_id"] == "10000032"
    assert first["ecg_path"] == "files/p1000/p10000032/s40689238/40689238"
    assert manifest.resolve("ecg", first["ecg_path"]).with_suffix(".hea").is_file()
    assert first["ecg_fs"] == 500.0
    assert first["study_time"] == pd.Timestamp("2180-07-23 08:44:00")
    assert first["report"] == "Sinus rhythm. Possible right atrial abnormality. Borderline ECG."
    assert first["meta/note_id"] == "10000032-EC-1" and pd.isna(_row(manifest, 49036311)["meta/note_id"])
    joined = _row(manifest, 41111111)["report"]
    assert joined.startswith("Sinus rhythm with possible 1st degree A-V block.")  # lower-case statement continues
    for study in (47000002, 47000003):
        row = _row(manifest, study)
        assert pd.isna(row["report"])
        assert all(math.isnan(row[f"label/{name}"]) for name in LABEL_NAMES)


def test_machine_measurements_are_kept_with_sentinel_as_nan(manifest: Manifest) -> None:
    first, afib = _row(manifest, 40689238), _row(manifest, 46642833)
    assert first["meta/rr_interval"] == 659 and first["meta/qrs_axis"] == 77 and first["meta/p_onset"] == 40
    assert first["meta/bandwidth"] == "0.005-150 Hz" and first["meta/cart_id"] == "6848296"
    assert math.isnan(afib["meta/p_onset"]) and math.isnan(afib["meta/p_axis"]) and afib["meta/rr_interval"] == 769
    assert manifest.info.extra["not_measured_sentinel"] == 29999


@pytest.mark.parametrize(
    ("study", "positives"),
    [
        (40689238, set()),
        (49036311, {"STACH"}),  # "Normal ECG except for rate" is not NORM
        (43522917, {"SBRAD", "LVH"}),
        (46642833, {"AFIB", "LVH"}),
        (41111112, {"1AVB"}),  # incomplete RBBB is not RBBB
        (45227415, {"LBBB"}),
        (45227416, {"NORM"}),  # "no longer present" does not count
        (45227417, {"AFIB", "RBBB", "MI"}),  # "A has replaced B": only A
        (47000001, {"NORM"}),
    ],
)
def test_machine_statement_labels(manifest: Manifest, study: int, positives: set[str]) -> None:
    row = _row(manifest, study)
    values = {name: row[f"label/{name}"] for name in LABEL_NAMES}
    assert {n for n, v in values.items() if v == 1.0} == positives
    assert all(v == 0.0 for n, v in values.items() if n not in positives)


def test_hedged_statements_follow_the_uncertain_policy(tree: Path, manifest: Manifest, tmp_path: Path) -> None:
    hedged = _row(manifest, 41111111)
    assert math.isnan(hedged["label/1AVB"]) and math.isnan(hedged["label/MI"])
    assert "NaN (U-Ignore)" in manifest.info.label_policy["uncertain"]
    assert "machine-statement derived, noisy" in manifest.info.label_policy["machine_statements"]
    for policy, value in (("zeros", 0.0), ("ones", 1.0)):
        prepare("mimic-iv-ecg", _options(tree, uncertain=policy), tmp_path / f"{policy}.parquet")
        row = _row(read_manifest(tmp_path / f"{policy}.parquet"), 41111111)
        assert row["label/1AVB"] == value and row["label/MI"] == value
        assert row["label/AFIB"] == 0.0  # policies touch only hedged findings


def test_full_check_reads_the_mimic_lead_order_by_name(tree: Path, tmp_path: Path) -> None:
    prepare("mimic-iv-ecg", _options(tree, check="full"), tmp_path / "full.parquet")
    manifest = read_manifest(tmp_path / "full.parquet")
    signal, meta = read_ecg(manifest.resolve("ecg", manifest.frame["ecg_path"].iloc[0]))
    assert signal.shape == (12, 5000) and meta.fs == 500.0
    lead_i, lead_ii, lead_avl, lead_avf = signal[0], signal[1], signal[4], signal[5]  # standard order
    np.testing.assert_allclose(lead_avl, lead_i - lead_ii / 2, atol=0.02)  # aVL stored after aVF in the file
    np.testing.assert_allclose(lead_avf, lead_ii - lead_i / 2, atol=0.02)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("Atrial fibrillation with rapid ventricular response", {"AFIB": 2}),
        ("Possible Left ventricular hypertrophy", {"LVH": 1}),
        ("Sinus bradycardia with 1st degree A-V block", {"SBRAD": 2, "1AVB": 2}),
        ("Sinus rhythm with borderline 1st degree A-V block", {"1AVB": 1}),
        ("Anterior infarct - possibly acute", {"MI": 2}),  # the hedge after the finding is about its age
        ("Incomplete left bundle branch block", {}),
        ("RBBB with left anterior fascicular block", {"RBBB": 2}),
        ("Atrial flutter with 2:1 A-V conduction", {"AFLT": 2}),
        ("Normal ECG.", {"NORM": 2}),
        ("Minimal voltage criteria for LVH, may be normal variant", {"LVH": 1}),
    ],
)
def test_statement_rules(statement: str, expected: dict[str, int]) -> None:
    states = dict(zip(LABEL_NAMES, statement_states(statement), strict=True))
    assert {k: v for k, v in states.items() if v} == expected


def test_machine_labels_without_statements_are_unknown() -> None:
    assert all(math.isnan(v) for v in machine_labels([None, float("nan"), "  "]).values())
    assert machine_labels(["Possible atrial flutter"], "ones")["AFLT"] == 1.0


def test_corrupt_records_are_quarantined_and_good_rows_kept(tmp_path: Path) -> None:
    studies = _studies()
    root = write_mimic_iv_ecg(tmp_path / "ecg", studies)
    truncate_signal(root, studies[0])
    remove_signal(root, studies[1])
    inflate_sig_len(root, studies[2])
    report = prepare("mimic-iv-ecg", _options(root), tmp_path / "m.parquet")
    assert report.n_rows == 9 and report.n_quarantined == 3
    quarantine = pd.read_csv(report.quarantine_path, dtype=str).set_index("study_id")
    assert set(quarantine.index) == {"40689238", "49036311", "43522917"}
    assert (quarantine["modality"] == "ecg").all()
    assert "truncated" in str(quarantine.at["40689238", "reason"])
    assert "missing" in str(quarantine.at["49036311", "reason"])
    assert "header says 10000" in str(quarantine.at["43522917", "reason"])
    assert set(read_manifest(tmp_path / "m.parquet").frame["study_id"]) == {str(s.study_id) for s in studies[3:]}


def test_unusable_table_rows_are_rejected_by_the_adapter(tmp_path: Path) -> None:
    studies = _studies()
    root = write_mimic_iv_ecg(tmp_path / "ecg", studies)
    records = pd.read_csv(root / "record_list.csv", dtype=str)
    records.loc[0, "study_id"] = "4068x9238"  # unparseable id cell
    records.loc[1, "ecg_time"] = "not a time"
    records.loc[2, "path"] = "/abs/files/p1000/x"
    records = pd.concat([records, records.iloc[[3]]])  # a study listed twice
    records.to_csv(root / "record_list.csv", index=False)
    machine = pd.read_csv(root / "machine_measurements.csv", dtype=str)
    machine.loc[machine["study_id"] == "41111111", "subject_id"] = "99999999"
    machine.to_csv(root / "machine_measurements.csv", index=False)
    report = prepare("mimic-iv-ecg", _options(root), tmp_path / "m.parquet")
    quarantine = pd.read_csv(report.quarantine_path, dtype=str)
    reasons = dict(zip(quarantine["study_id"], quarantine["reason"], strict=True))
    assert "not whole numbers" in reasons["study_id='4068x9238'"]
    assert "not a date-time" in reasons["49036311"]
    assert "not a relative record path" in reasons["43522917"]
    assert "listed twice" in reasons["46642833"]
    assert "differs from" in reasons["41111111"]
    assert report.n_rows == 8 and report.n_quarantined == 5


def test_missing_root_and_tables_are_clean_errors(tmp_path: Path, tree: Path) -> None:
    with pytest.raises(MedclrInputError, match="needs --root"):
        prepare("mimic-iv-ecg", _options(None), tmp_path / "m.parquet")
    with pytest.raises(MedclrInputError, match="does not exist"):
        prepare("mimic-iv-ecg", _options(tmp_path / "nowhere"), tmp_path / "m.parquet")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tree / "record_list.csv", partial / "record_list.csv")
    with pytest.raises(MedclrInputError, match=r"machine_measurements\.csv not found"):
        prepare("mimic-iv-ecg", _options(partial), tmp_path / "m.parquet")
    (partial / "machine_measurements.csv").write_text("subject_id,study_id\n1,2\n")
    with pytest.raises(MedclrInputError, match="lacks column"):
        prepare("mimic-iv-ecg", _options(partial), tmp_path / "m.parquet")


def test_gzipped_tables_are_read(tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "gz"
    shutil.copytree(tree, root)
    for name in ("record_list.csv", "machine_measurements.csv"):
        pd.read_csv(root / name, dtype=str).to_csv(root / f"{name}.gz", index=False)
        (root / name).unlink()
    assert prepare("mimic-iv-ecg", _options(root), tmp_path / "m.parquet").n_rows == 12


def test_cli_prepare_prints_counts(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.parquet"
    code = main(["prepare", "mimic-iv-ecg", "--root", str(tree), "--out", str(out), "--workers", "1"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "12 studies" in stdout and "0 quarantined" in stdout
    assert len(read_manifest(out)) == 12
