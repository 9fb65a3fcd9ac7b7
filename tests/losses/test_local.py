"""GLoRIA's local word-region term: a loop reference, the worked example, masks, and its place in ConvirtLoss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medclr.errors import MedclrInputError
from medclr.losses import ConvirtLoss
from medclr.losses.local import LocalAlignment, within_report_loss, word_region_scores
from medclr.types import EncoderOutput
from tests.losses.helpers import batch


def _grid(n: int, tokens: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, tokens, d, generator=g, dtype=torch.float64), dim=-1)


def _reference_z(regions: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, tau1: float, tau2: float
                 ) -> torch.Tensor:
    """GLoRIA's Z(image, report) pair by pair, word by word, in plain loops."""
    z = torch.zeros(regions.shape[0], words.shape[0], dtype=torch.float64)
    for k in range(regions.shape[0]):
        for t in range(words.shape[0]):
            total = 0.0
            for i in range(words.shape[1]):
                if not mask[t, i]:
                    continue
                w = words[t, i]
                a = torch.softmax(tau1 * (regions[k] @ w), dim=0)  # [M]
                c = (a[:, None] * regions[k]).sum(0)
                total += math.exp(tau2 * float(F.cosine_similarity(c, w, dim=0)))
            z[k, t] = math.log(total) / tau2
    return z


def test_scores_match_a_loop_reference_and_ignore_padding() -> None:
    regions, words = _grid(3, 5, 4, seed=0), _grid(4, 6, 4, seed=1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]]).bool()
    z = word_region_scores(regions, words, mask, 4.0, 5.0, chunk=2)  # two chunks of images
    torch.testing.assert_close(z, _reference_z(regions, words, mask, 4.0, 5.0), rtol=1e-10, atol=1e-10)
    scrambled = words.clone()
    scrambled[~mask] = _grid(1, int((~mask).sum()), 4, seed=9)[0]  # padding content must not matter
    torch.testing.assert_close(word_region_scores(regions, scrambled, mask), word_region_scores(regions, words, mask))


def test_worked_example_of_the_docstring() -> None:
    words = torch.tensor([[[1.0, 0.0]]])
    regions = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    z = word_region_scores(regions, words, torch.ones(1, 1, dtype=torch.bool), tau_words=1e6)
    assert z.flatten().tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    logits = 10.0 * z.T  # the report's row
    assert F.cross_entropy(logits, torch.tensor([0])).item() == pytest.approx(math.log1p(math.exp(-10.0)), rel=1e-3)


def test_matching_regions_give_a_low_loss_and_shuffled_ones_a_high_one() -> None:
    words = _grid(6, 3, 8, seed=2)
    local = LocalAlignment()
    right = local.loss(words.clone(), words, torch.ones(6, 3, dtype=torch.bool))[0]  # each image shows its words
    wrong = local.loss(words[torch.tensor([1, 2, 3, 4, 5, 0])], words, torch.ones(6, 3, dtype=torch.bool))[0]
    assert right.item() < 0.1 < math.log(6) < wrong.item()


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="three positive"):
        LocalAlignment(temperatures=(4.0, 0.0, 10.0))
    with pytest.raises(ValueError, match="two different"):
        LocalAlignment("cxr", "cxr")
    with pytest.raises(ValueError, match="local_weight"):
        ConvirtLoss(local_weight=-1.0)


def _tokens(n: int, seed: int) -> dict[str, EncoderOutput]:
    regions, words = _grid(n, 4, 5, seed), _grid(n, 6, 5, seed + 1)
    mask = torch.ones(n, 6, dtype=torch.bool)
    mask[0, 3:] = False
    return {"cxr": EncoderOutput(pooled=regions.mean(1), tokens=regions),
            "report": EncoderOutput(pooled=words.mean(1), tokens=words, token_mask=mask)}


def test_convirt_adds_the_weighted_local_term() -> None:
    emb, tokens = batch(["cxr", "report"], n=5, d=5, seed=3), _tokens(5, seed=4)
    plain = ConvirtLoss(pairs=[("cxr", "report")])(emb, 10.0)
    loss = ConvirtLoss(pairs=[("cxr", "report")], local_weight=0.5)
    assert loss.token_modalities == ("cxr", "report") and ConvirtLoss().token_modalities == ()
    out = loss(emb, 10.0, tokens=tokens)
    expected = LocalAlignment().loss(tokens["cxr"].tokens, tokens["report"].tokens, tokens["report"].token_mask,
                                     lam=0.75)[0]
    assert out["loss"].item() == pytest.approx(plain["loss"].item() + 0.5 * expected.item(), rel=1e-10)
    assert int(out["n/local/cxr-report"]) == 5 and "loss/local/cxr->report" in out
    with pytest.raises(MedclrInputError, match="token grids"):
        loss(emb, 10.0)


def test_local_term_uses_present_rows_and_identical_reports_as_positives() -> None:
    emb, tokens = batch(["cxr", "report"], n=5, d=5, seed=5), _tokens(5, seed=6)
    loss = ConvirtLoss(pairs=[("cxr", "report")], local_weight=1.0, lam=1.0)
    present = {"cxr": torch.tensor([True, True, False, True, True])}
    out = loss(emb, 10.0, present=present, tokens=tokens)
    assert int(out["n/local/cxr-report"]) == 4
    used = torch.tensor([0, 1, 3, 4])
    logits = LocalAlignment().logits(tokens["cxr"].tokens[used], tokens["report"].tokens[used],
                                     tokens["report"].token_mask[used])
    assert out["loss/local/cxr->report"].item() == pytest.approx(F.cross_entropy(logits, torch.arange(4)).item())
    groups = {"report": torch.tensor([7, 8, 9, 7, 10])}  # rows 0 and 3 have the same report
    out = loss(emb, 10.0, present=present, groups=groups, tokens=tokens)
    soft = torch.eye(4, dtype=torch.float64)
    soft[0, 2] = soft[2, 0] = 1.0
    soft = soft / soft.sum(1, keepdim=True)
    assert out["loss/local/cxr->report"].item() == pytest.approx(F.cross_entropy(logits, soft).item())


def _reference_intra(regions: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, tau1: float, tau2: float,
                     tau3: float) -> float:
    """LoVT-style within-report contrast, row by row and word by word in plain loops."""
    total = 0.0
    for n in range(regions.shape[0]):
        real = [i for i in range(words.shape[1]) if mask[n, i]]
        if len(real) < 2:
            continue
        contexts = {}
        for i in real:
            a = torch.softmax(tau1 * (regions[n] @ words[n, i]), dim=0)
            contexts[i] = F.normalize((a[:, None] * regions[n]).sum(0), dim=0)
        own = torch.tensor([float(contexts[i] @ words[n, i]) for i in real], dtype=torch.float64)
        weights = torch.softmax(tau2 * own, dim=0)
        for w, i in zip(weights, real, strict=True):
            logits = torch.tensor([tau3 * float(contexts[i] @ words[n, k]) for k in real], dtype=torch.float64)
            total += float(w) * float(-torch.log_softmax(logits, dim=0)[real.index(i)])
    return total / regions.shape[0]


def test_within_report_contrast_matches_a_loop_reference() -> None:
    regions, words = _grid(4, 5, 4, seed=11), _grid(4, 6, 4, seed=12)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]]).bool()
    got = within_report_loss(regions, words, mask, 4.0, 5.0, 10.0)
    assert got.item() == pytest.approx(_reference_intra(regions, words, mask, 4.0, 5.0, 10.0), rel=1e-10)
    scrambled = words.clone()
    scrambled[~mask] = _grid(1, int((~mask).sum()), 4, seed=9)[0]  # padding content must not matter
    assert within_report_loss(regions, scrambled, mask).item() == pytest.approx(got.item(), rel=1e-10)


def test_within_report_contrast_prefers_regions_that_tell_findings_apart() -> None:
    """Two findings in one image: low loss when each word has its own region, high when both share one."""
    words = torch.eye(3, dtype=torch.float64)[None, :2]  # "effusion", "pneumonia"  [1, 2, 3]
    mask = torch.ones(1, 2, dtype=torch.bool)
    apart = within_report_loss(torch.eye(3, dtype=torch.float64)[None, :2], words, mask)  # one region each
    shared = F.normalize(torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64), dim=-1)
    assert apart.item() < 0.01 < math.log(2) - 0.01 < within_report_loss(shared, words, mask).item()


def test_convirt_adds_the_weighted_within_report_term() -> None:
    emb, tokens = batch(["cxr", "report"], n=5, d=5, seed=3), _tokens(5, seed=4)
    base = ConvirtLoss(pairs=[("cxr", "report")], local_weight=0.5)(emb, 10.0, tokens=tokens)
    out = ConvirtLoss(pairs=[("cxr", "report")], local_weight=0.5, local_intra_weight=0.25)(emb, 10.0, tokens=tokens)
    intra = within_report_loss(tokens["cxr"].tokens, tokens["report"].tokens, tokens["report"].token_mask)
    # (the loss computes the local terms in float32)
    assert out["loss"].item() == pytest.approx(base["loss"].item() + 0.25 * intra.item(), rel=1e-6)
    assert out["loss/local/report:intra"].item() == pytest.approx(intra.item(), rel=1e-6)
    with pytest.raises(ValueError, match="needs local_weight"):
        ConvirtLoss(local_intra_weight=0.5)
