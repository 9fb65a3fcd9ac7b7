"""The synthetic world end to end: generated in the real layouts, read unchanged by the real adapters."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from medclr.data import PrepareOptions, prepare, read_manifest
from medclr.errors import MedclrInputError
from medclr.synth.cxr import Box, grounding_phrases
from medclr.synth.latent import heart_failure_statement, sample_patient, sample_study
from medclr.synth.state import INCIDENTAL_FINDINGS, CxrFindings, EcgFindings
from medclr.synth.world import PRESETS, cohort_of, generate_world, plan_patient

N_PATIENTS = 12


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, preset="tiny", patients=N_PATIENTS, seed=3, workers=1, progress=False)
    return out


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in {".txt", ".hea", ".dat", ".csv", ".dcm", ".jpg"}
    }


def test_world_is_deterministic_for_a_seed_and_independent_of_workers(world: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_world(again, preset="tiny", patients=N_PATIENTS, seed=3, workers=2, progress=False)
    assert _digest(again) == _digest(world)


DEFAULT_WORLD_SHA1 = "1de9f6f23cfc62ca24d73e14018c4076b0f66883"  # tiny, 12 patients, seed 3: texts, signals, tables


def test_the_default_world_has_not_changed(world: Path) -> None:
    """The README's numbers were measured on worlds this code writes: any change to the default world's reports,
    ECGs or tables must be deliberate (then update the digest, and say so in data_cards/synth.md and the README)."""
    digest = hashlib.sha1()
    for p in sorted(world.rglob("*")):
        if p.is_file() and p.suffix in {".txt", ".hea", ".dat", ".csv"}:
            digest.update(str(p.relative_to(world)).encode())
            digest.update(p.read_bytes())
    assert digest.hexdigest() == DEFAULT_WORLD_SHA1


def test_a_different_seed_gives_a_different_world(world: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_world(other, preset="tiny", patients=N_PATIENTS, seed=4, workers=1, progress=False)
    assert (other / "truth.csv").read_bytes() != (world / "truth.csv").read_bytes()


def test_truth_points_at_files_that_exist(world: Path) -> None:
    truth = pd.read_csv(world / "truth.csv")
    assert set(truth["cohort"]) == {"mimic", "chexpert", "ptbxl"}
    for column in ("cxr_path", "ecg_path"):
        for rel in truth[column].dropna():
            target = world / rel
            assert target.is_file() or target.with_suffix(".hea").is_file(), rel


@pytest.mark.parametrize(
    ("source", "folder", "modalities"),
    [
        ("mimic-cxr", "mimic-cxr", {"cxr", "report"}),
        ("mimic-iv-ecg", "mimic-iv-ecg", {"ecg", "report"}),
        ("chexpert", "chexpert", {"cxr"}),
        ("ptbxl", "ptbxl", {"ecg", "report"}),
        ("ms-cxr", "ms-cxr", {"cxr"}),
    ],
)
def test_real_adapters_read_the_world_unchanged(
    world: Path, tmp_path: Path, source: str, folder: str, modalities: set[str]
) -> None:
    report = prepare(source, PrepareOptions(root=world / folder, progress=False), tmp_path / "m.parquet")
    assert report.n_rows > 0 and report.n_quarantined == 0
    assert modalities <= set(report.modalities)
    if source == "ms-cxr":  # every box of the world is a grounding annotation, in the image's pixels
        frame = read_manifest(report.manifest_path).frame
        assert frame["grounding"].notna().all()
        truth, bilateral = pd.read_csv(world / "truth.csv").set_index("dicom_id"), 0
        for dicom_id, cell in zip(frame["study_id"], frame["grounding"], strict=True):
            boxes = [Box(b["label"], *b["box"], location=b["location"])
                     for b in json.loads(truth.at[dicom_id, "boxes"])]
            expected = sorted((found[0].label, len(found)) for _, found in grounding_phrases(boxes))
            entries = json.loads(cell)
            assert sorted((e["label"], len(e["boxes"])) for e in entries) == expected
            report = (world / truth.at[dicom_id, "cxr_path"]).parent.with_suffix(".txt").read_text()
            for e in entries:  # MS-CXR's phrases are spans of the study's own report
                assert _span_of(e["phrase"], report), (e["phrase"], report)
            bilateral += sum(n == 2 for _, n in expected)
        assert bilateral > 0  # the world has a finding on both sides: one phrase, two boxes


def _span_of(phrase: str, report: str) -> bool:
    """Whether ``phrase``'s words are consecutive words of ``report``, up to the reports' typos (adjacent letters
    swapped inside a word, which keeps each word's letters) and line wrapping."""
    def words(text: str) -> list[str]:
        return ["".join(sorted(w.strip(".,;:").lower())) for w in text.split()]

    needle, hay = words(phrase), words(report)
    return any(hay[i : i + len(needle)] == needle for i in range(len(hay) - len(needle) + 1))


def test_paired_world_has_all_three_modalities_and_joint_labels(world: Path, tmp_path: Path) -> None:
    report = prepare("synth", PrepareOptions(root=world, progress=False), tmp_path / "paired.parquet")
    manifest = read_manifest(report.manifest_path)
    frame = manifest.frame
    assert report.n_rows > 0 and {"cxr", "ecg", "report"} <= set(manifest.modalities)
    complete = frame["cxr_path"].notna() & frame["ecg_path"].notna() & frame["report"].notna()
    assert complete.all()
    assert manifest.info.label_sets["joint"] == ["Heart Failure"]
    assert set(np.unique(manifest.label_matrix(["Heart Failure"]))) <= {0.0, 1.0}


def test_joint_label_needs_both_modalities() -> None:
    enlarged = CxrFindings(cardiomegaly="moderate")
    assert heart_failure_statement(enlarged, EcgFindings(lvh=True))
    assert not heart_failure_statement(enlarged, EcgFindings())
    assert not heart_failure_statement(CxrFindings(), EcgFindings(rhythm="AFIB"))


def test_xor_preset_bits_are_balanced_and_independent() -> None:
    spec = PRESETS["xor"]
    studies = [s for i in range(600) for s in plan_patient(0, i, 600, spec)]
    cxr = np.array([s.state.cxr.cardiomegaly is not None for s in studies])
    ecg = np.array([s.state.ecg.lvh for s in studies])
    xor = np.array([s.joint["Discordant Cardiac Findings"] for s in studies])
    assert abs(cxr.mean() - 0.5) < 0.06 and abs(ecg.mean() - 0.5) < 0.06
    assert np.array_equal(xor, cxr != ecg)
    # neither bit alone predicts the fact: P(xor | cxr) ~ P(xor | not cxr) ~ 1/2
    assert abs(xor[cxr].mean() - 0.5) < 0.08 and abs(xor[~cxr].mean() - 0.5) < 0.08


def test_too_few_patients_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="too few"):
        generate_world(tmp_path, preset="tiny", patients=3, progress=False)


def test_incidental_findings_persist_and_change_nothing_else() -> None:
    """Chronic incidental findings stay with the patient; lung volumes are per study; the rest of the world is the
    same as without them (own random stream); only a world asked for them has them."""
    spec = replace(PRESETS["demo"], incidental=True)
    patients = [plan_patient(0, i, 800, spec) for i in range(800)]
    for studies in patients:
        chronic = [set(s.state.cxr.incidental) - {"low lung volumes", "hyperinflation"} for s in studies]
        assert all(c == chronic[0] for c in chronic)
        for s in studies:
            assert not {"low lung volumes", "hyperinflation"} <= set(s.state.cxr.incidental)
    # without them, the same studies as the sampler alone gives
    for index in (0, 5, 17):
        rng = np.random.default_rng([0, index, 0])
        patient = sample_patient(rng, index, cohort_of(index, 800))
        hours, plain = 0.0, []
        for number in range(patient.n_studies):
            plain.append(sample_study(rng, patient, number, hours, spec.cxr_sizes))
            hours += float(rng.uniform(24 * 20, 24 * 400))
        stripped = [replace(s, state=replace(s.state, cxr=replace(s.state.cxr, incidental=()))) for s in
                    patients[index]]
        assert stripped == plain == plan_patient(0, index, 800, PRESETS["demo"])
    studies = [s for p in patients for s in p]
    share = {name: np.mean([name in s.state.cxr.incidental for s in studies]) for name in INCIDENTAL_FINDINGS}
    assert all(0.01 < v < 0.3 for v in share.values()), share
    assert 0.3 < np.mean([bool(s.state.cxr.incidental) for s in studies]) < 0.7
    mi = np.array([s.patient.prior_mi is not None for s in studies])
    sternotomy = np.array(["sternotomy" in s.state.cxr.incidental for s in studies])
    assert sternotomy[mi].mean() > 2 * sternotomy[~mi].mean()
    assert not any(s.state.cxr.incidental for i in range(100) for s in plan_patient(0, i, 100, PRESETS["xor"]))


def test_incidental_is_not_for_the_xor_world(tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="xor"):
        generate_world(tmp_path, preset="xor", patients=12, incidental=True, progress=False)


def test_truth_and_manifest_carry_incidental_findings(world: Path, tmp_path: Path) -> None:
    """A world written with incidental findings lists them in truth.csv and the synth manifest as cxr: labels; its
    images and reports of studies without any are byte-identical to the plain world's."""
    rich = tmp_path / "rich"
    generate_world(rich, preset="tiny", patients=N_PATIENTS, seed=3, workers=1, progress=False, incidental=True)
    assert json.loads((rich / "world.json").read_text())["incidental"] is True
    truth = pd.read_csv(rich / "truth.csv")
    columns = [f"incidental/{name}" for name in INCIDENTAL_FINDINGS]
    assert set(np.unique(truth[columns].to_numpy())) == {0.0, 1.0}
    assert not any(c.startswith("incidental/") for c in pd.read_csv(world / "truth.csv").columns)
    report = prepare("synth", PrepareOptions(root=rich, progress=False), tmp_path / "paired.parquet")
    manifest = read_manifest(report.manifest_path)
    names = [f"cxr:{name}" for name in INCIDENTAL_FINDINGS]
    assert manifest.info.label_sets["cxr_incidental"] == names
    by_image = truth.dropna(subset=["cxr_path"]).set_index("cxr_path")
    expected = by_image.loc["mimic-cxr/" + manifest.frame["cxr_path"], columns].to_numpy()
    assert np.array_equal(manifest.label_matrix(names), expected)
    plain = [p for p in by_image.index[by_image[columns].sum(axis=1) == 0] if p.endswith(".dcm")]
    assert plain
    for path in plain:  # same pixels, same report (DICOM bytes carry write-time UIDs)
        assert np.array_equal(pydicom.dcmread(rich / path).pixel_array, pydicom.dcmread(world / path).pixel_array)
        report = Path(path).parent.with_suffix(".txt")
        assert (rich / report).read_text() == (world / report).read_text()
