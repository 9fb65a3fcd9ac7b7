"""``medclr prepare ptbxl`` on the REAL PTB-XL v1.0.3 excerpt (ecg_id 1-500) and on corrupted copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclr.cli import main
from medclr.data import Manifest, PrepareOptions, prepare, read_manifest
from medclr.errors import MedclrInputError

# strat_fold counts of the 500 real rows, folds 1..10
REAL_FOLD_COUNTS = [58, 51, 34, 42, 47, 33, 44, 44, 81, 66]
LABEL_SET_SIZES = {"superclass": 5, "subclass": 23, "form": 19, "rhythm": 12}


def _options(root: Path, **kw: object) -> PrepareOptions:
    return PrepareOptions(root=root, workers=1, progress=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def real_manifest(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("ptbxl") / "m.parquet"
    report = prepare("ptbxl", _options(real_data / "ptbxl"), out)
    assert report.n_quarantined == 0
    return read_manifest(out)


def test_real_excerpt_gives_500_rows_with_official_splits(real_manifest: Manifest, real_data: Path) -> None:
    frame = real_manifest.frame
    assert len(frame) == 500 and frame["study_id"].is_unique
    database = pd.read_csv(real_data / "ptbxl" / "ptbxl_database.csv")
    assert np.bincount(database["strat_fold"], minlength=11)[1:].tolist() == REAL_FOLD_COUNTS
    assert frame["split"].value_counts().to_dict() == {"train": 353, "val": 81, "test": 66}
    assert sum(REAL_FOLD_COUNTS[:8]) == 353
    assert (frame.loc[frame["meta/strat_fold"] == 9, "split"] == "val").all()
    # patient-disjoint: no subject in two splits
    assert frame.groupby("subject_id")["split"].nunique().max() == 1
    assert "strat_fold" in real_manifest.info.split_protocol


def test_real_excerpt_label_sets_and_first_record(real_manifest: Manifest) -> None:
    sets = real_manifest.info.label_sets
    assert {name: len(labels) for name, labels in sets.items()} == LABEL_SET_SIZES
    assert set(sets["superclass"]) == {"NORM", "MI", "STTC", "CD", "HYP"}
    matrix = real_manifest.label_matrix()
    assert not np.isnan(matrix).any() and set(np.unique(matrix)) <= {0.0, 1.0}
    first = real_manifest.frame.set_index("study_id").loc["ptbxl-1"]
    assert first["label/NORM"] == 1.0 and first["label/MI"] == 0.0
    assert first["label/SR"] == 1.0  # rhythm: sinus rhythm
    assert first["report"] == "normal ECG. low QRS voltages in the frontal and horizontal leads. sinus rhythm."
    assert first["meta/report_de"].startswith("sinusrhythmus")
    assert first["ecg_path"] == "records500/00000/00001_hr" and first["ecg_fs"] == 500.0
    assert first["meta/sex"] in ("M", "F") and first["meta/age"] == 56


def test_real_reports_are_english_and_paths_resolve(real_manifest: Manifest) -> None:
    reports = real_manifest.frame["report"]
    assert reports.notna().all() and reports.str.endswith(".").all()
    assert reports.map(lambda t: t.isascii()).all()  # English statement descriptions, not the German free text
    assert not reports.str.contains("sinusrhythmus", case=False).any()
    for rel in real_manifest.frame["ecg_path"].sample(20, random_state=0):
        assert real_manifest.resolve("ecg", rel).with_suffix(".hea").is_file()
        assert real_manifest.resolve("ecg", rel).with_suffix(".dat").is_file()


def test_100_hz_variant(real_data: Path, tmp_path: Path) -> None:
    prepare("ptbxl", _options(real_data / "ptbxl", ecg_rate=100), tmp_path / "lr.parquet")
    m = read_manifest(tmp_path / "lr.parquet")
    assert len(m) == 500 and (m.frame["ecg_fs"] == 100.0).all()
    assert m.frame["ecg_path"].str.match(r"records100/\d{5}/\d{5}_lr$").all()
    assert m.info.extra["ecg_rate_hz"] == 100
    with pytest.raises(MedclrInputError, match="not 250 Hz"):
        prepare("ptbxl", _options(real_data / "ptbxl", ecg_rate=250), tmp_path / "x.parquet")


def _copy_excerpt(real: Path, dest: Path, n: int) -> pd.DataFrame:
    """The first ``n`` rows of the real database CSV, scp_statements.csv and those records (both rates)."""
    database = pd.read_csv(real / "ptbxl_database.csv", dtype=str, keep_default_na=False).head(n)
    dest.mkdir()
    shutil.copy(real / "scp_statements.csv", dest / "scp_statements.csv")
    for rel in [*database["filename_hr"], *database["filename_lr"]]:
        for suffix in (".hea", ".dat"):
            target = dest / (rel + suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(real / (rel + suffix), target)
    database.to_csv(dest / "ptbxl_database.csv", index=False)
    return database


def _quarantine(path: Path) -> dict[str, tuple[str, str]]:
    """The quarantine CSV as ``{study_id: (modality, reason)}``."""
    table = pd.read_csv(path, dtype=str)
    return {s: (m, r) for s, m, r in zip(table["study_id"], table["modality"], table["reason"], strict=True)}


def test_corrupt_copy_quarantines_bad_records_and_keeps_the_rest(real_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "ptbxl"
    database = _copy_excerpt(real_data / "ptbxl", root, 8)
    dat = root / f"{database['filename_hr'].iloc[1]}.dat"
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2])  # ecg 2: truncated signal file
    (root / f"{database['filename_hr'].iloc[2]}.dat").unlink()  # ecg 3: signal file missing
    database.loc[4, "scp_codes"] = "{'NORM': 100.0, 'SR'"  # ecg 5: unparseable label cell
    database.loc[5, "strat_fold"] = "eleven"  # ecg 6: bad fold
    database.to_csv(root / "ptbxl_database.csv", index=False)
    out = tmp_path / "m.parquet"
    report = prepare("ptbxl", _options(root), out)
    assert report.n_rows == 4 and report.n_quarantined == 4
    quarantine = _quarantine(report.quarantine_path)
    assert sorted(quarantine) == ["ptbxl-2", "ptbxl-3", "ptbxl-5", "ptbxl-6"]
    assert [quarantine[s][0] for s in ("ptbxl-2", "ptbxl-3", "ptbxl-5", "ptbxl-6")] == ["ecg", "ecg", "row", "row"]
    assert "truncated" in quarantine["ptbxl-2"][1]
    assert "missing" in quarantine["ptbxl-3"][1]
    assert "scp_codes" in quarantine["ptbxl-5"][1]
    assert "eleven" in quarantine["ptbxl-6"][1]
    kept = read_manifest(out)
    assert kept.frame["study_id"].tolist() == ["ptbxl-1", "ptbxl-4", "ptbxl-7", "ptbxl-8"]
    assert kept.info.n_quarantined == 4


@pytest.mark.parametrize("check", ["quick", "full"])
def test_header_data_mismatch_is_quarantined(real_data: Path, tmp_path: Path, check: str) -> None:
    root = tmp_path / "ptbxl"
    database = _copy_excerpt(real_data / "ptbxl", root, 3)
    header = root / f"{database['filename_hr'].iloc[0]}.hea"
    lines = header.read_text().splitlines()
    fields = lines[0].split()
    fields[3] = "6000"  # header claims 6000 samples; the .dat holds 5000
    header.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")
    report = prepare("ptbxl", _options(root, check=check), tmp_path / "m.parquet")
    assert report.n_rows == 2
    quarantine = _quarantine(report.quarantine_path)
    assert list(quarantine) == ["ptbxl-1"] and quarantine["ptbxl-1"][0] == "ecg"
    assert "header" in quarantine["ptbxl-1"][1]


def test_missing_root_and_missing_csv_are_clean_errors(real_data: Path, tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="dataset root does not exist"):
        prepare("ptbxl", _options(tmp_path / "nowhere"), tmp_path / "m.parquet")
    with pytest.raises(MedclrInputError, match="needs --root"):
        prepare("ptbxl", PrepareOptions(progress=False), tmp_path / "m.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedclrInputError, match=r"ptbxl_database\.csv"):
        prepare("ptbxl", _options(tmp_path / "empty"), tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


def test_cli_prepare_ptbxl(real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.parquet"
    code = main(["prepare", "ptbxl", "--root", str(real_data / "ptbxl"), "--out", str(out), "--workers", "1",
                 "--ecg-rate", "100"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "500 studies" in printed and "train 353, val 81, test 66" in printed and "0 quarantined" in printed
    assert (tmp_path / "cli.quarantine.csv").read_text().strip() == "study_id,modality,path,reason"
    code = main(["prepare", "ptbxl", "--root", str(tmp_path / "absent"), "--out", str(out)])
    assert code != 0
