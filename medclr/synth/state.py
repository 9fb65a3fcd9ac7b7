"""The latent clinical state of a synthetic study: what the X-ray, the ECG and the reports are rendered from.

The world (``medclr.synth.world``) samples one :class:`StudyState` per study from a patient's latent
conditions (heart failure, prior MI, pneumonia, ...); the renderers are pure functions of a state and a random
generator:

- ``medclr.synth.cxr.render_cxr(state.cxr, rng)`` -> X-ray pixels and the boxes of its findings;
- ``medclr.synth.ecg.simulate_ecg(state.ecg, rng)`` -> a 12-lead signal;
- ``medclr.synth.reports`` -> a radiology report from ``state.cxr`` (+ boxes) and a machine ECG report from
  ``state.ecg``.

Everything here is plain data: no numpy arrays, no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Side = Literal["left", "right"]
Lobe = Literal["right upper", "right middle", "right lower", "left upper", "lingula", "left lower"]
Severity = Literal["mild", "moderate", "severe"]
Rhythm = Literal["SR", "AFIB", "SBRAD", "STACH"]
MiTerritory = Literal["anterior", "inferior", "lateral"]
Conduction = Literal["LBBB", "RBBB", "AVB1"]
Incidental = Literal["sternotomy", "low lung volumes", "hyperinflation", "dextroconvex scoliosis",
                     "levoconvex scoliosis", "hiatal hernia", "aortic calcification", "cholecystectomy clips"]

CXR_FINDINGS: tuple[str, ...] = (
    "Cardiomegaly",
    "Pleural Effusion",
    "Pneumothorax",
    "Consolidation",
    "Pneumonia",
    "Edema",
    "Atelectasis",
    "Lung Opacity",
    "Support Devices",
)
"""CheXpert names of the findings the phantom renders ("No Finding" = none of them)."""

INCIDENTAL_FINDINGS: tuple[Incidental, ...] = (
    "sternotomy", "low lung volumes", "hyperinflation", "dextroconvex scoliosis", "levoconvex scoliosis",
    "hiatal hernia", "aortic calcification", "cholecystectomy clips",
)
"""Chronic or incidental findings that carry no CheXpert label but that real reports describe (sternotomy wires,
lung volumes, scoliosis, ...): they make one normal radiograph and its report different from another's."""

ECG_CLASSES: tuple[str, ...] = ("NORM", "MI", "STTC", "CD", "HYP")
"""PTB-XL diagnostic superclasses the simulator renders."""


@dataclass(frozen=True)
class CxrFindings:
    """Findings of one chest X-ray. ``None`` / empty / ``False`` means absent.

    Pneumonia is rendered as a consolidation in ``consolidation_lobe`` (the report then calls it pneumonia);
    ``lung_opacity`` is true whenever any parenchymal opacity is present (consolidation, edema, atelectasis) or
    a separate ill-defined opacity is drawn (``opacity_lobe``), as in the CheXpert label hierarchy.
    """

    cardiomegaly: Severity | None = None
    effusion_sides: tuple[Side, ...] = ()
    effusion_severity: Severity = "mild"
    pneumothorax_side: Side | None = None  # apical, on that side
    consolidation_lobe: Lobe | None = None
    pneumonia: bool = False  # only with consolidation_lobe
    edema: Severity | None = None  # bilateral perihilar
    atelectasis_sides: tuple[Side, ...] = ()  # basal (plate-like)
    opacity_lobe: Lobe | None = None  # an ill-defined opacity without a more specific label
    support_devices: tuple[Literal["ett", "central line", "pacemaker"], ...] = ()
    incidental: tuple[Incidental, ...] = ()  # no CheXpert label (see INCIDENTAL_FINDINGS)

    @property
    def labels(self) -> dict[str, bool]:
        """CheXpert-style labels (the :data:`CXR_FINDINGS` plus "No Finding")."""
        opacity = bool(self.consolidation_lobe or self.edema or self.atelectasis_sides or self.opacity_lobe)
        out = {
            "Cardiomegaly": self.cardiomegaly is not None,
            "Pleural Effusion": bool(self.effusion_sides),
            "Pneumothorax": self.pneumothorax_side is not None,
            "Consolidation": self.consolidation_lobe is not None,
            "Pneumonia": self.pneumonia and self.consolidation_lobe is not None,
            "Edema": self.edema is not None,
            "Atelectasis": bool(self.atelectasis_sides),
            "Lung Opacity": opacity,
            "Support Devices": bool(self.support_devices),
        }
        out["No Finding"] = not any(v for k, v in out.items() if k != "Support Devices")
        return out


@dataclass(frozen=True)
class CxrAcquisition:
    """How the radiograph was taken and stored; the renderer varies anatomy within these settings."""

    size: int = 768  # pixels on the long side (512-1024)
    view: Literal["PA", "AP"] = "PA"
    patient_scale: float = 1.0  # body habitus, ~0.85-1.15
    rotation_deg: float = 0.0  # in-plane rotation, a few degrees
    exposure: float = 1.0  # ~0.8-1.2; under/over-exposure
    noise: float = 0.02  # quantum noise level
    bits_stored: int = 12  # 12-16 for DICOM, 8 for PNG/JPEG copies


@dataclass(frozen=True)
class EcgFindings:
    """Findings of one 12-lead ECG (PTB-XL vocabulary). Absent = ``None`` / ``False``."""

    rhythm: Rhythm = "SR"
    heart_rate: float = 70.0  # beats per minute (mean ventricular rate for AFIB)
    mi_territory: MiTerritory | None = None  # ST elevation + pathological Q waves in the territory's leads
    mi_acute: bool = False  # acute: ST elevation; old: Q waves and T inversion only
    sttc: bool = False  # ST depression / T-wave inversion (non-specific or ischaemic)
    conduction: Conduction | None = None
    lvh: bool = False  # high QRS voltage (Sokolow-Lyon), often with strain pattern
    noise: float = 1.0  # scales baseline wander, powerline and muscle noise

    @property
    def superclasses(self) -> dict[str, bool]:
        """PTB-XL diagnostic superclass labels."""
        mi = self.mi_territory is not None
        cd = self.conduction is not None
        out = {"MI": mi, "STTC": self.sttc, "CD": cd, "HYP": self.lvh}
        out["NORM"] = not any(out.values()) and self.rhythm == "SR"
        return {k: out[k] for k in ECG_CLASSES}


@dataclass(frozen=True)
class StudyState:
    """One study: a patient's X-ray and ECG findings plus the history a report may mention."""

    cxr: CxrFindings = field(default_factory=CxrFindings)
    acquisition: CxrAcquisition = field(default_factory=CxrAcquisition)
    ecg: EcgFindings = field(default_factory=EcgFindings)
    history: tuple[str, ...] = ()  # e.g. ("heart failure", "prior MI") for the report's INDICATION
