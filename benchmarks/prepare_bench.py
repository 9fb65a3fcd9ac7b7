"""`medclr prepare` record checks: records/s in parallel vs one process, same records, same run.

The input is the real PTB-XL excerpt (500 records) replicated into a PTB-XL layout of ``--records`` rows
(symbolic links to the real record files, renumbered ecg_ids), so every row is a real WFDB header and signal.
The adapter reads the tables once (``adapter_records_per_s``); then every record is checked at both levels
(``quick``: header + sizes; ``full``: the whole signal decoded) by :func:`medclr.data.validate.validate_manifest`.
``ratio`` = records/s with ``--workers`` processes / records/s in one process (higher is better; on a 2-core
machine the ceiling is about 2, minus process start-up).

    .venv/bin/python benchmarks/prepare_bench.py [--records 5000] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from report import emit  # benchmarks/ is on sys.path when a benchmark runs as a script

import medclr.data.sources  # noqa: F401 - registers the adapters
from medclr.data import SOURCES, Manifest, PrepareOptions
from medclr.data.validate import CheckLevel, validate_manifest

REAL = Path(os.environ.get("MEDCLR_REAL_DATA", Path(__file__).resolve().parents[1] / ".." / "shared/data/real"))


def build_tree(out: Path, n_records: int) -> Path:
    """A PTB-XL layout of ``n_records`` rows whose records are links to the real excerpt's files."""
    source = REAL / "ptbxl"
    database = pd.read_csv(source / "ptbxl_database.csv")
    rows = []
    for i in range(n_records):
        row = database.iloc[i % len(database)].copy()
        ecg_id = i + 1
        for column, suffix in (("filename_hr", "hr"), ("filename_lr", "lr")):
            original = source / row[column]
            target = f"records{500 if suffix == 'hr' else 100}/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_{suffix}"
            (out / target).parent.mkdir(parents=True, exist_ok=True)
            for ext in (".hea", ".dat"):
                link = (out / target).with_suffix(ext)
                if ext == ".hea":  # the header names its signal file: rewrite it for the new record name
                    text = original.with_suffix(".hea").read_text()
                    link.write_text(text.replace(original.name, link.stem))
                else:
                    link.symlink_to(original.with_suffix(".dat").resolve())
            row[column] = target
        row["ecg_id"] = ecg_id
        rows.append(row)
    pd.DataFrame(rows).to_csv(out / "ptbxl_database.csv", index=False)
    (out / "scp_statements.csv").write_bytes((source / "scp_statements.csv").read_bytes())
    return out


def _check_rate(manifest: Manifest, level: CheckLevel, workers: int) -> float:
    start = time.perf_counter()
    ok, _ = validate_manifest(manifest, level=level, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    assert ok.all()
    return len(manifest) / seconds


def run(n_records: int, workers: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = build_tree(Path(tmp) / "ptbxl", n_records)
        start = time.perf_counter()
        manifest = SOURCES.get("ptbxl")(PrepareOptions(root=root)).manifest
        adapter_rate = n_records / (time.perf_counter() - start)
        levels: tuple[CheckLevel, ...] = ("quick", "full")
        for level in levels:
            n = n_records if level == "quick" else min(n_records, 1000)
            subset = Manifest(manifest.frame.head(n), manifest.info)
            serial = _check_rate(subset, level, 1)
            parallel = _check_rate(subset, level, workers)
            results[f"prepare.check_{level}_parallel_vs_serial"] = {
                "ratio": round(parallel / serial, 2), "parallel_records_per_s": round(parallel),
                "serial_records_per_s": round(serial), "workers": workers, "records": n,
                "adapter_records_per_s": round(adapter_rate),
            }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000, help="rows in the generated PTB-XL layout")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes for the parallel run")
    parser.add_argument("--quick", action="store_true", help="1,000 records")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results = run(1000 if args.quick else args.records, args.workers)
    emit(results, f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
