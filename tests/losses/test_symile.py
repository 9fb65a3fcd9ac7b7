"""SymileLoss against loop references; chunked == materialised; k = 2 is CLIP; n within n_squared; masks."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from medclr.errors import MedclrInputError
from medclr.losses import LOSSES, ConvirtLoss, SymileLoss, recommended_logit_scale
from medclr.losses.mip import materialized_logits, mip_logsumexp, shuffled_logits, true_tuple_index
from tests.losses import reference as ref
from tests.losses.helpers import batch

MODS = ["cxr", "ecg", "report", "labs"]


def test_registered_by_name() -> None:
    assert LOSSES.get("symile") is SymileLoss


@pytest.mark.parametrize("k", [2, 3, 4])
def test_n_squared_matches_loop_reference(k: int) -> None:
    emb = batch(MODS[:k], n=4 if k < 4 else 3, d=3, seed=k)
    out = SymileLoss(negatives="n_squared")(emb, torch.tensor(2.3, dtype=torch.float64))
    assert out["loss"].item() == pytest.approx(ref.symile_n_squared(list(emb.values()), 2.3), rel=1e-12)
    assert set(out) == {"loss", "n/complete", *(f"loss/{m}" for m in emb)}


def _reference_perms(seed: int, k: int, n: int) -> list[list[list[int]]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randperm(n, generator=g).tolist() for _ in range(k - 1)] for _ in range(k)]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_n_matches_loop_reference_with_the_same_permutations(k: int) -> None:
    emb = batch(MODS[:k], n=6, d=4, seed=10 + k)
    out = SymileLoss(negatives="n", seed=123)(emb, 3.0)
    expected = ref.symile_n(list(emb.values()), 3.0, _reference_perms(123, k, 6))
    assert out["loss"].item() == pytest.approx(expected, rel=1e-12)


def test_n_uses_the_global_generator_like_the_reference_code() -> None:
    emb = batch(MODS[:3], n=5, d=4, seed=20)
    torch.manual_seed(7)
    got = SymileLoss(negatives="n")(emb, 2.0)["loss"].item()
    torch.manual_seed(7)
    perms = [[torch.randperm(5).tolist() for _ in range(2)] for _ in range(3)]
    assert got == pytest.approx(ref.symile_n(list(emb.values()), 2.0, perms), rel=1e-12)


def test_worked_example() -> None:
    eye = torch.eye(2, dtype=torch.float64)
    out = SymileLoss(negatives="n_squared")({"x": eye, "y": eye, "z": eye}, 1.0)
    assert out["loss"].item() == pytest.approx(math.log(1 + 3 / math.e), rel=1e-12)


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("chunk", [1, 10, 10**9])
def test_chunked_lse_equals_materialised_with_gradients(k: int, chunk: int) -> None:
    n, d = 5, 6
    x, *others = batch(MODS[:k], n=n, d=d, seed=30 + k, grad=True).values()
    s = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    chunked = mip_logsumexp(s, x, others, chunk_elements=chunk)
    dense = torch.logsumexp(materialized_logits(s, x, others), dim=1)
    torch.testing.assert_close(chunked, dense, rtol=1e-12, atol=1e-12)
    w = torch.linspace(0.5, 1.5, n, dtype=torch.float64)
    g1 = torch.autograd.grad((chunked * w).sum(), (s, x, *others))
    g2 = torch.autograd.grad((dense * w).sum(), (s, x, *others))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_n_squared_loss_equals_unchunked_cross_entropy() -> None:
    emb = batch(MODS[:3], n=7, d=5, seed=40, dtype=torch.float32)
    s = torch.tensor(20.0)
    values = list(emb.values())
    per_anchor = []
    for a in range(3):
        logits = materialized_logits(s, values[a], [v for j, v in enumerate(values) if j != a])  # [7, 49]
        per_anchor.append(F.cross_entropy(logits, true_tuple_index(torch.arange(7), 7, 2)))
    dense = torch.stack(per_anchor).mean()
    chunked = SymileLoss(negatives="n_squared", chunk_elements=16)(emb, s)["loss"]
    torch.testing.assert_close(chunked, dense, rtol=1e-5, atol=1e-6)


def test_two_modalities_is_clip() -> None:
    emb = batch(["cxr", "report"], n=6, d=4, seed=50)
    clip = ConvirtLoss(pairs=[("cxr", "report")], lam=0.5)(emb, 7.0)["loss"]
    torch.testing.assert_close(SymileLoss(negatives="n_squared")(emb, 7.0)["loss"], clip)
    x, y = emb["cxr"], emb["report"]  # n with identity permutations has the same candidates as n_squared
    identity, target = [torch.arange(6)], torch.arange(6)
    logits = shuffled_logits(torch.tensor(7.0, dtype=torch.float64), x, [y], identity, target, (x * y).sum(-1))
    torch.testing.assert_close(logits, 7.0 * x @ y.T)


def test_n_logits_are_entries_of_the_n_squared_logits() -> None:
    x, y, z = batch(MODS[:3], n=6, d=4, seed=60).values()
    s = torch.tensor(3.0, dtype=torch.float64)
    perms = [torch.randperm(6, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    target = torch.arange(6)
    small = shuffled_logits(s, x, [y, z], perms, target, (x * y * z).sum(-1))  # [6, 6]
    full = materialized_logits(s, x, [y, z]).reshape(6, 6, 6)  # [i, j_y, j_z]
    for i in range(6):
        for j in range(6):
            jy, jz = (i, i) if i == j else (int(perms[0][j]), int(perms[1][j]))
            assert small[i, j].item() == pytest.approx(full[i, jy, jz].item(), rel=1e-12)


def test_batch_permutation_invariance_n_squared() -> None:
    emb = batch(MODS[:3], n=6, d=4, seed=70)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    loss = SymileLoss(negatives="n_squared")
    torch.testing.assert_close(loss(emb, 9.0)["loss"], loss({m: x[perm] for m, x in emb.items()}, 9.0)["loss"])


@pytest.mark.parametrize("negatives", ["n", "n_squared"])
def test_gradcheck_float64(negatives: str) -> None:
    emb = batch(MODS[:3], n=3, d=3, seed=80, grad=True)
    s = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)

    def f(s: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        loss = SymileLoss(negatives=negatives, seed=0, chunk_elements=4)  # type: ignore[arg-type]
        return loss({"cxr": a, "ecg": b, "report": c}, s)["loss"]

    assert torch.autograd.gradcheck(f, (s, *emb.values()))


def test_complete_rows_only() -> None:
    emb = batch(MODS[:3], n=6, d=4, seed=90)
    present = {"ecg": torch.tensor([1, 0, 1, 1, 1, 0], dtype=torch.bool)}
    out = SymileLoss(negatives="n_squared")(emb, 5.0, present=present)
    keep = [0, 2, 3, 4]
    assert out["loss"].item() == pytest.approx(ref.symile_n_squared([x[keep] for x in emb.values()], 5.0), rel=1e-12)
    assert int(out["n/complete"]) == 4
    none = SymileLoss()(emb, 5.0, present={"cxr": torch.zeros(6, dtype=torch.bool)})
    assert int(none["n/complete"]) == 0 and none["loss"].item() == 0.0


def test_recommended_logit_scale_matches_the_mip_spread() -> None:
    init, cap = recommended_logit_scale(128, 3)
    assert (init, cap) == (128.0, 1000.0)
    x, y, z = (F.normalize(torch.randn(20000, 128, generator=torch.Generator().manual_seed(i)), dim=-1)
               for i in range(3))
    spread = (x * y * z).sum(-1).std().item()
    assert spread == pytest.approx(1 / 128, rel=0.1)  # ~0.008: s ~ 14 would leave logits ~0.1
    assert spread * init == pytest.approx(1.0, rel=0.1)
    assert recommended_logit_scale(256, 2) == (16.0, 1000.0)


def test_errors() -> None:
    with pytest.raises(ValueError, match="negatives"):
        SymileLoss(negatives="n3")  # type: ignore[arg-type]
    emb = batch(["cxr"], n=3, d=2)
    with pytest.raises(MedclrInputError, match="two modalities"):
        SymileLoss()(emb, 1.0)
    with pytest.raises(MedclrInputError, match="groups"):
        SymileLoss()(batch(MODS[:2], n=3, d=2), 1.0, groups={"cxr": torch.arange(3)})


MEMORY_SCRIPT = textwrap.dedent("""
    import sys, torch, torch.nn.functional as F
    from medclr.losses import SymileLoss
    from medclr.losses.mip import materialized_logits, true_tuple_index
    mode, n = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    emb = [F.normalize(torch.randn(n, 8), dim=-1).requires_grad_() for _ in range(3)]
    s = torch.tensor(100.0)

    def rss_mib(key):
        return int([line for line in open("/proc/self/status") if line.startswith(key)][0].split()[1]) // 1024

    def materialised():
        target = true_tuple_index(torch.arange(n), n, 2)
        terms = [F.cross_entropy(materialized_logits(s, emb[a], [e for j, e in enumerate(emb) if j != a]), target)
                 for a in range(3)]
        return sum(terms) / 3

    before = rss_mib("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM)
    loss = SymileLoss(negatives="n_squared")(dict(zip("abc", emb)), s)["loss"] if mode == "chunked" else materialised()
    loss.backward()
    print(rss_mib("VmHWM") - before)
""")


def _peak_mib(mode: str, n: int) -> int:
    # A fixed mmap threshold makes glibc return every freed tensor at once, so the peak RSS is the peak of live
    # tensors rather than of what the allocator kept after earlier frees.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, mode, str(n)], capture_output=True, text=True,
                          check=True, env=env)
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc peak-RSS reset")
def test_n_squared_peak_memory_is_bounded_by_the_chunk_not_the_batch() -> None:
    # Materialised, B = 256 needs [256, 65536] float32 logits (64 MiB) plus their softmax and gradient; chunked,
    # the peak is a few chunk-sized intermediates (~16 MiB each) whatever B is: the chunk shrinks as B grows.
    chunked, materialised = _peak_mib("chunked", 256), _peak_mib("materialised", 256)
    assert chunked < 120  # measured ~60 MiB; materialised ~330 MiB
    assert materialised > 2.5 * chunked
