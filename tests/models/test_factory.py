"""Configs: every configs/models/*.yaml reads, tiny builds, round trips, and bad keys fail with their name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medclr.models import ENCODERS, ModelConfig, build_model, load_model_config, model_config_from_dict
from medclr.models.config import MedclrConfigError, help_text
from medclr.models.encoders.cxr import SmallCnnConfig, ViTConfig
from medclr.models.encoders.report import TextConfig
from medclr.models.heads import LinearHeadConfig, MlpHeadConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "models").glob("*.yaml"))


def test_encoder_registry() -> None:
    assert ENCODERS.names() == ["cxr_cnn", "cxr_densenet", "cxr_resnet", "cxr_vit", "ecg_patch_transformer",
                                "ecg_resnet1d", "text_hf"]
    with pytest.raises(ValueError, match="already registered"):
        ENCODERS.register("cxr_vit")(ViTConfig)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_read_and_round_trip(path: Path) -> None:
    cfg = load_model_config(path)
    assert {"cxr", "ecg", "report"} <= set(cfg.towers)
    assert model_config_from_dict(cfg.to_dict()) == cfg
    assert yaml.safe_load(yaml.safe_dump(cfg.to_dict())) == cfg.to_dict()  # plain data


def test_config_names_and_shapes() -> None:
    assert {p.stem for p in CONFIGS} >= {"tiny", "demo", "demo_llm", "mimic_vit_llm"}
    demo = load_model_config(CONFIGS[[p.stem for p in CONFIGS].index("demo")])
    cxr = demo.towers["cxr"].encoder  # 4 stride-2 stages: 128 px -> an 8 x 8 grid; mean-pooled (CAM grounding)
    assert isinstance(cxr, SmallCnnConfig) and len(cxr.channels) == 4 and cxr.build().pools_by_mean
    report = demo.towers["report"].encoder
    assert isinstance(report, TextConfig) and report.lora is not None and report.lora.r == 8
    assert report.lora.layers == (4, 5)  # MiniLM's top two of six blocks
    assert isinstance(demo.towers["report"].head, MlpHeadConfig)


def test_tiny_yaml_builds_and_embeds() -> None:
    import torch

    from medclr.types import Batch

    model = build_model(load_model_config(CONFIGS[[p.stem for p in CONFIGS].index("tiny")]))
    batch = Batch(inputs={"cxr": torch.rand(2, 1, 64, 64), "ecg": torch.randn(2, 12, 1000),
                          "report": ["No acute process.", "Atrial fibrillation."]}, present={})
    out = model(batch)
    assert {m: tuple(e.shape) for m, e in out.items()} == {"cxr": (2, 64), "ecg": (2, 64), "report": (2, 64)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"towers": {"cxr": {"encoder": {"name": "cxr_vit", "pach_size": 8}}}},
         r"towers\.cxr\.encoder: unknown key 'pach_size' for ViTConfig; valid keys: .*patch_size \(patch side"),
        ({"towers": {"cxr": {"encoder": {"name": "cxr_vitt"}}}}, r"unknown encoder 'cxr_vitt'; valid names: cxr_cnn"),
        ({"towers": {"cxr": {"encoder": {"channels": [4]}}}}, r"towers\.cxr\.encoder: needs a 'name'"),
        ({"embed_dims": 4, "towers": {}}, r"unknown key 'embed_dims' for ModelConfig"),
        ({"towers": {}}, r"'towers' is empty"),
        ({"towers": {"cxr": {"encoder": {"name": "cxr_cnn", "channels": "wide"}}}}, r"channels: expected a list"),
        ({"towers": {"cxr": {"encoder": {"name": "cxr_vit", "pooling": "max"}}}}, r"'max' is not one of 'cls'"),
        ({"towers": {"cxr": {"encoder": {"name": "cxr_cnn"}, "head": {"name": "mlp", "hidden": 3}}}},
         r"unknown key 'hidden' for MlpHeadConfig"),
        ({"embed_dim": 1.5, "towers": {}}, r"embed_dim: expected an integer"),
    ],
)
def test_bad_configs_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(MedclrConfigError, match=message):
        model_config_from_dict(data)


def test_defaults_and_yaml_wrapper(tmp_path: Path) -> None:
    cfg = model_config_from_dict({"towers": {"cxr": {"encoder": {"name": "cxr_cnn", "channels": [4, 8]}}}})
    assert cfg.towers["cxr"].encoder == SmallCnnConfig(channels=(4, 8))
    assert isinstance(cfg.towers["cxr"].head, LinearHeadConfig) and cfg.embed_dim == 128
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"model": cfg.to_dict()}))
    assert load_model_config(tmp_path / "m.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("towers: [")
    with pytest.raises(MedclrConfigError, match="cannot read"):
        load_model_config(tmp_path / "bad.yaml")
    assert all(help_text(ViTConfig).values())  # every field documents itself
    assert isinstance(ModelConfig().logit_scale.init, float)


def test_frozen_encoder_keeps_its_weights_and_trains_its_head() -> None:
    from medclr.models.encoders.ecg import EcgResNetConfig

    frozen = SmallCnnConfig(channels=(4, 8), frozen=True).build()
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in SmallCnnConfig(channels=(4, 8)).build().parameters())
    assert not any(p.requires_grad for p in EcgResNetConfig(frozen=True).build().parameters())
