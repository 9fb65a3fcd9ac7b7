"""Phrase grounding: hand-computed metrics, the grid -> original-pixel geometry, maps from stub and tiny models,
``evaluate_grounding`` on a tiny synthetic world (X-ray boxes from ``ms-cxr/``, ECG truth from ``truth.csv``)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medclr.data.cache import CacheSettings
from medclr.data.transforms import resize_pad
from medclr.errors import MedclrInputError
from medclr.eval import grounding as g
from medclr.eval import grounding_maps, grounding_metrics
from medclr.io.leads import STANDARD_LEADS
from medclr.models import build_model
from medclr.models.encoders.base import Encoder
from medclr.models.factory import model_config_from_dict
from medclr.models.model import LogitScale, MedClr, Tower
from medclr.types import EncoderOutput, Geometry
from tests.models.conftest import tiny_bert_dir  # noqa: F401 - re-exported fixture
from tests.train.conftest import model_dict

SETTINGS = CacheSettings(image_size=32, ecg_fs=50.0, ecg_samples=500)  # what model_dict's towers take
MAP = np.array([[0, 0, 0, 0], [0, 4, 2, 0], [0, 2, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
BOX = [[1, 1, 2, 2]]  # x, y, w, h: rows 1-2, cols 1-2


# ------------------------------------------------------------------------------------------- metrics by hand
def test_cnr_by_hand() -> None:
    # inside {4, 2, 2, 0}: mean 2, var 2; outside: twelve 0s, var 0 -> (2 - 0) / sqrt(2)
    assert g.cnr(MAP, BOX) == pytest.approx(math.sqrt(2))
    assert g.cnr(MAP, g.boxes_mask(MAP.shape, BOX)) == pytest.approx(math.sqrt(2))  # a mask works the same
    # box on four 0s (var 0); outside {4, 2, 2, nine 0s}: mean 2/3, var 2 - 4/9 = 14/9 -> -(2/3) / sqrt(14/9)
    assert g.cnr(MAP, [[2, 2, 2, 2]]) == pytest.approx(-2 / math.sqrt(14))
    assert math.isnan(g.cnr(MAP, [[0, 0, 4, 4]]))  # no outside
    assert g.cnr(-MAP, BOX) == pytest.approx(-math.sqrt(2))  # signed


def test_pointing_game_by_hand() -> None:
    assert g.pointing_game(MAP, BOX) == 1.0
    assert g.pointing_game(MAP, [[2, 2, 2, 2]]) == 0.0
    hidden = MAP.copy()
    hidden[1, 1] = np.nan  # NaN pixels are ignored: the max is then 2 at (1, 2) (first in row-major order)
    assert g.pointing_game(hidden, [[2, 1, 1, 1]]) == 1.0
    assert g.pointing_game(np.ones((3, 3)), [[0, 0, 1, 1]]) == 1.0  # ties: the first pixel


def test_tolerant_pointing_game_by_hand() -> None:
    # a 40 x 40 map peaking at row 10, col 10; box = rows 20-29, cols 25-29 (pixel centres inside)
    sim = np.zeros((40, 40))
    sim[10, 10] = 1.0
    box = [[25, 20, 5, 10]]
    # nearest box pixel (20, 25): distance sqrt(10^2 + 15^2) = 18.03
    assert g.pointing_game(sim, box) == 0.0
    assert g.pointing_game(sim, box, tolerance=18.0) == 0.0
    assert g.pointing_game(sim, box, tolerance=18.1) == 1.0
    sim[10, 10], sim[5, 27] = 0.0, 1.0  # straight above the box: 15 px from row 20
    assert g.pointing_game(sim, box, tolerance=g.POINTING_TOLERANCE_PX) == 1.0  # "within 15" includes 15
    assert g.pointing_game(sim, box, tolerance=14.9) == 0.0
    near = g.near_region(g.boxes_mask(sim.shape, box), 1.0)  # the box grown by one pixel on each side, no corners
    assert near.sum() == 5 * 10 + 2 * 5 + 2 * 10
    assert near[19, 25] and near[20, 24] and not near[19, 24]  # corner neighbour: sqrt(2) > 1
    edge = g.near_region(g.boxes_mask((10, 10), [[0, 0, 2, 2]]), 2.0)  # clipped at the image border
    assert edge.sum() == 4 + 4 + 4 + 1  # 2 more rows, 2 more cols; of the corner only (2, 2) (sqrt 2; (2, 3): sqrt 5)
    assert not g.near_region(np.zeros((4, 4), dtype=bool), 15.0).any()
    assert [g.pointing_game_key(t) for t in (0.0, 15.0, 7.5)] == ["pointing_game", "pointing_game@15px",
                                                                  "pointing_game@7.5px"]


def test_miou_by_hand() -> None:
    # min-max normalised: 1 at (1,1), 0.5 at (1,2) and (2,1). tau 0.3-0.5: 3 predicted px, all in the 4-px box -> 3/4;
    # tau 0.6-0.7: 1 px -> 1/4. Mean over the five thresholds: (3 * 0.75 + 2 * 0.25) / 5 = 0.55.
    assert g.miou(MAP, BOX) == pytest.approx(0.55)
    assert g.miou(3.0 * MAP - 1.0, BOX) == pytest.approx(0.55)  # invariant to increasing affine maps
    assert g.miou(MAP, BOX, [0.5]) == pytest.approx(0.75)
    # BioViL: raw map at 0.1-0.5: always the same 3 px -> 0.75
    assert g.miou(MAP, BOX, g.BIOVIL_THRESHOLDS, normalize=False) == pytest.approx(0.75)
    assert g.miou(np.zeros((4, 4)), BOX) == 0.0  # a constant map predicts nothing


def test_boxes_mask_uses_pixel_centres() -> None:
    mask = g.boxes_mask((4, 6), [[0.6, 0.0, 1.0, 2.0], [4.0, 3.0, 9.0, 9.0]])
    assert np.argwhere(mask).tolist() == [[0, 1], [1, 1], [3, 4], [3, 5]]  # centre 0.5 < 0.6; clipped at the edge


def test_ecg_metrics_by_hand() -> None:
    sim = np.zeros((12, 10), dtype=np.float32)
    sim[STANDARD_LEADS.index("V2"), 3] = 1.0
    assert g.ecg_pointing_game_lead(sim, ["V1", "V2"]) == 1.0
    assert g.ecg_pointing_game_lead(sim, ["II", "III", "aVF"]) == 0.0
    time = g.segments_mask(10, [[0.25, 0.4]], fs=10.0, offset_s=0.0)  # samples at 0.3 s: index 3
    assert time.tolist() == [False, False, False, True] + [False] * 6
    assert g.ecg_pointing_game_segment(sim, time) == 1.0
    assert g.segments_mask(10, [[1.25, 1.4]], fs=10.0, offset_s=1.0)[3]  # a centre crop shifts the clock
    assert g.ecg_lead_auroc(sim, ["V2"]) == 1.0
    assert g.ecg_lead_auroc(sim, ["V1"]) == pytest.approx(0.5 * 10 / 11)  # ties with 10 zero leads, loses to V2
    assert math.isnan(g.ecg_lead_auroc(sim, list(STANDARD_LEADS)))


# --------------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize(("original", "hot", "rows", "cols"), [
    ((40, 64), (1, 2), (4, 20), (32, 48)),  # landscape: 32 x 20 after resizing, 6 rows of padding above and below
    ((64, 40), (2, 1), (32, 48), (4, 20)),  # portrait: 6 columns of padding left and right
])
def test_one_hot_patch_maps_onto_its_region_of_the_original(original: tuple[int, int], hot: tuple[int, int],
                                                           rows: tuple[int, int], cols: tuple[int, int]) -> None:
    _, geom = resize_pad(np.zeros(original, dtype=np.float32), 32)
    geometry = Geometry(original_size=original, resized_size=(geom.resized_h, geom.resized_w),
                        pad=(geom.top, geom.bottom, geom.left, geom.right))
    grid = np.zeros((4, 4))
    grid[hot] = 1.0  # patch (i, j) covers input pixels [8i, 8i + 8) x [8j, 8j + 8)
    sim = g.cxr_grid_to_original(grid, (8, 8), geometry)
    assert sim.shape == original
    high = np.argwhere(sim >= 0.5)
    assert high[:, 0].min() >= rows[0] and high[:, 0].max() < rows[1]
    assert high[:, 1].min() >= cols[0] and high[:, 1].max() < cols[1]
    peak = np.unravel_index(int(np.argmax(sim)), sim.shape)
    centre = ((rows[0] + rows[1]) / 2, (cols[0] + cols[1]) / 2)
    assert abs(peak[0] + 0.5 - centre[0]) <= 0.5 and abs(peak[1] + 0.5 - centre[1]) <= 0.5
    assert g.pointing_game(sim, [[cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0]]]) == 1.0


def test_identity_geometry_is_torch_bilinear_and_crops_are_nan() -> None:
    grid = np.random.default_rng(0).normal(size=(4, 4))
    sim = g.cxr_grid_to_original(grid, (8, 8), Geometry(original_size=(32, 32)))
    ref = F.interpolate(torch.tensor(grid)[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(sim, ref.numpy(), atol=1e-5)
    cropped = g.cxr_grid_to_original(grid, (8, 8), Geometry(original_size=(40, 40), crop=(4, 4, 32, 32)))
    assert np.isnan(cropped[:4]).all() and np.isnan(cropped[:, 36:]).all() and np.isfinite(cropped[4:36, 4:36]).all()


def test_grid_peaks_are_the_one_hot_maps_maxima_and_bound_the_pointing_game() -> None:
    _, geom = resize_pad(np.zeros((40, 64), dtype=np.float32), 32)
    geometry = Geometry(original_size=(40, 64), resized_size=(geom.resized_h, geom.resized_w),
                        pad=(geom.top, geom.bottom, geom.left, geom.right))
    peaks = g.cxr_grid_peaks((4, 4), (8, 8), geometry)
    expected = np.zeros((40, 64), dtype=bool)
    for i in range(4):
        for j in range(4):
            one_hot = np.zeros((4, 4))
            one_hot[i, j] = 1.0
            expected.flat[int(np.nanargmax(g.cxr_grid_to_original(one_hot, (8, 8), geometry)))] = True
    np.testing.assert_array_equal(peaks, expected)
    assert peaks.sum() == 16
    # the peaks' columns: 0 (the first cell's value is held constant out to the edge, and ties go to the first
    # pixel), then the pixels at the cell centres 24, 40 and 56 (input = original / 2)
    assert np.flatnonzero(peaks.any(axis=0)).tolist() == [0, 23, 39, 56]
    box = [[26, 0, 10, 40]]  # a 10-pixel strip between two cell centres holds no peak: no map on this grid hits it
    assert not (g.boxes_mask((40, 64), box) & peaks).any()
    rng = np.random.default_rng(0)
    assert sum(g.pointing_game(g.cxr_grid_to_original(rng.normal(size=(4, 4)), (8, 8), geometry), box)
               for _ in range(200)) == 0.0


def test_time_only_ecg_grid_is_broadcast_to_the_leads() -> None:
    profile = np.arange(5, dtype=np.float64)
    out = EncoderOutput(pooled=torch.zeros(1, 2), grid=(5,), grid_axes=("time",), token_stride=(20,), input_size=(100,))
    sim = g.ecg_grid_to_signal(profile, out)
    ref = F.interpolate(torch.tensor(profile)[None, None], size=100, mode="linear", align_corners=False)[0, 0]
    assert sim.shape == (12, 100)
    np.testing.assert_allclose(sim, np.broadcast_to(ref.numpy(), (12, 100)), atol=1e-5)


class OneHotPatches(Encoder):
    """Stub X-ray encoder: every 8 x 8 patch token is e1 except patch ``hot``, which is e0."""

    def __init__(self, hot: tuple[int, int]) -> None:
        super().__init__()
        self.hot, self.out_dim = hot, 4

    def forward(self, x: Tensor) -> EncoderOutput:
        b, h, w = x.shape[0], x.shape[2] // 8, x.shape[3] // 8
        tokens = torch.zeros(b, h, w, 4)
        tokens[..., 1] = 1.0
        tokens[:, self.hot[0], self.hot[1]] = torch.tensor([1.0, 0.0, 0.0, 0.0])
        return EncoderOutput(pooled=tokens.mean(dim=(1, 2)), tokens=tokens.reshape(b, h * w, 4), grid=(h, w),
                             grid_axes=("row", "col"), token_stride=(8, 8), input_size=(x.shape[2], x.shape[3]))


def test_stub_model_map_points_at_the_hot_patch() -> None:
    model = MedClr({"cxr": Tower(OneHotPatches((3, 1)), nn.Identity())}, 4, LogitScale(10.0, 100.0))
    geometry = Geometry(original_size=(100, 50), resized_size=(32, 16), pad=(0, 0, 8, 8))
    sim = g.cxr_similarity_map(model, torch.zeros(1, 32, 32), geometry, torch.tensor([2.0, 0.0, 0.0, 0.0]))
    assert sim.shape == (100, 50) and sim.max() == pytest.approx(1.0) and sim.min() == pytest.approx(0.0)
    # patch (3, 1): input rows 24-32, cols 8-16 -> original rows 75-100, cols 0-25 (input = 0.32 original + pad 8)
    assert np.unravel_index(int(np.argmax(sim)), sim.shape) == (87, 12)
    assert g.pointing_game(sim, [[0, 75, 25, 25]]) == 1.0
    batch = g.cxr_similarity_maps(model, torch.zeros(2, 1, 32, 32), [geometry, geometry],
                                  [torch.eye(4)[:1], torch.eye(4)[:3]])
    assert [m.shape for m in batch] == [(1, 100, 50), (3, 100, 50)]
    np.testing.assert_allclose(batch[1][0], sim)


class MeanPooledPatches(OneHotPatches):
    """The same token grid with random tokens, pooled by their mean (a CNN's pooling)."""

    pools_by_mean = True

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        out = super().forward(x)
        tokens = torch.randn_like(out.tokens)  # [B, N, 4]
        return EncoderOutput(pooled=tokens.mean(dim=1), tokens=tokens, grid=out.grid, grid_axes=out.grid_axes,
                             token_stride=out.token_stride, input_size=out.input_size)


def test_contribution_map_of_a_mean_pooled_tower_averages_to_the_cosine() -> None:
    torch.manual_seed(0)
    linear = MedClr({"cxr": Tower(MeanPooledPatches((0, 0)), nn.Linear(4, 4))}, 4, LogitScale(10.0, 100.0))
    assert g.map_kind(linear, "cxr") == "contribution" and "map mean = cosine" in g.MAP_LABELS["contribution"]
    x, phrase = torch.zeros(1, 1, 32, 32), torch.tensor([[0.3, -1.0, 0.5, 2.0]])
    torch.manual_seed(1)
    grids, _ = g.cxr_similarity_grids(linear, x, phrase)  # [1, 4, 4] per image
    torch.manual_seed(1)
    cosine = torch.cosine_similarity(linear.encode("cxr", x), phrase).item()
    assert grids[0].mean() == pytest.approx(cosine, abs=1e-5)  # M = u . t / |p| averages to cos(p, t)
    assert np.abs(grids[0]).max() > 1.0  # contributions are not cosines
    nonlinear = MedClr({"cxr": Tower(MeanPooledPatches((0, 0)), nn.Sequential(nn.Linear(4, 4), nn.ReLU()))}, 4,
                       LogitScale(10.0, 100.0))
    assert g.map_kind(nonlinear, "cxr") == "cosine"


def test_a_grounding_map_readout_can_be_chosen() -> None:
    """``cosine`` reads any tower as BioViL does (each unit token's cosine with the phrase); ``contribution`` is
    refused, with the fix, where the score does not decompose."""
    torch.manual_seed(0)
    linear = MedClr({"cxr": Tower(MeanPooledPatches((0, 0)), nn.Linear(4, 4))}, 4, LogitScale(10.0, 100.0))
    x, phrase = torch.zeros(1, 1, 32, 32), torch.tensor([[0.3, -1.0, 0.5, 2.0]])
    assert [g.map_kind(linear, "cxr", r) for r in g.MAP_READOUTS] == ["contribution", "contribution", "cosine"]
    torch.manual_seed(1)
    cosine_grids, _ = g.cxr_similarity_grids(linear, x, phrase, "cosine")  # [1, 4, 4] per image
    torch.manual_seed(1)
    tokens = linear.encode_tokens("cxr", x, normalize=False).token_map()[0]  # [4, 4, D]: the same random tokens
    expected = torch.cosine_similarity(tokens, phrase[0].expand_as(tokens), dim=-1).detach().numpy()  # [4, 4]
    np.testing.assert_allclose(cosine_grids[0][0], expected, atol=1e-5)
    torch.manual_seed(1)
    auto_grids, _ = g.cxr_similarity_grids(linear, x, phrase)
    assert not np.allclose(auto_grids[0], cosine_grids[0])  # auto kept the contributions
    nonlinear = MedClr({"cxr": Tower(MeanPooledPatches((0, 0)), nn.Sequential(nn.Linear(4, 4), nn.ReLU()))}, 4,
                       LogitScale(10.0, 100.0))
    assert g.map_readouts(linear, "cxr") == g.MAP_READOUTS and g.map_readouts(nonlinear, "cxr") == ("auto", "cosine")
    with pytest.raises(MedclrInputError, match="--grounding-map cosine"):
        g.cxr_similarity_grids(nonlinear, x, phrase, "contribution")
    with pytest.raises(ValueError, match="unknown grounding map readout"):
        g.map_kind(linear, "cxr", "gradcam")  # type: ignore[arg-type]


def test_smooth_grid_is_a_mirrored_gaussian_over_the_map_axes_only() -> None:
    """A unit impulse in the middle of a 1 x 9 x 9 grid spreads into the sampled, normalised Gaussian (scipy truncates
    at 4 sigma: radius 4 for sigma 1); each phrase's map is blurred alone; sigma 0 is the identity."""
    grid = np.zeros((2, 9, 9))
    grid[0, 4, 4] = 1.0
    blurred = g.smooth_grid(grid, 1.0)
    taps = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    taps /= taps.sum()
    np.testing.assert_allclose(blurred[0], np.outer(taps, taps), atol=1e-12)
    np.testing.assert_array_equal(blurred[1], 0.0)  # the other phrase's map stays apart
    edge = np.zeros((1, 9, 9))
    edge[0, 0, 0] = 1.0  # mirrored edges (reflect): nothing leaks out, the mass stays 1
    assert g.smooth_grid(edge, 1.0).sum() == pytest.approx(1.0)
    assert g.smooth_grid(grid, 0.0) is grid
    for bad in (-0.5, math.inf, math.nan):
        with pytest.raises(ValueError, match="smoothing sigma"):
            g.smooth_grid(grid, bad)


def test_similarity_grids_are_smoothed_on_request() -> None:
    torch.manual_seed(0)
    linear = MedClr({"cxr": Tower(MeanPooledPatches((0, 0)), nn.Linear(4, 4))}, 4, LogitScale(10.0, 100.0))
    x, phrase = torch.zeros(1, 1, 32, 32), torch.tensor([[0.3, -1.0, 0.5, 2.0]])
    torch.manual_seed(1)
    raw, _ = g.cxr_similarity_grids(linear, x, phrase, "cosine")
    torch.manual_seed(1)
    smoothed, _ = g.cxr_similarity_grids(linear, x, phrase, "cosine", smooth=g.BIOVIL_SMOOTHING_SIGMA)
    np.testing.assert_allclose(smoothed[0], g.smooth_grid(raw[0], 1.5), atol=1e-6)
    assert not np.allclose(smoothed[0], raw[0])
    with pytest.raises(ValueError, match="smoothing sigma"):
        g.cxr_similarity_grids(linear, x, phrase, "cosine", smooth=-1.0)


# -------------------------------------------------------------------------------------- tiny model and world
@pytest.fixture(scope="module")
def tiny_model(tiny_bert_dir: Path) -> MedClr:  # noqa: F811
    torch.manual_seed(0)
    return build_model(model_config_from_dict(model_dict(tiny_bert_dir, lora=False))).eval()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 10-patient synthetic world and its MS-CXR manifest (``medclr prepare ms-cxr``)."""
    from medclr.data.prepare import PrepareOptions, prepare
    from medclr.synth.world import generate_world

    root = tmp_path_factory.mktemp("grounding_world")
    generate_world(root / "world", preset="tiny", patients=10, seed=0, workers=1, progress=False)
    prepare("ms-cxr", PrepareOptions(root=root / "world" / "ms-cxr", workers=1, progress=False), root / "ms.parquet")
    return root / "world", root / "ms.parquet"


def test_tiny_model_maps_have_the_right_shape(tiny_model: MedClr) -> None:
    phrase = tiny_model.encode("report", ["Small left pleural effusion."])[0]  # [D]
    geometry = Geometry(original_size=(50, 37), resized_size=(32, 24), pad=(0, 0, 4, 4))
    sim = g.cxr_similarity_map(tiny_model, torch.rand(1, 32, 32), geometry, phrase)
    assert sim.shape == (50, 37) and np.isfinite(sim).all() and np.abs(sim).max() <= 1.0 + 1e-5
    ecg_map = g.ecg_similarity_map(tiny_model, torch.randn(12, 500), phrase)
    assert ecg_map.shape == (12, 500) and np.isfinite(ecg_map).all()


def test_world_truth_records_ecg_findings(world: tuple[Path, Path]) -> None:
    truth = pd.read_csv(world[0] / "truth.csv", keep_default_na=False)
    findings = [f for cell in truth["ecg_findings"] for f in json.loads(cell)]
    assert findings and {f["label"] for f in findings} <= {"MI", "STTC"}
    for f in findings:
        assert set(f["leads"]) <= set(STANDARD_LEADS) and f["phrase"]
        assert all(0.0 <= t0 < t1 <= 10.0 for t0, t1 in f["segments_s"])


def test_evaluate_grounding_on_a_tiny_world(tiny_model: MedClr, world: tuple[Path, Path], tmp_path: Path) -> None:
    root, manifest = world
    out = g.evaluate_grounding(tiny_model, manifest, settings=SETTINGS, truth=root / "truth.csv",
                               cache_dir=tmp_path, batch_size=3, plots_dir=tmp_path / "plots", max_plots=1)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["grounding_cxr_01.png", "grounding_ecg_01.png"]
    for key in ("cnr", "miou", "miou/biovil", "pointing_game", "pointing_game_chance", "pointing_game_reachable",
                "n_phrases", "n_images", "ecg/pointing_game_lead", "ecg/pointing_game_segment", "ecg/lead_auroc",
                "ecg/cnr", "ecg/n"):
        assert key in out and math.isfinite(out[key]), key
    phrases = pd.read_parquet(manifest)["grounding"].map(lambda c: len(json.loads(c))).sum()
    assert out["n_phrases"] + out["n_phrases_other"] == phrases and out["n_images"] == 4
    labels = {e["label"] for c in pd.read_parquet(manifest)["grounding"] for e in json.loads(c)}
    assert all(f"pointing_game/{label}" in out and f"cnr/{label}" in out for label in labels)
    assert 0.0 <= out["pointing_game"] <= 1.0 and 0.0 <= out["miou"] <= 1.0 and out["ecg/n"] >= 4
    assert out["pointing_game_chance"] < out["pointing_game_reachable"] <= 1.0
    # Zhang et al.'s 15 px tolerance: every strict hit is a tolerant hit, and chance grows with the boxes
    assert out["pointing_game"] <= out["pointing_game@15px"] and all(f"pointing_game@15px/{x}" in out for x in labels)
    assert out["pointing_game_chance"] < out["pointing_game@15px_chance"] < 1.0
    strict = g.evaluate_grounding(tiny_model, manifest, settings=SETTINGS, cache_dir=tmp_path, reps=0,
                                  pointing_tolerance=0.0)
    assert not any("@" in k for k in strict) and strict["pointing_game"] == out["pointing_game"]
    small = g.evaluate_grounding(tiny_model, manifest, settings=SETTINGS, cache_dir=tmp_path, max_rows=1)
    assert small["n_images"] == 1 and not any(k.startswith("ecg/") for k in small)


def test_headline_covers_ms_cxr_findings_and_others_keep_their_own_keys(tiny_model: MedClr, world: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    """MS-CXR grades eight findings; a phrase of another (the world also boxes support devices) keeps its per-label
    keys and joins the all_categories means, but not the headline."""
    _, manifest = world
    entries = [e for c in pd.read_parquet(manifest)["grounding"] for e in json.loads(c)]
    counts = pd.Series([e["label"] for e in entries]).value_counts()
    every = g.evaluate_cxr_grounding(tiny_model, manifest, SETTINGS, cache_dir=tmp_path, reps=0, categories=None)
    assert every["n_phrases"] == len(entries) and every["n_phrases_other"] == 0
    assert not any(k.startswith("all_categories/") for k in every)
    kept = str(counts.index[0])
    one = g.evaluate_cxr_grounding(tiny_model, manifest, SETTINGS, cache_dir=tmp_path, reps=0, categories=[kept])
    assert one["n_phrases"] == counts[kept] and one["n_phrases_other"] == len(entries) - counts[kept] > 0
    assert {label: one[f"n_phrases/{label}"] for label in counts.index} == counts.to_dict()
    assert one["pointing_game"] == pytest.approx(every[f"pointing_game/{kept}"])
    assert one["all_categories/pointing_game"] == pytest.approx(every["pointing_game"])
    for label in counts.index:
        assert one[f"pointing_game/{label}"] == pytest.approx(every[f"pointing_game/{label}"]), label
    assert not any(k.endswith("_ci_low") and "/" in k for k in one)  # other findings get no CI keys of their own


def test_grounding_cis_bracket_the_means(tiny_model: MedClr, world: tuple[Path, Path], tmp_path: Path) -> None:
    root, manifest = world
    out = g.evaluate_grounding(tiny_model, manifest, settings=SETTINGS, truth=root / "truth.csv", cache_dir=tmp_path,
                               batch_size=8, reps=200, seed=1)
    headline = ("cnr", "miou", "pointing_game", "pointing_game@15px", "ecg/pointing_game_lead",
                "ecg/pointing_game_segment", "ecg/lead_auroc", "ecg/cnr")
    for key in headline:  # a percentile bootstrap of a mean brackets the mean
        low, high = out[f"{key}_ci_low"], out[f"{key}_ci_high"]
        assert math.isfinite(low) and math.isfinite(high), key
        assert low - 1e-9 <= out[key] <= high + 1e-9, key
    assert {k for k in out if k.endswith("_ci_low")} == {f"{k}_ci_low" for k in headline}
    none = g.evaluate_grounding(tiny_model, manifest, settings=SETTINGS, truth=root / "truth.csv", cache_dir=tmp_path,
                                max_rows=2, reps=0)
    assert all(math.isnan(none[f"{k}_ci_{side}"]) for k in headline for side in ("low", "high"))


def test_grounding_input_errors(tiny_model: MedClr, world: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="manifest and/or"):
        g.evaluate_grounding(tiny_model, settings=SETTINGS)
    frame = pd.read_parquet(world[1])
    from medclr.data.manifest import read_manifest, write_manifest

    m = read_manifest(world[1])
    m.frame = frame.drop(columns=["grounding"])
    write_manifest(m, tmp_path / "plain.parquet")
    with pytest.raises(MedclrInputError, match="prepare ms-cxr"):
        g.evaluate_grounding(tiny_model, tmp_path / "plain.parquet", settings=SETTINGS)
    (tmp_path / "truth.csv").write_text("subject_id,ecg_path\n1,x\n")
    with pytest.raises(MedclrInputError, match="ecg_findings"):
        g.evaluate_grounding(tiny_model, truth=tmp_path / "truth.csv", settings=SETTINGS)


def test_overlays_write_pngs(tmp_path: Path) -> None:
    image = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(40, 30)
    sim = np.random.default_rng(0).normal(size=(40, 30)).astype(np.float32)
    path = g.overlay_png(image, sim, [[5, 5, 10, 8]], tmp_path / "cxr.png", "pleural effusion")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ecg = np.random.default_rng(1).normal(size=(12, 200)).astype(np.float32)
    path = g.ecg_overlay_png(ecg, ecg * 0.1, tmp_path / "ecg.png", "Acute anterior infarct", fs=50.0,
                             leads=["V1", "V2"], segments_s=[[1.0, 1.5]])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grounding_task_finds_the_world_truth(tiny_model: MedClr, tiny_bert_dir: Path,  # noqa: F811
                                              world: tuple[Path, Path], tmp_path: Path) -> None:
    import yaml

    from medclr.config import load_config, save_config
    from medclr.eval.tasks import EvalContext, EvalRequest

    root, manifest = world
    assert g.world_truth(manifest) == root / "truth.csv"
    recipe = {"data": {"manifest": str(manifest), "image_size": 32, "ecg_fs": 50.0, "ecg_samples": 500},
              "model": model_dict(tiny_bert_dir, lora=False)}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    run.mkdir()
    save_config(load_config(tmp_path / "recipe.yaml"), run / "config.yaml")
    request = EvalRequest(run, manifest, "grounding", progress=False, pointing_tolerance=7.5)
    ctx = EvalContext(request, tiny_model, ["train", "val", "test"], "all splits")
    out = g.evaluate_grounding_task(ctx)
    # the run's recipe trained on this manifest's train split: those images are left out and counted
    assert out["n_images"] + out["n_images_excluded"] == 4 and out["n_images_excluded"] >= 1
    assert out["ecg/n"] >= 4 and "mIoU" in ctx.protocol["grounding_protocol"]
    assert "pointing_game@7.5px" in out and "within 7.5 original pixels" in ctx.protocol["grounding_protocol"]
    # MS-CXR's protocol by default: cosine maps, headline over its eight findings
    assert "(--grounding-map cosine): cxr: cosine of the unit phrase" in ctx.protocol["grounding_protocol"]
    assert "over MS-CXR's eight findings (Atelectasis, " in ctx.protocol["grounding_protocol"]
    assert "blurred" not in ctx.protocol["grounding_protocol"]
    smoothed = EvalContext(replace(request, grounding_smooth=1.5), tiny_model, ["train", "val", "test"], "all splits")
    blurred = g.evaluate_grounding_task(smoothed)  # BioViL's engine's blur: another map, the same phrases
    assert "blurred by a Gaussian of sigma 1.5 cells" in smoothed.protocol["grounding_protocol"]
    assert blurred["n_phrases"] == out["n_phrases"] and blurred["cnr"] != out["cnr"]
    # this tiny model's X-ray tower is a [CLS]-pooled ViT: auto reads cosine maps, contribution maps are refused
    assert g.map_kind(tiny_model, "cxr") == "cosine"
    with pytest.raises(MedclrInputError, match="the cxr tower does not"):
        g.evaluate_grounding_task(EvalContext(replace(request, grounding_map="contribution"), tiny_model,
                                              ["train", "val", "test"], "all splits"))


def test_reexports_are_the_split_modules_names() -> None:
    import inspect

    for module in (grounding_maps, grounding_metrics):
        public = [n for n, f in inspect.getmembers(module, inspect.isfunction)
                  if not n.startswith("_") and f.__module__ == module.__name__]
        assert public and all(n in g.__all__ and getattr(g, n) is getattr(module, n) for n in public)
    assert all(hasattr(g, n) for n in g.__all__)
    assert g.MIOU_THRESHOLDS is grounding_metrics.MIOU_THRESHOLDS and g.Boxes is grounding_metrics.Boxes


def test_docstring_examples() -> None:
    import doctest

    results = [doctest.testmod(m) for m in (g, grounding_maps, grounding_metrics)]
    assert sum(r.attempted for r in results) > 0 and not any(r.failed for r in results)
