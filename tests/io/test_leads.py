"""Lead names and limb-lead derivation (Einthoven's law, Goldberger's equations) in medclr.io.leads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medclr.errors import MedclrInputError
from medclr.io.leads import (
    LIMB_COEFFICIENTS,
    LIMB_LEADS,
    STANDARD_LEADS,
    LeadMatch,
    canonical_lead,
    complete_leads,
    parse_lead,
    select_leads,
)
from tests.io.ecg_fixtures import synthetic_ecg

SPELLINGS = [
    ("I", "I"),
    ("i", "I"),
    ("Lead I", "I"),
    ("LEAD I", "I"),
    ("Lead I (Einthoven)", "I"),
    ("ECG I", "I"),
    ("DI", "I"),
    ("II", "II"),
    ("lead_ii", "II"),
    ("Lead II", "II"),
    ("DII", "II"),
    ("ECG-II", "II"),
    ("III", "III"),
    ("DIII", "III"),
    ("Lead III", "III"),
    ("aVR", "aVR"),
    ("AVR", "aVR"),
    ("avr", "aVR"),
    ("Lead aVR", "aVR"),
    ("Lead-aVR", "aVR"),
    ("a VR", "aVR"),
    ("aVR (Goldberger)", "aVR"),
    ("aVR, augmented voltage, right", "aVR"),
    ("AVL", "aVL"),
    ("Lead aVL", "aVL"),
    ("aVF", "aVF"),
    ("AVF", "aVF"),
    ("V1", "V1"),
    ("v1", "V1"),
    ("Lead V1", "V1"),
    (" V2 ", "V2"),
    ("V6 (Wilson)", "V6"),
    ("5.6.3-9-1", "I"),
    ("5.6.3-9-61", "III"),
    ("2:62", "aVR"),
    ("2:8", "V6"),
    ("MDC_ECG_LEAD_AVF", "aVF"),
]
NOT_STANDARD = [
    "vx",
    "vy",
    "vz",
    "MLII",
    "MLIII",
    "PLETH",
    "ABP",
    "V",
    "RESP",
    "V4R",
    "V7",
    "Frank Lead I",
    "Lead I (Frank)",
    "Derived Lead I",
    "Lead I-cal (Einthoven)",
    "EEG C3",
    "C3",
    "",
    "5.6.3-9-24",
    "2:9",
    "Unnamed: 0",
]


@pytest.mark.parametrize(("name", "lead"), SPELLINGS)
def test_common_spellings_map_to_the_standard_name(name: str, lead: str) -> None:
    assert canonical_lead(name) == lead
    assert parse_lead(name) == LeadMatch(lead, 1)


@pytest.mark.parametrize("name", NOT_STANDARD)
def test_other_channels_are_not_standard_leads(name: str) -> None:
    assert canonical_lead(name) is None
    assert parse_lead(name) is None


@pytest.mark.parametrize("name", ["-aVR", "Lead -aVR", "\u2212aVR", "-AVR", "5.6.3-9-65", "2:65"])
def test_inverted_avr_maps_with_a_sign_and_is_not_a_canonical_name(name: str) -> None:
    assert parse_lead(name) == LeadMatch("aVR", -1)
    assert canonical_lead(name) is None  # a bare name would lose the sign


def test_standard_order_and_coefficients_follow_einthoven_and_goldberger() -> None:
    assert STANDARD_LEADS == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    i, ii = 0.7, 1.3
    value = {name: a * i + b * ii for name, (a, b) in LIMB_COEFFICIENTS.items()}
    assert value["III"] == pytest.approx(value["II"] - value["I"])  # Einthoven
    assert value["aVR"] + value["aVL"] + value["aVF"] == pytest.approx(0.0)  # Goldberger
    assert value["aVR"] == pytest.approx(-(i + ii) / 2)
    assert value["aVL"] == pytest.approx(i - ii / 2)
    assert value["aVF"] == pytest.approx(ii - i / 2)


def test_docstring_worked_example() -> None:
    leads = {"II": np.array([1.0]), "aVL": np.array([-0.2])} | {f"V{k}": np.zeros(1) for k in range(1, 7)}
    signal, derived = complete_leads(leads, 1)
    assert derived == ("I", "III", "aVR", "aVF")
    np.testing.assert_allclose(signal[:6, 0], [0.3, 1.0, 0.7, -0.65, -0.2, 0.85])


@pytest.mark.parametrize("pair", list(itertools.combinations(LIMB_LEADS, 2)))
def test_any_two_limb_leads_give_the_other_four(pair: tuple[str, str]) -> None:
    truth = synthetic_ecg(400, seed=3)
    kept = {name: v for name, v in truth.items() if name in pair or name.startswith("V")}
    signal, derived = complete_leads(kept, 400)
    assert set(derived) == set(LIMB_LEADS) - set(pair)
    assert derived == tuple(name for name in LIMB_LEADS if name not in pair)  # standard order
    np.testing.assert_allclose(signal, np.stack([truth[n] for n in STANDARD_LEADS]), atol=1e-9)


def test_present_leads_are_kept_as_recorded_and_overdetermined_uses_least_squares() -> None:
    truth = synthetic_ecg(300, seed=4)
    noisy = dict(truth)
    rng = np.random.default_rng(0)
    for name in ("I", "II", "III"):
        noisy[name] = truth[name] + rng.normal(0, 0.01, 300)
    del noisy["aVR"], noisy["aVL"], noisy["aVF"]
    signal, derived = complete_leads(noisy, 300)
    assert derived == ("aVR", "aVL", "aVF")
    for row, name in enumerate(STANDARD_LEADS[:3]):
        np.testing.assert_array_equal(signal[row], noisy[name])  # recorded leads untouched
    coefficients = np.array([LIMB_COEFFICIENTS[n] for n in ("I", "II", "III")])
    basis = np.linalg.lstsq(coefficients, np.stack([noisy[n] for n in ("I", "II", "III")]), rcond=None)[0]
    np.testing.assert_allclose(signal[3], np.array(LIMB_COEFFICIENTS["aVR"]) @ basis, atol=1e-12)
    np.testing.assert_allclose(signal[3], truth["aVR"], atol=0.05)


def test_one_limb_lead_is_not_enough() -> None:
    leads = {k: v for k, v in synthetic_ecg(100).items() if k == "II" or k.startswith("V")}
    with pytest.raises(MedclrInputError, match=r"missing: I, III, aVR, aVL, aVF.*fewer than 2 limb leads"):
        complete_leads(leads, 100, "rec.hea", ignored=["MLII"])


def test_missing_chest_lead_cannot_be_derived_and_is_listed() -> None:
    leads = {k: v for k, v in synthetic_ecg(100).items() if k not in ("V3", "aVF")}
    with pytest.raises(MedclrInputError, match=r"rec\.hea: ECG has 10 of the 12 .*missing: aVF, V3") as info:
        complete_leads(leads, 100, "rec.hea")
    assert "V1-V6 must all be recorded" in str(info.value)


def test_an_all_nan_lead_counts_as_missing() -> None:
    leads = synthetic_ecg(100)
    leads["III"] = np.full(100, np.nan)
    signal, derived = complete_leads(leads, 100)
    assert derived == ("III",)
    np.testing.assert_allclose(signal[2], synthetic_ecg(100)["III"], atol=1e-12)
    leads["V2"] = np.full(100, np.nan)
    with pytest.raises(MedclrInputError, match=r"missing: III, V2; entirely NaN: III, V2"):
        complete_leads(leads, 100)


def test_nan_samples_propagate_into_derived_leads_only_where_they_are() -> None:
    leads = {k: v.copy() for k, v in synthetic_ecg(50).items() if k not in ("III", "aVR", "aVL", "aVF")}
    leads["I"][10] = np.nan
    signal, _ = complete_leads(leads, 50)
    assert np.isnan(signal[2, 10]) and not np.isnan(signal[2, 11])
    assert not np.isnan(signal[1]).any()  # recorded II untouched


def test_select_leads_matches_by_name_not_position() -> None:
    names = ["V6", "vx", "II", "avr", "I", "V1", "V2", "V3", "V4", "V5", "PLETH", "III", "AVL", "aVF"]
    selection = select_leads(names)
    assert {lead: names[c] for lead, c in selection.channel.items()}["aVR"] == "avr"
    assert selection.channel["V6"] == 0 and selection.channel["I"] == 4
    assert selection.dropped == ("vx", "PLETH")


def test_duplicate_lead_is_ambiguous_but_upright_beats_inverted() -> None:
    with pytest.raises(MedclrInputError, match=r"lead II appears twice"):
        select_leads(["II", "Lead II"], "x.csv")
    selection = select_leads(["-aVR", "I", "aVR"])
    assert selection.channel["aVR"] == 2 and selection.sign["aVR"] == 1
    assert selection.dropped == ("-aVR",)
    inverted = select_leads(["-aVR"])
    assert inverted.sign["aVR"] == -1 and inverted.dropped == ()


@settings(max_examples=50, deadline=None)
@given(
    i=st.floats(-5, 5),
    ii=st.floats(-5, 5),
    kept=st.sets(st.sampled_from(LIMB_LEADS), min_size=2),
)
def test_derivation_recovers_every_limb_lead_from_any_subset(i: float, ii: float, kept: set[str]) -> None:
    truth = {name: np.array([a * i + b * ii]) for name, (a, b) in LIMB_COEFFICIENTS.items()}
    leads = {name: truth[name] for name in kept} | {f"V{k}": np.zeros(1) for k in range(1, 7)}
    signal, derived = complete_leads(leads, 1)
    assert set(derived) == set(LIMB_LEADS) - kept
    np.testing.assert_allclose(signal[:6, 0], [truth[n][0] for n in LIMB_LEADS], atol=1e-9)
