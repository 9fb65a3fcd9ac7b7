"""The patient-level hash split: pinned values, order independence, fractions, stability across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from medclr.data.splits import hash_split, hash_split_protocol, hash_unit, split_of


def test_pinned_values_never_change() -> None:
    """Changing the hash, the salt or the thresholds would silently move patients between splits."""
    assert hash_unit("10000032") == pytest.approx(0.6175157354987277, abs=1e-15)
    assert hash_unit("10000980") == pytest.approx(0.8390761685546414, abs=1e-15)
    assert hash_split(["10000032", "10000980"]) == ["train", "val"]


def test_each_id_is_split_on_its_own() -> None:
    ids = [f"{10_000_000 + i}" for i in range(200)]
    alone = [split_of(i) for i in ids]
    assert hash_split(ids) == alone
    assert hash_split(ids[::-1]) == alone[::-1]
    assert hash_split(ids[:50]) == alone[:50]  # other patients in the table do not matter


def test_repeated_ids_share_a_split_and_ints_hash_like_their_text() -> None:
    out = hash_split(["7", 7, "7", "8"])
    assert out[0] == out[1] == out[2]
    assert hash_split([10000032]) == hash_split(["10000032"])


def test_fractions_are_met_on_many_ids() -> None:
    counts = Counter(hash_split(range(20_000)))
    assert counts["train"] / 20_000 == pytest.approx(0.8, abs=0.01)
    assert counts["val"] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert counts["test"] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert set(hash_split(range(100), fractions=(1, 0, 0))) == {"train"}
    assert set(hash_split(range(100), fractions=(0, 0, 1))) == {"test"}
    assert Counter(hash_split(range(10_000), fractions=(0.5, 0.25, 0.25)))["train"] == pytest.approx(5000, abs=150)


def test_salt_draws_another_split() -> None:
    ids = list(range(2_000))
    a, b = hash_split(ids), hash_split(ids, salt="other")
    assert a != b
    assert Counter(b)["train"] / 2_000 == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.1, 0.2), (1.1, -0.1, 0.0), (float("nan"), 0.5, 0.5)])
def test_bad_fractions_are_refused(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        hash_split(["1"], fractions=fractions)


def test_stable_across_processes_with_another_hash_seed() -> None:
    code = "from medclr.data.splits import hash_split; print(','.join(hash_split(range(30))))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().split(",") == hash_split(range(30))


def test_protocol_text_says_how_to_recompute() -> None:
    text = hash_split_protocol("subject_id")
    assert "sha1('medclr:' + subject_id)" in text and "80%/10%/10%" in text
    assert "u < 0.8" in text and "u < 0.9" in text
