"""``torchrun`` with 2 CPU processes (gloo) gives the same first-step loss as one process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from medclr.config import load_config
from medclr.train import train
from tests.conftest import REPO_ROOT


def _first_loss(run_dir: Path) -> float:
    return float(json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["loss"])


@pytest.mark.parametrize("loss", ["convirt"])
def test_two_gloo_processes_match_one_process(write_config: Callable[..., Path], tmp_path: Path, loss: str) -> None:
    recipe = write_config(f"loss.name={loss}", "run.max_steps=1", "run.ckpt_every=1", lora=False)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "medclr",
           "train", str(recipe), "--set", f"run.out_dir={tmp_path / 'ddp'}"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "run dir:" in proc.stdout

    single = train(load_config(recipe, [f"run.out_dir={tmp_path / 'one'}"]))
    assert _first_loss(tmp_path / "ddp") == pytest.approx(_first_loss(single.run_dir), rel=1e-5, abs=1e-6)
    assert json.loads((tmp_path / "ddp" / "checkpoints" / "step_000001" / "checkpoint.json").read_text())[
        "world_size"] == 2
