"""Samples -> :class:`~medclr.types.Batch`: stacked inputs, one presence mask per modality, tokenised reports.

Every modality in ``modalities`` gets B rows: a missing X-ray or ECG is a zero placeholder and a missing report an
empty string, and ``batch.present[m]`` marks which rows are real (the model skips the rest; losses use only
present rows). Reports are tokenised here - in the DataLoader workers - with the report tower's own tokenizer
(:class:`ReportTokenizer`, built from the tower so padding side, truncation and the appended EOS match exactly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from medclr.types import Batch, ModalityInput, Sample, TokenizedText


@dataclass
class ReportTokenizer:
    """Picklable text -> :class:`TokenizedText` with the settings of a ``text_hf`` tower (see ``from_encoder``)."""

    tokenizer: Any  # a Hugging Face (fast) tokenizer, pad token already set
    max_length: int
    append_eos: bool = False

    @classmethod
    def from_encoder(cls, encoder: Any) -> ReportTokenizer:
        """The tokenizer of a :class:`~medclr.models.encoders.report.ReportEncoder`."""
        return cls(encoder.tokenizer, encoder.cfg.max_length, encoder.cfg.append_eos)

    def __call__(self, texts: list[str]) -> TokenizedText:
        """The same ids and mask as ``ReportEncoder.tokenize`` (EOS kept when appended to truncated texts)."""
        tok, eos = self.tokenizer, self.append_eos
        ids = tok(texts, truncation=True, max_length=self.max_length - int(eos))["input_ids"]
        if eos:
            ids = [[*row, tok.eos_token_id] for row in ids]
        enc = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        return TokenizedText(enc["input_ids"], enc["attention_mask"])


@dataclass
class Collator:
    """``collate(samples) -> Batch`` for the given modalities; reports are tokenised when ``tokenize`` is set."""

    modalities: Sequence[str]
    tokenize: ReportTokenizer | None = None

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        inputs: dict[str, ModalityInput] = {}
        present: dict[str, Tensor] = {}
        for modality in self.modalities:
            mask = torch.tensor([modality in s for s in samples], dtype=torch.bool)  # [B]
            if modality == "report":
                texts = [str(s.get("report", "")) for s in samples]
                inputs[modality] = self.tokenize(texts) if self.tokenize is not None else texts
            else:
                inputs[modality] = _stack(samples, modality, mask)
            present[modality] = mask
        labels = torch.stack([s["labels"] for s in samples]) if samples and "labels" in samples[0] else None
        return Batch(inputs=inputs, present=present, ids=[s.get("id", "") for s in samples], labels=labels)


def _stack(samples: Sequence[Sample], modality: str, mask: Tensor) -> Tensor:
    """``[B, ...]`` of the samples' tensors with zeros where the modality is missing."""
    first = next((s[modality] for s in samples if modality in s), None)  # type: ignore[literal-required]
    if first is None:
        return torch.zeros(len(samples), 1)  # no row has it: a [B, 1] placeholder, all rows absent
    out = first.new_zeros((len(samples), *first.shape))
    for i, s in enumerate(samples):
        if mask[i]:
            out[i] = s[modality]  # type: ignore[literal-required]
    return out
