"""``StudyDataset``: the rows of one split of a :class:`~medclr.data.cache.StudyCache` as :class:`Sample` dicts.

``dataset[i]`` reads row i's arrays from the memory maps (microseconds), converts them to float tensors and, for
training, augments them (:class:`~medclr.data.transforms.Augmenter`, seeded by ``(seed, epoch, i)``; ``dataset[i]``
is epoch 0, ``dataset[epoch, i]`` any epoch: the key carries it, so DataLoader workers never hold a stale one).
A modality the study lacks, or whose file was quarantined when the cache was built, is simply absent from the
sample::

    {"id": "s1", "cxr": [1, S, S] float32 in [0, 1], "cxr_geometry": Geometry, "ecg": [12, T] float32 mV,
     "report": "No acute process.", "labels": [K] float32 (NaN = unknown)}

``cxr_geometry`` (original pixels <-> network pixels) is given for un-augmented samples only: an augmented image
no longer lies on the cached grid, and a wrong geometry would be worse than none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from medclr.data.cache import StudyCache
from medclr.data.manifest import LABEL_PREFIX
from medclr.data.transforms import Augmenter, GeometryTuple, sample_sentences
from medclr.errors import MedclrInputError
from medclr.types import Geometry, Sample


class StudyDataset(Dataset[Sample]):
    """One split of a cache (several splits: their rows in cache order; ``None``: every row), optionally augmented;
    see the module docstring."""

    def __init__(self, cache: StudyCache, split: str | Sequence[str] | None, modalities: Sequence[str], *,
                 augment: Augmenter | None = None, labels: Sequence[str] | None = None,
                 max_rows: int | None = None) -> None:
        self.cache, self.modalities, self.augment = cache, tuple(modalities), augment
        rows = cache.rows
        splits = [split] if isinstance(split, str) else split
        index = np.arange(len(rows)) if splits is None else np.flatnonzero(rows["split"].isin(list(splits)))
        self.index = index[:max_rows] if max_rows is not None else index  # [n] cache rows of this split
        if split is not None and len(self.index) == 0:
            raise MedclrInputError(cache.info.get("manifest"), f"the manifest has no rows in split(s) '{split}'",
                                   f"splits present: {sorted(set(rows['split']))}")
        self.label_names = list(cache.labels if labels is None else labels)
        self.labels = rows[[f"{LABEL_PREFIX}{n}" for n in self.label_names]].to_numpy(np.float32)[self.index]
        self.ids = rows["study_id"].to_numpy()[self.index]
        self.reports = rows["report"].to_numpy()[self.index] if "report" in self.modalities else None
        self.cxr_ok = rows["cxr_ok"].to_numpy()[self.index] & ("cxr" in self.modalities)
        self.ecg_ok = rows["ecg_ok"].to_numpy()[self.index] & ("ecg" in self.modalities)

    def __len__(self) -> int:
        return len(self.index)

    def present(self, modality: str) -> np.ndarray:
        """``[n]`` bool: rows that have ``modality``."""
        if modality == "cxr":
            return self.cxr_ok
        if modality == "ecg":
            return self.ecg_ok
        if modality == "report" and self.reports is not None:
            return np.array([_has_text(r) for r in self.reports], dtype=bool)
        return np.zeros(len(self), dtype=bool)

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        row = int(self.index[i])
        rng = self.augment.generator(epoch, row) if self.augment is not None else None
        sample: Sample = {"id": str(self.ids[i]), "labels": torch.from_numpy(self.labels[i].copy())}
        if self.cxr_ok[i]:
            self._add_cxr(sample, row, rng)
        if self.ecg_ok[i]:
            ecg = self.cache.array("ecg")[row].astype(np.float32)  # [12, T]
            if rng is not None and self.augment is not None:
                ecg = self.augment.ecg(ecg, rng)
            sample["ecg"] = torch.from_numpy(ecg)
        report = None if self.reports is None else self.reports[i]
        if _has_text(report):
            text = str(report)
            if rng is not None and self.augment is not None:
                text = sample_sentences(text, self.augment.cfg.report_sentence_keep, rng)
            sample["report"] = text
        return sample

    def _add_cxr(self, sample: Sample, row: int, rng: np.random.RandomState | None) -> None:
        raw = self.cache.array("cxr")[row]  # [S, S] uint8 | uint16
        scale = 1.0 / (255.0 if raw.dtype == np.uint8 else 65535.0)
        image = torch.from_numpy(raw.astype(np.float32) * np.float32(scale))[None]  # [1, S, S] in [0, 1]
        if rng is not None and self.augment is not None:
            sample["cxr"] = self.augment.cxr(image, rng)
            return
        sample["cxr"] = image
        sample["cxr_geometry"] = self.geometry(row)

    def geometry(self, row: int) -> Geometry:
        """The cached resize + pad of cache row ``row`` (a cache row, not a dataset index)."""
        return GeometryTuple(*(int(v) for v in self.cache.array("geometry")[row])).geometry()


def _has_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())
