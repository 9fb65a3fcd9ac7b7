"""Typed boundaries: Geometry round trips, Batch validation, EncoderOutput token maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medclr.types import Batch, EncoderOutput, Geometry, TokenizedText, select_rows


def test_geometry_maps_points_back_and_forth() -> None:
    g = Geometry(original_size=(300, 200), crop=(20, 10, 260, 180), resized_size=(130, 90), pad=(3, 5, 19, 19))
    assert g.output_size == (138, 128)
    assert g.scale == pytest.approx((0.5, 0.5))
    pts = np.array([[20.0, 10.0], [280.0, 190.0], [150.0, 100.0]])  # corners and centre of the crop
    out = g.from_original(pts)
    assert out.tolist() == [[3.0, 19.0], [133.0, 109.0], [68.0, 64.0]]
    np.testing.assert_allclose(g.to_original(out), pts)


def test_geometry_flip_and_dict_round_trip() -> None:
    g = Geometry(original_size=(64, 64), resized_size=(32, 32), flipped=True)
    np.testing.assert_allclose(g.to_original(np.array([0.0, 0.0])), [0.0, 64.0])
    assert Geometry.from_dict(g.to_dict()) == g
    assert Geometry.from_dict(Geometry(original_size=(5, 7)).to_dict()).crop_box == (0, 0, 5, 7)


def test_batch_checks_rows_and_defaults_present() -> None:
    batch = Batch(inputs={"cxr": torch.zeros(3, 1, 8, 8), "report": ["a", "b", "c"]},
                  present={"cxr": torch.tensor([True, False, True])})
    assert batch.size == 3 and batch.present["report"].all()
    with pytest.raises(ValueError, match="disagree"):
        Batch(inputs={"cxr": torch.zeros(3, 1, 8, 8), "report": ["a"]}, present={})
    moved = batch.to("cpu")
    assert moved.modalities == ["cxr", "report"]


def test_select_rows_for_every_input_kind() -> None:
    idx = torch.tensor([2, 0])
    text = TokenizedText(torch.arange(6).reshape(3, 2), torch.ones(3, 2, dtype=torch.long))
    assert select_rows(["a", "b", "c"], idx) == ["c", "a"]
    assert select_rows(text, idx).input_ids.tolist() == [[4, 5], [0, 1]]  # type: ignore[union-attr]
    assert select_rows(torch.arange(3), idx).tolist() == [2, 0]  # type: ignore[union-attr]


def test_token_map_reshapes_onto_the_grid() -> None:
    out = EncoderOutput(pooled=torch.zeros(2, 4), tokens=torch.arange(2 * 6 * 4.0).reshape(2, 6, 4), grid=(2, 3))
    assert out.token_map().shape == (2, 2, 3, 4)
    assert torch.equal(out.token_map()[1, 1, 2], out.tokens[1, 5])  # type: ignore[index]
    with pytest.raises(ValueError):
        EncoderOutput(pooled=torch.zeros(2, 4)).token_map()
