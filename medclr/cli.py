"""The ``medclr`` command line: parse, call one library function, print.

Every subcommand of the [contract] command line (see docs/ARCHITECTURE.md) is registered here. Errors a user
can cause are :class:`~medclr.errors.MedclrError`: they are printed as one line (no traceback) and the
process exits non-zero. Imports of heavy libraries happen inside the handlers so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import math
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
                             workers=args.workers, incidental=args.incidental)
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
    p.add_argument("--incidental", action="store_true",
                   help="add incidental findings that reports describe and X-rays show but no CheXpert label names "
                   "(sternotomy wires, low or hyperinflated lung volumes, scoliosis, hiatal hernia, aortic "
                   "calcification, cholecystectomy clips), so normal studies differ; not for xor. To train the demo "
                   "on it, write it to DIR/world first: `medclr demo --out DIR` reuses it")
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


EVAL_TASKS = ("zeroshot-cxr", "zeroshot-ecg", "zeroshot-joint", "retrieval", "grounding", "probe", "diagnostics")


def _non_negative(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a run: zero-shot, retrieval, grounding, probes, diagnostics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a trained run on a manifest with a published protocol; metrics go to --out as flat "
        "JSON keys (with bootstrap 95% CIs as <key>_ci_low/_ci_high), plots to <out stem>_plots/ beside it, and "
        "a summary table to the terminal.",
        epilog="tasks:\n"
        "  zeroshot-cxr    CheXpert competition labels, CheXzero prompt pairs (configs/prompts/chexpert.yaml);\n"
        "                  auroc/<Label>, auroc_macro, chexpert5x200/top1 when the split allows it\n"
        "  zeroshot-ecg    PTB-XL superclass/subclass/form/rhythm from the statement descriptions (MERL);\n"
        "                  other ECG manifests: configs/prompts/ecg.yaml\n"
        "  zeroshot-joint  X-ray + ECG together against the joint labels (configs/prompts/joint.yaml)\n"
        "  retrieval       recall@K/<q>-><t>, mrr, median_rank for every modality pair and two-to-one;\n"
        "                  runs trained with GLoRIA's local term: also recall@K/report->cxr_local (local score)\n"
        "  grounding       phrase grounding: cnr, miou, pointing_game (maximum inside a box) and\n"
        "                  pointing_game@15px (within 15 px: Zhang et al.'s tolerance) on X-rays,\n"
        "                  over MS-CXR's eight findings (others: per label and all_categories/*);\n"
        "                  ecg/* (synthetic world)\n"
        "  probe           logistic regression on frozen embeddings with 1/10/100% of the training labels\n"
        "  diagnostics     modality gap, alignment, uniformity, effective rank\n\n"
        "example:\n  medclr eval runs/demo --task zeroshot-cxr --manifest runs/demo_world/paired.parquet "
        "--out runs/demo/eval/zeroshot_cxr.json",
    )
    p.add_argument("run_dir", type=Path, help="run directory written by `medclr train`")
    p.add_argument("--task", required=True, choices=EVAL_TASKS, help="evaluation protocol (see below)")
    p.add_argument("--manifest", type=Path, required=True, help="manifest to evaluate on")
    p.add_argument("--out", type=Path, default=Path("metrics.json"), help="metrics JSON (flat keys)")
    p.add_argument("--split", help="comma-separated split(s) to evaluate (default: test; the small PTB-XL "
                   "excerpt pools folds 9-10)")
    p.add_argument("--prompts", type=Path, help="prompt file (YAML, see configs/prompts/) for zero-shot tasks")
    p.add_argument("--checkpoint", default="best", help="best | latest | step_NNNNNN (default: best)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap replicates for CIs (0: none)")
    p.add_argument("--max-rows", type=int, help="evaluate at most this many rows (quick checks)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--pointing-tolerance", type=float, default=15.0, metavar="PX",
                   help="grounding: original pixels of the tolerant pointing game, pointing_game@<PX>px (default 15, "
                   "Zhang et al. 2016's tolerance; 0: the strict pointing_game only)")
    p.add_argument("--grounding-map", choices=("auto", "contribution", "cosine"), default="cosine",
                   help="grounding: cosine = the phrase's cosine with each token (BioViL; MS-CXR's protocol, the "
                   "default), contribution = each token's share of the image-phrase cosine (CAM; exact for "
                   "mean-pooled towers with a linear head), auto = contribution where exact, else cosine")
    p.add_argument("--grounding-smooth", type=_non_negative, default=0.0, metavar="SIGMA",
                   help="grounding: blur each X-ray map on the token grid with a Gaussian of SIGMA cells before "
                   "upsampling (default 0: none; BioViL's reference inference engine uses 1.5)")
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    """Run one evaluation task, write the metrics file, print the summary table."""
    from medclr.eval.tasks import EvalRequest, evaluate, summary_table

    request = EvalRequest(args.run_dir, args.manifest, args.task, args.out,
                          args.split.split(",") if args.split else None, args.prompts, args.checkpoint,
                          args.bootstrap, max_rows=args.max_rows, plots=not args.no_plots, device=args.device,
                          pointing_tolerance=args.pointing_tolerance, grounding_map=args.grounding_map,
                          grounding_smooth=args.grounding_smooth)
    metrics = evaluate(request)
    sys.stdout.write(f"{args.task} on {metrics['splits']} ({metrics['split_protocol']})\n{summary_table(metrics)}\n"
                     f"metrics: {args.out}\n")
    return 0


def _add_embed_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed every study of a manifest with a trained run")
    p.add_argument("run_dir", type=Path, help="run directory written by `medclr train`")
    p.add_argument("--manifest", type=Path, required=True, help="manifest of studies to embed")
    p.add_argument("--out", type=Path, required=True, help="embeddings file (.parquet)")
    p.add_argument("--split", help="comma-separated split(s) to embed (default: every row)")
    p.add_argument("--checkpoint", default="best", help="best | latest | step_NNNNNN (default: best)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.set_defaults(handler=_embed)
    p = sub.add_parser("index", help="build a retrieval index from embeddings")
    p.add_argument("embeddings", type=Path, help="embeddings.parquet written by `medclr embed`")
    p.add_argument("--out", type=Path, required=True, help="index directory")
    p.set_defaults(handler=_index)


def _index(args: argparse.Namespace) -> int:
    """Build the retrieval index folder from an embeddings parquet."""
    from medclr.index import build_index

    index = build_index(args.embeddings, args.out)
    counts = ", ".join(f"{m} {len(v)}" for m, v in index.vectors.items())
    sys.stdout.write(f"wrote index {args.out}: {len(index.ids)} studies ({counts}; objective {index.loss})\n")
    return 0


def _embed(args: argparse.Namespace) -> int:
    """Embed the manifest's rows with the run's model and write the embeddings parquet."""
    from medclr.eval.embeddings import embed_manifest, save_embeddings
    from medclr.train.checkpoint import load_model

    model = load_model(args.run_dir, checkpoint=args.checkpoint, device=args.device)
    emb = embed_manifest(model, args.run_dir, args.manifest, splits=args.split.split(",") if args.split else None)
    save_embeddings(emb, args.out)
    counts = ", ".join(f"{m} {int(p.sum())}" for m, p in emb.present.items())
    sys.stdout.write(f"wrote {args.out}: {len(emb)} studies ({counts})\n")
    return 0


class _AppParser(argparse.ArgumentParser):
    """``medclr app``'s parser: Streamlit config flags (``--server.port 8600``, ``--server.address=0.0.0.0``,
    ``--browser.*``, ``--theme.*``, ``--logger.*``) go to ``args.streamlit_args``; anything else is an error."""

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        ns, extra = super().parse_known_args(args, namespace)
        flags = [a for a in extra if a.startswith("-")]
        bad = [a for a in flags if not a.startswith(("--server.", "--browser.", "--theme.", "--logger."))]
        if bad or (extra and not extra[0].startswith("-")):
            self.error(f"unrecognized arguments: {' '.join(bad or extra[:1])} (only Streamlit's --server.*, "
                       "--browser.*, --theme.* and --logger.* flags are passed on)")
        ns.streamlit_args = extra
        return ns, []


def _app(args: argparse.Namespace) -> int:
    """Check the run (and index) first, then ``streamlit run apps/medclr_app.py`` from the repository root (so that
    its hardened .streamlit/config.toml applies), passing the folders as arguments and MEDCLR_RUN/MEDCLR_INDEX."""
    import os
    import subprocess

    from medclr.errors import MedclrInputError
    from medclr.index import load_index
    from medclr.inference import check_run_dir

    run = check_run_dir(args.run)
    index = None
    if args.index is not None:
        load_index(args.index)  # a clear error here rather than in the browser
        index = args.index.resolve()
    root = Path(__file__).resolve().parents[1]
    script = root / "apps" / "medclr_app.py"
    if not script.is_file():
        raise MedclrInputError(script, "the app script is missing", "run `medclr app` from a source checkout")
    env = {k: v for k, v in os.environ.items() if k not in ("MEDCLR_RUN", "MEDCLR_INDEX")}
    env.update({"MEDCLR_RUN": str(run), **({"MEDCLR_INDEX": str(index)} if index else {})})
    folders = ["--run", str(run), *(["--index", str(index)] if index else [])]
    sys.stdout.write(f"medclr app (research use only, not for diagnosis): run {run}, index "
                     f"{index or 'RUN_DIR/index if present'}\n")
    sys.stdout.flush()
    return subprocess.call([sys.executable, "-m", "streamlit", "run", str(script), *args.streamlit_args, "--",
                            *folders], cwd=root, env=env)


def _add_app_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="start the Streamlit app on a trained run (research use only)",
                       description="Starts the Streamlit app (zero-shot diagnosis, case retrieval, phrase grounding) "
                       "on a trained run; research use only, not for diagnosis. Streamlit flags such as "
                       "--server.port 8600 or --server.address 0.0.0.0 are passed on. See apps/README.md.")
    p.__class__ = _AppParser  # keeps Streamlit's --server.* flags instead of rejecting them
    p.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="run directory (medclr train)")
    p.add_argument("--index", type=Path, metavar="INDEX_DIR", help="retrieval index (medclr index); default: "
                   "RUN_DIR/index when it exists")
    p.set_defaults(handler=_app)
    p = sub.add_parser(
        "demo", help="synth -> prepare -> train -> eval on CPU, then print a results table",
        description="The main job end to end, offline: generate the synthetic world, prepare its manifests, train "
        "configs/train/<preset>.yaml, evaluate zero-shot X-ray/ECG/joint, retrieval and grounding, embed and index, "
        "print a results table beside the data card's simple baselines, write OUT/report.md, and print the command "
        "that opens the app. Re-running reuses every stage already built (a partial training run is resumed). "
        "The demo preset takes ~17 minutes on 2 CPU cores with AVX512-BF16 or AMX (1,000 steps in bf16); elsewhere "
        "it trains in float32: ~45 minutes on AVX2-only CPUs (world included); --steps 500 halves the training.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo_job"),
                   help="output directory (default runs/demo_job; reused when re-run)")
    p.add_argument("--preset", choices=["demo", "tiny"], default="demo",
                   help="demo: the CPU demo world and recipe (default); tiny: a ~1 minute smoke run")
    p.add_argument("--steps", type=int, metavar="N", help="training steps (default: the recipe's run.max_steps)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="change the training recipe as medclr train --set does, e.g. "
                        "--set \"optim.tower_lr={cxr: 4}\" (a finished run in OUT/run is kept: use a new --out)")
    p.add_argument("--skip-train", action="store_true",
                   help="do not train: evaluate the run already in OUT/run as it is")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    """Run (or finish) the demo; exit 1 when an evaluation task failed (the others still run)."""
    import logging

    from medclr.demo import DemoOptions, run_demo

    logging.basicConfig(level=logging.INFO, format="medclr: %(message)s")

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    options = DemoOptions(out=args.out, preset=args.preset, steps=args.steps, overrides=tuple(args.set),
                          skip_train=args.skip_train)
    result = run_demo(options, say=say)
    return 1 if result.failed else 0


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
