"""Models: encoder towers (X-ray, ECG, report), projection heads and ``MedClr``, built from YAML configs.

>>> from medclr.models import build_model, load_model_config
>>> model = build_model(load_model_config("configs/models/tiny.yaml"))  # doctest: +SKIP
>>> emb = model(batch)                      # {modality: [B, D] unit vectors}  # doctest: +SKIP
"""

from __future__ import annotations

from medclr.models.config import MedclrConfigError
from medclr.models.encoders import ENCODERS, OFFLINE_MODELS, Encoder, EncoderConfig, minilm_path, smollm2_hf_folder
from medclr.models.factory import (
    LogitScaleConfig,
    ModelConfig,
    TowerConfig,
    build_model,
    load_model_config,
    model_config_from_dict,
)
from medclr.models.heads import HEADS, HeadConfig
from medclr.models.model import LogitScale, MedClr, Tower
from medclr.models.pooling import POOLERS

__all__ = [
    "ENCODERS",
    "HEADS",
    "OFFLINE_MODELS",
    "POOLERS",
    "Encoder",
    "EncoderConfig",
    "HeadConfig",
    "LogitScale",
    "LogitScaleConfig",
    "MedClr",
    "MedclrConfigError",
    "ModelConfig",
    "Tower",
    "TowerConfig",
    "build_model",
    "load_model_config",
    "minilm_path",
    "model_config_from_dict",
    "smollm2_hf_folder",
]
