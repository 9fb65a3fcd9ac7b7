"""Evaluation fixtures: a tiny run trained for a few steps on the session's tiny synthetic world."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.models.conftest import tiny_bert_dir  # noqa: F401 - re-exported fixture
from tests.train.conftest import cache_root, model_dict, world_manifest  # noqa: F401 - re-exported fixtures


@pytest.fixture(scope="session")
def trained_run(world_manifest: Path, tiny_bert_dir: Path, cache_root: Path,  # noqa: F811
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory: the tiny three-tower model after 4 ConVIRT steps (one checkpoint)."""
    from medclr.config import load_config
    from medclr.train import train

    folder = tmp_path_factory.mktemp("eval_run")
    recipe = {
        "data": {"manifest": str(world_manifest), "batch_size": 8, "cache_dir": str(cache_root), "cache_workers": 1,
                 "image_size": 32, "ecg_fs": 50.0, "ecg_samples": 500, "val_max_rows": 64},
        "model": model_dict(tiny_bert_dir),
        "loss": {"name": "convirt"},
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "run": {"out_dir": str(folder / "run"), "max_steps": 4, "ckpt_every": 4, "val_every": 0, "log_every": 1,
                "threads": 1, "progress": False, "tensorboard": False},
    }
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return Path(train(load_config(folder / "recipe.yaml")).run_dir)
