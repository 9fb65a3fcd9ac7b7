"""Architectures as data: ``configs/models/*.yaml`` -> :class:`ModelConfig` -> :func:`build_model` -> ``MedClr``.

A model config names one tower per modality; each tower names a registered encoder and head::

    embed_dim: 128
    logit_scale: {init: 14.3, max: 100.0}
    towers:
      cxr:    {encoder: {name: cxr_cnn, channels: [32, 64, 128, 256]}, head: {name: linear}}
      report: {encoder: {name: text_hf, model: "offline:all-minilm-l6-v2", pooling: mean}, head: {name: mlp}}

Unknown keys are errors that name the key and list the valid ones. The registered names are in
``ENCODERS.names()`` and ``HEADS.names()``; adding an encoder is one registered config class, no factory edit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from medclr.models.config import MedclrConfigError, doc, from_dict, knob, to_dict
from medclr.models.encoders import ENCODERS, EncoderConfig
from medclr.models.heads import HEADS, HeadConfig, LinearHeadConfig
from medclr.models.model import LogitScale, MedClr, Tower

__all__ = ["ENCODERS", "HEADS", "LogitScaleConfig", "ModelConfig", "TowerConfig", "build_model",
           "load_model_config", "model_config_from_dict"]


@dataclasses.dataclass
class TowerConfig:
    """One modality's tower: an encoder and the head that projects it into the shared space."""

    encoder: EncoderConfig = dataclasses.field(
        default=None, metadata=doc("registered encoder config: {name: <encoder>, ...its fields}"))  # type: ignore[assignment]
    head: HeadConfig = dataclasses.field(
        default=None, metadata=doc("registered projection head: {name: linear|mlp, ...}; default linear"))  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.encoder is None:
            raise MedclrConfigError(f"a tower needs an encoder (one of: {', '.join(ENCODERS.names())})")
        if self.head is None:
            self.head = LinearHeadConfig()


@dataclasses.dataclass
class LogitScaleConfig:
    """Inverse temperature s = 1/tau. CLIP: init 14.3 (tau 0.07), max 100. Symile: init ~ embed_dim, max 1000."""

    init: float = knob(1 / 0.07, "starting value of s (1/0.07 ~ 14.3 for CLIP/ConVIRT/GRAM; ~embed_dim for Symile)")
    max: float = knob(100.0, "cap on s (100 for CLIP-style losses; ~1000 for Symile)")
    learnable: bool = knob(True, "learn s (in log space) or keep it fixed")


@dataclasses.dataclass
class ModelConfig:
    """A whole MedClr architecture: the shared embedding size, the logit scale and one tower per modality."""

    embed_dim: int = knob(128, "size D of the shared embedding space")
    towers: dict[str, TowerConfig] = dataclasses.field(
        default_factory=dict, metadata=doc("tower per modality name (cxr, ecg, report, ...)"))
    logit_scale: LogitScaleConfig = dataclasses.field(
        default_factory=LogitScaleConfig, metadata=doc("the learnable inverse temperature"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-ready) that :func:`model_config_from_dict` reads back to an equal config."""
        data: dict[str, Any] = to_dict(self)
        return data


def model_config_from_dict(data: Any, where: str = "model config") -> ModelConfig:
    """Read parsed YAML/JSON as a :class:`ModelConfig` (unknown keys -> :class:`MedclrConfigError`)."""
    cfg = from_dict(ModelConfig, data, where)
    if not cfg.towers:
        raise MedclrConfigError(f"{where}: 'towers' is empty; give at least one, e.g. towers: {{cxr: ...}}")
    return cfg


def load_model_config(path: str | Path) -> ModelConfig:
    """Read ``configs/models/<name>.yaml``; a file with a top-level ``model:`` key is read from that key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise MedclrConfigError(f"{path}: cannot read the model config ({err})") from None
    if isinstance(data, dict) and set(data) == {"model"}:
        data = data["model"]
    return model_config_from_dict(data, where=str(path))


def build_model(cfg: ModelConfig) -> MedClr:
    """Build every tower (loading pretrained weights where configured) and the logit scale."""
    towers = {}
    for modality, tower in cfg.towers.items():
        encoder = tower.encoder.build()
        towers[modality] = Tower(encoder, tower.head.build(encoder.out_dim, cfg.embed_dim))
    scale = LogitScale(cfg.logit_scale.init, cfg.logit_scale.max, cfg.logit_scale.learnable)
    return MedClr(towers, cfg.embed_dim, scale, config=cfg)
