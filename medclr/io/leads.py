"""The 12 standard ECG leads: names, spellings, and the derivation of missing limb leads.

A standard 12-lead ECG records ten electrodes and reports twelve leads:

- **Limb leads** (frontal plane): the bipolar leads I, II, III of Einthoven and the augmented unipolar leads
  aVR, aVL, aVF of Goldberger. With the right arm (RA), left arm (LA) and left leg (LL) potentials,
  ``I = LA - RA``, ``II = LL - RA``, ``III = LL - LA`` and ``aVR = RA - (LA + LL)/2`` (and cyclically).
- **Precordial leads** (horizontal plane): the unipolar chest leads V1-V6 of Wilson, each measured against
  the Wilson central terminal.

Only two of the six limb leads are independent. Einthoven's law (Einthoven 1912, *Lancet* 179:853) is
``III = II - I`` and Goldberger's equations (Goldberger 1942, *Am Heart J* 23:483) give the augmented leads:

==== ======================= ===========
lead in terms of (I, II)      coefficients
==== ======================= ===========
I    I                        ( 1,    0  )
II   II                       ( 0,    1  )
III  II - I                   (-1,    1  )
aVR  -(I + II) / 2            (-1/2, -1/2)
aVL  I - II / 2               ( 1,   -1/2)
aVF  II - I / 2               (-1/2,  1  )
==== ======================= ===========

So if any two limb leads are recorded, the other four follow. Worked example: a record with only
``II = 1.0`` and ``aVL = -0.2`` mV at some instant solves ``[[0, 1], [1, -1/2]] @ (I, II) = (1.0, -0.2)``
to ``I = 0.3, II = 1.0``, hence ``III = 0.7``, ``aVR = -0.65``, ``aVF = 0.85``. With three or more limb leads
present (over-determined) :func:`complete_leads` takes the least-squares ``(I, II)``. The chest leads V1-V6
are six independent measurements: none of them can be derived, and a record that lacks one is rejected.

Lead names arrive spelled many ways (``AVR``, ``Lead aVR``, DICOM code meanings ``Lead I (Einthoven)``,
SCP-ECG / MDC codes ``5.6.3-9-62`` / ``2:62``, Spanish and Italian ``DI, DII, DIII``); :func:`parse_lead`
maps them to the names in :data:`STANDARD_LEADS` and anything else (Frank ``vx``, ``MLII``, ``PLETH``,
``V4R``, ``Lead I (Frank)``) to ``None``. The Cabrera display's inverted ``-aVR`` maps to aVR with sign -1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike

import numpy as np

from medclr.errors import MedclrInputError

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LIMB_LEADS: tuple[str, ...] = STANDARD_LEADS[:6]
PRECORDIAL_LEADS: tuple[str, ...] = STANDARD_LEADS[6:]

# Each limb lead as a linear combination of (I, II): Einthoven's law and Goldberger's equations.
LIMB_COEFFICIENTS: Mapping[str, tuple[float, float]] = {
    "I": (1.0, 0.0),
    "II": (0.0, 1.0),
    "III": (-1.0, 1.0),
    "aVR": (-0.5, -0.5),
    "aVL": (1.0, -0.5),
    "aVF": (-0.5, 1.0),
}

# Spellings after normalisation (lower case, no spaces, "lead"/"ecg" prefix and "(Einthoven)" removed).
_SPELLINGS: dict[str, str] = {lead.lower(): lead for lead in STANDARD_LEADS} | {
    "di": "I",
    "dii": "II",
    "diii": "III",
}
# DICOM CID 3001 "ECG Leads": SCP-ECG code 5.6.3-9-N and MDC code 2:N name the same lead N.
_CID_3001 = {
    **{1: "I", 2: "II", 61: "III", 62: "aVR", 63: "aVL", 64: "aVF"},
    **{3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6"},
}
_CID_3001_INVERTED = {65: "aVR"}  # "-aVR" (Cabrera sequence)
_CODE_RX = re.compile(r"^(?:5\.6\.3-9-|2:)(\d{1,3})$")
_MDC_REFID_RX = re.compile(r"^MDC_ECG_LEAD_(I|II|III|AVR|AVL|AVF|V[1-6])$", re.IGNORECASE)
_DESCRIPTOR_RX = re.compile(r"\s*\(\s*(einthoven|goldberger|wilson)\s*\)\s*$", re.IGNORECASE)
_ECG_PREFIX_RX = re.compile(r"^(?:ecg|ekg)[\s_.:-]*")
_LEAD_PREFIX_RX = re.compile(r"^lead([\s_.:]*)")


@dataclass(frozen=True)
class LeadMatch:
    """A channel name resolved to a standard lead; ``sign`` is -1 for an inverted lead such as ``-aVR``."""

    lead: str
    sign: int = 1


def parse_lead(name: str) -> LeadMatch | None:
    """Resolve a channel name to a standard lead and its polarity, or ``None`` for any other channel.

    >>> parse_lead("Lead I (Einthoven)"), parse_lead("AVR"), parse_lead("-aVR"), parse_lead("MLII")
    (LeadMatch(lead='I', sign=1), LeadMatch(lead='aVR', sign=1), LeadMatch(lead='aVR', sign=-1), None)

    A leading ``-`` (alone or after ``Lead ``) inverts the lead; ``Lead-aVR`` reads as ``Lead aVR``. Only the
    descriptors ``(Einthoven)``, ``(Goldberger)`` and ``(Wilson)`` are accepted after a name, so ``Lead I
    (Frank)`` or ``Frank Lead I`` (orthogonal Frank leads) are not lead I.
    """
    s = name.strip().replace("\u2212", "-")
    coded = _parse_code(s)
    if coded is not None or _CODE_RX.match(s):
        return coded
    s = s.split(",", 1)[0]  # MDC code meanings: "aVR, augmented voltage, right"
    s = _DESCRIPTOR_RX.sub("", s).lower().strip()
    s = _ECG_PREFIX_RX.sub("", s)
    sign = 1
    lead_prefix = _LEAD_PREFIX_RX.match(s)
    if lead_prefix is not None:
        s = s[lead_prefix.end() :]
        if s.startswith("-") and not lead_prefix.group(1):
            s = s[1:]  # "lead-avr": the hyphen separates, it does not invert
    if s.startswith("-"):
        sign, s = -1, s[1:]
    lead = _SPELLINGS.get(re.sub(r"\s+", "", s))
    return None if lead is None else LeadMatch(lead, sign)


def _parse_code(s: str) -> LeadMatch | None:
    """SCP-ECG (``5.6.3-9-62``) and MDC (``2:62``, ``MDC_ECG_LEAD_AVR``) lead codes of DICOM CID 3001."""
    refid = _MDC_REFID_RX.match(s)
    if refid is not None:
        return LeadMatch(_SPELLINGS[refid.group(1).lower()])
    code = _CODE_RX.match(s)
    if code is None:
        return None
    number = int(code.group(1))
    if number in _CID_3001_INVERTED:
        return LeadMatch(_CID_3001_INVERTED[number], -1)
    return LeadMatch(_CID_3001[number]) if number in _CID_3001 else None


def canonical_lead(name: str) -> str | None:
    """The standard name (as in :data:`STANDARD_LEADS`) of a lead recorded with normal polarity, else ``None``.

    >>> canonical_lead("avr"), canonical_lead("Lead II"), canonical_lead("DIII"), canonical_lead("vx")
    ('aVR', 'II', 'III', None)

    Inverted leads (``-aVR``) return ``None`` here, since a bare name would lose the sign; use
    :func:`parse_lead`, which returns the lead with ``sign=-1`` (that is what :func:`medclr.io.read_ecg` does).
    """
    match = parse_lead(name)
    return match.lead if match is not None and match.sign == 1 else None


@dataclass(frozen=True)
class LeadSelection:
    """Which source channel supplies each standard lead (and with which sign); the rest are dropped."""

    channel: Mapping[str, int]
    sign: Mapping[str, int]
    dropped: tuple[str, ...]


def select_leads(names: Sequence[str], path: str | PathLike[str] | None = None) -> LeadSelection:
    """Match source channel names to standard leads by name (never by position).

    A lead recorded both upright and inverted (``aVR`` and ``-aVR``) keeps the upright channel and drops the
    other; two channels that both claim the same lead with the same polarity are ambiguous and raise.
    """
    channel: dict[str, int] = {}
    sign: dict[str, int] = {}
    dropped: list[str] = []
    for index, name in enumerate(names):
        match = parse_lead(name)
        if match is None:
            dropped.append(name)
        elif match.lead not in channel:
            channel[match.lead], sign[match.lead] = index, match.sign
        elif sign[match.lead] == match.sign:
            raise MedclrInputError(
                path,
                f"ECG lead {match.lead} appears twice (channels {names[channel[match.lead]]!r} and {name!r})",
                "keep one channel per lead",
            )
        elif match.sign == 1:
            dropped.append(names[channel[match.lead]])
            channel[match.lead], sign[match.lead] = index, 1
        else:
            dropped.append(name)
    return LeadSelection(channel=channel, sign=sign, dropped=tuple(dropped))


def complete_leads(
    leads: Mapping[str, np.ndarray],
    n_samples: int,
    path: str | PathLike[str] | None = None,
    ignored: Sequence[str] = (),
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Stack the leads in :data:`STANDARD_LEADS` order, deriving missing limb leads from the present ones.

    ``leads`` maps standard names to ``[T]`` arrays in mV; a lead that is entirely NaN counts as missing.
    Returns the ``[12, T]`` float64 signal and the names of the derived limb leads. Raises
    :class:`MedclrInputError` naming the missing leads when a chest lead is missing or fewer than two limb
    leads are present (the coefficient rows of :data:`LIMB_COEFFICIENTS` must have rank 2). A NaN sample of a
    present limb lead makes the derived leads NaN at that instant.
    """
    present = {name: sig for name, sig in leads.items() if name in STANDARD_LEADS and not np.all(np.isnan(sig))}
    limb = [name for name in LIMB_LEADS if name in present]
    coefficients = np.array([LIMB_COEFFICIENTS[name] for name in limb]).reshape(-1, 2)  # [P, 2]
    limb_ok = np.linalg.matrix_rank(coefficients) == 2 if limb else False
    missing = [name for name in STANDARD_LEADS if name not in present]
    if not limb_ok or any(name in PRECORDIAL_LEADS for name in missing):
        raise MedclrInputError(path, _missing_problem(leads, present, missing, ignored), _MISSING_FIX)
    signal = np.full((len(STANDARD_LEADS), n_samples), np.nan)  # [12, T]
    for row, name in enumerate(STANDARD_LEADS):
        if name in present:
            signal[row] = present[name]
    derived = tuple(name for name in LIMB_LEADS if name not in present)
    if derived:
        observed = np.stack([present[name] for name in limb])  # [P, T]
        basis = np.linalg.pinv(coefficients) @ observed  # [2, T]: least-squares (I, II)
        for name in derived:
            signal[STANDARD_LEADS.index(name)] = np.asarray(LIMB_COEFFICIENTS[name]) @ basis
    return signal, derived


_MISSING_FIX = (
    "provide a 12-lead ECG (leads named I, II, III, aVR, aVL, aVF, V1-V6); missing limb leads are derived "
    "from any two recorded limb leads, but V1-V6 must all be recorded"
)


def _missing_problem(
    leads: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray], missing: Sequence[str], ignored: Sequence[str]
) -> str:
    """``ECG has 1 of the 12 standard leads (present: ...; missing: ...; entirely NaN: ...; dropped: ...)``."""
    all_nan = [name for name in missing if name in leads]
    names_present = ", ".join(name for name in STANDARD_LEADS if name in present) or "none"
    parts = [f"present: {names_present}", f"missing: {', '.join(missing)}"]
    if all_nan:
        parts.append(f"entirely NaN: {', '.join(all_nan)}")
    if ignored:
        parts.append(f"not standard leads, dropped: {', '.join(ignored)}")
    n_limb = sum(name in present for name in LIMB_LEADS)
    limb_note = "; fewer than 2 limb leads, so the others cannot be derived" if n_limb < 2 else ""
    return f"ECG has {len(present)} of the 12 standard leads ({'; '.join(parts)}){limb_note}"
