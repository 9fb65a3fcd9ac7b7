"""Shared fixtures: the real public sample data in ../shared/data/real and test-time generated files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("MEDCLR_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Root of the real sample data (PTB-XL excerpt, CinC-2021, WFDB samples, NIH PNGs, a DICOM, reports)."""
    if not REAL_DATA.is_dir():
        pytest.fail(f"real sample data not found at {REAL_DATA}; the tests expect ../shared beside the repo")
    return REAL_DATA


def _hypothesis_profile() -> None:
    """Fuzz tests are reproducible in CI (derandomized) and never fail on wall-clock deadlines."""
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "medclr", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
    )
    settings.load_profile("medclr")


_hypothesis_profile()
