"""Two CPU processes (gloo) give the same loss and gradients as one process on the whole batch.

Convention (see medclr.losses.distributed): the mean of the rank losses equals the 1-process loss, and each
rank's gradient on its own rows is world_size x the 1-process gradient of those rows (DDP divides it back).
"""

from __future__ import annotations

import multiprocessing

import pytest
import torch
import torch.distributed as dist

from medclr.losses import gather_with_grad
from tests.losses import dist_worker

SIZES = [4, 3]  # unequal on purpose: the gather pads and trims


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict]]:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    tmp = tmp_path_factory.mktemp("dist")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=dist_worker.worker, args=(r, 2, str(tmp / "init"), str(tmp), SIZES))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert codes == [0, 0], f"rank processes exited with {codes}"
    return [torch.load(tmp / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("name", list(dist_worker.cases()))
def test_two_ranks_equal_one_process(rank_results: list[dict[str, dict]], name: str) -> None:
    single = dist_worker.run_case(name, slice(0, sum(SIZES)))
    ranks = [r[name] for r in rank_results]
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, single["loss"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close((ranks[0]["scale_grad"] + ranks[1]["scale_grad"]) / 2, single["scale_grad"],
                               rtol=1e-10, atol=1e-12)
    for m, full_grad in single["grads"].items():
        if full_grad is None:  # a modality the loss does not use
            assert ranks[0]["grads"][m] is None and ranks[1]["grads"][m] is None
            continue
        stitched = torch.cat([ranks[0]["grads"][m], ranks[1]["grads"][m]]) / 2  # DDP's average over 2 ranks
        torch.testing.assert_close(stitched, full_grad, rtol=1e-9, atol=1e-12)
    assert ranks[0]["counts"] == ranks[1]["counts"] == single["counts"]  # global row counts on every rank


def test_gather_without_a_process_group_is_the_identity() -> None:
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x
