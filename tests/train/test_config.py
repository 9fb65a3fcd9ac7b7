"""Training recipes: strict keys and types, typed ``--set`` overrides, model files, round trips, the CLI error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medclr.cli import main
from medclr.config import TrainConfig, load_config, save_config
from medclr.models.config import MedclrConfigError
from tests.conftest import REPO_ROOT

RECIPES = sorted((REPO_ROOT / "configs" / "train").glob("*.yaml"))


def _recipe(tmp_path: Path, **sections: object) -> Path:
    data = {"data": {"manifest": "m.parquet"}, "model": str(REPO_ROOT / "configs/models/tiny.yaml"), **sections}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads(recipe: Path) -> None:
    cfg = load_config(recipe)
    assert cfg.data.manifest and cfg.loss.name in ("convirt", "symile", "gram")


@pytest.mark.parametrize(("sections", "key"), [
    ({"data": {"manifest": "m", "batchsize": 3}}, "batchsize"),
    ({"optim": {"lr": "fast"}}, "optim.lr"),
    ({"run": {"amp": "fp8"}}, "run.amp"),
    ({"loss": {"name": "clip"}}, "loss.name"),
    ({"loss": {"name": "gram", "kwargs": {"anchr": "report"}}}, "loss.kwargs.anchr"),
    ({"data": {"manifest": ""}}, "data.manifest"),
    ({"data": {"manifest": "m", "modalities": ["labs"]}}, "data.modalities"),
])
def test_bad_values_and_unknown_keys_name_the_key(tmp_path: Path, sections: dict[str, object], key: str) -> None:
    with pytest.raises(MedclrConfigError, match=key.replace(".", r"\.")):
        load_config(_recipe(tmp_path, **sections))


def test_overrides_are_parsed_as_yaml_with_types(tmp_path: Path) -> None:
    cfg = load_config(_recipe(tmp_path), ["optim.lr=1e-3", "run.max_steps=7", "run.compile=true",
                                          "optim.betas=[0.8, 0.9]", "loss.kwargs.lam=0.5", "optim.clip=null",
                                          "model.logit_scale.init=64", "data.modalities=[cxr, report]"])
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.run.max_steps == 7 and cfg.run.compile is True
    assert cfg.optim.betas == (0.8, 0.9) and cfg.optim.clip is None
    assert cfg.loss.kwargs == {"lam": 0.5}
    assert cfg.model.logit_scale.init == 64.0  # the model file is inlined before overrides apply
    assert cfg.data.modalities == ["cxr", "report"]


@pytest.mark.parametrize(("override", "key"), [("run.max_steps=ten", "run.max_steps"), ("optim.lr", "optim.lr"),
                                               ("run.max_steps.x=1", "run.max_steps"), ("run.speed=1", "speed")])
def test_bad_overrides_name_the_key(tmp_path: Path, override: str, key: str) -> None:
    with pytest.raises(MedclrConfigError, match=key.replace(".", r"\.")):
        load_config(_recipe(tmp_path), [override])


def test_model_path_is_relative_to_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.yaml").write_text((REPO_ROOT / "configs/models/tiny.yaml").read_text())
    (tmp_path / "train").mkdir()
    recipe = tmp_path / "train" / "r.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"manifest": "m"}, "model": "../models/m.yaml"}))
    assert set(load_config(recipe).model.towers) == {"cxr", "ecg", "report"}


def test_saved_config_loads_back_equal(tmp_path: Path) -> None:
    cfg = load_config(_recipe(tmp_path), ["optim.tower_lr={report: 0.1}", "loss.kwargs={lam: 0.6}"])
    save_config(cfg, tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml")
    assert isinstance(again, TrainConfig) and again == cfg


def test_cli_prints_one_line_and_exits_2_on_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", str(_recipe(tmp_path)), "--set", "optim.lrr=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "lrr" in err and err.startswith("medclr: error:")


def test_import_medclr_does_not_import_torch() -> None:
    code = "import sys, medclr; assert callable(medclr.load_model); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
