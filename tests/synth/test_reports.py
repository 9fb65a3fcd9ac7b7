"""Synthetic radiology reports: sections, sides, facts vs text, typos, incidental findings and the XOR report."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medclr.io.reports import parse_sections
from medclr.synth.reports import (
    CHEXPERT_LABELS,
    FALSE_HEDGE_LABELS,
    HISTORY_PHRASES,
    INCIDENTAL_MENTION_RATE,
    INCIDENTAL_PHRASES,
    LATERALITY_WORDS,
    NEGATION_WORDS,
    PROTECTED_WORDS,
    XOR_FACT_WORDS,
    RadiologyReport,
    Sentence,
    compose_radiology_report,
    finding_locations,
    grounding_phrase,
    radiology_report,
    radiology_report_with_facts,
    xor_report,
    xor_report_with_facts,
)
from medclr.synth.state import CxrAcquisition, CxrFindings, StudyState

LOBES = ("right upper", "right middle", "right lower", "left upper", "lingula", "left lower")
SEV = ("mild", "moderate", "severe")

STATES = [
    StudyState(),
    StudyState(cxr=CxrFindings(effusion_sides=("left",), pneumothorax_side="right", atelectasis_sides=("right",)),
               history=("intubation",)),
    StudyState(cxr=CxrFindings(cardiomegaly="moderate", effusion_sides=("left", "right"), edema="severe",
                               atelectasis_sides=("left", "right"), support_devices=("ett", "central line")),
               acquisition=CxrAcquisition(view="AP"), history=("heart failure", "shortness of breath", "intubation")),
    StudyState(cxr=CxrFindings(consolidation_lobe="lingula", pneumonia=True, effusion_sides=("right",),
                               opacity_lobe="right upper"), history=("fever and cough", "hypertension")),
    StudyState(cxr=CxrFindings(cardiomegaly="mild", consolidation_lobe="right lower", pneumonia=False,
                               pneumothorax_side="left", support_devices=("pacemaker",)),
               history=("prior MI", "atrial fibrillation", "chest pain")),
]

# What a reader keys on for each label; a sentence that names a label must state a fact about it.
TERMS = {
    "Cardiomegaly": r"cardiomegaly|cardiac silhouette|heart size|heart is|cardiac size|cardiomediastinal",
    "Enlarged Cardiomediastinum": r"mediastin",
    "Lung Opacity": r"opacit|lungs are",
    "Lung Lesion": r"nodule",
    "Edema": r"edema|vascular congestion|pulmonary vascula",
    "Consolidation": r"consolidat",
    "Pneumonia": r"pneumonia",
    "Atelectasis": r"atelecta",
    "Pneumothorax": r"pneumothora",
    "Pleural Effusion": r"effusion",
    "Fracture": r"fracture",
    "Support Devices": r"\btube|catheter|central line|pacemaker|support devices",
}
NEG = re.compile(r"\b(no|not|without|normal|clear|unremarkable|intact|within normal limits)\b", re.I)
HEDGE = re.compile(r"\b(possible|possibly|likely|may|could|cannot be (entirely )?excluded|concerning for|"
                   r"suspicious for|questionable)\b", re.I)
SIDE = {"left": re.compile(r"\bleft\b", re.I), "right": re.compile(r"\bright\b", re.I)}


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _report(state: StudyState, seed: int, hedging: float = 1.0, false_hedge_rate: float = 0.03) -> RadiologyReport:
    return compose_radiology_report(state, np.random.default_rng(seed), typo_rate=0.0, hedging=hedging,
                                    false_hedge_rate=false_hedge_rate)


def _mentions(sentences: tuple[Sentence, ...], label: str) -> list[Sentence]:
    """Sentences stating ``label`` present or uncertain."""
    return [s for s in sentences if s.facts.get(label, 0.0) != 0.0]


def _check_sides(state: StudyState, report: RadiologyReport) -> None:
    """Every present finding is stated (or hedged) in FINDINGS, with its own side / lobe words."""
    f, sentences = state.cxr, report.findings + report.impression
    labels = f.labels

    def sided(label: str, sides: tuple[str, ...]) -> None:
        found = _mentions(sentences, label)
        assert found, (label, report.text)
        for s in found:
            if len(set(sides)) == 2:
                assert re.search(r"bilateral|bibasilar|both", s.text, re.I), s.text
            else:
                other = "left" if sides[0] == "right" else "right"
                assert SIDE[sides[0]].search(s.text) and not SIDE[other].search(s.text), s.text

    for label in ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Consolidation", "Edema", "Atelectasis",
                  "Support Devices"):
        found = _mentions(report.findings, label)
        if labels[label]:
            assert found, (label, report.text)
        else:  # only a documented hedge of an absent finding
            assert all(s.facts[label] == -1.0 and label in FALSE_HEDGE_LABELS for s in found), (label, report.text)
    if f.effusion_sides:
        sided("Pleural Effusion", f.effusion_sides)
    if f.pneumothorax_side:
        sided("Pneumothorax", (f.pneumothorax_side,))
        assert any(re.search(r"apical|apex", s.text) for s in _mentions(report.findings, "Pneumothorax"))
    if f.atelectasis_sides:
        sided("Atelectasis", f.atelectasis_sides)
    if f.consolidation_lobe:
        lobe = "lingul" if f.consolidation_lobe == "lingula" else f"{f.consolidation_lobe} lobe"
        for s in _mentions(sentences, "Consolidation") + _mentions(sentences, "Pneumonia"):
            assert lobe in s.text.lower(), s.text
    if f.opacity_lobe:
        lobe = "lingul" if f.opacity_lobe == "lingula" else f"{f.opacity_lobe} lobe"
        assert any(lobe in s.text.lower() for s in _mentions(report.findings, "Lung Opacity")), report.text
    if f.edema:
        for s in _mentions(report.findings, "Edema"):
            assert re.search(r"perihilar|vascular congestion|interstitial", s.text), s.text
    if f.cardiomegaly:
        assert any(re.search(r"cardiomegaly|enlarged cardiac silhouette|enlarge", s.text)
                   for s in _mentions(report.findings, "Cardiomegaly"))
    devices = " ".join(s.text for s in _mentions(report.findings, "Support Devices"))
    if "ett" in f.support_devices:
        assert re.search(r"[Ee]ndotracheal tube .*\d(\.5)? cm above the carina", devices), devices
    if "central line" in f.support_devices:
        assert re.search(r"[Rr]ight internal jugular .*(SVC|cavoatrial)", devices), devices
    if "pacemaker" in f.support_devices:
        assert re.search(r"[Ll]eft.* pacemaker.* right atrium and right ventricle", devices), devices


def _check_facts(report: RadiologyReport) -> None:
    """Facts match the sentences, and the sentences match the text."""
    sentences = report.findings + report.impression
    flat = _flat(report.text)
    for s in sentences:
        assert s.text in flat, s.text
        for label, term in TERMS.items():
            named = re.search(term, s.text, re.I) is not None
            value = s.facts.get(label)
            if label == "Lung Opacity" and not named:
                continue
            assert named == (value is not None), (label, s)
            if value == 0.0:
                assert NEG.search(s.text), s
            elif value == 1.0:
                assert not NEG.search(s.text), s
                if HEDGE.search(s.text):
                    assert -1.0 in s.facts.values(), s
            elif value == -1.0:
                assert HEDGE.search(s.text), s
    facts = report.facts
    assert list(facts) == list(CHEXPERT_LABELS)
    children = ("Consolidation", "Pneumonia", "Edema", "Atelectasis", "Lung Lesion")
    for label in CHEXPERT_LABELS:
        stated = {s.facts[label] for s in sentences if label in s.facts}
        value = facts[label]
        if label == "No Finding":
            uncertain_or_positive = any(facts[k] in (1.0, -1.0) for k in CHEXPERT_LABELS
                                        if k not in ("No Finding", "Support Devices"))
            assert (value == 1.0) != uncertain_or_positive and (value == 1.0 or math.isnan(value))
        elif label == "Lung Opacity" and any(facts[c] in (1.0, -1.0) for c in children):
            assert value == (1.0 if 1.0 in {facts[c] for c in children} | stated else -1.0)
        elif not stated:
            assert math.isnan(value), label
            assert not re.search(TERMS.get(label, r"^\b$"), flat.split("FINDINGS:")[1], re.I), (label, report.text)
        else:
            assert value == (1.0 if 1.0 in stated else -1.0 if -1.0 in stated else 0.0)


@pytest.mark.parametrize("state", STATES)
def test_deterministic_per_seed(state: StudyState) -> None:
    a = radiology_report_with_facts(state, np.random.default_rng(7))
    b = radiology_report_with_facts(state, np.random.default_rng(7))
    assert a[0] == b[0] and a[1].keys() == b[1].keys()
    assert all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a[1].values(), b[1].values(), strict=True))
    assert radiology_report(state, np.random.default_rng(7)) == a[0]
    assert len({radiology_report(state, np.random.default_rng(seed)) for seed in range(8)}) > 4  # paraphrases


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("seed", range(12))
def test_sections_sides_and_facts(state: StudyState, seed: int) -> None:
    report = _report(state, seed)
    sections = parse_sections(report.text)
    assert {"examination", "indication", "comparison", "findings", "impression"} <= set(sections)
    assert "___" in sections["indication"]
    for item in state.history:
        assert any(p in sections["indication"] for p in HISTORY_PHRASES[item]), (item, sections["indication"])
    assert _flat(sections["impression"]).endswith(".")
    _check_sides(state, report)
    _check_facts(report)


def test_facts_follow_truth_without_hedges() -> None:
    for state in STATES:
        for seed in range(10):
            facts = _report(state, seed, hedging=0.0, false_hedge_rate=0.0).facts
            for label, present in state.cxr.labels.items():
                assert (facts[label] == 1.0) == present, (label, facts)
                assert present or facts[label] == 0.0 or math.isnan(facts[label])


def test_hedges_only_where_documented() -> None:
    """Hedged absent findings: only FALSE_HEDGE_LABELS (and Lung Opacity through atelectasis), without sides."""
    normal = StudyState()
    seen = set()
    for seed in range(40):
        report = _report(normal, seed, false_hedge_rate=1.0)
        hedged = [k for k, v in report.facts.items() if v == -1.0]
        assert 1 <= len(hedged) <= 2 and set(hedged) <= {*FALSE_HEDGE_LABELS, "Lung Opacity"}
        seen |= set(hedged)
        for s in report.findings + report.impression:
            if -1.0 in s.facts.values():
                assert not re.search(r"\b(left|right)\b", s.text, re.I), s.text
    assert set(FALSE_HEDGE_LABELS) <= seen
    for state in STATES:  # by default absent findings are never positive, rarely uncertain
        truth = state.cxr.labels
        for seed in range(10):
            facts = _report(state, seed).facts
            for label in CHEXPERT_LABELS:
                if not truth.get(label, False) and label != "No Finding":
                    assert facts[label] != 1.0, label


def test_normal_study_reads_normal() -> None:
    for seed in range(10):
        report = _report(StudyState(), seed, false_hedge_rate=0.0)
        assert report.facts["No Finding"] == 1.0
        assert re.search(r"No (radiographic evidence of )?acute", report.impression[-1].text)
        assert any(v == 0.0 for v in report.facts.values())  # some negation, always (effusion/PTX/heart at 80 %+)


@pytest.mark.parametrize("state", STATES[1:])
def test_typos_spare_protected_words(state: StudyState) -> None:
    changed = 0
    for seed in range(5):
        clean = radiology_report(state, np.random.default_rng(seed), typo_rate=0.0)
        noisy = radiology_report(state, np.random.default_rng(seed), typo_rate=0.5)
        a, b = re.findall(r"[A-Za-z]+|[^A-Za-z]+", clean), re.findall(r"[A-Za-z]+|[^A-Za-z]+", noisy)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            if x != y:
                changed += 1
                assert sorted(x) == sorted(y) and x[0] == y[0] and x[-1] == y[-1] and len(x) >= 4
                assert x.lower() not in PROTECTED_WORDS and not x.isupper()
        for word in NEGATION_WORDS | LATERALITY_WORDS:
            pattern = rf"\b{word}\b"
            assert len(re.findall(pattern, clean, re.I)) == len(re.findall(pattern, noisy, re.I)), word
        head = clean.split("FINDINGS:")[0]
        assert noisy.startswith(head)  # no typos before FINDINGS
    assert changed > 0


def test_finding_locations_match_box_words() -> None:
    f = CxrFindings(cardiomegaly="mild", effusion_sides=("left", "right"), pneumothorax_side="right",
                    consolidation_lobe="right lower", pneumonia=True, edema="mild", atelectasis_sides=("left",),
                    support_devices=("ett", "pacemaker"))
    assert finding_locations(f) == [
        ("Cardiomegaly", "cardiac silhouette"), ("Pleural Effusion", "left base"), ("Pleural Effusion", "right base"),
        ("Pneumothorax", "right apex"), ("Pneumonia", "right lower lobe"), ("Edema", "bilateral perihilar"),
        ("Atelectasis", "left base"), ("Support Devices", "trachea"), ("Support Devices", "left chest wall"),
    ]


findings_strategy = st.builds(
    CxrFindings,
    cardiomegaly=st.none() | st.sampled_from(SEV),
    effusion_sides=st.sampled_from([(), ("left",), ("right",), ("left", "right")]),
    effusion_severity=st.sampled_from(SEV),
    pneumothorax_side=st.none() | st.sampled_from(("left", "right")),
    consolidation_lobe=st.none() | st.sampled_from(LOBES),
    pneumonia=st.booleans(),
    edema=st.none() | st.sampled_from(SEV),
    atelectasis_sides=st.sampled_from([(), ("left",), ("right",), ("right", "left")]),
    opacity_lobe=st.none() | st.sampled_from(LOBES),
    support_devices=st.sampled_from([(), ("ett",), ("central line",), ("pacemaker",), ("ett", "central line")]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(findings=findings_strategy, seed=st.integers(0, 2**32 - 1), view=st.sampled_from(("PA", "AP")))
def test_any_findings(findings: CxrFindings, seed: int, view: str) -> None:
    state = StudyState(cxr=findings, acquisition=CxrAcquisition(view=view))  # type: ignore[arg-type]
    report = _report(state, seed, false_hedge_rate=0.2)
    assert {"findings", "impression"} <= set(parse_sections(report.text))
    _check_sides(state, report)
    _check_facts(report)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(findings=findings_strategy, seed=st.integers(0, 2**32 - 1))
def test_grounding_phrase_is_the_findings_sentence_of_the_boxed_finding(findings: CxrFindings, seed: int) -> None:
    """Every box (:func:`finding_locations`) gets its report's FINDINGS sentence about that finding: the label's
    words, the box's side (a finding on one side), the device it names."""
    report = _report(StudyState(cxr=findings), seed, false_hedge_rate=0.2)  # type: ignore[arg-type]
    texts = {s.text for s in report.findings}
    located = finding_locations(findings)
    for label, location in located:
        phrase = grounding_phrase(label, location, report.findings)
        assert f"{phrase}." in texts
        assert re.search(TERMS["Consolidation" if label == "Pneumonia" else label], phrase, re.I), phrase
        side, _, rest = location.partition(" ")
        both = sum(lab == label and loc.endswith(rest) for lab, loc in located) == 2
        if side in ("left", "right") and rest in ("base", "apex"):
            assert (re.search(r"bilateral|both|bibasilar", phrase, re.I) if both else side in phrase.lower()), phrase
            assert both or {"left": "right", "right": "left"}[side] not in phrase.lower(), phrase
    words = {"trachea": "endotracheal", "superior vena cava": "central", "left chest wall": "pacemaker"}
    for device in findings.support_devices:
        location = dict(finding_locations(CxrFindings(support_devices=(device,))))["Support Devices"]
        assert words[location] in grounding_phrase("Support Devices", location, report.findings).lower()


def test_grounding_phrase_refuses_a_finding_the_report_does_not_state() -> None:
    report = _report(StudyState(cxr=CxrFindings(effusion_sides=("left",))), 0)
    with pytest.raises(ValueError, match="Atelectasis at the left base"):
        grounding_phrase("Atelectasis", "left base", report.findings)


# ----------------------------------------------------------------------------------------------------------------
# XOR world
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_xor_report_states_the_xor(seed: int) -> None:
    for cxr in (False, True):
        for ecg in (False, True):
            for components in (False, True):
                text, facts = xor_report_with_facts(cxr, ecg, np.random.default_rng(seed), state_components=components)
                assert text == xor_report(cxr, ecg, np.random.default_rng(seed), state_components=components)
                sections = parse_sections(text)
                word, other = XOR_FACT_WORDS[cxr != ecg], XOR_FACT_WORDS[cxr == ecg]
                for key in ("findings", "impression"):
                    assert word in sections[key].lower() and other not in sections[key].lower()
                heart = re.search(r"cardiomegaly|heart size|heart is|cardiac silhouette", sections["findings"], re.I)
                lvh = re.search(r"left ventricular hypertrophy", sections["findings"])
                assert bool(heart) == bool(lvh) == components
                if components:
                    assert facts["Cardiomegaly"] == float(cxr)
                    assert bool(re.search(r"\bno left ventricular|without voltage", sections["findings"], re.I)) != ecg
                else:
                    assert math.isnan(facts["Cardiomegaly"])


def test_xor_report_without_components_depends_on_xor_only() -> None:
    for seed in range(10):
        def text(cxr: bool, ecg: bool, seed: int = seed) -> str:
            return xor_report(cxr, ecg, np.random.default_rng(seed), state_components=False)

        assert text(True, False) == text(False, True)
        assert text(False, False) == text(True, True)
        assert text(True, False) != text(True, True)


def test_incidental_findings_are_described_without_facts() -> None:
    """Each present incidental finding gets its sentence at INCIDENTAL_MENTION_RATE, never an absent one, never a
    CheXpert fact, and a report of abnormal lung volumes never calls the lungs well expanded."""
    names = ("sternotomy", "hyperinflation", "levoconvex scoliosis", "cholecystectomy clips")
    state = StudyState(cxr=CxrFindings(incidental=names))  # type: ignore[arg-type]
    said = dict.fromkeys(INCIDENTAL_PHRASES, 0)
    n = 300
    for seed in range(n):
        report = _report(state, seed, false_hedge_rate=0.0)
        assert report.facts["No Finding"] == 1.0
        assert "well expanded" not in report.text and "osseous structures are unremarkable" not in report.text
        for name, (block, texts) in INCIDENTAL_PHRASES.items():
            hits = [s for s in report.findings if s.text in texts]
            assert len(hits) <= 1 and all(s.block == block and not s.facts for s in hits)
            said[name] += bool(hits)
    for name, count in said.items():
        if name in names:
            assert abs(count / n - INCIDENTAL_MENTION_RATE) < 0.06, (name, count)
        else:
            assert count == 0, name
