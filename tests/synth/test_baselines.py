"""The data card's simple baselines: the supervised X-ray CNN learns a visible finding and skips rare labels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from medclr.synth.baselines import MIN_POSITIVES, cnn_auroc


def test_supervised_cnn_learns_a_visible_finding_and_skips_a_rare_label() -> None:
    rng = np.random.default_rng(0)
    n, side = 160, 32
    images = rng.uniform(0.2, 0.4, size=(n, side, side)).astype(np.float32)
    finding = rng.random(n) < 0.5
    images[finding, 4:12, 18:28] += 0.5  # a bright patch in the upper right when the finding is present
    rare = np.zeros(n)
    rare[:MIN_POSITIVES - 1] = 1  # too few positives to score
    labels = pd.DataFrame({"cxr/Patch": finding.astype(float), "cxr/Rare": rare})
    train = np.arange(n) < 120
    out = cnn_auroc(images.reshape(n, -1), labels, train, steps=60)
    assert out["cxr/Patch"] > 0.9
    assert math.isnan(out["cxr/Rare"])
