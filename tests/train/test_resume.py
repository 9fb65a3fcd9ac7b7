"""``kill -9`` a training process after its first checkpoint, ``--resume`` it, and get the uninterrupted weights
(with DataLoader workers, over several epochs: the workers' prefetching must not shift the data)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medclr.config import load_config
from medclr.models.config import MedclrConfigError
from medclr.train import train
from tests.conftest import REPO_ROOT

STEPS = 24


def _cli(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "medclr", "train", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Until the newest checkpoint lies past the first epoch (a resume must then find the right epoch too)."""
    deadline = time.monotonic() + timeout
    while _latest_epoch(run_dir) < 1:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"training ended before a checkpoint past its first epoch:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint past the first epoch within the timeout")
        time.sleep(0.01)


def _latest_epoch(run_dir: Path) -> int:
    try:
        name = (run_dir / "checkpoints" / "latest").read_text().strip()
        return int(json.loads((run_dir / "checkpoints" / name / "checkpoint.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return -1


def test_sigkill_then_resume_reproduces_the_uninterrupted_weights(
        write_config: Callable[..., Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    recipe = write_config(f"run.max_steps={STEPS}", "run.ckpt_every=2", "run.val_every=6",
                          f"run.out_dir={run_dir}", "data.augment.cxr_prob=1.0", "data.num_workers=2")
    proc = _cli(str(recipe))
    _wait_for_checkpoint(run_dir, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert latest != f"step_{STEPS:06d}", "the run finished before it was killed; make it longer"

    resumed = _cli(str(recipe), "--resume", str(run_dir))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out.decode()[-3000:]

    reference = train(load_config(recipe, [f"run.out_dir={tmp_path / 'straight'}"]))
    name = f"step_{STEPS:06d}"
    a = load_file(str(run_dir / "checkpoints" / name / "model.safetensors"))
    b = load_file(str(reference.run_dir / "checkpoints" / name / "model.safetensors"))
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    steps = [int(line.split(",")[0].split(":")[1]) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1)), "metrics.jsonl must hold each step once after a resume"


def test_resume_refuses_a_changed_config(make_config: Callable[..., object], tmp_path: Path) -> None:
    cfg = make_config("run.max_steps=1")
    result = train(cfg)  # type: ignore[arg-type]
    changed = load_config(result.run_dir / "config.yaml", ["optim.lr=0.5"])
    with pytest.raises(MedclrConfigError, match=r"optim\.lr"):
        train(changed, resume=result.run_dir)
    longer = load_config(result.run_dir / "config.yaml", ["run.max_steps=2"])
    assert train(longer, resume=result.run_dir).steps == 2
