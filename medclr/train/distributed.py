"""Process setup: device, seeds, determinism, and the torchrun process group.

``torchrun --nproc_per_node R -m medclr train CONFIG`` starts R processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR/PORT`` set; :func:`setup` then joins the process group (NCCL on CUDA, gloo on
CPU) and pins each process to GPU ``LOCAL_RANK``. Without those variables the run is a single process and no
process group exists (every collective helper here is then a no-op).

Only rank 0 writes the run directory; every rank writes its own RNG state into checkpoints.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from medclr.config import RunConfig
from medclr.models.config import MedclrConfigError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: rank, world size, local rank and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(cfg: RunConfig) -> DistEnv:
    """Pick the device, apply threads/determinism, and join the process group when launched by torchrun."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = _device(cfg.device, local_rank)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(minutes=cfg.dist_timeout_min)
        dist.init_process_group(backend, timeout=timeout, device_id=device if device.type == "cuda" else None)
    return DistEnv(rank, world, local_rank, device)


def teardown(env: DistEnv) -> None:
    """Leave the process group (if this run joined one)."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise MedclrConfigError("run.device: cuda requested but no CUDA device is available; use auto or cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def mean_over_ranks(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """The mean of each value over ranks (one all-reduce); unchanged for one process."""
    if not env.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / env.world for k, v in zip(keys, t.tolist(), strict=True)}


def rng_state() -> dict[str, object]:
    """Python, numpy and torch RNG states as tensors and primitives (loadable with ``weights_only=True``)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, object] = {
        "python": _to_primitive(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_primitive(value: object) -> object:
    return [_to_primitive(v) for v in value] if isinstance(value, tuple | list) else value
