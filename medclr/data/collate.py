"""Samples -> :class:`~medclr.types.Batch`: stacked inputs, one presence mask per modality, tokenised reports.

Every modality in ``modalities`` gets B rows: a missing X-ray or ECG is a zero placeholder and a missing report an
empty string, and ``batch.present[m]`` marks which rows are real (the model skips the rest; losses use only
present rows). Reports are tokenised here - in the DataLoader workers - with the report tower's own tokenizer
(:class:`ReportTokenizer`, built from the tower so padding side, truncation and the appended EOS match exactly).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from medclr.data.transforms import SENTENCE_BREAK
from medclr.types import Batch, ModalityInput, Sample, TokenizedText


def sentence_ids(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """The sentence (0, 1, ...) of each token of ``text`` from its character ``offsets`` (a fast tokenizer's
    ``offset_mapping``); -1 for special tokens, whose span is empty. Sentences end at ``.``, ``!`` or ``?`` before
    white space (:data:`~medclr.data.transforms.SENTENCE_BREAK`, as report augmentation splits them). A text
    without any non-special token keeps its tokens as one sentence.

    >>> sentence_ids("Mild cardiomegaly. No effusion.", [(0, 0), (0, 4), (5, 17), (17, 18), (19, 21), (22, 30),
    ...                                                  (30, 31), (0, 0)])
    [-1, 0, 0, 0, 1, 1, 1, -1]
    """
    starts = [m.end() for m in SENTENCE_BREAK.finditer(text)]  # where sentences 1, 2, ... begin
    ids = [bisect.bisect_right(starts, begin) if end > begin else -1 for begin, end in offsets]
    return ids if any(i >= 0 for i in ids) else [0] * len(ids)


@dataclass
class ReportTokenizer:
    """Picklable text -> :class:`TokenizedText` with the settings of a ``text_hf`` tower (see ``from_encoder``);
    ``sentences``: also each token's sentence (:func:`sentence_ids`; needs a fast tokenizer's offsets)."""

    tokenizer: Any  # a Hugging Face (fast) tokenizer, pad token already set
    max_length: int
    append_eos: bool = False
    sentences: bool = False

    @classmethod
    def from_encoder(cls, encoder: Any) -> ReportTokenizer:
        """The tokenizer of a :class:`~medclr.models.encoders.report.ReportEncoder`."""
        cfg = encoder.cfg
        return cls(encoder.tokenizer, cfg.max_length, cfg.append_eos, cfg.token_units == "sentences")

    def __call__(self, texts: list[str]) -> TokenizedText:
        """Ids and mask ``[B, L]`` padded to the longest text, truncated at ``max_length`` (EOS kept when appended)."""
        tok, eos = self.tokenizer, self.append_eos
        enc = tok(texts, truncation=True, max_length=self.max_length - int(eos), return_offsets_mapping=self.sentences)
        ids = enc["input_ids"]
        if eos:
            ids = [[*row, tok.eos_token_id] for row in ids]
        padded = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        mask = padded["attention_mask"]
        if not self.sentences:
            return TokenizedText(padded["input_ids"], mask)
        sentences = torch.full_like(padded["input_ids"], -1)  # [B, L]; padding stays -1 on either side
        for row, (text, offsets) in enumerate(zip(texts, enc["offset_mapping"], strict=True)):
            row_ids = sentence_ids(text, offsets) + [-1] * int(eos)
            sentences[row, mask[row].bool()] = torch.tensor(row_ids, dtype=sentences.dtype)
        return TokenizedText(padded["input_ids"], mask, sentences)


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
