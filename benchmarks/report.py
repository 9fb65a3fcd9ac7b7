"""One way to print and save benchmark results: ``{name: {"ratio": float, ...details}}`` (higher is better), and
one way to time a case (:func:`best_of`)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Best-of-``repeats`` seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def emit(results: Mapping[str, Mapping[str, Any]], machine: str, json_path: Path | None = None) -> None:
    """Print ``name  ratio  key=value, ...`` lines under a machine line; write the JSON when asked."""
    sys.stdout.write(f"machine: {machine}\n{'benchmark':40s} {'ratio':>7s}  details\n")
    for name, entry in results.items():
        details = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "ratio")
        sys.stdout.write(f"{name:40s} {entry['ratio']:7.2f}  {details}\n")
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2))
