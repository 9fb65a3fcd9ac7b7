"""The ``medclr`` command line: parse, call one library function, print.

Every subcommand of the [contract] command line (see docs/ARCHITECTURE.md) is registered here. Errors a user
can cause are :class:`~medclr.errors.MedclrError`: they are printed as one line (no traceback) and the
process exits non-zero. Imports of heavy libraries happen inside the handlers so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from medclr import __version__
from medclr.errors import MedclrError, MedclrNotImplementedError

EXIT_USER_ERROR = 2
EXIT_NOT_IMPLEMENTED = 3

Handler = Callable[[argparse.Namespace], int]


def _not_implemented(command: str, issue: int) -> Handler:
    def handler(_: argparse.Namespace) -> int:
        raise MedclrNotImplementedError(f"`medclr {command}` is not implemented yet (tracked in issue {issue})")

    return handler


def _inspect(args: argparse.Namespace) -> int:
    """Read each file with medclr.io and print its (PHI-free) metadata and value range."""
    from medclr.io import read_any

    failures = 0
    for path in args.paths:
        try:
            kind, array, meta = read_any(path)
        except MedclrError as err:
            failures += 1
            sys.stderr.write(f"medclr: error: {err}\n")
            continue
        record = {"kind": kind, "shape": list(array.shape), "min": float(array.min()), "max": float(array.max())}
        record.update(asdict(meta))
        sys.stdout.write(json.dumps(record, default=str) + "\n")
    return 1 if failures else 0


def _synth(args: argparse.Namespace) -> int:
    from medclr.synth.world import generate_world

    summary = generate_world(args.out, preset=args.preset, patients=args.patients, seed=args.seed,
                             workers=args.workers)
    sys.stdout.write(summary.line() + "\n")
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="generate the offline synthetic clinical world (X-rays, ECGs, reports)",
        description="Generates patients with latent conditions and writes their X-rays (DICOM/JPEG), ECGs (WFDB) "
        "and reports in the real datasets' layouts (mimic-cxr/, mimic-iv-ecg/, chexpert/, ptbxl/, ms-cxr/) plus "
        "truth.csv, so `medclr prepare` reads them unchanged. Deterministic for a seed. See data_cards/synth.md.",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--preset", choices=["demo", "xor", "tiny"], default="demo",
                   help="tiny: ~40 patients for tests; demo: the CPU demo world; xor: Symile's XOR test")
    p.add_argument("--patients", type=int, help="number of patients (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the world is deterministic for a seed")
    p.add_argument("--workers", type=int, default=0, help="processes (default: CPU count)")
    p.set_defaults(handler=_synth)


PREPARE_SOURCES = (
    "ptbxl", "cinc2021", "mimic-cxr", "mimic-iv-ecg", "mimic-paired", "chexpert", "ms-cxr", "nih-cxr14", "openi",
    "files", "synth",
)


def _prepare(args: argparse.Namespace) -> int:
    from medclr.data.prepare import PrepareOptions, prepare

    options = PrepareOptions(
        root=args.root, cxr_root=args.cxr_root, ecg_root=args.ecg_root, uncertain=args.uncertain,
        window_hours=args.window_hours, check=args.check, workers=args.workers, ecg_rate=args.ecg_rate,
    )
    report = prepare(args.source, options, args.out)
    sys.stdout.write(report.summary() + "\n")
    return 0


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn a dataset, as distributed, into a manifest (parquet)",
        description="Reads a dataset exactly as distributed (its own CSVs and folder layout), checks every record "
        "it points to, and writes one manifest row per study plus MANIFEST.quarantine.csv listing every "
        "rejected record with its reason. Data cards for each source are in data_cards/.",
    )
    p.add_argument("source", choices=PREPARE_SOURCES, help="dataset layout to read")
    p.add_argument("--root", type=Path, help="dataset root directory, exactly as downloaded")
    p.add_argument("--out", type=Path, required=True, help="manifest to write (.parquet)")
    p.add_argument("--cxr-root", type=Path, help="mimic-paired: the MIMIC-CXR(-JPG) root (default ROOT/mimic-cxr)")
    p.add_argument("--ecg-root", type=Path, help="mimic-paired: the MIMIC-IV-ECG root (default ROOT/mimic-iv-ecg)")
    p.add_argument(
        "--uncertain", choices=["nan", "zeros", "ones"], default="nan",
        help="CheXpert-style uncertain (-1) labels: nan = U-Ignore (default), zeros = U-Zeros, ones = U-Ones",
    )
    p.add_argument("--window-hours", type=float, default=24.0,
                   help="mimic-paired: largest time between a paired X-ray and ECG (default 24)")
    p.add_argument("--ecg-rate", type=int, choices=[100, 500], help="ptbxl: 500 Hz (default) or 100 Hz records")
    p.add_argument("--check", choices=["quick", "full"], default="quick",
                   help="quick: headers, sizes, cheap decodes (default); full: read every file completely")
    p.add_argument("--workers", type=int, default=0, help="processes for checking records (default: CPU count)")
    p.set_defaults(handler=_prepare)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a recipe (single process or under torchrun)")
    p.add_argument("config", type=Path, help="training recipe, e.g. configs/train/tiny.yaml")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. --set optim.lr=1e-3 loss.name=symile (values are YAML)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="resume exactly from a run directory")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    """Load the recipe (+ overrides), train (or resume), print the run directory."""
    import logging
    import os

    from medclr.config import load_config
    from medclr.train import train

    if int(os.environ.get("RANK", "0")) == 0:
        logging.basicConfig(level=logging.INFO, format="medclr: %(message)s")
    cfg = load_config(args.config, args.set)
    result = train(cfg, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        best = f"; best {result.best['metric']} = {result.best['value']:.4f} at step {result.best['step']}" \
            if result.best else ""
        loss = f"{result.last_loss:.4f}" if result.last_loss is not None else "n/a"
        sys.stdout.write(f"trained {result.steps} steps in {result.seconds:.1f} s (last loss {loss}{best})\n"
                         f"run dir: {result.run_dir}\n")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run: zero-shot, retrieval, grounding, probes")
    p.add_argument("run_dir", type=Path, help="run directory written by `medclr train`")
    p.add_argument(
        "--task",
        required=True,
        choices=["zeroshot-cxr", "zeroshot-ecg", "zeroshot-joint", "retrieval", "grounding", "probe", "diagnostics"],
        help="evaluation protocol",
    )
    p.add_argument("--manifest", type=Path, required=True, help="manifest to evaluate on")
    p.add_argument("--out", type=Path, default=Path("metrics.json"), help="metrics JSON (flat keys)")
    p.set_defaults(handler=_not_implemented("eval", 7))


def _add_embed_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed every study of a manifest with a trained run")
    p.add_argument("run_dir", type=Path, help="run directory written by `medclr train`")
    p.add_argument("--manifest", type=Path, required=True, help="manifest of studies to embed")
    p.add_argument("--out", type=Path, required=True, help="embeddings file (.parquet)")
    p.set_defaults(handler=_not_implemented("embed", 7))
    p = sub.add_parser("index", help="build a retrieval index from embeddings")
    p.add_argument("embeddings", type=Path, help="embeddings.parquet written by `medclr embed`")
    p.add_argument("--out", type=Path, required=True, help="index directory")
    p.set_defaults(handler=_not_implemented("index", 7))


def _add_app_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="start the Streamlit app on a trained run (research use only)")
    p.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--index", type=Path, metavar="INDEX_DIR", help="retrieval index directory")
    p.set_defaults(handler=_not_implemented("app", 8))
    p = sub.add_parser("demo", help="synth -> prepare -> train -> eval on CPU, then print a results table")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (reused when re-run)")
    p.set_defaults(handler=_not_implemented("demo", 9))


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="read X-ray / ECG files with medclr.io and print their metadata as JSON lines",
        description="Reads each file by content (DICOM image or waveform, PNG, JPEG, WFDB, CSV) and prints one "
        "JSON line of metadata (no patient-identifying tags). Bad files print one error line each; the exit "
        "status is 1 if any file failed.",
    )
    p.add_argument("paths", nargs="+", type=Path, help="files (for WFDB give the record or its .hea)")
    p.set_defaults(handler=_inspect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medclr",
        description="Chest X-ray, 12-lead ECG and clinical report encoders in one embedding space.",
    )
    parser.add_argument("--version", action="version", version=f"medclr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_synth, _add_prepare, _add_train, _add_eval, _add_embed_index, _add_app_demo, _add_inspect):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except MedclrNotImplementedError as err:
        sys.stderr.write(f"medclr: {err}\n")
        return EXIT_NOT_IMPLEMENTED
    except MedclrError as err:
        sys.stderr.write(f"medclr: error: {err}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("medclr: interrupted\n")
        return 130
