"""Process setup: device, seeds, determinism, and the torchrun process group.

``torchrun --nproc_per_node R -m medclr train CONFIG`` starts R processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR/PORT`` set; :func:`setup` then joins the process group (NCCL on CUDA, gloo on
CPU) and pins each process to GPU ``LOCAL_RANK``. Without those variables the run is a single process and no
process group exists (every collective helper here is then a no-op).

Only rank 0 writes the run directory; every rank writes its own RNG state into checkpoints.

``run.strategy: fsdp`` shards the report tower's text model with FSDP2 and keeps DDP for the rest (the helpers at
the end of this module); checkpoints stay full, unsharded state dicts either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from medclr.config import RunConfig
from medclr.models.config import MedclrConfigError

log = logging.getLogger(__name__)


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


# --- FSDP (``run.strategy: fsdp``) -----------------------------------------------------------------------------
#
# The report tower's text model is sharded with FSDP2 (``torch.distributed.fsdp.fully_shard``): one unit per
# block class the Hugging Face model lists in ``_no_split_modules`` (its transformer layers; BERT also its
# embeddings), then one for the rest of the text model (embeddings, final norm). Its parameters become DTensors
# holding 1/R of each weight; a unit's weights are all-gathered just before its forward (and again in backward)
# and its gradients reduce-scattered right after. Everything else (X-ray and ECG towers, projection heads, the
# logit scale, whose 0-dim parameter FSDP2 cannot shard) stays replicated under DDP, which is told to ignore the
# sharded parameters. FSDP's collectives run on a process group of their own, so they never interleave with
# DDP's gradient all-reduces.


def fsdp_text_models(model: nn.Module) -> dict[str, nn.Module]:
    """``{modality: text model}`` of every Hugging Face report tower (``towers.<m>.encoder.model``)."""
    from medclr.models.encoders.report import ReportEncoder

    return {name.split(".")[1]: module.model for name, module in model.named_modules()
            if isinstance(module, ReportEncoder) and name.startswith("towers.")}


def transformer_layers(text_model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a Hugging Face model: instances of its ``_no_split_modules`` classes (what
    accelerate's FSDP auto-wrap uses), else the items of its longest ``nn.ModuleList``."""
    classes: set[str] = set()
    for module in text_model.modules():
        classes.update(getattr(module, "_no_split_modules", None) or [])
    layers = [m for m in text_model.modules() if type(m).__name__ in classes]
    if layers:
        return layers
    lists: list[list[nn.Module]] = [list(m) for m in text_model.modules() if isinstance(m, nn.ModuleList)]
    return max(lists, key=len) if lists else []


def shard_text_towers(model: nn.Module, env: DistEnv, amp: str) -> list[str]:
    """Shard every report tower's text model across the ranks (see above); returns the names (in ``model``) of
    the parameters and buffers FSDP now manages, for DDP to ignore. ``amp='bf16'`` on CUDA also sets FSDP's
    mixed precision: weights gathered and used in bf16, gradients reduced in fp32 (the sharded master weights
    stay in their own dtype). Collective: every rank calls it."""
    from torch.distributed.device_mesh import DeviceMesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    texts = fsdp_text_models(model)
    if not texts:
        return []
    mesh = DeviceMesh.from_group(dist.new_group(list(range(env.world))), env.device.type)
    bf16 = amp == "bf16" and env.device.type == "cuda"
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else \
        MixedPrecisionPolicy()
    names: list[str] = []
    for modality, text in texts.items():
        layers = transformer_layers(text)
        kinds = ", ".join(sorted({type(layer).__name__ for layer in layers}))  # before FSDP renames the classes
        for layer in layers:
            fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
        fully_shard(text, mesh=mesh, mp_policy=policy)
        log.info("FSDP: the %s tower's text model is sharded across %d ranks (%d units: %s; + one for the rest%s)",
                 modality, env.world, len(layers), kinds, "; bf16 compute" if bf16 else "")
        prefix = f"towers.{modality}.encoder.model."
        names += [prefix + n for n, _ in text.named_parameters()] + [prefix + n for n, _ in text.named_buffers()]
    return names


def run_idle_text_towers(step: nn.Module, model: nn.Module) -> None:
    """Make every rank run each sharded text tower in every forward of ``step`` (a ``ContrastiveStep``).

    A rank whose local batch has no report skips that tower, but the other ranks then wait in the tower's
    all-gathers forever. This forward hook runs such a tower on one empty text and adds ``0 *`` its output to the
    loss: the loss and the gradients are unchanged, and every rank issues the same collectives (the same
    parameters get gradients, zeros here, so the reduce-scatters match too).
    """
    modalities = list(fsdp_text_models(model))
    encode = cast(Any, model).encode

    def hook(module: nn.Module, args: tuple[Any, ...], output: dict[str, Tensor]) -> dict[str, Tensor]:
        batch = args[0]
        for m in modalities:
            present = batch.present.get(m)
            if m not in batch.inputs or present is None or not bool(present.any()):
                output = {**output, "loss": output["loss"] + 0.0 * encode(m, [""]).sum()}
        return output

    step.register_forward_hook(hook)


def rebind_optimizer(optimizer: torch.optim.Optimizer, old_names: dict[int, str], model: nn.Module) -> None:
    """Point ``optimizer`` at the parameters ``fully_shard`` put in place of the old ones (``old_names``: id of
    an old parameter -> its name) and shard its state (e.g. Adam moments restored from a checkpoint) like them.
    Steps then use the per-parameter loop (``foreach``/``fused`` kernels take no mix of DTensors and tensors).
    Collective: every rank calls it."""
    from torch.distributed.tensor import distribute_tensor

    new = dict(model.named_parameters())
    for group in optimizer.param_groups:
        group["foreach"], group["fused"] = False, False
        for i, old in enumerate(group["params"]):
            param = new[old_names[id(old)]]
            if param is old:
                continue
            group["params"][i] = param
            state = optimizer.state.pop(old, None)
            if state is not None and isinstance(param, DTensor):
                optimizer.state[param] = {
                    k: distribute_tensor(v.to(param.device), param.device_mesh, param.placements)
                    if isinstance(v, Tensor) and v.shape == param.shape else v for k, v in state.items()}
            elif state is not None:
                optimizer.state[param] = state


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with sharded (DTensor) state all-gathered to full CPU tensors, so a checkpoint
    holds the same plain state under DDP and FSDP. Collective when anything is sharded: every rank calls it."""
    sd = optimizer.state_dict()
    state = {i: {k: v.full_tensor().cpu() if isinstance(v, DTensor) else v for k, v in s.items()}
             for i, s in sd["state"].items()}
    return {**sd, "state": state}


def clip_grad_norm(params: Sequence[Tensor], max_norm: float) -> float:
    """``torch.nn.utils.clip_grad_norm_`` (2-norm) over plain and FSDP-sharded parameters; returns the norm.

    The norm of sharded gradients is the root of the summed squares of every rank's shard (one all-reduce on
    FSDP's process group); it is combined with the norm of the replicated gradients, and all are scaled alike.
    """
    sharded = [p for p in params if isinstance(p, DTensor)]
    if not sharded:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    plain = [p.grad for p in params if not isinstance(p, DTensor) and p.grad is not None]
    local = [cast(DTensor, p.grad).to_local() for p in sharded if p.grad is not None]
    device = sharded[0].device
    squares = torch.zeros((), dtype=torch.float32, device=device)
    if local:
        squares = squares + torch.nn.utils.get_total_norm(local).float().to(device) ** 2
    dist.all_reduce(squares, group=sharded[0].device_mesh.get_group())
    if plain:
        squares = squares + torch.nn.utils.get_total_norm(plain).float().to(device) ** 2
    total = squares.sqrt()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)  # as torch.nn.utils.clip_grad_norm_
    for grad in plain + local:  # a shard's to_local() is a view: scaling it scales the DTensor's gradient
        grad.mul_(coef.to(grad.device, grad.dtype))
    return float(total)


@contextlib.contextmanager
def gathered_text_towers(model: nn.Module, env: DistEnv, enabled: bool = True) -> Iterator[None]:
    """Hold the full weights of every sharded text tower on every rank, so that one rank alone can run the model
    (validation on rank 0). Collective on entry: every rank enters; resharded on exit. A no-op without FSDP
    (or when not ``enabled``)."""
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)] if env.distributed and enabled else []
    if not units:
        yield
        return
    roots = [cast(FSDPModule, text) for text in fsdp_text_models(model).values()]
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for unit in units:
            if unit not in roots:
                unit.set_reshard_after_forward(True, recurse=False)
        for root in roots:
            root.reset_iter_state()  # reshards and forgets rank 0's extra forwards (FSDP's prefetch order)
