"""The data card's simple baselines: the supervised X-ray CNN learns a visible finding, skips rare labels, and its
class activation maps point at where the finding is."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from medclr.synth.baselines import MIN_POSITIVES, SupervisedCnn, cam_pointing_game, cnn_auroc, train_cnn
from medclr.types import Geometry

N, SIDE = 160, 128  # the demo CNN's input size: a 16 x 16 token grid, 75 px receptive field
PATCH = [84.0, 12.0, 24.0, 24.0]  # x, y, w, h: a bright patch in the upper right when the finding is present


@pytest.fixture(scope="module")
def world() -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.4, size=(N, SIDE, SIDE)).astype(np.float32)
    finding = rng.random(N) < 0.5
    x, y, w, h = (int(v) for v in PATCH)
    images[finding, y:y + h, x:x + w] += 0.5
    rare = np.zeros(N)
    rare[:MIN_POSITIVES - 1] = 1  # too few positives to score
    labels = pd.DataFrame({"cxr/Patch": finding.astype(float), "cxr/Rare": rare})
    return images, labels, np.arange(N) < 120


@pytest.fixture(scope="module")
def model(world: tuple[np.ndarray, pd.DataFrame, np.ndarray]) -> SupervisedCnn:
    images, labels, train = world
    return train_cnn(images, labels, train, steps=20)


def test_supervised_cnn_learns_a_visible_finding_and_skips_a_rare_label(
        model: SupervisedCnn, world: tuple[np.ndarray, pd.DataFrame, np.ndarray]) -> None:
    out = cnn_auroc(model, *world)
    assert out["cxr/Patch"] > 0.9
    assert math.isnan(out["cxr/Rare"])


def test_class_activation_maps_point_at_the_finding_on_held_out_images(
        model: SupervisedCnn, world: tuple[np.ndarray, pd.DataFrame, np.ndarray]) -> None:
    images, labels, train = world
    finding = labels["cxr/Patch"].to_numpy() > 0

    def cells(box: list[float]) -> list[str]:
        return [json.dumps([{"label": "Patch", "location": "upper right", "box": box}]) if f else "[]"
                for f in finding]

    geometries = [Geometry((SIDE, SIDE))] * N
    hit = cam_pointing_game(model, images, geometries, cells(PATCH), train)
    assert hit.loc["all", "n_phrases"] == finding[~train].sum() == hit.loc["Patch", "n_phrases"]
    assert hit.loc["MS-CXR findings", "n_phrases"] == 0  # "Patch" is none of MS-CXR's eight findings
    assert hit.loc["all", "pointing_game"] > 0.9
    assert hit.loc["all", "pointing_game@15px"] >= hit.loc["all", "pointing_game"]  # every strict hit is within 15 px
    decoy = [12.0, 84.0, 24.0, 24.0]  # the same finding "annotated" in the lower left, where nothing is drawn
    missed = cam_pointing_game(model, images, geometries, cells(decoy), train).loc["all"]
    assert missed["pointing_game"] < 0.2 and missed["pointing_game@15px"] < 0.2  # far from the patch either way
