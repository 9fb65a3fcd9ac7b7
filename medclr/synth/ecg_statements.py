"""Machine ECG statements rendered from :class:`~medclr.synth.state.EcgFindings`, and read back.

MIMIC-IV-ECG ``report_0`` .. ``report_17`` cells in GE/Philips vocabulary (our own wording lists): the rhythm
first ("Sinus rhythm", "Sinus bradycardia", "Atrial fibrillation with rapid ventricular response"), then
conduction ("Left bundle branch block", "1st degree A-V block"), hypertrophy ("Left ventricular hypertrophy",
"LVH with secondary repolarization abnormality"), infarcts ("Inferior infarct - age undetermined", "Acute
anterior infarct", "** ** ACUTE MI / STEMI ** **"), ST-T ("Nonspecific T wave abnormality", "ST-T changes,
probably ischemic"), an artefact warning for noisy records, and the summary ("Normal ECG" exactly for PTB-XL
NORM, "Otherwise normal ECG"/"Borderline ECG" for a lone rate or PR finding, else "Abnormal ECG"). Like the
machines, a continuation is sometimes its own lower-case cell ("with rapid ventricular response"), which
:func:`medclr.io.report_sources.machine_report_text` joins back. Old infarcts and LVH are hedged ("Possible
inferior infarct - age undetermined", "Minimal voltage criteria for LVH, may be normal variant") with
probability ``hedge_rate``; :func:`statement_facts` reads statements back into PTB-XL superclasses (1.0,
-1.0 hedged, 0.0 not stated: machine statements are exhaustive) and the rhythm.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from medclr.synth.reports import choose
from medclr.synth.state import ECG_CLASSES, EcgFindings, MiTerritory

__all__ = ["ecg_machine_statements", "statement_facts"]

_ARTERY: dict[MiTerritory, str] = {"anterior": "LAD", "inferior": "RCA", "lateral": "LCx"}


def _infarct(territory: MiTerritory, acute: bool, hedged: bool, rng: np.random.Generator) -> list[str]:
    names = {"anterior": ("Anterior", "Anteroseptal"), "inferior": ("Inferior",),
             "lateral": ("Lateral", "High lateral")}
    name = choose(rng, names[territory])
    if acute:
        out = [choose(rng, (f"Acute {name.lower()} infarct", f"{name} infarct, acute ({_ARTERY[territory]})",
                             f"{name} injury pattern, acute infarct"))]
        if rng.random() < 0.5:
            out.append("** ** ACUTE MI / STEMI ** **")
        return out
    if hedged:
        return [choose(rng, (f"Possible {name.lower()} infarct - age undetermined",
                              f"Cannot rule out {name.lower()} infarct - age undetermined"))]
    return [choose(rng, (f"{name} infarct - age undetermined", f"{name} infarct , age undetermined",
                          f"{name} infarct, old"))]


def ecg_machine_statements(
    findings: EcgFindings, rng: np.random.Generator, *, hedge_rate: float = 0.1, continuation_rate: float = 0.15
) -> list[str]:
    """MIMIC-IV-ECG ``report_0`` .. ``report_17`` statements of ``findings`` (module docstring: vocabulary).

    ``hedge_rate``: share of old infarcts and LVH written hedged; ``continuation_rate``: share of rhythm
    qualifiers ("with rapid ventricular response") written as their own lower-case statement.
    """
    hr, rhythm = findings.heart_rate, findings.rhythm
    out: list[str] = []
    qualifier = ""
    avb_done = False
    if rhythm == "SR":
        base = choose(rng, ("Sinus rhythm", "Sinus rhythm", "Normal sinus rhythm"))
    elif rhythm == "SBRAD":
        base = "Marked sinus bradycardia" if hr < 45 else "Sinus bradycardia"
    elif rhythm == "STACH":
        base = "Sinus tachycardia"
    else:
        base = "Atrial fibrillation"
        qualifier = ("with rapid ventricular response" if hr > 100 else "with slow ventricular response" if hr < 60
                     else "")
    if findings.conduction == "AVB1" and rhythm != "AFIB" and rng.random() < 0.5:
        qualifier, avb_done = "with 1st degree A-V block", True
    if qualifier and rng.random() < continuation_rate:
        out += [base, qualifier]
    else:
        out.append(f"{base} {qualifier}".strip())
    if findings.noise > 1.3 and rng.random() < 0.5:
        out.append(choose(rng, ("Baseline artifact", "Poor data quality, interpretation may be adversely affected")))
    if findings.conduction == "LBBB":
        out.append("Left bundle branch block")
    elif findings.conduction == "RBBB":
        out.append(choose(rng, ("Right bundle branch block", "Complete right bundle branch block")))
    elif findings.conduction == "AVB1" and not avb_done:
        out.append(choose(rng, ("1st degree A-V block", "Prolonged PR interval", "First degree AV block")))
    sttc_done = False
    if findings.lvh:
        if rng.random() < hedge_rate:
            out.append(choose(rng, ("Minimal voltage criteria for LVH, may be normal variant",
                                     "Possible left ventricular hypertrophy", "Consider left ventricular hypertrophy")))
        elif findings.sttc and rng.random() < 0.6:
            out.append(choose(rng, ("Left ventricular hypertrophy with repolarization abnormality",
                                     "LVH with secondary repolarization abnormality")))
            sttc_done = True
        else:
            out.append(choose(rng, ("Left ventricular hypertrophy", "Left ventricular hypertrophy by voltage criteria",
                                     "Voltage criteria for left ventricular hypertrophy")))
    acute_tail: list[str] = []
    if findings.mi_territory is not None:
        hedged = not findings.mi_acute and rng.random() < hedge_rate
        statements = _infarct(findings.mi_territory, findings.mi_acute, hedged, rng)
        out.append(statements[0])
        acute_tail = statements[1:]
    if findings.sttc and not sttc_done:
        out.append(choose(rng, ("Nonspecific T wave abnormality", "Nonspecific ST and T wave abnormality",
                                 "ST-T changes, probably ischemic", "T wave abnormality, consider lateral ischemia",
                                 "ST & T wave abnormality, consider inferior ischemia")))
    out += acute_tail
    superclasses = findings.superclasses
    if superclasses["NORM"]:
        out.append("Normal ECG")
    elif (findings.mi_territory or findings.conduction in ("LBBB", "RBBB") or findings.lvh or rhythm == "AFIB"):
        out.append("Abnormal ECG")
    elif findings.sttc or findings.conduction == "AVB1":
        out.append(choose(rng, ("Abnormal ECG", "Borderline ECG")))
    else:
        out.append(choose(rng, ("Otherwise normal ECG", "Borderline ECG")))
    return out[:18]


_SR = re.compile(r"^(normal )?sinus rhythm")
_MI = re.compile(r"infarct|\bstemi\b|\bmi\b")
_HYP = re.compile(r"left ventricular hypertrophy|\blvh\b")
_CD = re.compile(r"bundle branch block|a-v block|\bav block|pr interval")
_STTC = re.compile(r"t wave|st-t|st & t|st and t|repolarization|st depression|ischemi")
_HEDGED = re.compile(r"^(possible|cannot rule out|consider|probable)\b|may be normal variant")


def statement_facts(statements: Sequence[str | None]) -> dict[str, float]:
    """Read machine statements back: PTB-XL superclasses and rhythm, 1.0 stated, -1.0 hedged, 0.0 not stated.

    A lower-case statement continues the one before (as in MIMIC-IV-ECG); missing cells are skipped. Only
    infarct and LVH statements are read as hedged; ST-T statements are positive whatever their wording.

    >>> statement_facts(["Atrial fibrillation", "with rapid ventricular response", "Left bundle branch block"])
    {'NORM': 0.0, 'MI': 0.0, 'STTC': 0.0, 'CD': 1.0, 'HYP': 0.0, 'SR': 0.0, 'AFIB': 1.0, 'SBRAD': 0.0, 'STACH': 0.0}
    """
    merged: list[str] = []
    for value in statements:
        text = value.strip() if isinstance(value, str) else ""
        if not text:
            continue
        if merged and text[0].islower():
            merged[-1] = f"{merged[-1]} {text}"
        else:
            merged.append(text)
    facts = dict.fromkeys((*ECG_CLASSES, "SR", "AFIB", "SBRAD", "STACH"), 0.0)

    def state(key: str, value: float) -> None:
        facts[key] = max(facts[key], value) if facts[key] != 0.0 else value

    for statement in merged:
        s = statement.lower()
        hedged = bool(_HEDGED.search(s))
        if _MI.search(s):
            state("MI", -1.0 if hedged else 1.0)
        if _HYP.search(s):
            state("HYP", -1.0 if hedged else 1.0)
        if _CD.search(s):
            state("CD", 1.0)
        if _STTC.search(s):
            state("STTC", 1.0)
        if _SR.search(s):
            state("SR", 1.0)
        if "atrial fibrillation" in s:
            state("AFIB", 1.0)
        if "sinus bradycardia" in s:
            state("SBRAD", 1.0)
        if "sinus tachycardia" in s:
            state("STACH", 1.0)
        if s.rstrip(".") == "normal ecg":
            state("NORM", 1.0)
    return facts
