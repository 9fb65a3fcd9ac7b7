"""CUDA-only checks (``gpu`` marker; skipped without a GPU): bf16/fp16 autocast training, resume, the benchmark."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from medclr.config import load_config
from medclr.train import train
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_training_on_cuda_is_finite_and_resumes(write_config: Callable[..., Path], amp: str) -> None:
    recipe = write_config(f"run.amp={amp}", "run.device=cuda", "run.deterministic=false", "run.max_steps=4")
    result = train(load_config(recipe))
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(loss is not None and math.isfinite(loss) for loss in losses)
    longer = load_config(result.run_dir / "config.yaml", ["run.max_steps=6"])
    assert train(longer, resume=result.run_dir).steps == 6


def test_train_bench_reports_mfu_on_cuda(write_config: Callable[..., Path]) -> None:
    recipe = write_config("run.amp=bf16", "run.device=cuda", "run.deterministic=false")
    out = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "train_bench.py"), str(recipe),
                          "--steps", "3", "--warmup", "1", "--peak-tflops", "100"],
                         capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    result = json.loads(out.stdout[out.stdout.index("{"):])
    assert result["device"].startswith("cuda") and result["mfu"] is not None and result["peak_memory_gib"] > 0
