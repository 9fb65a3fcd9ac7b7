"""The shipped CPU smoke recipe end to end through the command line (``slow``: ~1 minute with world generation)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medclr.data.prepare import PrepareOptions, prepare
from medclr.synth.world import generate_world
from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_tiny_recipe_trains_well_under_a_minute(tmp_path: Path) -> None:
    generate_world(tmp_path / "world", preset="tiny", seed=0, workers=1, progress=False)
    prepare("synth", PrepareOptions(root=tmp_path / "world", progress=False, workers=1), tmp_path / "paired.parquet")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "medclr", "train", "configs/train/tiny.yaml", "--set",
                           f"data.manifest={tmp_path / 'paired.parquet'}", f"run.out_dir={tmp_path / 'run'}"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"run dir: {tmp_path / 'run'}" in proc.stdout
    assert (tmp_path / "run" / "model_card.md").is_file() and (tmp_path / "run" / "checkpoints" / "best").is_file()
    assert seconds < 60, f"tiny.yaml took {seconds:.0f} s"
