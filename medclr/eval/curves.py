"""Learning curves: a validation metric of several runs against the training step, in one PNG.

``python -m medclr.eval.curves --metric val/zeroshot_auroc/joint --out curves.png symile=runs/xor_symile
clip=runs/xor_clip`` reads each run's ``val.jsonl`` (one JSON object per validation, with ``step``), draws one
line per run and prints the points; used for the xor world's Symile vs CLIP comparison in the data card.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from medclr.atomic import atomic_path
from medclr.errors import MedclrInputError


def read_curve(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    """``[(step, value)]`` of ``metric`` in ``run_dir/val.jsonl`` (validations without it are skipped)."""
    path = run_dir / "val.jsonl"
    if not path.is_file():
        raise MedclrInputError(path, "no validation log", "train with run.val_every > 0")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(int(r["step"]), float(r[metric])) for r in rows if metric in r]


def learning_curves_png(runs: Mapping[str, Path], metric: str, out: Path, *, chance: float | None = None,
                        title: str = "") -> dict[str, list[tuple[int, float]]]:
    """Plot ``metric`` per run (a dashed line at ``chance``) to ``out``; return the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {name: read_curve(Path(run), metric) for name, run in runs.items()}
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for name, points in curves.items():
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=name)
    if chance is not None:
        ax.axhline(chance, ls="--", c="grey", lw=0.8, label="chance")
    ax.set(xlabel="training step", ylabel=metric, title=title or metric)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return curves


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medclr.eval.curves", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR", help="runs to compare")
    parser.add_argument("--metric", default="val/zeroshot_auroc_label_mean",
                        help="a key of val.jsonl (default: the one run.best_metric=auto selects on)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--chance", type=float, help="draw a chance line at this value")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    runs = dict(item.split("=", 1) if "=" in item else (Path(item).name, item) for item in args.runs)
    curves = learning_curves_png({k: Path(v) for k, v in runs.items()}, args.metric, args.out, chance=args.chance,
                                 title=args.title)
    for name, points in curves.items():
        sys.stdout.write(f"{name}: " + ", ".join(f"{s}: {v:.3f}" for s, v in points) + "\n")
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
