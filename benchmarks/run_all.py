"""Every benchmark in one run, one JSON object: ``{name: {"ratio": float, ...details}}`` (higher is better).

    .venv/bin/python benchmarks/run_all.py [--quick] [--json OUT] [--only io,loss,...]

Each ``benchmarks/*_bench.py`` is run here, side by side in this one process where the script exposes a ``run``
function (io, prepare, synth, loss, cache, retrieval) or as a subprocess with ``--json`` where it only has a
command line (encoder, and any ``*_bench.py`` this file does not know yet, e.g. ``app_bench.py``: it is run
with ``--json`` and ``--quick`` when its ``--help`` offers them, and its entries that carry a ``ratio`` are kept).
Training throughput is measured here (below). ``--quick`` takes a few minutes on 2 cores; the entries the
issue names:

- ``loss.gram_closed_vs_det``, ``loss.symile_n2_memory_vs_materialized`` (B = 512; 256 with ``--quick``),
  ``loss.convirt_vs_plain_clip`` (``loss_bench.py``);
- ``io.cache_vs_raw_cxr`` (``cache_bench.py``, on a small ``demo``-preset world generated here),
  ``io.ecg_reader_vs_rdsamp`` (``io_bench.py``);
- ``retrieval.exact_vs_bandwidth_limit`` and, with faiss, ``retrieval.exact_vs_faiss_flat`` (1M x 512 rows;
  100k with ``--quick``);
- ``train.demo_loader_vs_preloaded``: ``configs/train/demo.yaml`` on that world. Training has no naive baseline
  to beat, so the side-by-side measure is the data path: ``ratio`` = samples/s of real training steps (the
  cached loader, augmentation, collation, tokenisation, forward, backward, AdamW) / samples/s of the same steps
  on one batch already in memory (compute only). 1.0 means the loader costs nothing; on a GPU it says whether
  the cached loader keeps the GPU fed. The absolute rate is ``samples_per_s`` (plus FLOPs per step and, on
  CUDA, peak memory and MFU, as ``train_bench.py`` counts them).
- app latency when ``app_bench.py`` exists (its own entries).

A benchmark that fails is reported on stderr and left out of the JSON; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(BENCH_DIR) not in sys.path:  # the benchmarks import each other as top-level modules (``from report ...``)
    sys.path.insert(0, str(BENCH_DIR))

Entries = dict[str, dict[str, Any]]


@dataclass
class Context:
    """Shared settings and the small synthetic world the data-path benchmarks use (generated once, on demand)."""

    quick: bool
    tmp: Path
    train_config: Path = REPO / "configs" / "train" / "demo.yaml"
    train_set: list[str] = field(default_factory=list)
    _manifest: Path | None = None  # --manifest, else generated on first use

    @property
    def patients(self) -> int:
        return 60 if self.quick else 200

    def manifest(self) -> Path:
        """A ``demo``-preset world (512-640 px DICOMs, 500 Hz WFDB) of ``patients`` patients, prepared."""
        if self._manifest is None:
            from medclr.data.prepare import PrepareOptions, prepare
            from medclr.synth.world import generate_world

            generate_world(self.tmp / "world", preset="demo", patients=self.patients, seed=0, progress=False)
            prepare("synth", PrepareOptions(root=self.tmp / "world", progress=False), self.tmp / "paired.parquet")
            self._manifest = self.tmp / "paired.parquet"
        return self._manifest


class _Threads:
    """``with _Threads(1):`` one torch thread inside (per-core rates, as the benchmarks' own CLIs use)."""

    def __init__(self, n: int) -> None:
        self.n, self.before = n, 0

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *_: object) -> None:
        import torch

        torch.set_num_threads(self.before)


# --- the benchmarks with a run() function ------------------------------------------------------------------------

def bench_io(ctx: Context) -> Entries:
    import io_bench

    return io_bench.run(ctx.quick, 2 if ctx.quick else 3)


def bench_prepare(ctx: Context) -> Entries:
    import prepare_bench

    return prepare_bench.run(1000 if ctx.quick else 5000, os.cpu_count() or 2)


def bench_synth(ctx: Context) -> Entries:
    import synth_bench

    return synth_bench.run("demo", 40 if ctx.quick else 120, os.cpu_count() or 2)


def bench_loss(ctx: Context) -> Entries:
    import loss_bench

    with _Threads(1):
        return loss_bench.run(ctx.quick, 2 if ctx.quick else 3)


def bench_cache(ctx: Context) -> Entries:
    import cache_bench

    with _Threads(1):
        return cache_bench.run(ctx.manifest(), 128, 2 if ctx.quick else 3, ctx.tmp / "cache_bench")


def bench_retrieval(ctx: Context) -> Entries:
    import retrieval_bench

    with _Threads(1):
        return retrieval_bench.run(100_000 if ctx.quick else 1_000_000, [1, 8, 64], 8, 3 if ctx.quick else 5)


def bench_encoder(ctx: Context) -> Entries:
    """``encoder_bench.py`` has only a command line: run it and turn its flat JSON into one entry."""
    out = ctx.tmp / "encoder.json"
    args = ["configs/models/demo.yaml", "--threads", "1", "--batch", "8" if ctx.quick else "32",
            "--repeats", "1" if ctx.quick else "3", "--json", str(out)]
    _script(BENCH_DIR / "encoder_bench.py", args, timeout=900)
    flat = json.loads(out.read_text())
    times = {k: round(1e3 * v, 1) for k, v in flat.items() if k.endswith("_s") and isinstance(v, float)}
    return {"encoder.small_cnn_vs_resnet10_stride1": {
        "ratio": flat["ratio.resnet10_stride1_over_small_cnn"], "batch": flat["batch"], "config": flat["config"],
        "what": "MONAI resnet10 (stride-1 first conv) forward time / cxr_cnn forward time, same images",
        **{f"{k[:-2]}_ms": v for k, v in times.items()}},
        **({"encoder.report_prefix_cache_vs_none": {
            "ratio": flat["ratio.report_no_prefix_cache_over_cache"], "batch": flat["batch"], "config": flat["config"],
            "what": "report tower forward + backward on seen reports: time without / with its frozen-prefix cache"}}
           if "ratio.report_no_prefix_cache_over_cache" in flat else {}),
        "encoder.bf16_autocast_vs_fp32": {
            "ratio": flat["ratio.fp32_over_bf16"], "batch": flat["batch"], "config": flat["config"],
            "cpu_native_bf16": bool(flat["cpu_native_bf16"]),
            "what": "every tower's forward + backward on one batch: fp32 time / bf16-autocast time (run.amp=bf16)"}}


def bench_train(ctx: Context) -> Entries:
    steps, warmup = (3, 1) if ctx.quick else (10, 2)
    overrides = [f"data.manifest={ctx.manifest()}", *ctx.train_set]
    result = train_throughput(ctx.train_config, overrides, steps, warmup)
    return {f"train.{ctx.train_config.stem}_loader_vs_preloaded": result}


def train_throughput(config: Path, overrides: list[str], steps: int, warmup: int) -> dict[str, Any]:
    """Samples/s of ``steps`` real optimizer steps and of ``steps`` steps on one batch kept in memory, interleaved
    (see the module docstring); FLOPs per step, peak memory and MFU as ``train_bench.py`` measures them."""
    import torch
    import train_bench

    from medclr.config import load_config
    from medclr.train import distributed as dist_env
    from medclr.train.loop import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, [*overrides, f"run.out_dir={tmp}/run", "run.progress=false",
                                   "run.tensorboard=false", f"run.max_steps={warmup + 2 * steps + 3}"])
        env = dist_env.setup(cfg.run)
        try:
            trainer = Trainer(cfg, env, None)
            for _ in range(warmup):
                trainer._step()
            flops = train_bench.step_flops(trainer)
            real = trainer.stream
            preloaded = itertools.repeat(next(real))  # one batch, already decoded, augmented and collated
            trainer.stream = preloaded
            trainer._step()
            if env.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            loader_s = preloaded_s = 0.0
            for _ in range(steps):  # interleaved, so that a load change on a shared machine hits both alike
                trainer.stream = real
                loader_s += _timed_steps(trainer, 1, env.device)
                trainer.stream = preloaded
                preloaded_s += _timed_steps(trainer, 1, env.device)
            samples = steps * cfg.data.batch_size * cfg.optim.grad_accum
            peak = train_bench.peak_tflops(env.device, None)
            achieved = flops * steps / loader_s / 1e12
            return {
                "ratio": preloaded_s / loader_s, "config": str(config.relative_to(REPO)), "device": str(env.device),
                "amp": cfg.run.amp, "threads": torch.get_num_threads(),
                "global_batch": cfg.data.batch_size * cfg.optim.grad_accum, "steps": steps,
                "samples_per_s": round(samples / loader_s, 2),
                "preloaded_samples_per_s": round(samples / preloaded_s, 2),
                "tflop_per_step": round(flops / 1e12, 4), "achieved_tflops": round(achieved, 4),
                "mfu": round(achieved / peak, 4) if peak else None,
                "peak_memory_gib": round(torch.cuda.max_memory_allocated(env.device) / 2**30, 3)
                if env.device.type == "cuda" else None,
            }
        finally:
            dist_env.teardown(env)


def _timed_steps(trainer: Any, steps: int, device: Any) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer._step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


# --- scripts with a command line only ------------------------------------------------------------------------------

def _script(path: Path, args: list[str], timeout: float) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(BENCH_DIR), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(path), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{path.name} {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def script_bench(name: str) -> Callable[[Context], Entries]:
    """Run an unknown ``<name>.py`` with ``--json`` (and ``--quick`` when offered); keep entries with a ratio."""

    def run(ctx: Context) -> Entries:
        path = BENCH_DIR / f"{name}.py"
        usage = _script(path, ["--help"], timeout=120)
        if "--json" not in usage:
            raise RuntimeError(f"{path.name} has no --json option; add one (see benchmarks/report.py)")
        out = ctx.tmp / f"{name}.json"
        _script(path, [*(["--quick"] if ctx.quick and "--quick" in usage else []), "--json", str(out)], timeout=1800)
        data = json.loads(out.read_text())
        return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("ratio"), int | float)}

    return run


BENCHES: dict[str, Callable[[Context], Entries]] = {
    "io": bench_io, "prepare": bench_prepare, "synth": bench_synth, "loss": bench_loss, "encoder": bench_encoder,
    "cache": bench_cache, "train": bench_train, "retrieval": bench_retrieval,
}


def discover() -> list[str]:
    """Known benchmarks in a fixed order, then every other ``*_bench.py`` (e.g. app_bench.py) by name."""
    others = sorted(p.stem.removesuffix("_bench") for p in BENCH_DIR.glob("*_bench.py"))
    return [*BENCHES, *[n for n in others if n not in BENCHES]]


def machine() -> str:
    import torch

    return (f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} cores, python "
            f"{platform.python_version()}, torch {torch.__version__}"
            + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", CPU only"))


def run_all(names: list[str], ctx: Context) -> tuple[Entries, dict[str, str], dict[str, float]]:
    """Run the named benchmarks; returns (entries, failures by benchmark, seconds by benchmark)."""
    results: Entries = {}
    failures: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name in names:
        runner = BENCHES.get(name) or script_bench(f"{name}_bench")
        sys.stderr.write(f"run_all: {name} ...\n")
        start = time.perf_counter()
        try:
            entries = runner(ctx)
        except Exception as err:  # noqa: BLE001 - one failing benchmark must not lose the others' numbers
            failures[name] = f"{type(err).__name__}: {err}"
            sys.stderr.write(traceback.format_exc())
            continue
        finally:
            seconds[name] = time.perf_counter() - start
        for key, entry in entries.items():
            results[key] = {**entry, "ratio": float(entry["ratio"])}
        sys.stderr.write(f"run_all: {name} done in {seconds[name]:.1f} s\n")
    return results, failures, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs and fewer rounds (a few minutes)")
    parser.add_argument("--json", type=Path, help="write the one JSON object here")
    parser.add_argument("--only", help=f"comma-separated benchmarks (default: all of {', '.join(discover())})")
    parser.add_argument("--train-config", type=Path, default=REPO / "configs" / "train" / "demo.yaml",
                        help="recipe of the train entry (default configs/train/demo.yaml)")
    parser.add_argument("--train-set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides of the train entry, e.g. run.device=cuda run.amp=bf16")
    parser.add_argument("--manifest", type=Path, help="paired synthetic manifest for the cache and train entries "
                        "(default: a demo-preset world of 60 patients, 200 without --quick, generated here)")
    args = parser.parse_args(argv)
    names = discover() if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in discover()]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(discover())}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(args.quick, Path(tmp), args.train_config.resolve(), args.train_set,
                      args.manifest.resolve() if args.manifest else None)
        results, failures, seconds = run_all(names, ctx)
    from report import emit

    emit(results, machine() + (" (--quick)" if args.quick else ""), args.json)
    sys.stdout.write("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
                     + f"; total {time.perf_counter() - start:.0f}\n")
    for name, why in failures.items():
        sys.stderr.write(f"run_all: {name} FAILED: {why}\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
