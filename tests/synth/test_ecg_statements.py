"""Synthetic machine ECG statements: what they say of the findings, facts read back, continuation cells."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medclr.io.report_sources import machine_report_text
from medclr.synth.ecg_statements import ecg_machine_statements, statement_facts
from medclr.synth.state import EcgFindings


def _statements(findings: EcgFindings, seed: int = 0, hedge_rate: float = 0.1, continuation_rate: float = 0.15
                ) -> list[str]:
    return ecg_machine_statements(findings, np.random.default_rng(seed), hedge_rate=hedge_rate,
                                  continuation_rate=continuation_rate)


def _merged(statements: list[str]) -> list[str]:
    return machine_report_text({f"report_{i}": s for i, s in enumerate(statements)}).rstrip(".").split(". ")


@pytest.mark.parametrize("seed", range(8))
def test_machine_statements_match_findings(seed: int) -> None:
    normal = _merged(_statements(EcgFindings(), seed))
    assert normal[0] in ("Sinus rhythm", "Normal sinus rhythm") and normal[-1] == "Normal ECG"
    afib = _merged(_statements(EcgFindings(rhythm="AFIB", heart_rate=125), seed))
    assert afib[0] == "Atrial fibrillation with rapid ventricular response" and afib[-1] == "Abnormal ECG"
    assert _merged(_statements(EcgFindings(rhythm="AFIB", heart_rate=80), seed))[0] == "Atrial fibrillation"
    assert "Sinus bradycardia" in _statements(EcgFindings(rhythm="SBRAD", heart_rate=52), seed)
    lbbb = _statements(EcgFindings(conduction="LBBB"), seed)
    assert "Left bundle branch block" in lbbb and lbbb[-1] == "Abnormal ECG"
    avb = " ".join(_statements(EcgFindings(conduction="AVB1"), seed))
    assert re.search(r"1st degree A-V block|First degree AV block|Prolonged PR interval", avb)
    acute = _statements(EcgFindings(mi_territory="anterior", mi_acute=True), seed)
    assert any(re.search(r"\b[Aa]nter(ior|oseptal)\b", s) and "acute" in s.lower() for s in acute)
    old = _statements(EcgFindings(mi_territory="inferior"), seed, hedge_rate=0.0)
    assert any(re.fullmatch(r"Inferior infarct( - age undetermined| , age undetermined|, old)", s) for s in old)
    lvh = _statements(EcgFindings(lvh=True, sttc=True), seed, hedge_rate=0.0)
    assert any("ventricular hypertrophy" in s or "LVH" in s for s in lvh)
    sttc = " ".join(_statements(EcgFindings(sttc=True), seed))
    assert re.search(r"T wave abnormality|ST-T changes|ST & T", sttc)


ecg_strategy = st.builds(
    EcgFindings,
    rhythm=st.sampled_from(("SR", "AFIB", "SBRAD", "STACH")),
    heart_rate=st.floats(35, 160),
    mi_territory=st.none() | st.sampled_from(("anterior", "inferior", "lateral")),
    mi_acute=st.booleans(),
    sttc=st.booleans(),
    conduction=st.none() | st.sampled_from(("LBBB", "RBBB", "AVB1")),
    lvh=st.booleans(),
    noise=st.floats(0.3, 1.5),
)


@settings(max_examples=80, deadline=None)
@given(findings=ecg_strategy, seed=st.integers(0, 2**32 - 1))
def test_statement_facts_round_trip(findings: EcgFindings, seed: int) -> None:
    exact = statement_facts(_statements(findings, seed, hedge_rate=0.0))
    for key, present in findings.superclasses.items():
        assert exact[key] == float(present), (key, findings)
    assert exact[findings.rhythm] == 1.0
    assert sum(exact[r] for r in ("SR", "AFIB", "SBRAD", "STACH")) == 1.0
    statements = _statements(findings, seed)
    assert 2 <= len(statements) <= 18 and all(s.strip() for s in statements)
    hedged = statement_facts(statements)
    for key, present in findings.superclasses.items():
        assert (hedged[key] != 0.0) == present
        assert hedged[key] in (0.0, 1.0) or key in ("MI", "HYP")
    if findings.mi_territory is not None and findings.mi_acute:
        assert hedged["MI"] == 1.0


def test_machine_continuations_join_back() -> None:
    findings = EcgFindings(rhythm="AFIB", heart_rate=130)
    for seed in range(20):
        statements = _statements(findings, seed, continuation_rate=1.0)
        assert statements[:2] == ["Atrial fibrillation", "with rapid ventricular response"]
        assert statement_facts(statements)["AFIB"] == 1.0
    assert "with slow ventricular response" in _statements(replace(findings, heart_rate=50), continuation_rate=1.0)
