"""Radiology reports rendered from a :class:`~medclr.synth.state.StudyState` (machine ECG statements:
:mod:`medclr.synth.ecg_statements`).

Every sentence is written from the state, so what a report says is known exactly; the report is noisy the way
real ones are (paraphrase, sentence order, hedges, typos), never wrong about laterality or negation.

Radiology report (:func:`radiology_report`, :func:`radiology_report_with_facts`, :func:`compose_radiology_report`)
--------------------------------------------------------------------------------------------------------------------
MIMIC-CXR layout (``FINAL REPORT`` title, ``EXAMINATION``, ``INDICATION``, optional ``TECHNIQUE``,
``COMPARISON``, ``FINDINGS``, ``IMPRESSION``), wrapped at 78 characters with MIMIC's leading space; it parses
with :func:`medclr.io.reports.parse_sections` into those keys. De-identified spans are ``___`` as in MIMIC.

- INDICATION: ``"___-year-old patient with history of heart failure and HTN, now with SOB.  // eval for
  pulmonary edema"``; every ``state.history`` item is written with one of its :data:`HISTORY_PHRASES`.
  Sex is unknown to the state: pass ``sex="M"``/``"F"`` for "man"/"woman", else the patient is a "patient".
- FINDINGS: one sentence per present finding, in topical blocks (view, devices, lungs, pleura, heart, bones)
  whose order varies, positives first in each block. Location words follow the finding fields and match the
  locations of the X-ray boxes (:func:`finding_locations`): effusion and basal atelectasis on their side(s)
  ("left", "right", "bilateral"/"bibasilar"), pneumothorax "<side> apical", consolidation / opacity in their lobe
  ("right lower lobe", "lingula"/"lingular"), edema as "bilateral perihilar", "pulmonary vascular congestion" or
  "interstitial edema", cardiomegaly as "<severity> cardiomegaly"/"enlarged cardiac silhouette", devices as
  "endotracheal tube terminates X cm above the carina", "right internal jugular central venous catheter ... SVC",
  "left chest wall pacemaker with leads in the right atrium and right ventricle". A sentence never names more
  than one lateralised finding, so its side words belong to that finding. Incidental findings
  (``state.cxr.incidental``: sternotomy wires, low or hyperinflated lung volumes, scoliosis, hiatal hernia, aortic
  calcification, cholecystectomy clips) get one sentence each (:data:`INCIDENTAL_PHRASES`) with probability
  :data:`INCIDENTAL_MENTION_RATE`, and no CheXpert fact.
- Absent findings are negated at MIMIC-like rates (:data:`NEGATION_RATES`: effusion and pneumothorax most
  often, atelectasis rarely), alone or grouped ("No focal consolidation, pleural effusion or pneumothorax."),
  and normal statements stand for others ("Heart size is normal." = no cardiomegaly, "Mediastinal and hilar
  contours are unremarkable." = no enlarged cardiomediastinum, "The lungs are clear." = no lung opacity).
- IMPRESSION: the positives by clinical priority (pneumothorax, consolidation/pneumonia, edema, effusion,
  opacity, cardiomegaly, atelectasis, devices), at the same certainty as in FINDINGS, sometimes numbered; with
  no acute positive it says "No acute cardiopulmonary process." (or a paraphrase).

Hedges (CheXpert "uncertain", -1.0): a *present* finding is hedged with probability
:data:`HEDGE_RATES` x ``hedging`` ("Possible small left pleural effusion.", "Left basilar opacity, likely
atelectasis.", "Right lower lobe consolidation, concerning for pneumonia."); cardiomegaly, pneumothorax and
devices never are. Pneumonia is hedged whenever its consolidation is. An *absent* finding is hedged in
``false_hedge_rate`` of the reports (default 3 %), and then only one of :data:`FALSE_HEDGE_LABELS`, with a
side-less "cannot be excluded"/"possible" sentence ("Early pneumonia cannot be excluded.", "A trace pleural
effusion cannot be excluded.", "Possible minimal atelectasis at the lung bases."), never a definite statement.

Facts: ``facts[label]`` for each of the 14 CheXpert labels (:data:`CHEXPERT_LABELS`) is what FINDINGS +
IMPRESSION state: 1.0 positive, 0.0 negated, -1.0 hedged, NaN not mentioned (a label positive anywhere is
1.0, else hedged anywhere -1.0, else 0.0, as the CheXpert labeler aggregates). Two CheXpert conventions are
applied on top: Lung Opacity is the parent of consolidation, pneumonia, edema, atelectasis and lung lesion (a
positive child makes it 1.0, an uncertain child -1.0 unless it is positive itself), and "No Finding" is 1.0
when no label other than Support Devices is positive or uncertain, else NaN. "Enlarged Cardiomediastinum" is
only ever stated normal (0.0), and only with a normal heart. Facts are about the text, not the truth: they
differ from ``state.cxr.labels`` exactly where the text hedges or says nothing.

Typos (``typo_rate``, per eligible word): an adjacent-letter swap inside a word of 4+ letters, never the
first or last letter, never in :data:`PROTECTED_WORDS` (negation and hedge cues, laterality and location
words, finding names) nor in capitals (ETT, SVC) nor outside FINDINGS and IMPRESSION. Typos come from their
own generator (seeded from ``rng`` first), so a report with and without typos says the same thing word for
word. ``facts`` and :class:`Sentence` texts are typo-free.

XOR world (:func:`xor_report`)
------------------------------
After Symile's synthetic test: the X-ray bit is cardiomegaly, the ECG bit left ventricular hypertrophy (as in
``medclr.synth.latent.sample_xor_study``). The report states their exclusive-or as *concordance*: "discordant"
when exactly one modality shows cardiac enlargement, "concordant" when both or neither do, in FINDINGS and
again in IMPRESSION (:data:`XOR_FACT_WORDS`). Everything else in the report (view, clear lungs, no effusion or
pneumothorax) is drawn independently of the bits, with the same random draws for every combination, so with
``state_components=False`` the text is a function of the XOR and the generator only: (1, 0) and (0, 1) give
the same report, as do (0, 0) and (1, 1). With ``state_components=True`` FINDINGS also states heart size and
the ECG's LVH, and the text determines both bits.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

import numpy as np

from medclr.synth.state import CxrFindings, Lobe, Side, StudyState

__all__ = [
    "CHEXPERT_LABELS",
    "FALSE_HEDGE_LABELS",
    "HEDGE_RATES",
    "HISTORY_PHRASES",
    "INCIDENTAL_MENTION_RATE",
    "INCIDENTAL_PHRASES",
    "NEGATION_RATES",
    "PROTECTED_WORDS",
    "XOR_FACT_WORDS",
    "RadiologyReport",
    "Sentence",
    "compose_radiology_report",
    "finding_locations",
    "grounding_phrase",
    "radiology_report",
    "radiology_report_with_facts",
    "xor_report",
    "xor_report_with_facts",
]

T = TypeVar("T")

CARD, EC, LO, LESION, EDEMA = "Cardiomegaly", "Enlarged Cardiomediastinum", "Lung Opacity", "Lung Lesion", "Edema"
CONS, PNA, ATEL, PTX, EFF = "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion"
FX, SD, NOF = "Fracture", "Support Devices", "No Finding"

CHEXPERT_LABELS: tuple[str, ...] = (
    NOF, EC, CARD, LO, LESION, EDEMA, CONS, PNA, ATEL, PTX, EFF, "Pleural Other", FX, SD,
)
"""The 14 CheXpert labels, in the order of MIMIC-CXR's ``chexpert.csv``: the keys of the facts dict."""

HEDGE_RATES: dict[str, float] = {PNA: 0.35, ATEL: 0.25, CONS: 0.15, EDEMA: 0.15, EFF: 0.12, LO: 0.2}
"""Probability that a present finding is written hedged (times ``hedging``); ``LO`` = a lone ``opacity_lobe``."""

FALSE_HEDGE_LABELS: tuple[str, ...] = (PNA, EFF, ATEL)
"""The only absent findings a report may hedge ("cannot be excluded"), one per report at most."""

NEGATION_RATES: dict[str, float] = {
    EFF: 0.85, PTX: 0.85, CARD: 0.8, CONS: 0.65, EC: 0.6, LO: 0.55, EDEMA: 0.45, FX: 0.25, PNA: 0.12,
    ATEL: 0.05, LESION: 0.05,
}
"""Probability that an absent finding is negated or stated normal in FINDINGS."""

HISTORY_PHRASES: dict[str, tuple[str, ...]] = {
    "heart failure": ("history of heart failure", "CHF", "h/o CHF", "congestive heart failure"),
    "prior MI": ("prior MI", "history of myocardial infarction", "CAD s/p MI", "h/o MI"),
    "atrial fibrillation": ("atrial fibrillation", "afib", "h/o afib", "AF on anticoagulation"),
    "hypertension": ("HTN", "hypertension", "history of hypertension"),
    "chest pain": ("chest pain", "acute chest pain", "substernal chest pain"),
    "fever and cough": ("fever and cough", "cough and fever", "productive cough and fever"),
    "intubation": ("intubated", "s/p intubation", "newly intubated"),
    "shortness of breath": ("shortness of breath", "SOB", "dyspnea", "worsening dyspnea"),
}
"""How INDICATION writes each ``StudyState.history`` item (other items are written as they are)."""
_CHRONIC = ("heart failure", "prior MI", "atrial fibrillation", "hypertension")

NEGATION_WORDS = frozenset({
    "no", "not", "without", "none", "negative", "absent", "cannot", "excluded", "exclude", "evidence", "normal",
    "clear", "unremarkable", "intact", "within", "limits", "free",
})
HEDGE_WORDS = frozenset({
    "possible", "possibly", "likely", "may", "might", "could", "concerning", "suspicious", "questionable",
    "probable", "probably", "represent", "reflect", "consistent", "compatible", "keeping", "concordant",
    "discordant",
})
LATERALITY_WORDS = frozenset({
    "left", "right", "bilateral", "bilaterally", "bibasilar", "bibasal", "both", "base", "bases", "basal",
    "basilar", "apex", "apical", "apices", "upper", "middle", "lower", "lobe", "lobes", "lingula", "lingular",
    "perihilar", "hilar", "sided", "side", "lung", "lungs", "costophrenic", "atrium", "ventricle", "jugular",
    "internal", "wall", "carina", "cavoatrial",
})
FINDING_WORDS = frozenset({
    "effusion", "effusions", "pneumothorax", "consolidation", "pneumonia", "edema", "atelectasis",
    "cardiomegaly", "opacity", "opacities", "congestion", "interstitial", "vascular", "pulmonary", "pleural",
    "heart", "cardiac", "enlarged", "enlargement", "silhouette", "cardiomediastinal", "mediastinal", "fracture",
    "nodule", "nodules", "tube", "tubes", "catheter", "line", "lines", "pacemaker", "endotracheal", "venous",
    "central", "leads", "hypertrophy", "ventricular", "size",
})
PROTECTED_WORDS: frozenset[str] = NEGATION_WORDS | HEDGE_WORDS | LATERALITY_WORDS | FINDING_WORDS
"""Lower-case words that typos never touch."""

XOR_FACT_WORDS: dict[bool, str] = {True: "discordant", False: "concordant"}
"""The XOR report's fact word: ``XOR_FACT_WORDS[cxr_finding != ecg_finding]``."""

_EFFUSION_SIZE = {"mild": "small", "moderate": "moderate", "severe": "large"}
_BLOCKS = ("view", "devices", "lungs", "pleura", "heart", "bones")
_BLOCK_ORDERS: tuple[tuple[str, ...], ...] = (
    ("view", "devices", "lungs", "pleura", "heart", "bones"),
    ("view", "devices", "heart", "lungs", "pleura", "bones"),
    ("view", "heart", "lungs", "pleura", "devices", "bones"),
    ("view", "lungs", "pleura", "heart", "devices", "bones"),
    ("view", "devices", "pleura", "lungs", "heart", "bones"),
)
_LUNG_LABELS = (CONS, PNA, EDEMA, ATEL, LO, LESION)


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    """One typo-free sentence and the CheXpert facts it states (``label -> 1.0 / 0.0 / -1.0``)."""

    text: str
    facts: Mapping[str, float] = field(default_factory=dict)
    block: str = "other"


@dataclass(frozen=True)
class RadiologyReport:
    """A rendered report: the full text (with typos), its facts, and the typo-free sentences behind it."""

    text: str
    facts: dict[str, float]
    indication: str
    findings: tuple[Sentence, ...]
    impression: tuple[Sentence, ...]


# ----------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------


def choose(rng: np.random.Generator, options: Sequence[T]) -> T:
    """One of ``options``, uniformly (one draw from ``rng``)."""
    return options[int(rng.integers(len(options)))]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join_or(nouns: Sequence[str], rng: np.random.Generator) -> str:
    if len(nouns) == 1:
        return nouns[0]
    comma = "," if rng.random() < 0.5 else ""
    return ", ".join(nouns[:-1]) + (f"{comma} or " if len(nouns) > 2 else " or ") + nouns[-1]


def _wrap(text: str, width: int = 78) -> str:
    return textwrap.fill(text, width=width, initial_indent=" ", subsequent_indent=" ", break_long_words=False,
                         break_on_hyphens=False)


def _lobe_words(lobe: Lobe) -> tuple[str, str]:
    """``(adjective, noun phrase)``: ``("right lower lobe", "the right lower lobe")``, ``("lingular", ...)``."""
    if lobe == "lingula":
        return "lingular", "the lingula"
    return f"{lobe} lobe", f"the {lobe} lobe"


def _sides(sides: Sequence[Side]) -> Side | Literal["both"]:
    unique = set(sides)
    return "both" if len(unique) > 1 else next(iter(unique))


_WORD = re.compile(r"[A-Za-z]+")


def _typos(text: str, rng: np.random.Generator, rate: float) -> str:
    """Swap two adjacent inner letters of eligible words with probability ``rate`` each (see module docstring)."""
    if rate <= 0:
        return text

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        if len(word) < 4 or word.lower() in PROTECTED_WORDS or word.isupper() or rng.random() >= rate:
            return word
        spots = [i for i in range(1, len(word) - 2) if word[i] != word[i + 1]]
        if not spots:
            return word
        i = choose(rng, spots)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]

    return _WORD.sub(swap, text)


def finding_locations(findings: CxrFindings) -> list[tuple[str, str]]:
    """``(label, location)`` of each present finding, in the words the X-ray boxes and the report use.

    >>> finding_locations(CxrFindings(effusion_sides=("left",), consolidation_lobe="lingula", pneumonia=True))
    [('Pleural Effusion', 'left base'), ('Pneumonia', 'lingula')]
    """
    out: list[tuple[str, str]] = []
    if findings.cardiomegaly is not None:
        out.append((CARD, "cardiac silhouette"))
    out += [(EFF, f"{side} base") for side in dict.fromkeys(findings.effusion_sides)]
    if findings.pneumothorax_side is not None:
        out.append((PTX, f"{findings.pneumothorax_side} apex"))
    if findings.consolidation_lobe is not None:
        lobe = findings.consolidation_lobe
        out.append((PNA if findings.pneumonia else CONS, lobe if lobe == "lingula" else f"{lobe} lobe"))
    if findings.opacity_lobe is not None:
        lobe = findings.opacity_lobe
        out.append((LO, lobe if lobe == "lingula" else f"{lobe} lobe"))
    if findings.edema is not None:
        out.append((EDEMA, "bilateral perihilar"))
    out += [(ATEL, f"{side} base") for side in dict.fromkeys(findings.atelectasis_sides)]
    where = {"ett": "trachea", "central line": "superior vena cava", "pacemaker": "left chest wall"}
    out += [(SD, where[device]) for device in findings.support_devices]
    return out


_DEVICE_WORDS = {"trachea": "endotracheal", "superior vena cava": "central", "left chest wall": "pacemaker"}
"""A device box's location (:func:`finding_locations`) -> the word its FINDINGS sentence names the device by."""


def grounding_phrase(label: str, location: str, findings: Sequence[Sentence]) -> str:
    """The phrase MS-CXR would pair with the X-ray box of ``label`` at ``location``: the report's own FINDINGS
    sentence that describes the finding (typo-free, without its full stop), as MS-CXR's radiologists took each
    phrase from the study's report (Boecking et al., ECCV 2022: "image-sentence pairs of bounding boxes and
    corresponding phrases"), so a phrase reads as the reports read: ``"Small left pleural effusion"``,
    ``"Plate-like atelectasis at the right base"``, ``"Mild pulmonary vascular congestion"`` (hedges kept).

    The sentence is the one whose first fact is the box's finding, stated present or hedged (a consolidation
    sentence for a Pneumonia box; a device sentence that names the device for a Support Devices box): every
    present finding has exactly one (module docstring), and a sentence names one lateralised finding at most, so
    its side words are the box's. Raises ValueError when ``findings`` states no such sentence (a report of
    another study, or one without FINDINGS sentences such as the XOR world's).

    >>> s = [Sentence("Heart size is normal.", {CARD: 0.0}), Sentence("Small left pleural effusion.", {EFF: 1.0})]
    >>> grounding_phrase(EFF, "left base", s)
    'Small left pleural effusion'
    """
    primary = CONS if label == PNA else label
    for sentence in findings:
        first = next(iter(sentence.facts), None)
        if first == primary and sentence.facts[first] != 0.0 and (
                label != SD or _DEVICE_WORDS.get(location, location) in sentence.text.lower()):
            return sentence.text.rstrip(".")
    raise ValueError(f"no FINDINGS sentence states {label} at the {location}")


# ----------------------------------------------------------------------------------------------------------------
# Positive (or hedged) finding sentences: (findings sentence, impression sentence)
# ----------------------------------------------------------------------------------------------------------------

Pair = tuple[Sentence, Sentence]


def _cardiomegaly(severity: str, rng: np.random.Generator) -> Pair:
    adverb = {"mild": "mildly", "moderate": "moderately", "severe": "markedly"}[severity]
    text = choose(rng, (
        f"{_cap(severity)} cardiomegaly.",
        f"The heart is {adverb} enlarged.",
        f"{_cap(adverb)} enlarged cardiac silhouette.",
        f"The cardiac silhouette is {adverb} enlarged.",
        f"There is {severity} enlargement of the cardiac silhouette.",
    ))
    impression = choose(rng, (f"{_cap(severity)} cardiomegaly.", f"{_cap(adverb)} enlarged cardiac silhouette."))
    return Sentence(text, {CARD: 1.0}, "heart"), Sentence(impression, {CARD: 1.0}, "heart")


def _effusion(f: CxrFindings, certainty: float, rng: np.random.Generator) -> Pair:
    size, side = _EFFUSION_SIZE[f.effusion_severity], _sides(f.effusion_sides)
    options: tuple[str, ...]
    if side == "both":
        options = (
            ("Possible {size} bilateral pleural effusions.",
             "Blunting of both costophrenic angles may reflect {size} pleural effusions.")
            if certainty < 0 else
            ("{size} bilateral pleural effusions.", "There are {size} bilateral pleural effusions.",
             "{size} pleural effusions are present bilaterally.",
             "Blunting of both costophrenic angles is consistent with {size} bilateral pleural effusions.")
        )
        impression = ("Possible {size} bilateral pleural effusions." if certainty < 0
                      else "{size} bilateral pleural effusions.")
    else:
        options = (
            ("Possible {size} {side} pleural effusion.",
             "Blunting of the {side} costophrenic angle may reflect a {size} pleural effusion.",
             "A {size} {side} pleural effusion is likely.")
            if certainty < 0 else
            ("{size} {side} pleural effusion.", "There is a {size} {side} pleural effusion.",
             "{size} {side}-sided pleural effusion.", "A {size} {side} pleural effusion is present.",
             "Blunting of the {side} costophrenic angle is consistent with a {size} pleural effusion.")
        )
        impression = ("Possible {size} {side} pleural effusion." if certainty < 0
                      else choose(rng, ("{size} {side} pleural effusion.", "{size} {side}-sided pleural effusion.")))
    facts = {EFF: certainty}
    text = _cap(choose(rng, options).format(size=size, side=side))
    return Sentence(text, facts, "pleura"), Sentence(_cap(impression.format(size=size, side=side)), facts, "pleura")


def _pneumothorax(side: Side, rng: np.random.Generator) -> Pair:
    size = choose(rng, ("small", "small", "tiny", "moderate"))
    text = choose(rng, (
        f"{_cap(size)} {side} apical pneumothorax.",
        f"There is a {size} {side} apical pneumothorax.",
        f"A {size} {side} apical pneumothorax is seen.",
        f"{_cap(size)} pneumothorax at the {side} apex.",
    ))
    impression = choose(rng, (f"{_cap(size)} {side} apical pneumothorax.", f"{_cap(side)} apical pneumothorax."))
    return Sentence(text, {PTX: 1.0}, "pleura"), Sentence(impression, {PTX: 1.0}, "pleura")


def _consolidation(lobe: Lobe, cons: float, pna: float | None, rng: np.random.Generator) -> Pair:
    """``pna`` None: no pneumonia; consolidation hedged implies pneumonia hedged (enforced by the caller)."""
    adj, noun = _lobe_words(lobe)
    clauses: tuple[tuple[str, dict[str, float]], ...]
    if cons > 0:
        clauses = (
            (f"Consolidation in {noun}", {}), (f"{_cap(adj)} consolidation", {}),
            (f"Focal consolidation in {noun}", {}), (f"There is {adj} consolidation", {}),
            (f"Dense {adj} opacity consistent with consolidation", {LO: 1.0}),
        )
    else:
        clauses = (
            (f"Possible consolidation in {noun}", {}),
            (f"Patchy {adj} opacity, possibly consolidation", {LO: 1.0}),
            (f"Subtle {adj} opacity may represent consolidation", {LO: 1.0}),
        )
    clause, extra = choose(rng, clauses)
    facts: dict[str, float] = {CONS: cons, **extra}
    tail = ""
    if pna is not None:
        facts[PNA] = pna
        if pna > 0:
            tails = [t for t in (", consistent with pneumonia", ", compatible with pneumonia",
                                 ", in keeping with pneumonia") if not ("consistent" in t and "consistent" in clause)]
        else:
            tails = [", concerning for pneumonia", ", which could represent pneumonia", ", suspicious for pneumonia",
                     " that may reflect pneumonia in the appropriate clinical setting"]
        tail = choose(rng, tails)
    text = f"{clause}{tail}."
    if pna is not None and pna > 0:
        impression = choose(rng, ((f"{_cap(adj)} pneumonia.", {PNA: 1.0}),
                                   (f"{_cap(adj)} consolidation consistent with pneumonia.", {CONS: 1.0, PNA: 1.0})))
    elif pna is not None and cons > 0:
        impression = (f"{_cap(adj)} consolidation, concerning for pneumonia.", {CONS: 1.0, PNA: -1.0})
    elif pna is not None:
        impression = (f"Possible {adj} pneumonia.", {PNA: -1.0})
    elif cons > 0:
        impression = (f"{_cap(adj)} consolidation.", {CONS: 1.0})
    else:
        impression = (f"Possible {adj} consolidation.", {CONS: -1.0})
    return Sentence(text, facts, "lungs"), Sentence(impression[0], impression[1], "lungs")


def _edema(severity: str, certainty: float, rng: np.random.Generator) -> Pair:
    if certainty < 0:
        text, facts = choose(rng, (
            (f"Possible {severity} interstitial edema.", {EDEMA: -1.0}),
            (f"Hazy bilateral perihilar opacities may reflect {severity} pulmonary edema.", {EDEMA: -1.0, LO: 1.0}),
            (f"Findings could represent {severity} pulmonary vascular congestion.", {EDEMA: -1.0}),
        ))
        return Sentence(text, facts, "lungs"), Sentence(f"Possible {severity} pulmonary edema.", {EDEMA: -1.0}, "lungs")
    options: dict[str, tuple[tuple[str, dict[str, float]], ...]] = {
        "mild": (
            ("Mild pulmonary vascular congestion.", {}), ("Mild interstitial edema.", {}),
            ("There is mild pulmonary vascular congestion.", {}),
            ("Mild interstitial pulmonary edema with bilateral perihilar haziness.", {}),
        ),
        "moderate": (
            ("Moderate pulmonary edema with bilateral perihilar opacities.", {LO: 1.0}),
            ("Moderate interstitial edema.", {}), ("There is moderate interstitial pulmonary edema.", {}),
            ("Pulmonary vascular congestion with moderate interstitial edema.", {}),
        ),
        "severe": (
            ("Severe pulmonary edema with bilateral perihilar airspace opacities.", {LO: 1.0}),
            ("Severe bilateral perihilar alveolar edema.", {}),
            ("Marked pulmonary vascular congestion with severe interstitial and alveolar edema.", {}),
        ),
    }
    text, extra = choose(rng, options[severity])
    impression = choose(rng, (f"{_cap(severity)} pulmonary edema.", f"{_cap(severity)} interstitial pulmonary edema."))
    return Sentence(text, {EDEMA: 1.0, **extra}, "lungs"), Sentence(impression, {EDEMA: 1.0}, "lungs")


def _atelectasis(sides: Sequence[Side], certainty: float, rng: np.random.Generator) -> Pair:
    side = _sides(sides)
    where = "bibasilar" if side == "both" else f"{side} basilar"
    if certainty < 0:
        text, facts = choose(rng, (
            (f"{_cap(where)} opacity, likely atelectasis.", {ATEL: -1.0, LO: 1.0}),
            (f"Streaky {where} opacities may reflect atelectasis.", {ATEL: -1.0, LO: 1.0}),
        ))
        return Sentence(text, facts, "lungs"), Sentence(text, facts, "lungs")
    if side == "both":
        options = ("Bibasilar atelectasis.", "Plate-like atelectasis at both lung bases.",
                   "Mild bibasilar atelectasis.", "There is bibasilar atelectasis.")
    else:
        options = (f"{_cap(side)} basilar atelectasis.", f"Plate-like atelectasis at the {side} base.",
                   f"Minimal {side} basal atelectasis.", f"There is {side} basilar atelectasis.")
    text = choose(rng, options)
    return Sentence(text, {ATEL: 1.0}, "lungs"), Sentence(f"{_cap(where)} atelectasis.", {ATEL: 1.0}, "lungs")


def _opacity(lobe: Lobe, certainty: float, rng: np.random.Generator) -> Pair:
    adj, noun = _lobe_words(lobe)
    if certainty < 0:
        text = choose(rng, (f"Possible ill-defined opacity in {noun}.", f"Questionable patchy opacity in {noun}."))
        impression = f"Possible {adj} opacity."
    else:
        text = choose(rng, (f"Ill-defined opacity in {noun}.", f"Patchy {adj} opacity.",
                             f"There is a hazy opacity in {noun}."))
        impression = choose(rng, (f"Ill-defined {adj} opacity.", f"{_cap(adj)} opacity."))
    return Sentence(text, {LO: certainty}, "lungs"), Sentence(impression, {LO: certainty}, "lungs")


def _devices(devices: Sequence[str], rng: np.random.Generator) -> list[Sentence]:
    out = []
    for device in devices:
        if device == "ett":
            cm = float(np.clip(round(rng.normal(5.0, 0.6) * 2) / 2, 3.0, 7.0))
            dist = f"{cm:.0f}" if cm.is_integer() else f"{cm:.1f}"
            text = choose(rng, (
                f"Endotracheal tube terminates {dist} cm above the carina.",
                f"The endotracheal tube tip is {dist} cm above the carina.",
                f"Endotracheal tube in standard position, terminating {dist} cm above the carina.",
            ))
        elif device == "central line":
            text = choose(rng, (
                "Right internal jugular central venous catheter tip in the SVC.",
                "Right internal jugular central venous catheter terminates in the lower SVC.",
                "A right internal jugular central line ends at the cavoatrial junction.",
            ))
        else:
            text = choose(rng, (
                "Left chest wall pacemaker with leads in the right atrium and right ventricle.",
                "Left-sided pacemaker with leads terminating in the right atrium and right ventricle.",
                "Dual-lead left chest wall pacemaker, leads in the right atrium and right ventricle.",
            ))
        out.append(Sentence(text, {SD: 1.0}, "devices"))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Negations and normal statements of absent findings
# ----------------------------------------------------------------------------------------------------------------

_NOUNS: dict[str, tuple[str, ...]] = {
    CONS: ("focal consolidation", "consolidation"), LO: ("focal airspace opacity", "focal opacity"),
    EDEMA: ("pulmonary edema", "edema", "pulmonary vascular congestion"), PNA: ("pneumonia",),
    ATEL: ("atelectasis",), LESION: ("suspicious pulmonary nodule",), EFF: ("pleural effusion", "effusion"),
    PTX: ("pneumothorax",),
}
_NOUN_ORDER = (CONS, LO, EDEMA, PNA, ATEL, LESION, EFF, PTX)


INCIDENTAL_PHRASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sternotomy": ("heart", ("Median sternotomy wires are intact.", "The patient is status post median sternotomy.",
                             "Intact median sternotomy wires.", "Status post median sternotomy and CABG.")),
    "low lung volumes": ("lungs", ("Lung volumes are low.", "Low lung volumes.", "The lungs are low in volume.",
                                   "Low lung volumes accentuate the bronchovascular markings.")),
    "hyperinflation": ("lungs", ("The lungs are hyperinflated.", "Hyperinflated lungs, consistent with COPD.",
                                 "Hyperinflation with flattening of the hemidiaphragms.",
                                 "The lungs are hyperexpanded, compatible with emphysema.")),
    "dextroconvex scoliosis": ("bones", ("Dextroconvex scoliosis of the thoracic spine.",
                                         "Mild dextroconvex curvature of the upper thoracic spine.",
                                         "There is dextroscoliosis of the thoracic spine.")),
    "levoconvex scoliosis": ("bones", ("Levoconvex scoliosis of the thoracic spine.",
                                       "Mild levoconvex curvature of the upper thoracic spine.",
                                       "There is levoscoliosis of the thoracic spine.")),
    "hiatal hernia": ("heart", ("A hiatal hernia is noted.", "Retrocardiac air-fluid level consistent with a hiatal "
                                "hernia.", "There is a hiatal hernia.")),
    "aortic calcification": ("heart", ("Calcification of the aortic knob is noted.", "The aortic knob is calcified.",
                                       "Atherosclerotic calcifications of the aortic arch.",
                                       "Aortic arch calcifications are present.")),
    "cholecystectomy clips": ("bones", ("Cholecystectomy clips are noted in the right upper quadrant.",
                                        "Surgical clips project over the right upper quadrant.",
                                        "Clips in the right upper quadrant from prior cholecystectomy.")),
}
"""Each incidental finding (:data:`medclr.synth.state.INCIDENTAL_FINDINGS`) -> (FINDINGS block, paraphrases)."""
INCIDENTAL_MENTION_RATE = 0.9
"""Share of present incidental findings a report describes (radiologists skip some; absent ones never)."""


def _incidental(incidental: Sequence[str], rng: np.random.Generator) -> list[Sentence]:
    """Sentences for the incidental findings (no CheXpert facts), each kept with :data:`INCIDENTAL_MENTION_RATE`."""
    out = []
    for name in incidental:
        block, texts = INCIDENTAL_PHRASES[name]
        if rng.random() < INCIDENTAL_MENTION_RATE:
            out.append(Sentence(choose(rng, texts), {}, block))
    return out


def _negations(negated: Sequence[str], heart_normal: bool, rng: np.random.Generator) -> list[Sentence]:
    """Sentences for the labels to negate: normal statements, then noun groups ("No X, Y or Z.")."""
    out: list[Sentence] = []
    nouns: list[str] = []
    for label in negated:
        if label == CARD:
            if rng.random() < 0.3:
                text = choose(rng, ("The cardiomediastinal silhouette is normal.",
                                     "Normal cardiomediastinal silhouette."))
                out.append(Sentence(text, {CARD: 0.0, EC: 0.0}, "heart"))
                heart_normal = False  # mediastinum already said
            else:
                text = choose(rng, ("Heart size is normal.", "The heart size is normal.",
                                     "The cardiac silhouette is within normal limits.", "Cardiac size is normal."))
                out.append(Sentence(text, {CARD: 0.0}, "heart"))
        elif label == EC:
            if heart_normal:
                text = choose(rng, ("Mediastinal and hilar contours are unremarkable.",
                                     "The mediastinal and hilar contours are normal.",
                                     "Mediastinal contours are within normal limits."))
                out.append(Sentence(text, {EC: 0.0}, "heart"))
        elif label == FX:
            text = choose(rng, ("No displaced rib fracture is seen.", "No acute fracture is identified.",
                                 "Osseous structures are intact without acute fracture."))
            out.append(Sentence(text, {FX: 0.0}, "bones"))
        elif label == LO and rng.random() < 0.6:
            text = choose(rng, ("The lungs are clear.", "Lungs are well expanded and clear.",
                                 "The lungs are clear bilaterally."))
            out.append(Sentence(text, {LO: 0.0}, "lungs"))
        elif label == EDEMA and rng.random() < 0.3:
            text = choose(rng, ("The pulmonary vasculature is normal.",
                                 "Pulmonary vascularity is within normal limits."))
            out.append(Sentence(text, {EDEMA: 0.0}, "lungs"))
        else:
            nouns.append(label)
    ordered = [label for label in _NOUN_ORDER if label in nouns]
    if rng.random() < 0.3:
        ordered = [ordered[i] for i in rng.permutation(len(ordered))]
    groups: list[list[str]] = []
    for label in ordered:
        if not groups or len(groups[-1]) == 3 or rng.random() < 0.35:
            groups.append([])
        groups[-1].append(label)
    for group in groups:
        words = [choose(rng, _NOUNS[label]) for label in group]
        words = [w.replace("focal ", "") if i and "focal" in " ".join(words[:i]) else w for i, w in enumerate(words)]
        listed = _join_or(words, rng)
        templates = ["No {x}.", "There is no {x}.", "No {x} is seen.", "No evidence of {x}.", "No {x} is identified."]
        if len(group) == 1:
            templates.append("{X} is not seen.")
        text = choose(rng, templates).format(x=listed, X=_cap(listed))
        block = "pleura" if group[0] in (EFF, PTX) else "lungs"
        out.append(Sentence(text, dict.fromkeys(group, 0.0), block))
    return out


def _false_hedge(label: str, rng: np.random.Generator) -> Sentence:
    texts = {
        PNA: ("Early pneumonia cannot be excluded.", "An early pneumonia cannot be entirely excluded.",
              "Early pneumonia cannot be excluded in the appropriate clinical setting."),
        EFF: ("A trace pleural effusion cannot be excluded.", "Possible trace pleural effusion.",
              "Minimal blunting of the costophrenic angles may reflect trace pleural effusions."),
        ATEL: ("Possible minimal atelectasis at the lung bases.",
               "Minimal atelectasis at the lung bases cannot be excluded."),
    }
    return Sentence(choose(rng, texts[label]), {label: -1.0}, "pleura" if label == EFF else "lungs")


# ----------------------------------------------------------------------------------------------------------------
# Report assembly
# ----------------------------------------------------------------------------------------------------------------


def _indication(state: StudyState, sex: str | None, rng: np.random.Generator) -> str:
    who = {
        None: ("___-year-old patient", "___ year old patient", "___ y/o patient"),
        "M": ("___-year-old man", "___ year old man", "___M", "___ y/o M"),
        "F": ("___-year-old woman", "___ year old woman", "___F", "___ y/o F"),
    }[sex]
    subject = choose(rng, who)
    chronic = [choose(rng, HISTORY_PHRASES.get(h, (h,))) for h in state.history if h in _CHRONIC]
    acute = [choose(rng, HISTORY_PHRASES.get(h, (h,))) for h in state.history if h not in _CHRONIC]
    text = subject
    if chronic:
        text += " with " + (", ".join(chronic[:-1]) + " and " + chronic[-1] if len(chronic) > 1 else chronic[0])
        if acute:
            text += ", now with " + " and ".join(acute)
    elif acute:
        text += choose(rng, (" with ", " presenting with ")) + " and ".join(acute)
    else:
        text += choose(rng, (" with cough", ", preoperative evaluation", " with weakness", ", routine follow-up"))
    history = set(state.history)
    if history & {"heart failure", "shortness of breath"}:
        question = choose(rng, ("eval for pulmonary edema", "r/o CHF exacerbation", "? fluid overload",
                                 "evaluate for effusion"))
    elif "fever and cough" in history:
        question = choose(rng, ("eval for pneumonia", "r/o pna", "? infiltrate"))
    elif "intubation" in history:
        question = choose(rng, ("ETT placement", "eval ETT position", "line and tube placement"))
    else:
        question = choose(rng, ("eval for acute process", "evaluate for acute cardiopulmonary process", "?pna"))
    return f"{text}.  // {question}"


def _aggregate(sentences: Sequence[Sentence]) -> dict[str, float]:
    """CheXpert facts from sentence facts: positive > uncertain > negative; Lung Opacity parent; No Finding."""
    mentions: dict[str, set[float]] = {}
    for sentence in sentences:
        for label, value in sentence.facts.items():
            mentions.setdefault(label, set()).add(value)
    facts = {label: math.nan for label in CHEXPERT_LABELS}
    for label, values in mentions.items():
        facts[label] = 1.0 if 1.0 in values else -1.0 if -1.0 in values else 0.0
    children = {facts[c] for c in (CONS, PNA, EDEMA, ATEL, LESION)}
    if 1.0 in children:
        facts[LO] = 1.0
    elif -1.0 in children and facts[LO] != 1.0:
        facts[LO] = -1.0
    stated = any(facts[label] in (1.0, -1.0) for label in CHEXPERT_LABELS if label not in (NOF, SD))
    facts[NOF] = math.nan if stated else 1.0
    return facts


def _certainties(f: CxrFindings, rng: np.random.Generator, hedging: float) -> dict[str, float]:
    """1.0 or -1.0 for each present finding (``LO`` = the lone ``opacity_lobe``); one draw per present finding."""
    present = {CARD: f.cardiomegaly is not None, EFF: bool(f.effusion_sides), PTX: f.pneumothorax_side is not None,
               CONS: f.consolidation_lobe is not None, PNA: f.pneumonia and f.consolidation_lobe is not None,
               EDEMA: f.edema is not None, ATEL: bool(f.atelectasis_sides), LO: f.opacity_lobe is not None}
    out: dict[str, float] = {}
    for label, here in present.items():
        if here:
            out[label] = -1.0 if rng.random() < HEDGE_RATES.get(label, 0.0) * hedging else 1.0
    if out.get(CONS) == -1.0 and PNA in out:
        out[PNA] = -1.0
    return out


def compose_radiology_report(
    state: StudyState,
    rng: np.random.Generator,
    *,
    typo_rate: float = 0.02,
    hedging: float = 1.0,
    false_hedge_rate: float = 0.03,
    sex: Literal["M", "F"] | None = None,
) -> RadiologyReport:
    """Render the report of ``state.cxr`` with its sentences and facts (module docstring: design and facts).

    ``hedging`` scales :data:`HEDGE_RATES` (0 = no hedged present finding); ``false_hedge_rate`` is the
    share of reports that hedge one absent finding of :data:`FALSE_HEDGE_LABELS`.
    """
    typo_rng = np.random.default_rng(int(rng.integers(2**63)))
    f = state.cxr
    certainty = _certainties(f, rng, hedging)
    false_hedge: Sentence | None = None
    if rng.random() < false_hedge_rate:
        candidates = [label for label in FALSE_HEDGE_LABELS if label not in certainty]
        if f.consolidation_lobe is not None and PNA in candidates:
            candidates.remove(PNA)
        if candidates:
            false_hedge = _false_hedge(choose(rng, candidates), rng)

    # positives: (findings sentence, impression sentence) by clinical priority
    pairs: list[tuple[str, Pair]] = []
    if f.pneumothorax_side is not None:
        pairs.append((PTX, _pneumothorax(f.pneumothorax_side, rng)))
    if f.consolidation_lobe is not None:
        pairs.append((CONS, _consolidation(f.consolidation_lobe, certainty[CONS], certainty.get(PNA), rng)))
    if f.edema is not None:
        pairs.append((EDEMA, _edema(f.edema, certainty[EDEMA], rng)))
    if f.effusion_sides:
        pairs.append((EFF, _effusion(f, certainty[EFF], rng)))
    if f.opacity_lobe is not None:
        pairs.append((LO, _opacity(f.opacity_lobe, certainty[LO], rng)))
    if f.cardiomegaly is not None:
        pairs.append((CARD, _cardiomegaly(f.cardiomegaly, rng)))
    if f.atelectasis_sides:
        pairs.append((ATEL, _atelectasis(f.atelectasis_sides, certainty[ATEL], rng)))
    devices = _devices(f.support_devices, rng)

    # negations of absent findings
    truth = f.labels
    hedged_absent = set(false_hedge.facts) if false_hedge is not None else set()
    lung_said = any(label in certainty for label in (*_LUNG_LABELS, PTX)) or bool(hedged_absent & set(_LUNG_LABELS))
    negated: list[str] = []
    for label, rate in NEGATION_RATES.items():
        absent = not truth.get(label, False) and label not in hedged_absent
        if label == LO:
            absent = absent and not lung_said
        if label == EC:
            absent = f.cardiomegaly is None
        if label == PNA:
            absent = absent and f.consolidation_lobe is None
        if rng.random() < rate and absent:
            negated.append(label)
    negations = _negations(negated, heart_normal=CARD in negated or f.cardiomegaly is None, rng=rng)

    # FINDINGS: blocks in a random order, positives (shuffled) before negations in each block
    blocks: dict[str, list[Sentence]] = {b: [] for b in _BLOCKS}
    view = state.acquisition.view
    if rng.random() < 0.5:
        blocks["view"].append(Sentence(choose(rng, (
            ("PA and lateral views of the chest provided.", "PA and lateral views of the chest were obtained.",
             "Frontal and lateral views of the chest.") if view == "PA" else
            ("Portable AP view of the chest provided.", "Single portable AP upright view of the chest.",
             "Portable semi-upright AP view of the chest.")
        )), {}, "view"))
    positives = [pair[0] for _, pair in pairs]
    if false_hedge is not None and rng.random() < 0.5:
        positives.append(false_hedge)
        false_hedge_in_impression = False
    else:
        false_hedge_in_impression = false_hedge is not None
    for i in rng.permutation(len(positives)):
        blocks[positives[i].block].append(positives[i])
    blocks["devices"] += devices
    if f.cardiomegaly is not None and rng.random() < 0.4:
        blocks["heart"].append(Sentence("Hilar contours are unremarkable.", {}, "heart"))
    incidental: list[Sentence] = []
    if f.incidental:  # their own generator (seeded from ``rng``): reports without any are unchanged by them
        incidental = _incidental(f.incidental, np.random.default_rng(int(rng.integers(2**63))))
        for sentence in incidental:
            blocks[sentence.block].append(sentence)
    volumes_abnormal = bool({"low lung volumes", "hyperinflation"} & set(f.incidental))
    for i in rng.permutation(len(negations)):
        negation = negations[i]
        if volumes_abnormal and negation.text == "Lungs are well expanded and clear.":
            negation = replace(negation, text="The lungs are clear.")
        blocks[negation.block].append(negation)
    if rng.random() < 0.2:
        bones = choose(rng, ("Visualized osseous structures are unremarkable.",
                              "Degenerative changes are noted in the thoracic spine."))
        spine_abnormal = any(name.endswith("scoliosis") for name in f.incidental)
        if not (bones.startswith("Visualized") and (spine_abnormal or any(s.block == "bones" for s in incidental))):
            blocks["bones"].append(Sentence(bones, {}, "bones"))
    order = choose(rng, _BLOCK_ORDERS)
    findings = tuple(s for b in order for s in blocks[b])

    # IMPRESSION
    impression: list[Sentence] = []
    merged_edema = False
    for label, (_, imp) in pairs:
        if label == CARD and merged_edema:
            continue
        if label == EDEMA and f.cardiomegaly is not None and certainty[EDEMA] > 0 and rng.random() < 0.4:
            card = _cardiomegaly(f.cardiomegaly, rng)[1].text.rstrip(".")
            imp = Sentence(f"{card} with {imp.text[0].lower()}{imp.text[1:]}", {CARD: 1.0, EDEMA: 1.0}, "lungs")
            merged_edema = True
        if label == ATEL and rng.random() < 0.4:
            continue
        impression.append(imp)
        if label == PTX and rng.random() < 0.5:
            impression.append(Sentence(choose(rng, (
                "Findings were communicated to Dr. ___ by telephone at ___.",
                "Dr. ___ was notified of the findings at ___ pm.",
            )), {}))
    if false_hedge_in_impression and false_hedge is not None:
        impression.append(false_hedge)
    acute = any(label in certainty for label in (PTX, CONS, PNA, EDEMA, EFF, LO)) or false_hedge_in_impression
    if f.support_devices and rng.random() < 0.5:
        impression.append(Sentence(choose(rng, ("Support devices in standard position.",
                                                 "Lines and tubes in appropriate position.")), {SD: 1.0}, "devices"))
        if "central line" in f.support_devices and f.pneumothorax_side is None and rng.random() < 0.5:
            impression.append(Sentence("No pneumothorax.", {PTX: 0.0}, "pleura"))
    if not acute:
        impression.append(Sentence(choose(rng, (
            "No acute cardiopulmonary process.", "No acute intrathoracic process.",
            "No radiographic evidence of acute cardiopulmonary disease.", "No acute cardiopulmonary abnormality.",
        )), {}))

    # text
    facts = _aggregate([*findings, *impression])
    exam = "CHEST (PA AND LAT)" if view == "PA" else choose(rng, ("CHEST (PORTABLE AP)", "CHEST (AP)"))
    indication = _indication(state, sex, rng)
    comparison = choose(rng, ("None.", "___.", "Chest radiograph from ___.", "Prior chest radiographs ___ and ___."))
    finding_texts = [_typos(s.text, typo_rng, typo_rate) for s in findings]
    impression_texts = [_typos(s.text, typo_rng, typo_rate) for s in impression]
    split = int(rng.integers(1, len(finding_texts))) if len(finding_texts) > 3 and rng.random() < 0.25 else 0
    paragraphs = ([finding_texts[:split], finding_texts[split:]] if split else [finding_texts])
    findings_body = "\n \n".join(_wrap("  ".join(p)) for p in paragraphs)
    if len(impression_texts) > 1 and rng.random() < 0.35:
        impression_body = "\n".join(_wrap(f"{i}. {t}") for i, t in enumerate(impression_texts, 1))
    else:
        impression_body = _wrap("  ".join(impression_texts))
    lines = [" " * 33 + "FINAL REPORT", f" EXAMINATION:  {exam}", " ", _wrap(f"INDICATION:  {indication}"), " "]
    if rng.random() < 0.3:
        technique = "Chest PA and lateral" if view == "PA" else "Portable AP chest radiograph"
        lines += [f" TECHNIQUE:  {technique}", " "]
    lines += [f" COMPARISON:  {comparison}", " ", " FINDINGS:", " ", findings_body, " ", " IMPRESSION:", " ",
              impression_body]
    text = "\n".join(lines) + "\n"
    return RadiologyReport(text, facts, indication, findings, tuple(impression))


def radiology_report_with_facts(
    state: StudyState,
    rng: np.random.Generator,
    *,
    typo_rate: float = 0.02,
    hedging: float = 1.0,
    false_hedge_rate: float = 0.03,
    sex: Literal["M", "F"] | None = None,
) -> tuple[str, dict[str, float]]:
    """The report text and its CheXpert facts (1.0 / 0.0 / -1.0 / NaN for each of :data:`CHEXPERT_LABELS`).

    Options as in :func:`compose_radiology_report`.
    """
    report = compose_radiology_report(state, rng, typo_rate=typo_rate, hedging=hedging,
                                      false_hedge_rate=false_hedge_rate, sex=sex)
    return report.text, report.facts


def radiology_report(state: StudyState, rng: np.random.Generator, *, typo_rate: float = 0.02) -> str:
    """A MIMIC-CXR style free-text report of ``state`` (see :func:`compose_radiology_report`)."""
    return compose_radiology_report(state, rng, typo_rate=typo_rate).text


# ----------------------------------------------------------------------------------------------------------------
# XOR world
# ----------------------------------------------------------------------------------------------------------------

_XOR_FINDINGS = (
    "The chest radiograph and the ECG are {w} regarding cardiac enlargement.",
    "Radiographic and electrocardiographic evidence of cardiac enlargement is {w}.",
    "{W} cardiac findings between the radiograph and the ECG.",
    "The radiographic and ECG assessments of the heart are {w}.",
)
_XOR_IMPRESSION = (
    "{W} radiographic and ECG cardiac findings.",
    "Cardiac findings are {w} between chest radiograph and ECG.",
    "Chest radiograph and ECG are {w} with respect to cardiac enlargement.",
)
_XOR_CXR = {
    True: ("Cardiomegaly.", "The heart is enlarged.", "Enlarged cardiac silhouette."),
    False: ("Heart size is normal.", "The cardiac silhouette is within normal limits.", "Normal heart size."),
}
_XOR_ECG = {
    True: ("The accompanying ECG shows left ventricular hypertrophy.",
           "Concurrent ECG meets voltage criteria for left ventricular hypertrophy.",
           "ECG demonstrates left ventricular hypertrophy."),
    False: ("The accompanying ECG shows no left ventricular hypertrophy.",
            "No left ventricular hypertrophy on the concurrent ECG.",
            "ECG without voltage criteria for left ventricular hypertrophy."),
}


def xor_report_with_facts(
    cxr_finding: bool, ecg_finding: bool, rng: np.random.Generator, *, state_components: bool,
    typo_rate: float = 0.0,
) -> tuple[str, dict[str, float]]:
    """The XOR-world report and its CheXpert facts (module docstring: design).

    Cardiomegaly is 1.0 / 0.0 only with ``state_components`` (else NaN: the text does not say); the lungs,
    effusion and pneumothorax facts come from the bit-independent normal sentences.
    """
    typo_rng = np.random.default_rng(int(rng.integers(2**63)))
    word = XOR_FACT_WORDS[bool(cxr_finding) != bool(ecg_finding)]
    fact = choose(rng, _XOR_FINDINGS).format(w=word, W=_cap(word))
    summary = choose(rng, _XOR_IMPRESSION).format(w=word, W=_cap(word))
    cxr_sentence = Sentence(choose(rng, _XOR_CXR[bool(cxr_finding)]), {CARD: float(bool(cxr_finding))}, "heart")
    ecg_sentence = Sentence(choose(rng, _XOR_ECG[bool(ecg_finding)]), {}, "heart")
    view = choose(rng, ("PA and lateral views of the chest provided.", "Frontal and lateral views of the chest.",
                         "PA and lateral views of the chest were obtained."))
    lungs = choose(rng, (Sentence("The lungs are clear.", {LO: 0.0}), Sentence("Lungs are well expanded and clear.",
                                                                               {LO: 0.0})))
    pleura = choose(rng, (Sentence("No pleural effusion or pneumothorax.", {EFF: 0.0, PTX: 0.0}),
                           Sentence("There is no pleural effusion or pneumothorax.", {EFF: 0.0, PTX: 0.0}),
                           Sentence("No effusion or pneumothorax is seen.", {EFF: 0.0, PTX: 0.0})))
    components_first = bool(rng.random() < 0.5)
    fact_first = bool(rng.random() < 0.5)
    indication = choose(rng, ("___-year-old patient, routine evaluation.", "___ year old patient with fatigue.",
                               "___ y/o patient, preoperative evaluation."))
    body: list[Sentence] = [Sentence(view, {}), lungs, pleura]
    components = [cxr_sentence, ecg_sentence] if state_components else []
    fact_sentence = Sentence(fact, {})
    tail = [fact_sentence, *components] if fact_first else [*components, fact_sentence]
    body = [*body[:1], *tail, *body[1:]] if components_first else [*body, *tail]
    impression = [Sentence(summary, {})]
    facts = _aggregate([*body, *impression])
    findings_text = "  ".join(_typos(s.text, typo_rng, typo_rate) for s in body)
    text = "\n".join([
        " " * 33 + "FINAL REPORT", " EXAMINATION:  CHEST (PA AND LAT)", " ", _wrap(f"INDICATION:  {indication}"), " ",
        " COMPARISON:  None.", " ", " FINDINGS:", " ", _wrap(findings_text), " ", " IMPRESSION:", " ",
        _wrap(_typos(summary, typo_rng, typo_rate)),
    ]) + "\n"
    return text, facts


def xor_report(cxr_finding: bool, ecg_finding: bool, rng: np.random.Generator, *, state_components: bool) -> str:
    """A report stating XOR(cardiomegaly on the X-ray, LVH on the ECG) as "discordant"/"concordant".

    See the module docstring ("XOR world"); :func:`xor_report_with_facts` also gives the CheXpert facts.
    """
    return xor_report_with_facts(cxr_finding, ecg_finding, rng, state_components=state_components)[0]
