"""Latency of the app's analysis of one upload (``medclr.inference.Engine``) against the raw model forward.

    .venv/bin/python benchmarks/app_bench.py [--run runs/demo] [--repeats 5] [--threads 1] [--json OUT]

"One upload analysed" is what the Diagnose and Ground pages compute for a new file, measured from its bytes:
``read_upload`` (content sniffing, decoding in a RAM-backed temporary folder, de-identified header, the viewer's
modality values), ``diagnose`` (the training preprocessing, one tower forward, zero-shot scores against the
cached prompt embeddings) and ``ground_*`` for the best finding (one phrase embedding, the token map, and the map
laid back onto the original pixels / samples). Inputs: the real SIIM DICOM (1024 x 1024 JPEG baseline) and a real
PTB-XL record (12 x 5000 at 500 Hz); caches are emptied before every round (:meth:`Engine.forget`), so nothing is
reused but the prompt embeddings, which the app computes once per server. One torch thread by default.

The model is ``--run`` (default ``runs/demo`` when it holds a trained run), else an untrained model built from
``configs/models/demo.yaml`` with the demo preprocessing (128 px, 100 Hz x 1000 samples): the same architecture
and cost. ``ratio`` = raw forward time / analysis time (the share of the analysis spent in the network's forward
pass; 1.0 would mean no overhead); the target is an analysis well under ``budget_ms`` = 1000 ms on CPU.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from report import emit  # benchmarks/ is on sys.path when a benchmark runs as a script

from medclr.inference import Engine

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
BUDGET_MS = 1000.0


def best_ms(fn: Callable[[], Any], repeats: int, before: Callable[[], None] = lambda: None) -> float:
    """Best wall time of ``fn`` over ``repeats`` rounds after one warm-up, in milliseconds."""
    before()
    fn()
    times = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * min(times)


def engine_for(run: Path | None) -> tuple[Engine, str]:
    if run is not None and (run / "config.yaml").is_file():
        return Engine.from_run(run), str(run)
    from medclr.data.cache import CacheSettings
    from medclr.models import build_model, load_model_config

    model = build_model(load_model_config(ROOT / "configs" / "models" / "demo.yaml")).eval()
    return Engine(model, CacheSettings(), "convirt"), "configs/models/demo.yaml (untrained)"


def run_bench(engine: Engine, repeats: int) -> dict[str, dict[str, Any]]:
    dicom = next((REAL / "siim_dicom").glob("*.dcm")).read_bytes()
    record = REAL / "ptbxl" / "records500" / "00000" / "00001_hr"
    ecg_files = [(p.name, p.read_bytes()) for p in (record.with_suffix(".hea"), record.with_suffix(".dat"))]
    engine.warm_up()

    def analyse_cxr() -> None:
        up = engine.read_upload("upload.dcm", dicom)
        scores = engine.diagnose(cxr=up)["cxr"].scores
        engine.ground_cxr(up.array, max(scores, key=lambda s: s.score).label.lower())

    def analyse_ecg() -> None:
        up = engine.read_uploads(ecg_files)[0]
        scores = engine.diagnose(ecg=up)["ecg"].scores
        engine.ground_ecg(up.array, max(scores, key=lambda s: s.score).label, up.fs)

    def analyse_both() -> None:
        cxr, ecg = engine.read_uploads([("upload.dcm", dicom), *ecg_files])
        engine.diagnose(cxr=cxr, ecg=ecg)
        engine.ground_cxr(cxr.array, "pleural effusion")
        engine.ground_ecg(ecg.array, "ST elevation", ecg.fs)

    up_cxr = engine.read_upload("upload.dcm", dicom)
    up_ecg = engine.read_uploads(ecg_files)[0]
    x_cxr, _ = engine.preprocess_cxr(up_cxr.array)
    x_ecg = engine.preprocess_ecg(up_ecg.array, up_ecg.fs)
    results = {}
    for name, analyse, forwards in (("app.cxr_upload_analysis", analyse_cxr, [("cxr", x_cxr)]),
                                    ("app.ecg_upload_analysis", analyse_ecg, [("ecg", x_ecg)]),
                                    ("app.cxr_ecg_upload_analysis", analyse_both, [("cxr", x_cxr), ("ecg", x_ecg)])):

        def forward(forwards: list[tuple[str, torch.Tensor]] = forwards) -> None:
            with torch.no_grad():
                for modality, x in forwards:
                    engine.model.encode(modality, x)

        total = best_ms(analyse, repeats, engine.forget)
        raw = best_ms(forward, repeats)
        results[name] = {"ratio": raw / total, "analysis_ms": round(total, 1), "forward_ms": round(raw, 1),
                         "budget_ms": BUDGET_MS, "within_budget": total < BUDGET_MS}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo", help="trained run (default runs/demo)")
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds after one warm-up (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the other benchmarks: "
                        "on a shared machine a lost core makes multi-threaded kernels spin; 0 = torch's default)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    engine, source = engine_for(args.run)
    results = run_bench(engine, args.repeats)
    emit(results, f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}, torch "
         f"{torch.__version__}, {torch.get_num_threads()} threads, model {source}", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
