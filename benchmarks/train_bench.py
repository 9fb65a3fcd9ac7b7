"""Training throughput of a recipe: samples/s, steps/s, peak memory and (on CUDA) model FLOPs utilisation.

    .venv/bin/python benchmarks/train_bench.py configs/train/demo.yaml --set data.manifest=M [--steps 20]
    torchrun --nproc_per_node 8 benchmarks/train_bench.py configs/train/mimic_convirt.yaml --set ...   # GPUs

It builds the run exactly as ``medclr train`` does (cache, model, DDP, AMP), runs ``--warmup`` optimizer steps,
then times ``--steps`` more (data loading included). Nothing is checkpointed or validated; the run directory is a
temporary folder.

- ``train.samples_per_s`` (global, all ranks), ``train.steps_per_s``;
- peak memory: ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on CPU;
- FLOPs per step counted once with ``torch.utils.flop_counter.FlopCounterMode`` (forward + backward of one
  micro-batch x ``grad_accum``, matmuls and convolutions), hence achieved TFLOP/s and, on CUDA, MFU = achieved /
  peak. The peak is ``--peak-tflops`` or a table of dense bf16 peaks (H100/H200 SXM 989, A100 312, L40S 362,
  A10G 125, in TFLOP/s); on CPU only the achieved rate is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from medclr.config import load_config
from medclr.train import distributed as dist_env
from medclr.train.loop import Trainer

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def step_flops(trainer: Trainer) -> float:
    """FLOPs of one optimizer step (forward + backward of every micro-batch), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        trainer._step()
    return float(counter.get_total_flops()) * trainer.env.world


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given is not None:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def bench(config: Path, overrides: list[str], steps: int, warmup: int, given_peak: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, [*overrides, f"run.out_dir={tmp}/run", "run.progress=false",
                                   "run.tensorboard=false", f"run.max_steps={warmup + steps + 1}"])
        env = dist_env.setup(cfg.run)
        trainer = Trainer(cfg, env, None)
        for _ in range(warmup):
            trainer._step()
        flops = step_flops(trainer)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            trainer._step()
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        samples = steps * cfg.data.batch_size * cfg.optim.grad_accum
        achieved = flops * steps / seconds / 1e12
        peak = peak_tflops(env.device, given_peak)
        memory = (torch.cuda.max_memory_allocated(env.device) if env.device.type == "cuda"
                  else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        result = {
            "config": str(config), "device": str(env.device), "world_size": env.world,
            "threads": torch.get_num_threads(), "global_batch": cfg.data.batch_size * cfg.optim.grad_accum,
            "train.samples_per_s": round(samples / seconds, 2), "train.steps_per_s": round(steps / seconds, 3),
            "peak_memory_gib": round(memory / 2**30, 3), "tflop_per_step": round(flops / 1e12, 4),
            "achieved_tflops": round(achieved, 4), "mfu": round(achieved / peak, 4) if peak else None,
        }
        dist_env.teardown(env)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="training recipe")
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="overrides")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocations, compile)")
    parser.add_argument("--peak-tflops", type=float, help="device peak for the MFU (default: table by GPU name)")
    parser.add_argument("--json", type=Path, help="write the result here as JSON")
    args = parser.parse_args()
    result = bench(args.config, args.set, args.steps, args.warmup, args.peak_tflops)
    if int(os.environ.get("RANK", "0")) == 0:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
