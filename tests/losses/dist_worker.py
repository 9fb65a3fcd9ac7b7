"""The per-rank side of test_distributed: every loss on this rank's slice of one deterministic batch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from medclr.losses import ConvirtLoss, GramLoss, MultimodalLoss, SymileLoss
from tests.losses.helpers import batch

MODS = ["cxr", "ecg", "report"]
N_ROWS = 7
SCALE = 3.0


def full_batch() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Embeddings, presence masks and report ids of the whole (global) batch."""
    emb = batch(MODS, n=N_ROWS, d=5, seed=123)
    present = {"ecg": torch.tensor([1, 1, 0, 1, 1, 1, 0], dtype=torch.bool)}
    groups = {"report": torch.tensor([0, 1, 0, 2, 3, 1, 4])}
    return emb, present, groups


def cases() -> dict[str, tuple[MultimodalLoss, bool, bool]]:
    """name -> (loss, use presence masks, use groups)."""
    return {
        "convirt": (ConvirtLoss(pairs=[("cxr", "report"), ("ecg", "report")], lam=0.75), True, True),
        "convirt_dcl_reg": (ConvirtLoss(pairs=[("cxr", "report")], decoupled=True, uniform_weight=0.5,
                                        align_weight=0.5), False, False),
        "convirt_hard_negatives": (ConvirtLoss(pairs=[("cxr", "report"), ("ecg", "report")], hard_negative_beta=0.5),
                                   True, True),
        "convirt_memory": (ConvirtLoss(pairs=[("cxr", "report"), ("ecg", "report")], memory_size=5), True, True),
        "symile_n_squared": (SymileLoss(negatives="n_squared", chunk_elements=8), True, False),
        "symile_n": (SymileLoss(negatives="n", seed=0), False, False),
        "gram": (GramLoss(anchor="report", label_smoothing=0.1), True, True),
    }


def run_case(name: str, rows: slice) -> dict[str, Any]:
    """Loss, embedding gradients and logit-scale gradient of case ``name`` on ``rows`` of the full batch."""
    loss, with_present, with_groups = cases()[name]
    emb, present, groups = full_batch()
    mine = {m: x[rows].detach().clone().requires_grad_() for m, x in emb.items()}
    scale = torch.tensor(SCALE, dtype=torch.float64, requires_grad=True)
    my_present = {m: p[rows] for m, p in present.items()} if with_present else None
    if isinstance(loss, ConvirtLoss) and loss.memory.size:  # a previous batch fills the cross-batch memory
        previous = batch(MODS, n=N_ROWS, d=5, seed=321)
        loss({m: x[rows] for m, x in previous.items()}, SCALE, present=my_present,
             groups={m: (g + 2)[rows] for m, g in groups.items()} if with_groups else None)  # ids 2-4 recur
    out = loss(mine, scale, present=my_present,
               groups={m: g[rows] for m, g in groups.items()} if with_groups else None)
    out["loss"].backward()
    return {"loss": out["loss"].detach(), "grads": {m: x.grad for m, x in mine.items()}, "scale_grad": scale.grad,
            "counts": {k: int(v) for k, v in out.items() if k.startswith("n/")}}


def worker(rank: int, world: int, init_file: str, out_dir: str, sizes: list[int]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        start = sum(sizes[:rank])
        rows = slice(start, start + sizes[rank])
        results = {name: run_case(name, rows) for name in cases()}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # no rank tears down its connections while another still talks to it
    finally:
        dist.destroy_process_group()
