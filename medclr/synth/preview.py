"""Quick-look images of the synthetic data (for people, not for training): a grid of X-ray phantoms with boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclr.synth.state import CxrAcquisition, CxrFindings, Lobe, Severity, Side

_LOBES: tuple[Lobe, ...] = ("right upper", "right middle", "right lower", "left upper", "lingula", "left lower")
_SEVERITIES: tuple[Severity, ...] = ("mild", "moderate", "severe")
_COLOURS = {
    "Cardiomegaly": "#ff5050", "Pleural Effusion": "#40a0ff", "Pneumothorax": "#ffd000", "Consolidation": "#50e050",
    "Pneumonia": "#50e050", "Edema": "#ff80ff", "Atelectasis": "#ff9040", "Lung Opacity": "#a0ffa0",
    "Support Devices": "#00e0e0",
}


def _example(i: int, rng: np.random.Generator) -> tuple[CxrFindings, CxrAcquisition]:
    """Example ``i``: 0 = normal, then each finding in turn, then random mixtures."""
    sev: Severity = _SEVERITIES[int(rng.integers(3))]
    side: Side = "right" if rng.random() < 0.5 else "left"
    lobe: Lobe = _LOBES[int(rng.integers(6))]
    single = [
        CxrFindings(),
        CxrFindings(cardiomegaly=sev),
        CxrFindings(effusion_sides=(side,), effusion_severity=sev),
        CxrFindings(pneumothorax_side=side),
        CxrFindings(consolidation_lobe=lobe, pneumonia=True),
        CxrFindings(edema=sev, cardiomegaly="moderate"),
        CxrFindings(atelectasis_sides=("right", "left"), support_devices=("ett", "central line")),
        CxrFindings(opacity_lobe=lobe),
        CxrFindings(support_devices=("pacemaker",), cardiomegaly="mild"),
    ]
    if i < len(single):
        findings = single[i]
    else:
        findings = CxrFindings(
            cardiomegaly=sev if rng.random() < 0.4 else None,
            effusion_sides=(("right", "left") if rng.random() < 0.5 else (side,)) if rng.random() < 0.4 else (),
            effusion_severity=sev,
            pneumothorax_side=side if rng.random() < 0.15 else None,
            consolidation_lobe=lobe if rng.random() < 0.3 else None,
            pneumonia=True,
            edema=sev if rng.random() < 0.3 else None,
            atelectasis_sides=(side,) if rng.random() < 0.3 else (),
            support_devices=(("ett", "central line") if rng.random() < 0.5 else ("pacemaker",))
            if rng.random() < 0.3 else (),
        )
    acq = CxrAcquisition(
        size=512, view="AP" if rng.random() < 0.25 else "PA", patient_scale=float(rng.uniform(0.88, 1.12)),
        rotation_deg=float(rng.normal(0, 2)), exposure=float(rng.uniform(0.8, 1.2)),
        noise=float(rng.uniform(0.01, 0.035)),
    )
    return findings, acq


def cxr_grid_png(out_path: str | Path, n: int = 9, seed: int = 0, *, dpi: int = 110) -> Path:
    """Render ``n`` phantoms (a normal one, one per finding, then mixtures) in a grid with their boxes drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from medclr.synth.cxr import render_cxr_detailed

    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.6 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= n:
            continue
        findings, acq = _example(i, rng)
        out = render_cxr_detailed(findings, acq, rng)
        ax.imshow(out.image, cmap="gray", vmin=0, vmax=1)
        for b in out.boxes:
            colour = _COLOURS.get(b.label, "white")
            ax.add_patch(Rectangle((b.x - 0.5, b.y - 0.5), b.w, b.h, fill=False, edgecolor=colour, linewidth=1.0))
            ax.text(b.x, b.y - 3, f"{b.label}: {b.location}", color=colour, fontsize=5.5, va="bottom")
        labels = [k for k, v in findings.labels.items() if v and k != "Lung Opacity"] or ["No Finding"]
        ax.set_title(f"{acq.view} CTR {out.ctr:.2f}\n" + ", ".join(labels), fontsize=7)
    fig.tight_layout()
    path = Path(out_path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m medclr.synth.preview OUT_DIR``: write ``synth_cxr.png`` and ``synth_ecg.png`` there."""
    import argparse

    from medclr.synth.preview_ecg import ecg_class_plots_png

    parser = argparse.ArgumentParser(description="Preview the synthetic world: X-ray grid and one ECG per class.")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cxr_grid_png(args.out / "synth_cxr.png", 9, args.seed, dpi=60)
    ecg_class_plots_png(args.out / "synth_ecg.png", args.seed, dpi=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
