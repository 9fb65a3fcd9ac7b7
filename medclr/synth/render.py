"""Render one planned study into files and table rows of its cohort's dataset layouts (see world.py)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medclr.synth import layouts
from medclr.synth.latent import Study
from medclr.synth.state import INCIDENTAL_FINDINGS

if TYPE_CHECKING:
    from medclr.synth.reports import Sentence
    from medclr.synth.world import Preset

Rows = list[tuple[str, dict[str, Any]]]
ECG_FS = 500.0
_VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior"}


def subject_split(subject_id: int, shares: tuple[float, float] = (0.8, 0.1)) -> str:
    """Patient-level split from a hash of the id (train 80 %, val 10 %, test 10 %)."""
    u = int(hashlib.sha1(f"medclr-synth-{subject_id}".encode()).hexdigest()[:8], 16) / 2**32
    return "train" if u < shares[0] else "val" if u < shares[0] + shares[1] else "test"


def render_study(root: Path, study: Study, ids: dict[str, Any], when: datetime, rng: np.random.Generator,
                 spec: Preset) -> Rows:
    """Files for the study's cohort, plus ``(table path, row)`` pairs including one ``truth.csv`` row."""
    cohort = study.patient.cohort
    truth = _truth_row(study, ids, spec)
    rows: Rows = []
    if cohort in ("mimic", "chexpert"):
        rows += _render_cxr(root, study, ids, when, rng, spec, truth)
    if cohort in ("mimic", "ptbxl"):
        rows += _render_ecg(root, study, ids, when + timedelta(hours=study.ecg_offset_hours), rng, truth)
    return [*rows, ("truth.csv", truth)]


def _truth_row(study: Study, ids: dict[str, Any], spec: Preset) -> dict[str, Any]:
    p = study.patient
    row: dict[str, Any] = {
        "cohort": p.cohort, **ids, "study_number": study.number, "age": p.age, "sex": p.sex,
        "ecg_offset_hours": round(study.ecg_offset_hours, 3), "history": "; ".join(study.state.history),
        "cxr_path": "", "ecg_path": "", "boxes": "[]", "ecg_findings": "[]",
    }
    row.update({f"cxr/{k}": float(v) for k, v in study.state.cxr.labels.items()})
    row.update({f"ecg/{k}": float(v) for k, v in study.state.ecg.superclasses.items()})
    row.update({f"joint/{k}": float(v) for k, v in study.joint.items()})
    if spec.incidental:
        row.update({f"incidental/{k}": float(k in study.state.cxr.incidental) for k in INCIDENTAL_FINDINGS})
    return row


def _report(study: Study, rng: np.random.Generator, spec: Preset
            ) -> tuple[str, dict[str, float], tuple[Sentence, ...] | None]:
    """The study's report, its CheXpert facts and its typo-free FINDINGS sentences (None for the XOR world's
    reports, which describe no finding's place)."""
    from medclr.synth.reports import compose_radiology_report, xor_report_with_facts

    if spec.xor:  # half of the reports also state the two findings (see data_cards/synth.md)
        cxr_bit, ecg_bit = study.state.cxr.cardiomegaly is not None, study.state.ecg.lvh
        return *xor_report_with_facts(cxr_bit, ecg_bit, rng, state_components=bool(rng.random() < 0.5)), None
    report = compose_radiology_report(study.state, rng, sex=study.patient.sex)
    return report.text, report.facts, report.findings


def _render_cxr(root: Path, study: Study, ids: dict[str, Any], when: datetime, rng: np.random.Generator,
                spec: Preset, truth: dict[str, Any]) -> Rows:
    from medclr.synth.cxr import grounding_phrases, render_cxr, to_stored
    from medclr.synth.reports import grounding_phrase

    state = study.state
    image, boxes = render_cxr(state.cxr, state.acquisition, rng)  # [H, W] in [0, 1], boxes in pixels
    height, width = image.shape
    truth["boxes"] = json.dumps([{"label": b.label, "location": b.location,
                                  "box": [round(b.x, 1), round(b.y, 1), round(b.w, 1), round(b.h, 1)]} for b in boxes])
    report, facts, sentences = _report(study, rng, spec)
    if study.patient.cohort == "chexpert":
        return _chexpert(root, study, ids, image, facts, truth)
    subject, cxr_study, dicom_id = ids["subject_id"], ids["cxr_study_id"], ids["dicom_id"]
    study_dir = layouts.mimic_cxr_study_dir(subject, cxr_study)
    relative = f"{study_dir}/{dicom_id}.dcm"
    bits = state.acquisition.bits_stored
    monochrome1 = bool(rng.random() < 0.3)
    layouts.write_dicom(root / "mimic-cxr" / relative, to_stored(image, bits, monochrome1), bits_stored=bits,
                        monochrome1=monochrome1, view=state.acquisition.view, when=when, subject_id=subject,
                        study_uid=f"2.25.{cxr_study}{subject}", spacing_mm=round(0.139 * 2500 / max(image.shape), 3))
    layouts.write_text(root / "mimic-cxr" / f"{study_dir}.txt", report)
    truth["cxr_path"] = f"mimic-cxr/{relative}"
    split = subject_split(subject)
    view = state.acquisition.view
    rows: Rows = [
        ("mimic-cxr/mimic-cxr-2.0.0-metadata.csv.gz", {
            "dicom_id": dicom_id, "subject_id": subject, "study_id": cxr_study,
            "PerformedProcedureStepDescription": f"CHEST ({view})", "ViewPosition": view, "Rows": height,
            "Columns": width, "StudyDate": int(when.strftime("%Y%m%d")),
            "StudyTime": float(when.strftime("%H%M%S")) + 0.123, "ProcedureCodeSequence_CodeMeaning": f"CHEST ({view})",
            "ViewCodeSequence_CodeMeaning": _VIEW_MEANING[view],
            "PatientOrientationCodeSequence_CodeMeaning": "Erect" if view == "PA" else "Recumbent"}),
        ("mimic-cxr/mimic-cxr-2.0.0-split.csv.gz", {
            "dicom_id": dicom_id, "study_id": cxr_study, "subject_id": subject,
            "split": {"val": "validate"}.get(split, split)}),
        ("mimic-cxr/mimic-cxr-2.0.0-chexpert.csv.gz", layouts.mimic_chexpert_row(subject, cxr_study, facts)),
    ]
    for template, found in grounding_phrases(boxes):  # MS-CXR's phrases are the report's (XOR world: templates)
        phrase = template if sentences is None else grounding_phrase(found[0].label, found[0].location, sentences)
        rows += [("ms-cxr/MS_CXR_Local_Alignment_v1.1.0.csv", {
            "dicom_id": dicom_id, "category_name": box.label, "label_text": phrase, "path": relative,
            "x": round(box.x), "y": round(box.y), "w": round(box.w), "h": round(box.h), "image_width": width,
            "image_height": height, "split": split}) for box in found]
    return rows


def _chexpert(root: Path, study: Study, ids: dict[str, Any], image: np.ndarray, facts: dict[str, float],
              truth: dict[str, Any]) -> Rows:
    """CheXpert-v1.0-small: train labels from the report (a labeler's view), valid labels from the truth.

    ``ids["chexpert_rank"]`` is the patient's position within the CheXpert cohort: every 7th patient (the first
    included, so even a tiny world has a ``valid.csv``) goes to ``valid``.
    """
    patient = study.patient
    folder = "valid" if ids["chexpert_rank"] % 7 == 0 else "train"  # 1 in 7 patients, the first one included
    relative = f"CheXpert-v1.0-small/{folder}/patient{patient.index:05d}/study{study.number + 1}/view1_frontal.jpg"
    layouts.write_jpeg(root / "chexpert" / relative, image)
    truth["cxr_path"] = f"chexpert/{relative}"
    labels = {k: float(v) for k, v in study.state.cxr.labels.items()} if folder == "valid" else facts
    row = layouts.chexpert_row(relative, patient.sex, patient.age, study.state.acquisition.view, labels)
    return [(f"chexpert/CheXpert-v1.0-small/{folder}.csv", row)]


def _render_ecg(root: Path, study: Study, ids: dict[str, Any], when: datetime, rng: np.random.Generator,
                truth: dict[str, Any]) -> Rows:
    from medclr.synth.ecg import ecg_findings, simulate_ecg_timed, write_wfdb
    from medclr.synth.ecg_statements import ecg_machine_statements

    findings = study.state.ecg
    signal, timing = simulate_ecg_timed(findings, rng, fs=ECG_FS, duration_s=10.0)  # [12, T] mV, standard order
    truth["ecg_findings"] = json.dumps(ecg_findings(findings, timing, duration_s=10.0))  # grounding truth
    subject = ids["subject_id"]
    if study.patient.cohort == "ptbxl":  # one statement per sentence: PTB-XL's report is free text
        statements = ecg_machine_statements(findings, rng, continuation_rate=0.0)
        return _ptbxl(root, study, ids, when, signal, statements, truth)
    statements = ecg_machine_statements(findings, rng)
    ecg_study = ids["ecg_study_id"]
    record = layouts.mimic_ecg_record(subject, ecg_study)
    write_wfdb(root / "mimic-iv-ecg" / record, signal, ECG_FS, lead_names=layouts.MIMIC_ECG_LEADS)
    truth["ecg_path"] = f"mimic-iv-ecg/{record}"
    ecg_time = when.strftime("%Y-%m-%d %H:%M:%S")
    measurements: dict[str, Any] = {"subject_id": subject, "study_id": ecg_study, "cart_id": 6800 + subject % 40,
                                    "ecg_time": ecg_time}
    measurements.update({f"report_{i}": (statements[i] if i < len(statements) else None) for i in range(18)})
    measurements.update({"bandwidth": "0.005-150 Hz", "filtering": "60 Hz notch Baseline filter",
                         "rr_interval": round(60000 / findings.heart_rate), "qrs_axis": int(rng.integers(-30, 90))})
    return [
        ("mimic-iv-ecg/record_list.csv", {"subject_id": subject, "study_id": ecg_study, "file_name": ecg_study,
                                          "ecg_time": ecg_time, "path": record}),
        ("mimic-iv-ecg/machine_measurements.csv", measurements),
    ]


def _ptbxl(root: Path, study: Study, ids: dict[str, Any], when: datetime, signal: np.ndarray,
           statements: list[str], truth: dict[str, Any]) -> Rows:
    from medclr.synth.ecg import downsample, write_wfdb

    ecg_id = ids["ecg_study_id"] - 40_000_000 + 1
    folder = f"{ecg_id // 1000 * 1000:05d}"
    hr, lr = f"records500/{folder}/{ecg_id:05d}_hr", f"records100/{folder}/{ecg_id:05d}_lr"
    write_wfdb(root / "ptbxl" / hr, signal, ECG_FS)
    write_wfdb(root / "ptbxl" / lr, downsample(signal, 500, 100), 100.0)
    truth["ecg_path"] = f"ptbxl/{hr}"
    patient = study.patient
    fold = 1 + int(hashlib.sha1(f"ptbxl-{patient.index}".encode()).hexdigest()[:6], 16) % 10
    row = {
        "ecg_id": ecg_id, "patient_id": float(ids["subject_id"]), "age": float(patient.age),
        "sex": 0 if patient.sex == "M" else 1, "height": None, "weight": None, "nurse": None, "site": None,
        "device": "CS-12   E", "recording_date": when.strftime("%Y-%m-%d %H:%M:%S"), "report": ". ".join(statements),
        "scp_codes": str(layouts.ptbxl_scp_codes(study.state.ecg)), "heart_axis": None, "strat_fold": fold,
        "filename_lr": lr, "filename_hr": hr,
    }
    return [("ptbxl/ptbxl_database.csv", row)]

