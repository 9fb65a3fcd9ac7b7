"""Exact search of medclr.index against the memory-bandwidth limit and faiss, side by side in one run.

    .venv/bin/python benchmarks/retrieval_bench.py [--quick] [--rows N] [--queries Q] [--json OUT]

Candidates: N random unit vectors, d = 512, float32 (1M rows = 2 GiB; ``--quick``: 100k rows), searched by
``EmbeddingIndex.search(..., backend="exact")`` of a ConVIRT index (cosine scores from ``score_fn("convirt")``,
chunked ``torch.topk``), top-10. One torch/faiss thread by default (``--threads``), as in the other benchmarks:
on a shared machine multi-threaded kernels that lose a core spin and make timings meaningless. Times are the
best of ``--repeats`` rounds after a warm-up.

- ``retrieval.exact_vs_bandwidth_limit``: ratio = time to stream the candidate matrix once (``x.sum()``, a
  bandwidth-bound reduction; the best any exact search can do, since it must read every candidate) / time of one
  exact top-10 search for a batch of Q queries. Higher is better; 1.0 = the whole batch is answered at the
  bandwidth limit. Q = 8 by default because that is where the comparison is fair on one CPU core: a batch of Q
  queries does 2Q flops per candidate value read, and a core's FLOP-per-byte balance (~50-100 GFLOP/s against
  ~15-20 GB/s) puts the crossover near Q = 8. Below it an ideal kernel is bandwidth-bound (1.0 reachable), far
  above it compute-bound (Q = 64 cannot reach 1.0 on a CPU core, whatever the code). Q = 1 and 64 are reported
  too, with the time of one BLAS matrix-vector product over the candidates (``x @ v``) for reference.
- ``retrieval.exact_vs_faiss_flat`` (faiss installed): ratio = faiss ``IndexFlatIP`` search time / medclr exact
  search time for the same Q queries and k (> 1: medclr faster); both return the same top-10 (checked).

Latest ``--quick`` (100k rows, 195 MiB; 2026-11-29, x86_64 AVX-512, 2 cores shared with other work, 1 thread,
torch 2.13 + MKL, faiss 1.15.1): stream 12 ms (16 GiB/s), one MKL matvec 35 ms. Exact search 34 / 50 / 135 ms
for Q = 1 / 8 / 64, so ratio 0.36 / 0.24 / 0.09 (headline 0.24 at Q = 8; 6.2 ms and 2.1 ms per query at Q = 8
and 64). faiss IndexFlatIP 10 / 73 / 599 ms: faiss is 3.3x faster for one query (its own SIMD loop runs at the
bandwidth limit, while torch's matrix-vector product runs at a third of it), medclr 1.47x faster at Q = 8 and
4.5x at Q = 64 (one GEMM per chunk). Both return the same top-10. Where the time goes at Q = 1: the score
function's GEMM/GEMV (~35 ms, the same as a bare matvec); re-normalising each candidate chunk inside
``cosine_scores`` and the chunked top-k add little.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from report import best_of, emit  # benchmarks/ is on sys.path when a benchmark runs as a script

from medclr.index import EmbeddingIndex

DIM = 512
K = 10


def make_index(rows: int, seed: int = 0) -> EmbeddingIndex:
    """An in-memory ConVIRT index of ``rows`` random unit "report" vectors (built in blocks: little extra memory)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(rows, DIM)
    for start in range(0, rows, 65536):
        block = torch.randn(min(65536, rows - start), DIM, generator=g)
        x[start:start + len(block)] = F.normalize(block, dim=-1)
    ids = np.array([f"s{i}" for i in range(rows)], dtype=object)
    meta = {"loss": "convirt", "embed_dim": DIM, "modalities": ["cxr", "report"]}
    return EmbeddingIndex(ids, {"report": x.numpy(), "cxr": np.zeros((0, DIM), np.float32)},
                          {"report": np.arange(rows, dtype=np.int64), "cxr": np.zeros(0, np.int64)},
                          pd.DataFrame({"study_id": ids}), meta)


def queries(q: int, seed: int = 1) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(q, DIM, generator=g), dim=-1).numpy()


def run(rows: int, batches: Sequence[int], headline: int, repeats: int) -> dict[str, dict[str, Any]]:
    index = make_index(rows)
    x = torch.from_numpy(index.vectors["report"])
    v = torch.from_numpy(queries(1)[0])
    t_stream = best_of(lambda: x.sum(), repeats)
    t_matvec = best_of(lambda: x @ v, repeats)
    gib = x.numel() * 4 / 2**30
    exact: dict[str, Any] = {"rows": rows, "dim": DIM, "k": K, "queries": headline,
                             "stream_ms": round(1e3 * t_stream, 2), "stream_gib_s": round(gib / t_stream, 1),
                             "matvec_ms": round(1e3 * t_matvec, 2)}
    faiss_entry: dict[str, Any] = {"rows": rows, "dim": DIM, "k": K, "queries": headline}
    flat = _faiss_index(index)
    for q in batches:
        given = {"cxr": queries(q)}
        t_search = best_of(lambda: index.search(given, "report", k=K), repeats)  # noqa: B023 (used at once)
        exact[f"search_ms_q{q}"] = round(1e3 * t_search, 2)
        exact[f"ratio_q{q}"] = round(t_stream / t_search, 3)
        exact[f"per_query_ms_q{q}"] = round(1e3 * t_search / q, 3)
        if q == headline:
            exact["ratio"] = t_stream / t_search
        if flat is not None:
            t_faiss = best_of(lambda: index.search(given, "report", k=K, backend="faiss"), repeats)  # noqa: B023
            same = all(a.ids == b.ids for a, b in zip(index.search(given, "report", k=K),
                                                       index.search(given, "report", k=K, backend="faiss"),
                                                       strict=True))
            faiss_entry[f"faiss_ms_q{q}"] = round(1e3 * t_faiss, 2)
            faiss_entry[f"medclr_ms_q{q}"] = round(1e3 * t_search, 2)
            faiss_entry[f"same_top{K}_q{q}"] = same
            if q == headline:
                faiss_entry["ratio"] = t_faiss / t_search
    results = {"retrieval.exact_vs_bandwidth_limit": exact}
    if flat is not None:
        results["retrieval.exact_vs_faiss_flat"] = faiss_entry
    return results


def _faiss_index(index: EmbeddingIndex) -> Any:
    """Builds the index's faiss IndexFlatIP once (outside the timings), or None without faiss."""
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(torch.get_num_threads())
    index.search({"cxr": queries(1)}, "report", k=1, backend="faiss")
    return index._faiss["report"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k candidate rows instead of 1M (seconds)")
    parser.add_argument("--rows", type=int, default=None, help="candidate rows (default 1M, quick 100k)")
    parser.add_argument("--queries", type=int, default=8, help="query batch of the headline ratio (default 8)")
    parser.add_argument("--repeats", type=int, default=None, help="timing rounds (default 5, quick 3)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch and faiss threads (default 1; 0 = default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    batches = sorted({1, args.queries, 64})
    results = run(rows, batches, args.queries, args.repeats or (3 if args.quick else 5))
    emit(results, f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}, "
         f"torch {torch.__version__}, {torch.get_num_threads()} threads, d={DIM}", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
