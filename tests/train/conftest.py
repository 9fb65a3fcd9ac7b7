"""Training fixtures: one small synthetic world + paired manifest per session, a tiny model config, configs.

The world (80 patients of the ``tiny`` preset, ~65 paired studies) and its preprocessed cache are built once per
session; every training test shares them (the cache key makes reuse safe).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from medclr.config import TrainConfig, load_config
from tests.models.conftest import tiny_bert_dir  # noqa: F401 - re-exported fixture

WorldFactory = Callable[..., TrainConfig]


@pytest.fixture(scope="session")
def world_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A paired (X-ray, ECG, report) manifest prepared from a generated tiny world."""
    from medclr.data.prepare import PrepareOptions, prepare
    from medclr.synth.world import generate_world

    root = tmp_path_factory.mktemp("train_world")
    generate_world(root / "world", preset="tiny", patients=80, seed=0, workers=1, progress=False)
    prepare("synth", PrepareOptions(root=root / "world", progress=False, workers=1), root / "paired.parquet")
    return root / "paired.parquet"


def model_dict(text_model: Path, *, lora: bool = True) -> dict[str, Any]:
    """A BatchNorm-free tiny architecture: 32 px ViT, 500-sample ECG transformer, tiny BERT (LoRA or frozen)."""
    report: dict[str, Any] = {"name": "text_hf", "model": str(text_model), "pooling": "mean", "max_length": 32}
    report.update({"lora": {"r": 2, "alpha": 4, "dropout": 0.0}} if lora else {"train_base": False})
    return {
        "embed_dim": 16,
        "logit_scale": {"init": 14.2857, "max": 100.0},
        "towers": {
            "cxr": {"encoder": {"name": "cxr_vit", "image_size": 32, "patch_size": 8, "hidden_size": 32,
                                "mlp_dim": 64, "num_layers": 1, "num_heads": 2}, "head": {"name": "linear"}},
            "ecg": {"encoder": {"name": "ecg_patch_transformer", "patch_size": 50, "max_length": 500,
                                "hidden_size": 32, "mlp_dim": 64, "num_layers": 1, "num_heads": 2},
                    "head": {"name": "linear"}},
            "report": {"encoder": report, "head": {"name": "linear"}},
        },
    }


@pytest.fixture(scope="session")
def dropout_free_bert(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The tiny BERT without dropout: runs that differ only in how they compute can match step by step."""
    bert = tmp_path_factory.mktemp("bert") / "bert_no_dropout"
    shutil.copytree(tiny_bert_dir, bert)
    config = json.loads((bert / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (bert / "config.json").write_text(json.dumps(config))
    return bert


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train_cache")


@pytest.fixture
def write_config(world_manifest: Path, tiny_bert_dir: Path, cache_root: Path,  # noqa: F811
                 tmp_path: Path) -> Callable[..., Path]:
    """``write_config(*overrides, lora=True) -> Path`` of a YAML recipe for the tiny world and model."""

    def write(*overrides: str, lora: bool = True, name: str = "recipe.yaml") -> Path:
        recipe = {
            "data": {"manifest": str(world_manifest), "batch_size": 8, "cache_dir": str(cache_root),
                     "cache_workers": 1, "image_size": 32, "ecg_fs": 50.0, "ecg_samples": 500, "val_max_rows": 64},
            "model": model_dict(tiny_bert_dir, lora=lora),
            "loss": {"name": "convirt"},
            "optim": {"lr": 1e-3, "warmup_steps": 2},
            "run": {"out_dir": str(tmp_path / "run"), "max_steps": 4, "ckpt_every": 2, "val_every": 0, "log_every": 1,
                    "threads": 1, "progress": False, "tensorboard": False},
        }
        path = tmp_path / name
        path.write_text(yaml.safe_dump(recipe))
        cfg = load_config(path, list(overrides))  # fail early on a bad override
        path.write_text(yaml.safe_dump(cfg.to_dict()))
        return path

    return write


@pytest.fixture
def make_config(write_config: Callable[..., Path]) -> WorldFactory:
    """``make_config(*overrides, lora=True) -> TrainConfig`` for the tiny world and model."""

    def make(*overrides: str, lora: bool = True) -> TrainConfig:
        return load_config(write_config(*overrides, lora=lora))

    return make
