"""Per-tower forward (and forward + backward) time of a model config on this machine, with synthetic inputs.

    .venv/bin/python benchmarks/encoder_bench.py [configs/models/demo.yaml] [--batch 32] [--image-size 128]
        [--ecg-length 1000] [--threads N] [--repeats 3] [--json OUT]

Also times MONAI ``resnet10`` with its default stride-1 first convolution against the ``cxr_cnn`` tower at the
same image size, printed as a ratio (the issue's CPU pitfall: set strides deliberately), and the report tower's
forward + backward on reports seen before with a frozen-prefix cache (``prefix_cache``, whatever the config says)
against the same tower without it (``ratio.report_no_prefix_cache_over_cache``), and every tower's forward +
backward on one batch in fp32 against bf16 autocast on the CPU (``run.amp=bf16``; ``ratio.fp32_over_bf16``, with
``cpu_native_bf16``: emulated bf16 can be slower than fp32).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

import torch
from report import best_of  # benchmarks/ is on sys.path when a benchmark runs as a script

from medclr.models import MedClr, build_model, load_model_config
from medclr.models.encoders.cxr import SmallCnnConfig
from medclr.models.encoders.prefix_cache import FrozenPrefixCache
from medclr.models.encoders.report import ReportEncoder
from medclr.train.loop import cpu_has_native_bf16
from medclr.types import ModalityInput

REPORTS = [
    "No acute cardiopulmonary process.",
    "Moderate cardiomegaly with bilateral pleural effusions and mild pulmonary edema.",
    "Sinus rhythm. ST elevation in V2-V4 consistent with acute anterior injury. Recommend clinical correlation.",
    "Left lower lobe opacity, likely atelectasis; pneumonia not excluded in the appropriate clinical setting.",
]


def inputs(modality: str, batch: int, image_size: int, ecg_length: int) -> ModalityInput:
    table: dict[str, Callable[[], ModalityInput]] = {
        "cxr": lambda: torch.rand(batch, 1, image_size, image_size),
        "ecg": lambda: torch.randn(batch, 12, ecg_length) * 0.3,
        "report": lambda: [" ".join(REPORTS[(i + j) % len(REPORTS)] for j in range(3)) + f" Study {i}."
                           for i in range(batch)],  # ~80 tokens, as the demo world's reports
    }
    return table[modality]()


def prefix_cache_times(model: MedClr, reports: ModalityInput, repeats: int) -> dict[str, float]:
    """Report tower forward + backward on texts seen before, with a frozen-prefix cache and without one."""
    encoder = model.tower("report").encoder if "report" in model.modalities else None
    if not isinstance(encoder, ReportEncoder) or not any(p.requires_grad for p in encoder.parameters()):
        return {}
    cache = encoder.prefix_cache or FrozenPrefixCache(encoder.model, 4096)

    def step() -> None:
        model.zero_grad()
        model.encode("report", reports).square().sum().backward()

    encoder.prefix_cache = cache
    with_cache = best_of(step, repeats)  # best_of's warm-up call fills the cache
    encoder.prefix_cache = None
    without = best_of(step, repeats)
    return {"report.prefix_cache_forward_backward_s": with_cache,
            "report.no_prefix_cache_forward_backward_s": without,
            "ratio.report_no_prefix_cache_over_cache": without / with_cache}


def autocast_times(model: MedClr, batch: dict[str, ModalityInput], repeats: int) -> dict[str, float]:
    """Forward + backward of every tower on ``batch`` in fp32 and with the forward under CPU bf16 autocast."""
    def step(bf16: bool) -> None:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = sum((model.encode(m, x).square().sum() for m, x in batch.items()), torch.zeros(()))
        loss.backward()

    fp32, bf16 = best_of(lambda: step(False), repeats), best_of(lambda: step(True), repeats)
    return {"all.fp32_forward_backward_s": fp32, "all.bf16_forward_backward_s": bf16,
            "ratio.fp32_over_bf16": fp32 / bf16, "cpu_native_bf16": float(cpu_has_native_bf16())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", default="configs/models/demo.yaml")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--ecg-length", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(load_model_config(args.config)).train()
    results: dict[str, float] = {}
    batch = {m: inputs(m, args.batch, args.image_size, args.ecg_length) for m in model.modalities}
    for modality, x in batch.items():
        with torch.no_grad():
            results[f"{modality}.forward_s"] = best_of(lambda m=modality, x=x: model.encode(m, x), args.repeats)

        def step(m: str = modality, x: ModalityInput = x) -> None:
            model.zero_grad()
            model.encode(m, x).square().sum().backward()

        results[f"{modality}.forward_backward_s"] = best_of(step, args.repeats)
    results.update(prefix_cache_times(model, inputs("report", args.batch, 0, 0), args.repeats))
    results.update(autocast_times(model, batch, args.repeats))
    from monai.networks.nets import resnet10

    image = torch.rand(args.batch, 1, args.image_size, args.image_size)
    monai_r10 = resnet10(spatial_dims=2, n_input_channels=1, feed_forward=False)  # stride-1 first conv
    small = SmallCnnConfig().build()
    with torch.no_grad():
        results["cxr.monai_resnet10_stride1_s"] = best_of(lambda: monai_r10(image), args.repeats)
        results["cxr.small_cnn_s"] = best_of(lambda: small(image), args.repeats)
    results["ratio.resnet10_stride1_over_small_cnn"] = (
        results["cxr.monai_resnet10_stride1_s"] / results["cxr.small_cnn_s"])
    print(f"{args.config}: batch {args.batch}, {args.threads} threads, best of {args.repeats}")
    for key, value in results.items():
        print(f"  {key:45s} {value:8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": args.config, "batch": args.batch, **results}, f, indent=2)


if __name__ == "__main__":
    main()
