"""`medclr synth` generation rate: studies/s over worker processes vs one process, same world, same run.

    .venv/bin/python benchmarks/synth_bench.py [--patients 120] [--preset demo] [--json out.json]

``ratio`` = studies/s with ``--workers`` processes / studies/s in one process (higher is better; the ceiling is
the core count). The absolute rate says how long a world takes: the ``demo`` preset (2,000 patients) needs about
``2,900 / rate`` seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from report import emit  # benchmarks/ is on sys.path when a benchmark runs as a script

from medclr.synth.world import generate_world


def _rate(out: Path, preset: str, patients: int, workers: int) -> tuple[float, int]:
    summary = generate_world(out, preset=preset, patients=patients, seed=0, workers=workers, progress=False)
    n = summary.n_cxr + summary.n_ecg
    return n / summary.seconds, n


def run(preset: str, patients: int, workers: int) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        serial, n = _rate(Path(tmp) / "serial", preset, patients, 1)
        parallel, _ = _rate(Path(tmp) / "parallel", preset, patients, workers)
    return {f"synth.{preset}_parallel_vs_serial": {
        "ratio": round(parallel / serial, 2), "parallel_studies_per_s": round(parallel, 1),
        "serial_studies_per_s": round(serial, 1), "workers": workers, "patients": patients, "files": n,
    }}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", choices=["tiny", "demo", "xor"])
    parser.add_argument("--patients", type=int, default=120)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--quick", action="store_true", help="40 patients")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results = run(args.preset, 40 if args.quick else args.patients, args.workers)
    emit(results, f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
