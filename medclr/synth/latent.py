"""Patients with latent clinical conditions, and the studies they produce: the generative core of the world.

A patient carries chronic conditions sampled from their age and sex (hypertension, heart failure, prior
myocardial infarction, atrial fibrillation, conduction disease); each study adds acute events (heart-failure
decompensation, pneumonia, an ICU stay, acute MI, pneumothorax). Both modalities are rendered from the *same*
conditions, which is what makes X-ray <-> ECG pairing informative:

===================== ======================================== ==========================================
condition             X-ray                                    ECG
===================== ======================================== ==========================================
heart failure         cardiomegaly; when decompensated: edema,  LVH, LBBB, AF more likely
                      bilateral effusions
hypertension          mild cardiomegaly sometimes               LVH (with strain -> STTC)
prior MI (territory)  --                                       Q waves + T inversion in the territory
acute MI              edema sometimes                          ST elevation in the territory
atrial fibrillation   cardiomegaly more likely                 AFIB rhythm
pneumonia (lobe)      consolidation in that lobe, effusion      sinus tachycardia often
ICU stay              ETT, central line, basal atelectasis      sinus tachycardia sometimes
===================== ======================================== ==========================================

``xor`` preset (after the Symile paper's synthetic test, Saporta et al., 2024): an X-ray bit (cardiomegaly)
and an ECG bit (LVH), independent and balanced; the report states their exclusive-or, which neither modality
carries alone. Everything is drawn from one ``numpy.random.Generator`` per patient (seeded from the world seed
and the patient index), so a world is deterministic and patients can be generated in any order or process.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from medclr.synth.state import (
    INCIDENTAL_FINDINGS,
    CxrAcquisition,
    CxrFindings,
    EcgFindings,
    Incidental,
    Lobe,
    MiTerritory,
    Severity,
    Side,
    StudyState,
)

Cohort = Literal["mimic", "chexpert", "ptbxl"]
Device = Literal["ett", "central line", "pacemaker"]
LOBES: tuple[Lobe, ...] = ("right upper", "right middle", "right lower", "left upper", "lingula", "left lower")
TERRITORIES: tuple[MiTerritory, ...] = ("anterior", "inferior", "lateral")
JOINT_LABELS = ("Heart Failure",)
XOR_LABEL = "Discordant Cardiac Findings"


def heart_failure_statement(cxr: CxrFindings, ecg: EcgFindings) -> bool:
    """The joint label: HF is stated when the X-ray shows congestion *and* the ECG shows a substrate.

    ``(cardiomegaly or edema on the X-ray) and (LVH or atrial fibrillation on the ECG)``: neither modality
    determines it alone, so joint (X-ray + ECG) diagnosis can beat either.
    """
    return (cxr.cardiomegaly is not None or cxr.edema is not None) and (ecg.lvh or ecg.rhythm == "AFIB")


@dataclass(frozen=True)
class Patient:
    """Chronic conditions of one synthetic patient."""

    index: int
    cohort: Cohort
    age: int
    sex: Literal["M", "F"]
    hypertension: bool
    heart_failure: bool
    prior_mi: MiTerritory | None
    afib: bool
    conduction: Literal["LBBB", "RBBB", "AVB1"] | None
    n_studies: int


@dataclass(frozen=True)
class Study:
    """One study of a patient: its state, when it happened (hours since the patient's first study), its truth."""

    patient: Patient
    number: int  # 0-based within the patient
    hours: float  # X-ray time, hours since the patient's first study
    ecg_offset_hours: float  # ECG time - X-ray time
    state: StudyState
    joint: dict[str, bool]  # joint labels (both modalities needed)


def _p(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < min(max(p, 0.0), 1.0))


def sample_patient(rng: np.random.Generator, index: int, cohort: Cohort) -> Patient:
    """Chronic conditions; risks rise with age (logistic-free, readable probabilities)."""
    age = int(np.clip(rng.normal(62, 16), 18, 95))
    sex: Literal["M", "F"] = "M" if rng.random() < 0.52 else "F"
    old = (age - 60) / 30  # ~[-1.4, 1.2]
    htn = _p(rng, 0.35 + 0.2 * old)
    hf = _p(rng, 0.14 + 0.10 * old + (0.08 if htn else 0.0))
    prior_mi = TERRITORIES[int(rng.integers(3))] if _p(rng, 0.10 + 0.06 * old + (0.05 if sex == "M" else 0)) else None
    afib = _p(rng, 0.07 + 0.08 * old + (0.15 if hf else 0.0))
    conduction_draw = rng.random()
    conduction: Literal["LBBB", "RBBB", "AVB1"] | None = None
    if conduction_draw < (0.05 + (0.10 if hf else 0.0)):
        weights = [0.45, 0.35, 0.2] if hf else [0.25, 0.35, 0.4]  # HF: LBBB more likely
        conduction = ("LBBB", "RBBB", "AVB1")[int(rng.choice(3, p=weights))]
    n_studies = 1 + int(rng.random() < 0.35) + int(rng.random() < 0.1)
    return Patient(index, cohort, age, sex, htn, hf, prior_mi, afib and conduction != "AVB1", conduction, n_studies)


def _severity(rng: np.random.Generator, weights: tuple[float, float, float] = (0.5, 0.35, 0.15)) -> Severity:
    return ("mild", "moderate", "severe")[int(rng.choice(3, p=weights))]


def _sides(rng: np.random.Generator, bilateral: float) -> tuple[Side, ...]:
    if rng.random() < bilateral:
        return ("right", "left")
    return ("right",) if rng.random() < 0.6 else ("left",)


def sample_cxr(rng: np.random.Generator, p: Patient, acute: dict[str, object]) -> CxrFindings:
    """X-ray findings from chronic conditions and this study's acute events."""
    decompensated = bool(acute["decompensated"])
    cardiomegaly = None
    if (p.heart_failure and _p(rng, 0.8)) or (p.afib and _p(rng, 0.25)) or (p.hypertension and _p(rng, 0.08)):
        cardiomegaly = _severity(rng) if p.heart_failure else "mild"
    elif _p(rng, 0.03):
        cardiomegaly = "mild"
    lobe = acute["pneumonia_lobe"]
    effusion: tuple[Side, ...] = ()
    if decompensated and _p(rng, 0.6):
        effusion = _sides(rng, 0.6)
    elif lobe is not None and _p(rng, 0.2):
        effusion = ("left",) if str(lobe).startswith("left") or lobe == "lingula" else ("right",)
    elif _p(rng, 0.04):
        effusion = _sides(rng, 0.3)
    icu = bool(acute["icu"])
    devices: list[Device] = []
    if icu and _p(rng, 0.7):
        devices.append("ett")
    if _p(rng, 0.6 if icu else 0.02):
        devices.append("central line")
    if p.conduction is not None and _p(rng, 0.35):
        devices.append("pacemaker")
    atelectasis = _sides(rng, 0.4) if _p(rng, 0.35 if icu else (0.15 if lobe else 0.07)) else ()
    return CxrFindings(
        cardiomegaly=cardiomegaly,
        effusion_sides=effusion,
        effusion_severity=_severity(rng),
        pneumothorax_side=("right" if rng.random() < 0.5 else "left") if _p(rng, 0.08 if icu else 0.02) else None,
        consolidation_lobe=lobe,  # type: ignore[arg-type]
        pneumonia=lobe is not None,
        edema=_severity(rng) if decompensated and _p(rng, 0.75) else ("mild" if acute["acute_mi"] and _p(rng, 0.3)
                                                                      else None),
        atelectasis_sides=atelectasis,
        opacity_lobe=LOBES[int(rng.integers(6))] if _p(rng, 0.04) else None,
        support_devices=tuple(devices),
    )


def sample_ecg(rng: np.random.Generator, p: Patient, acute: dict[str, object]) -> EcgFindings:
    """ECG findings from chronic conditions and this study's acute events."""
    lvh = (p.hypertension and _p(rng, 0.3)) or (p.heart_failure and _p(rng, 0.45)) or _p(rng, 0.03)
    acute_mi = acute["acute_mi"]
    territory = acute_mi if acute_mi else p.prior_mi
    tachy = (acute["pneumonia_lobe"] is not None and _p(rng, 0.45)) or (acute["icu"] and _p(rng, 0.3))
    if p.afib:
        rhythm, rate = "AFIB", float(rng.uniform(70, 130))
    elif tachy or _p(rng, 0.04):
        rhythm, rate = "STACH", float(rng.uniform(104, 135))
    elif _p(rng, 0.07):
        rhythm, rate = "SBRAD", float(rng.uniform(42, 57))
    else:
        rhythm, rate = "SR", float(np.clip(rng.normal(72, 9), 61, 98))
    sttc = (lvh and _p(rng, 0.35)) or (p.heart_failure and _p(rng, 0.15)) or _p(rng, 0.06)
    return EcgFindings(
        rhythm=rhythm,  # type: ignore[arg-type]
        heart_rate=rate,
        mi_territory=territory,  # type: ignore[arg-type]
        mi_acute=bool(acute_mi),
        sttc=sttc,
        conduction=p.conduction,
        lvh=lvh,
        noise=float(rng.uniform(0.3, 1.5)),
    )


def sample_acquisition(rng: np.random.Generator, sizes: tuple[int, int], icu: bool) -> CxrAcquisition:
    """Scanner and patient variation: size, view (AP in the ICU), habitus, rotation, exposure, noise, bits."""
    return CxrAcquisition(
        size=int(rng.integers(sizes[0], sizes[1] + 1)),
        view="AP" if icu or rng.random() < 0.25 else "PA",
        patient_scale=float(rng.uniform(0.88, 1.12)),
        rotation_deg=float(rng.normal(0, 2.0)),
        exposure=float(rng.uniform(0.8, 1.2)),
        noise=float(rng.uniform(0.01, 0.035)),
        bits_stored=int(rng.choice([12, 14, 16])),
    )


def _history(p: Patient, acute: dict[str, object]) -> tuple[str, ...]:
    items = [
        ("heart failure", p.heart_failure), ("prior MI", p.prior_mi is not None), ("atrial fibrillation", p.afib),
        ("hypertension", p.hypertension), ("chest pain", bool(acute["acute_mi"])),
        ("fever and cough", acute["pneumonia_lobe"] is not None), ("intubation", bool(acute["icu"])),
        ("shortness of breath", bool(acute["decompensated"])),
    ]
    return tuple(name for name, present in items if present)


def sample_study(rng: np.random.Generator, p: Patient, number: int, hours: float, sizes: tuple[int, int]) -> Study:
    """One study: acute events, then X-ray and ECG findings from the same conditions."""
    acute: dict[str, object] = {
        "decompensated": p.heart_failure and _p(rng, 0.45),
        "pneumonia_lobe": LOBES[int(rng.integers(6))] if _p(rng, 0.12) else None,
        "icu": _p(rng, 0.08),
        "acute_mi": TERRITORIES[int(rng.integers(3))] if _p(rng, 0.03 + (0.03 if p.prior_mi else 0)) else None,
    }
    cxr = sample_cxr(rng, p, acute)
    ecg = sample_ecg(rng, p, acute)
    state = StudyState(cxr=cxr, acquisition=sample_acquisition(rng, sizes, bool(acute["icu"])), ecg=ecg,
                       history=_history(p, acute))
    offset = float(rng.normal(0, 6)) if rng.random() < 0.85 else float(rng.uniform(48, 400))  # some unpaired
    return Study(p, number, hours, offset, state, {"Heart Failure": heart_failure_statement(cxr, ecg)})


def add_incidental(rng: np.random.Generator, studies: list[Study]) -> list[Study]:
    """A patient's studies with incidental findings added (`medclr synth --incidental`; no CheXpert label, no box).

    Real reports describe what makes one normal film unlike another: median sternotomy wires (cardiac surgery,
    likelier after an MI or with heart failure), hyperinflated lungs (COPD, with age), thoracic scoliosis, a hiatal
    hernia, a calcified aortic knob (with age), cholecystectomy clips; these are the patient's and persist over
    their studies. Low lung volumes are the study's (poor inspiration; likelier on portable AP films, never with
    hyperinflation). Without them the normal studies' reports are interchangeable and report -> X-ray retrieval
    cannot single one out (README: the label ceiling). Drawn from their own generator, so every other finding,
    pixel and word of the world is unchanged by them.
    """
    p = studies[0].patient
    old = max(p.age - 50, 0) / 30  # 0 up to 50, ~1.5 at 95
    chronic: set[Incidental] = set()
    if _p(rng, 0.04 + (0.25 if p.prior_mi else 0.0) + (0.12 if p.heart_failure else 0.0)):
        chronic.add("sternotomy")
    copd = _p(rng, 0.04 + 0.05 * old)
    if _p(rng, 0.08):
        chronic.add("dextroconvex scoliosis" if rng.random() < 0.6 else "levoconvex scoliosis")
    if _p(rng, 0.03 + 0.03 * old):
        chronic.add("hiatal hernia")
    if _p(rng, 0.03 + 0.12 * old):
        chronic.add("aortic calcification")
    if _p(rng, 0.07 if p.sex == "F" else 0.03):
        chronic.add("cholecystectomy clips")
    out = []
    for study in studies:
        items = set(chronic)
        if copd:
            items.add("hyperinflation")
        elif _p(rng, 0.35 if study.state.acquisition.view == "AP" else 0.10):
            items.add("low lung volumes")
        cxr = replace(study.state.cxr, incidental=tuple(i for i in INCIDENTAL_FINDINGS if i in items))
        out.append(replace(study, state=replace(study.state, cxr=cxr)))
    return out


def sample_xor_study(rng: np.random.Generator, p: Patient, number: int, hours: float, sizes: tuple[int, int]) -> Study:
    """The xor preset: independent balanced bits, X-ray cardiomegaly and ECG LVH; nothing else varies clinically."""
    cxr_bit, ecg_bit = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    cxr = CxrFindings(cardiomegaly=_severity(rng, (0.2, 0.5, 0.3)) if cxr_bit else None)
    ecg = EcgFindings(rhythm="SR", heart_rate=float(np.clip(rng.normal(72, 9), 61, 98)), lvh=ecg_bit,
                      noise=float(rng.uniform(0.3, 1.2)))
    state = StudyState(cxr=cxr, acquisition=replace(sample_acquisition(rng, sizes, False), view="PA"), ecg=ecg)
    return Study(p, number, hours, float(rng.normal(0, 3)), state, {XOR_LABEL: cxr_bit != ecg_bit})
