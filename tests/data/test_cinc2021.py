"""``medclr prepare cinc2021`` on the 50 REAL CinC 2021 records and on generated trees built from them."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from medclr.cli import main
from medclr.data import Manifest, PrepareOptions, prepare, read_manifest
from medclr.data.sources.cinc2021 import EQUIVALENT_CODES, equivalent_pairs, load_dx_mapping, parse_age
from medclr.data.splits import hash_split
from medclr.errors import MedclrInputError
from tests.data.ecg_layouts import write_cinc_mappings, write_cinc_record

MERGED = {"CLBBB|LBBB", "CRBBB|RBBB", "PAC|SVPB", "PVC|VPB"}


def _options(root: Path | None, **kw: object) -> PrepareOptions:
    return PrepareOptions(root=root, workers=1, progress=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def real(real_data: Path) -> Path:
    return real_data / "cinc2021"


@pytest.fixture(scope="module")
def real_manifest(real: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("cinc") / "m.parquet"
    report = prepare("cinc2021", _options(real), out)
    assert report.n_quarantined == 0
    return read_manifest(out)


def _row(manifest: Manifest, record: str) -> pd.Series:
    row = manifest.frame.set_index("study_id").loc[record]
    assert isinstance(row, pd.Series)
    return row


def _positives(row: pd.Series) -> set[str]:
    return {c.removeprefix("label/") for c in row.index if c.startswith("label/") and row[c] == 1.0}


def test_mapping_gives_the_26_scored_classes_of_2021(real: Path) -> None:
    mapping = load_dx_mapping(real / "dx_mapping_scored.csv", real / "dx_mapping_unscored.csv")
    assert len(mapping.scored) == 30 and len(mapping.classes) == 26
    assert set(mapping.classes) >= MERGED
    assert mapping.classes["CRBBB|RBBB"] == ("713427006", "59118001")
    assert mapping.classes["CLBBB|LBBB"] == ("733534002", "164909002")
    assert len(mapping.unscored) == 103
    scored = pd.read_csv(real / "dx_mapping_scored.csv", dtype=str)
    assert {frozenset(p) for p in equivalent_pairs(scored)} == {frozenset(p) for p in EQUIVALENT_CODES}


def test_reads_the_50_real_records_with_named_diagnoses(real_manifest: Manifest) -> None:
    frame = real_manifest.frame
    assert len(frame) == 50 and frame["study_id"].is_unique
    assert len(real_manifest.labels) == 26 and real_manifest.info.label_sets["scored"] == real_manifest.labels
    assert frame["ecg_fs"].eq(500.0).all()
    assert frame["meta/source"].value_counts().to_dict() == {
        "Chapman-Shaoxing / Ningbo": 20,
        "Georgia": 20,
        "PTB-XL": 10,
    }
    hr = _row(real_manifest, "HR06000")  # Dx: 164934002,426783006
    assert _positives(hr) == {"TAb", "NSR"}
    assert hr["report"] == "T wave abnormal. Sinus rhythm."
    assert hr["meta/age"] == 59 and hr["meta/sex"] == "F" and hr["meta/dx_codes"] == "164934002,426783006"
    e = _row(real_manifest, "E07500")  # Dx: 67741000119109 (unscored LAE), 426177001 (SB)
    assert _positives(e) == {"SB"} and e["meta/dx_unscored"] == "LAE"
    assert e["report"] == "Left atrial enlargement. Sinus bradycardia."
    assert e["meta/sex"] == "M" and e["meta/age"] == 78
    js = _row(real_manifest, "JS20000")  # Dx: 284470004 (PAC), 427084000, 698252002, 55930002 (unscored STC)
    assert _positives(js) == {"PAC|SVPB", "STach", "NSIVCB"} and js["meta/dx_unscored"] == "STC"
    assert real_manifest.info.extra["unknown_dx_codes"] == {}
    never = real_manifest.info.extra["classes_never_labelled_by_source"]
    assert never["Ningbo"] == ["AF"] and "BBB" in never["PTB_XL"] and "NSR" not in never["PTB_XL"]


def test_real_label_counts_and_equivalent_codes(real_manifest: Manifest) -> None:
    counts = real_manifest.frame[[f"label/{n}" for n in real_manifest.labels]].sum()
    assert counts["label/STach"] == 23 and counts["label/PAC|SVPB"] == 20 and counts["label/NSR"] == 15
    rbbb = real_manifest.frame["meta/dx_codes"].str.contains("59118001")  # RBBB counts as CRBBB|RBBB
    assert rbbb.sum() == 2 and (real_manifest.frame.loc[rbbb, "label/CRBBB|RBBB"] == 1.0).all()
    matrix = real_manifest.label_matrix()
    assert set(pd.unique(matrix.ravel())) <= {0.0, 1.0}


def test_split_is_a_hash_of_the_record_name(real_manifest: Manifest) -> None:
    frame = real_manifest.frame
    assert (frame["subject_id"] == frame["study_id"]).all()
    assert frame["split"].tolist() == hash_split(frame["study_id"].tolist())
    assert "record name" in real_manifest.info.split_protocol


def test_paths_resolve_to_the_real_records(real_manifest: Manifest) -> None:
    for path in real_manifest.frame["ecg_path"]:
        assert real_manifest.resolve("ecg", path).with_suffix(".mat").is_file()


def _tree(tmp: Path, real: Path) -> Path:
    """A CinC-like tree: per-source folders, mapping tables at the root, real signals, chosen headers."""
    root = tmp / "cinc"
    write_cinc_mappings(root, real)
    mat = real / "E07500.mat"
    write_cinc_record(root / "training" / "georgia" / "g1", "E00001", mat, dx="59118001,426783006")
    write_cinc_record(root / "training" / "georgia" / "g1", "E00002", mat, dx="713427006", age="NaN")
    write_cinc_record(root / "training" / "ningbo" / "g1", "JS00001", mat, dx="999999999,164889003", age="Unknown")
    write_cinc_record(root / "training" / "ningbo" / "g1", "JS00002", mat, dx="abc,164889003")
    write_cinc_record(root / "training" / "ningbo" / "g1", "JS00003", mat, dx=None)
    write_cinc_record(root / "training" / "ptb-xl" / "g1", "HR00001", mat, dx="164889003", age="300", sex="Unknown")
    for name in ("HR00002", "HR00003", "HR00004"):
        write_cinc_record(root / "training" / "ptb-xl" / "g2", name, mat, dx="426783006")
    return root


def test_generated_tree_codes_unknowns_and_rejections(real: Path, tmp_path: Path) -> None:
    root = _tree(tmp_path, real)
    report = prepare("cinc2021", _options(root), tmp_path / "m.parquet")
    manifest = read_manifest(tmp_path / "m.parquet")
    assert report.n_rows == 7 and report.n_quarantined == 2
    quarantine = pd.read_csv(report.quarantine_path, dtype=str).set_index("study_id")
    assert "not a comma-separated list of SNOMED-CT codes" in str(quarantine.at["JS00002", "reason"])
    assert "no '# Dx:' line" in str(quarantine.at["JS00003", "reason"])
    assert _positives(_row(manifest, "E00001")) == {"CRBBB|RBBB", "NSR"}
    assert _positives(_row(manifest, "E00002")) == {"CRBBB|RBBB"}
    unknown = _row(manifest, "JS00001")
    assert _positives(unknown) == {"AF"} and unknown["meta/dx_unknown"] == "999999999"
    assert unknown["report"] == "Atrial fibrillation."
    assert manifest.info.extra["unknown_dx_codes"] == {"999999999": 1}
    for record in ("E00002", "JS00001", "HR00001"):  # NaN, Unknown, 300 -> NaN, no rejection
        assert math.isnan(_row(manifest, record)["meta/age"])
    assert _row(manifest, "HR00001")["meta/sex"] is pd.NA or pd.isna(_row(manifest, "HR00001")["meta/sex"])
    assert _row(manifest, "E00001")["ecg_path"] == "training/georgia/g1/E00001"
    assert _row(manifest, "E00001")["meta/folder"] == "training/georgia/g1"


def test_corrupt_signal_files_are_quarantined(real: Path, tmp_path: Path) -> None:
    root = _tree(tmp_path, real)
    folder = root / "training" / "ptb-xl" / "g2"
    (folder / "HR00002.mat").unlink()  # missing signal file
    data = (folder / "HR00003.mat").read_bytes()
    (folder / "HR00003.mat").write_bytes(data[: len(data) // 2])  # truncated
    header = (folder / "HR00004.hea").read_text().splitlines()
    fields = header[0].split()
    fields[3] = "10000"  # sig_len beyond the 5000 samples stored
    (folder / "HR00004.hea").write_text("\n".join([" ".join(fields), *header[1:]]) + "\n")
    report = prepare("cinc2021", _options(root), tmp_path / "m.parquet")
    quarantine = pd.read_csv(report.quarantine_path, dtype=str).set_index("study_id")
    assert "missing" in str(quarantine.at["HR00002", "reason"])
    assert "truncated" in str(quarantine.at["HR00003", "reason"])
    assert "header says 10000" in str(quarantine.at["HR00004", "reason"])
    assert report.n_rows == 4 and report.n_quarantined == 5
    assert set(read_manifest(tmp_path / "m.parquet").frame["study_id"]) == {"E00001", "E00002", "JS00001", "HR00001"}


def test_missing_root_mapping_or_records_are_clean_errors(real: Path, tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="does not exist"):
        prepare("cinc2021", _options(tmp_path / "nowhere"), tmp_path / "m.parquet")
    root = tmp_path / "nomap"
    write_cinc_record(root, "E00001", real / "E07500.mat")
    with pytest.raises(MedclrInputError, match=r"dx_mapping_scored\.csv not found"):
        prepare("cinc2021", _options(root), tmp_path / "m.parquet")
    empty = tmp_path / "empty"
    write_cinc_mappings(empty, real)
    with pytest.raises(MedclrInputError, match=r"no \*\.hea"):
        prepare("cinc2021", _options(empty), tmp_path / "m.parquet")
    shutil.copy(real / "dx_mapping_unscored.csv", empty / "dx_mapping_scored.csv")  # codes both scored and unscored
    write_cinc_record(empty, "E00001", real / "E07500.mat")
    with pytest.raises(MedclrInputError, match="both scored and unscored"):
        prepare("cinc2021", _options(empty), tmp_path / "m.parquet")


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("78", 78.0),
        (" 62 ", 62.0),
        ("NaN", math.nan),
        ("-1", math.nan),
        ("Unknown", math.nan),
        (None, math.nan),
        ("300", math.nan),
    ],
)
def test_parse_age(text: str | None, age: float) -> None:
    value = parse_age(text)
    assert (math.isnan(value) and math.isnan(age)) or value == age


def test_cli_prepare_on_real_records(real: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.parquet"
    assert main(["prepare", "cinc2021", "--root", str(real), "--out", str(out), "--workers", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "50 studies" in stdout and "0 quarantined" in stdout
