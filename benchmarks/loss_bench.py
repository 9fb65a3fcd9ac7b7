"""Loss speed and memory: medclr.losses against naive baselines, side by side in one run, printed as ratios.

    .venv/bin/python benchmarks/loss_bench.py [--quick] [--json OUT]

Every case is one forward + backward pass (``torch.autograd.grad`` of the loss with respect to the embeddings and
the logit scale) on random unit embeddings, d = 512, float32, on CPU. Times are the best of ``--repeats`` rounds,
baseline and medclr interleaved. ``ratio`` > 1 means medclr is better. One torch thread by default
(``--threads``): on a shared machine, multi-threaded OpenMP kernels that lose a core to another process spin and
make timings meaningless; 0 keeps torch's default.

- ``loss.convirt_vs_plain_clip``: ``ConvirtLoss(pairs=[(a, b)], lam=0.5)`` (masks, counts, logged parts) vs the
  textbook CLIP loss ``(CE(s a b^T) + CE(s b a^T)) / 2``; ratio = baseline time / medclr time at B = 1024
  (also B = 256 and 2048). Goal: >= ~1 (no slower).
- ``loss.gram_closed_vs_det``: ``GramLoss`` with 3 modalities (closed-form determinants from two [B, D] x [D, B]
  products) vs the same loss with ``torch.linalg.det`` on the [B, B, 3, 3] Gram matrices; ratio = det time /
  closed-form time at B = 1024 (also 256, and 2048 in the full run). Goal: >= 4.
- ``loss.symile_n2_memory_vs_materialized``: ``SymileLoss("n_squared")`` with 3 modalities (chunked
  log-sum-exp, recomputed in backward) vs materialising all B^2 candidate tuples and the [B, B^2] logits;
  ratio = materialised peak memory / chunked peak memory at B = 512 (256 with ``--quick``). Goal: >= 4.
  Both do the same O(B^3 d) arithmetic, so B = 1024 and 2048 are left out (minutes of CPU per pass).

Latest (2026-11-29, x86_64, 2 shared cores, 1 thread, full run): convirt 1.03 (B=256/1024/2048: 0.95/1.03/1.02);
gram 4.10 at B=1024 (2.62 at 256, 4.25 at 2048; peak 33 vs 224 MiB); symile n^2 at B=512: 89 vs 4104 MiB peak
(46x), and 21 s vs 30 s per pass. ``--quick``: 1.01, 4.10, and 12.5x at B=256 (62 vs 775 MiB).

Peak memory, honestly measured: each memory case runs in a fresh subprocess that builds its inputs, warms up on a
tiny batch, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``), runs one pass and reads ``VmHWM``
minus the resident size before the pass. ``MALLOC_MMAP_THRESHOLD_`` is fixed so that glibc returns every freed
tensor to the kernel at once: the peak is then that of live tensors, not of memory the allocator kept. (tracemalloc
does not see torch's CPU allocations.) Without /proc (not Linux) the lifetime ``ru_maxrss`` is reported instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from medclr.losses import ConvirtLoss, GramLoss, SymileLoss
from medclr.losses.gram import gram_volumes_det
from medclr.losses.mip import materialized_logits, true_tuple_index

DIM = 512
MODS = ("cxr", "ecg", "report")
Case = Callable[[], Tensor]  # one pass: returns the loss after computing the gradients


def unit_batch(b: int, k: int, seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    names = ("cxr", "report") if k == 2 else MODS
    return {m: F.normalize(torch.randn(b, DIM, generator=g), dim=-1).requires_grad_() for m in names}


def _pass(loss_fn: Callable[[dict[str, Tensor], Tensor], Tensor], emb: dict[str, Tensor]) -> Case:
    scale = torch.tensor(14.3, requires_grad=True)

    def run() -> Tensor:
        loss = loss_fn(emb, scale)
        torch.autograd.grad(loss, [scale, *emb.values()])
        return loss.detach()

    return run


def plain_clip(emb: dict[str, Tensor], s: Tensor) -> Tensor:
    a, b = emb["cxr"], emb["report"]
    logits = s * a @ b.T
    target = torch.arange(a.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def gram_det_loss(emb: dict[str, Tensor], s: Tensor, smoothing: float = 0.1) -> Tensor:
    """GramLoss's objective with every determinant from torch.linalg.det (the naive path)."""
    logits = -s * gram_volumes_det(emb["report"], [emb["cxr"], emb["ecg"]])  # [B, B]
    target = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, target, label_smoothing=smoothing)
            + F.cross_entropy(logits.T, target, label_smoothing=smoothing)) / 2


def symile_materialized(emb: dict[str, Tensor], s: Tensor) -> Tensor:
    """Symile n^2 with all [B^2, D] tuples and [B, B^2] logits in memory."""
    xs = list(emb.values())
    n = xs[0].shape[0]
    target = true_tuple_index(torch.arange(n), n, len(xs) - 1)
    terms = [F.cross_entropy(materialized_logits(s, x, [o for j, o in enumerate(xs) if j != a]), target)
             for a, x in enumerate(xs)]
    return torch.stack(terms).mean()


CONVIRT = ConvirtLoss(pairs=[("cxr", "report")], lam=0.5)
GRAM = GramLoss(anchor="report", label_smoothing=0.1)
SYMILE = SymileLoss(negatives="n_squared")

# name -> (modalities, medclr loss, baseline loss)
PAIRS: dict[str, tuple[int, Callable[..., Tensor], Callable[..., Tensor]]] = {
    "convirt": (2, lambda e, s: CONVIRT(e, s)["loss"], plain_clip),
    "gram": (3, lambda e, s: GRAM(e, s)["loss"], gram_det_loss),
    "symile": (3, lambda e, s: SYMILE(e, s)["loss"], symile_materialized),
}


def best_times(ours: Case, baseline: Case, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of each pass, interleaved, after one warm-up pass each."""
    ours(), baseline()
    t_ours: list[float] = []
    t_base: list[float] = []
    for _ in range(repeats):
        for fn, times in ((baseline, t_base), (ours, t_ours)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(t_ours), min(t_base)


def time_case(name: str, b: int, repeats: int) -> dict[str, float]:
    k, ours, base = PAIRS[name]
    emb = unit_batch(b, k)
    t_ours, t_base = best_times(_pass(ours, emb), _pass(base, emb), repeats)
    return {"medclr_ms": round(1e3 * t_ours, 2), "baseline_ms": round(1e3 * t_base, 2), "speedup": t_base / t_ours}


def _rss_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(key))
    return int(line.split()[1]) / 1024


def measure_memory_here(name: str, which: str, b: int) -> dict[str, Any]:
    """Peak extra resident MiB of one pass (run inside a fresh subprocess)."""
    k, ours, base = PAIRS[name]
    loss_fn = ours if which == "medclr" else base
    _pass(loss_fn, unit_batch(8, k))()  # warm-up: thread pools, first-touch allocations
    run = _pass(loss_fn, unit_batch(b, k))
    if os.path.exists("/proc/self/clear_refs"):
        before = _rss_mib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        run()
        return {"peak_mib": round(_rss_mib("VmHWM") - before, 1), "method": "VmHWM-VmRSS, fixed mmap threshold"}
    import resource

    run()
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "method": "ru_maxrss (lifetime)"}


def memory_case(name: str, which: str, b: int) -> dict[str, Any]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    cmd = [sys.executable, __file__, "--threads", str(torch.get_num_threads()), "--memory-case", name, which, str(b)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def compare_memory(name: str, b: int) -> dict[str, Any]:
    ours, base = memory_case(name, "medclr", b), memory_case(name, "baseline", b)
    return {"medclr_peak_mib": ours["peak_mib"], "baseline_peak_mib": base["peak_mib"],
            "memory_ratio": base["peak_mib"] / max(ours["peak_mib"], 1e-3), "memory_method": ours["method"]}


def speed_entry(name: str, batches: Sequence[int], headline: int, repeats: int, what: str) -> dict[str, Any]:
    by_batch = {str(b): time_case(name, b, repeats) for b in batches}
    entry: dict[str, Any] = {"ratio": by_batch[str(headline)]["speedup"], "batch": headline, "dim": DIM,
                             "what": what, "by_batch": by_batch}
    entry.update(compare_memory(name, headline))
    return entry


def run(quick: bool, repeats: int) -> dict[str, dict[str, Any]]:
    results = {
        "loss.convirt_vs_plain_clip": speed_entry(
            "convirt", [256, 1024] if quick else [256, 1024, 2048], 1024, repeats,
            "ConvirtLoss(lam=0.5) vs textbook CLIP CE, fwd+bwd time"),
        "loss.gram_closed_vs_det": speed_entry(
            "gram", [256, 1024] if quick else [256, 1024, 2048], 1024, repeats,
            "GramLoss closed-form det vs torch.linalg.det, 3 modalities, fwd+bwd time"),
    }
    b = 256 if quick else 512
    symile = compare_memory("symile", b)
    timing = time_case("symile", b, 1)
    results["loss.symile_n2_memory_vs_materialized"] = {
        "ratio": symile["memory_ratio"], "batch": b, "dim": DIM, **symile, **timing,
        "what": "SymileLoss n_squared chunked vs materialised B^2 tuples, 3 modalities, peak memory of fwd+bwd",
    }
    return results


def details(entry: dict[str, Any]) -> str:
    if "by_batch" in entry:
        times = "; ".join(f"B={b}: {v['medclr_ms']:.1f} vs {v['baseline_ms']:.1f} ms ({v['speedup']:.2f}x)"
                          for b, v in entry["by_batch"].items())
        return f"{times}; peak@{entry['batch']}: {entry['medclr_peak_mib']} vs {entry['baseline_peak_mib']} MiB"
    return (f"B={entry['batch']}: peak {entry['medclr_peak_mib']} vs {entry['baseline_peak_mib']} MiB; "
            f"time {entry['medclr_ms']:.0f} vs {entry['baseline_ms']:.0f} ms")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and rounds; Symile at B = 256")
    parser.add_argument("--repeats", type=int, default=None, help="timing rounds (default 3, quick 2)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0 = torch's default)")
    parser.add_argument("--memory-case", nargs=3, metavar=("LOSS", "WHICH", "B"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.memory_case:  # internal: one measurement in this fresh process
        name, which, b = args.memory_case
        print(json.dumps(measure_memory_here(name, which, int(b))))
        return 0
    results = run(args.quick, args.repeats or (2 if args.quick else 3))
    print(f"machine: {platform.processor() or platform.machine()}, python {sys.version.split()[0]}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, d={DIM}")
    print(f"{'benchmark':38s} {'ratio':>7s}  details (medclr vs baseline)")
    for key, entry in results.items():
        print(f"{key:38s} {entry['ratio']:7.2f}  {details(entry)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
