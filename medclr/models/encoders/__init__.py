"""Encoder towers, registered by name in ``ENCODERS`` (importing this package registers them all)."""

from __future__ import annotations

from medclr.models.encoders import cxr, ecg, report
from medclr.models.encoders.base import ENCODERS, Encoder, EncoderConfig
from medclr.models.encoders.offline import OFFLINE_MODELS, minilm_path, smollm2_hf_folder

__all__ = ["ENCODERS", "OFFLINE_MODELS", "Encoder", "EncoderConfig", "cxr", "ecg", "minilm_path", "report",
           "smollm2_hf_folder"]
