"""Deterministic patient-level splits for datasets without an official one: a hash of the patient id.

A study's split must never depend on which other studies happen to be in the table (a re-download that adds
patients must not move old ones), on the order of the rows, on the Python process (``hash()`` is salted per
process) or on the machine. So each id is hashed on its own with SHA-1::

    u = int(sha1(f"{salt}:{id}".encode("utf-8")).hexdigest()[:15], 16) / 16**15     # uniform in [0, 1)
    split = "train" if u < f_train else "val" if u < f_train + f_val else "test"

Worked example with the defaults (``salt="medclr"``, 80/10/10): the subject ``"10000032"`` hashes to
u = 0.6175..., so it is ``train``; ``"10000980"`` hashes to u = 0.8391...: ``val``. The realised fractions
converge to 80/10/10 as the number of patients grows (binomial noise: about ``sqrt(0.1 * 0.9 / n)`` for the
val share of ``n`` patients).

Split by the *patient* (``subject_id``) wherever a dataset has one, so that a patient's studies never sit on
both sides of a split; a different ``salt`` draws a different, equally valid split. The manifest records the
protocol in words (:func:`hash_split_protocol`), so a reader can recompute every row's split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

from medclr.data.manifest import SPLITS

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
DEFAULT_SALT = "medclr"
_HEX_DIGITS = 15  # the first 60 bits of the digest; float64 keeps 53 of them, ample for a threshold test
_SCALE = 16**_HEX_DIGITS


def hash_unit(key: object, salt: str = DEFAULT_SALT) -> float:
    """The id ``key`` mapped to a number in ``[0, 1)`` by SHA-1 of ``f"{salt}:{key}"`` (stable everywhere).

    ``key`` is hashed as its ``str``: pass ids in one canonical spelling (``"10000032"``, not ``10000032.0``).
    """
    digest = hashlib.sha1(f"{salt}:{key}".encode()).hexdigest()
    return int(digest[:_HEX_DIGITS], 16) / _SCALE


def _checked(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != len(SPLITS):
        raise ValueError(f"fractions must give {len(SPLITS)} shares (train, val, test), got {len(fractions)}")
    values = tuple(float(f) for f in fractions)
    if any(not math.isfinite(f) or f < 0 for f in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-9):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    return values[0], values[1], values[2]


def split_of(key: object, fractions: Sequence[float] = DEFAULT_FRACTIONS, salt: str = DEFAULT_SALT) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for one id (see the module docstring)."""
    train, val, _ = _checked(fractions)
    u = hash_unit(key, salt)
    return "train" if u < train else "val" if u < train + val else "test"


def hash_split(
    subject_ids: Iterable[object], fractions: Sequence[float] = DEFAULT_FRACTIONS, salt: str = DEFAULT_SALT
) -> list[str]:
    """The split of each id, in input order: ``hash_split(["10000032", "10000980"]) -> ["train", ...]``.

    Equal ids always get equal splits, so passing every study's ``subject_id`` gives a patient-level split.
    ``fractions`` are the (train, val, test) shares; ``salt`` chooses one of many equally valid splits.
    """
    train, val, _ = _checked(fractions)
    cache: dict[str, str] = {}
    out: list[str] = []
    for key in subject_ids:
        text = str(key)
        if text not in cache:
            u = hash_unit(text, salt)
            cache[text] = "train" if u < train else "val" if u < train + val else "test"
        out.append(cache[text])
    return out


def hash_split_protocol(key: str, fractions: Sequence[float] = DEFAULT_FRACTIONS, salt: str = DEFAULT_SALT) -> str:
    """The words a manifest records for a hash split by ``key`` (e.g. ``"subject_id"``)."""
    train, val, test = _checked(fractions)
    return (
        f"hash split by {key} (medclr.data.splits.hash_split): u = sha1('{salt}:' + {key}) as a fraction in [0, 1); "
        f"train if u < {train:g}, val if u < {train + val:g}, else test "
        f"({train:.0%}/{val:.0%}/{test:.0%})"
    )
