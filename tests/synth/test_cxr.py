"""The chest X-ray phantom: determinism, geometry, laterality and that each finding is drawn inside its box."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import pytest

from medclr.synth.cxr import Box, CxrRender, grounding_phrases, render_cxr, render_cxr_detailed, to_stored
from medclr.synth.state import CXR_FINDINGS, CxrAcquisition, CxrFindings, Incidental, Side

SIZE = 320
ACQ = CxrAcquisition(size=SIZE, noise=0.02)


def _render(findings: CxrFindings, seed: int = 7, acq: CxrAcquisition = ACQ) -> CxrRender:
    return render_cxr_detailed(findings, acq, np.random.default_rng(seed))


def _only(boxes: list[Box], label: str) -> list[Box]:
    return [b for b in boxes if b.label == label]


def _mean_in(image: np.ndarray, box: Box) -> float:
    x0, y0 = int(box.x), int(box.y)
    return float(image[y0:y0 + int(np.ceil(box.h)), x0:x0 + int(np.ceil(box.w))].mean())


def _outside(image: np.ndarray, boxes: list[Box], margin: int) -> np.ndarray:
    """Mask of pixels farther than ``margin`` from every box."""
    keep = np.ones(image.shape, dtype=bool)
    for b in boxes:
        y0, x0 = max(0, int(b.y) - margin), max(0, int(b.x) - margin)
        keep[y0:int(b.y + b.h) + margin + 1, x0:int(b.x + b.w) + margin + 1] = False
    return keep


ALL = CxrFindings(
    cardiomegaly="moderate", effusion_sides=("right", "left"), effusion_severity="moderate",
    pneumothorax_side="left", consolidation_lobe="right upper", pneumonia=True, edema="mild",
    atelectasis_sides=("left",), opacity_lobe="lingula", support_devices=("ett", "central line", "pacemaker"),
)


def test_deterministic_for_a_seed() -> None:
    a_img, a_boxes = render_cxr(ALL, ACQ, np.random.default_rng(3))
    b_img, b_boxes = render_cxr(ALL, ACQ, np.random.default_rng(3))
    c_img, _ = render_cxr(ALL, ACQ, np.random.default_rng(4))
    assert np.array_equal(a_img, b_img)
    assert a_boxes == b_boxes
    assert a_img.shape != c_img.shape or not np.array_equal(a_img, c_img)


@pytest.mark.parametrize("view", ["PA", "AP"])
@pytest.mark.parametrize("size", [256, 400])
def test_shape_dtype_range(size: int, view: Literal["PA", "AP"]) -> None:
    for seed in range(3):
        img, _ = render_cxr(CxrFindings(), CxrAcquisition(size=size, view=view), np.random.default_rng(seed))
        h, w = img.shape
        assert img.dtype == np.float32
        assert h == size and 0.78 * size <= w <= size  # portrait or square
        assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
        assert float(img.std()) > 0.1  # a real picture, not a flat field


def test_looks_like_a_radiograph() -> None:
    """Lungs dark, mediastinum and abdomen bright, heart bulging to the image right."""
    out = _render(CxrFindings())
    img = out.image
    right_lung, left_lung, heart = out.anatomy["right lung"], out.anatomy["left lung"], out.anatomy["heart"]
    h, w = img.shape
    abdomen = float(img[int(0.92 * h):, int(0.35 * w):int(0.65 * w)].mean())
    for lung in (right_lung, left_lung):
        assert _mean_in(img, lung) < abdomen - 0.2
    assert right_lung.center[0] < w / 2 < left_lung.center[0]  # the patient's right lung is on the image's left
    heart_cx = heart.center[0]
    assert heart_cx > w / 2  # bulges to the patient's left = image right
    assert heart.x + heart.w - w / 2 > w / 2 - heart.x  # more of the heart right of the midline than left
    assert 0.38 <= out.ctr <= 0.52


def test_boxes_inside_the_image_and_labelled() -> None:
    for seed in range(4):
        img, boxes = render_cxr(ALL, ACQ, np.random.default_rng(seed))
        h, w = img.shape
        labels = {b.label for b in boxes}
        assert labels == {"Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Pneumonia", "Edema", "Atelectasis",
                          "Lung Opacity", "Support Devices"}
        assert labels <= set(CXR_FINDINGS)
        assert len(_only(boxes, "Pleural Effusion")) == 2 and len(_only(boxes, "Support Devices")) == 3
        for b in boxes:
            assert b.w > 0 and b.h > 0 and b.location
            assert b.x >= 0 and b.x + b.w <= w and b.y >= 0 and b.y + b.h <= h


def test_no_finding_has_no_boxes() -> None:
    assert _render(CxrFindings()).boxes == []


@pytest.mark.parametrize(("findings", "label", "sign"), [
    (CxrFindings(effusion_sides=("left",), effusion_severity="mild"), "Pleural Effusion", 1),
    (CxrFindings(effusion_sides=("right",), effusion_severity="severe"), "Pleural Effusion", 1),
    (CxrFindings(pneumothorax_side="right"), "Pneumothorax", -1),
    (CxrFindings(consolidation_lobe="left lower", pneumonia=True), "Pneumonia", 1),
    (CxrFindings(consolidation_lobe="right middle"), "Consolidation", 1),
    (CxrFindings(edema="mild"), "Edema", 1),
    (CxrFindings(atelectasis_sides=("right",)), "Atelectasis", 1),
    (CxrFindings(opacity_lobe="left upper"), "Lung Opacity", 1),
    (CxrFindings(support_devices=("pacemaker",)), "Support Devices", 1),
])
def test_finding_changes_its_box(findings: CxrFindings, label: str, sign: int) -> None:
    """Same seed with vs without the finding: its box gets brighter (denser) or, for a pneumothorax, darker."""
    base = _render(CxrFindings()).image
    out = _render(findings)
    boxes = _only(out.boxes, label)
    assert boxes
    for b in boxes:
        delta = _mean_in(out.image, b) - _mean_in(base, b)
        assert sign * delta > 0.01, (b, delta)


@pytest.mark.parametrize("findings", [
    CxrFindings(effusion_sides=("right",), effusion_severity="moderate"),
    CxrFindings(atelectasis_sides=("left",)),
    CxrFindings(support_devices=("ett", "central line")),
    CxrFindings(consolidation_lobe="right upper"),
    CxrFindings(cardiomegaly="severe"),
])
def test_finding_is_drawn_only_in_its_box(findings: CxrFindings) -> None:
    """Nothing visible changes farther than a few pixels from the finding's boxes (same patient, same noise)."""
    base = _render(CxrFindings()).image
    out = _render(findings)
    far = _outside(out.image, out.boxes, margin=6)
    assert np.abs(out.image - base)[far].max() < 0.03
    assert np.abs(out.image - base)[far].mean() < 1e-3
    assert np.abs(out.image - base)[~far].max() > 0.05


def test_cardiomegaly_widens_the_heart() -> None:
    normal = _render(CxrFindings())
    for severity in ("mild", "moderate", "severe"):
        big = _render(CxrFindings(cardiomegaly=severity))
        (box,) = _only(big.boxes, "Cardiomegaly")
        assert box.location == "cardiac silhouette"
        assert box.w > normal.anatomy["heart"].w * 1.15
        assert big.ctr > 0.55 > 0.5 > normal.ctr


def test_laterality_follows_radiology_convention() -> None:
    """The patient's right is on the image's left (PA and AP alike)."""
    views: tuple[Literal["PA", "AP"], ...] = ("PA", "AP")
    for view in views:
        acq = CxrAcquisition(size=SIZE, view=view)
        sides: tuple[tuple[Side, bool], ...] = (("right", True), ("left", False))
        for side, image_left in sides:
            for findings, label in (
                (CxrFindings(effusion_sides=(side,)), "Pleural Effusion"),
                (CxrFindings(pneumothorax_side=side), "Pneumothorax"),
                (CxrFindings(atelectasis_sides=(side,)), "Atelectasis"),
                (CxrFindings(consolidation_lobe=f"{side} upper"), "Consolidation"),  # type: ignore[arg-type]
            ):
                out = _render(findings, acq=acq)
                (box,) = _only(out.boxes, label)
                w = out.image.shape[1]
                assert (box.center[0] < w / 2) == image_left, (view, side, label, box)
                assert box.location.startswith(side)
        edema = _only(_render(CxrFindings(edema="moderate"), acq=acq).boxes, "Edema")
        assert sorted(b.location.split()[0] for b in edema) == ["left", "right"]


def test_regions_follow_anatomy() -> None:
    """Apical pneumothorax high, effusion and atelectasis basal, upper-lobe consolidation above lower-lobe."""
    lungs = _render(CxrFindings()).anatomy["right lung"]
    mid = lungs.y + lungs.h / 2
    ptx = _only(_render(CxrFindings(pneumothorax_side="right")).boxes, "Pneumothorax")[0]
    eff = _only(_render(CxrFindings(effusion_sides=("right",))).boxes, "Pleural Effusion")[0]
    upper = _only(_render(CxrFindings(consolidation_lobe="right upper")).boxes, "Consolidation")[0]
    lower = _only(_render(CxrFindings(consolidation_lobe="right lower")).boxes, "Consolidation")[0]
    assert ptx.y <= lungs.y + 0.1 * lungs.h
    assert eff.center[1] > mid and eff.y + eff.h >= lungs.y + 0.8 * lungs.h
    assert upper.center[1] < mid < lower.center[1]


def test_effusion_height_grows_with_severity() -> None:
    heights = [_only(_render(CxrFindings(effusion_sides=("left",), effusion_severity=s)).boxes,
                     "Pleural Effusion")[0].h for s in ("mild", "moderate", "severe")]
    assert heights[0] < heights[1] < heights[2]


def test_grounding_phrases_join_the_two_sides_of_a_bilateral_finding() -> None:
    out = _render(ALL)
    phrases = dict(grounding_phrases(out.boxes))
    assert sorted(phrases) == sorted([
        "cardiomegaly at the cardiac silhouette", "pleural effusion at both bases", "pneumothorax at the left apex",
        "pneumonia at the right upper lobe", "edema at both perihilar regions", "atelectasis at the left base",
        "lung opacity at the lingula", "endotracheal tube at the trachea",
        "central venous catheter at the superior vena cava", "pacemaker at the left chest wall"])
    assert [b.location for b in phrases["pleural effusion at both bases"]] == ["right base", "left base"]
    assert sum(len(found) for found in phrases.values()) == len(out.boxes)  # every box in exactly one phrase
    one_side = _render(CxrFindings(effusion_sides=("left",), atelectasis_sides=("right",)))
    assert [p for p, _ in grounding_phrases(one_side.boxes)] == [
        "pleural effusion at the left base", "atelectasis at the right base"]


def test_support_device_locations() -> None:
    out = _render(CxrFindings(support_devices=("ett", "pacemaker")))
    ett, pacer = _only(out.boxes, "Support Devices")
    w = out.image.shape[1]
    assert ett.location == "trachea" and abs(ett.center[0] - w / 2) < 0.08 * w and ett.y < 2
    assert pacer.location == "left chest wall" and pacer.x + pacer.w > 0.7 * w  # generator on the image right
    base = _render(CxrFindings()).image
    assert out.image.max() > base.max() - 1e-6 and float((out.image - base).max()) > 0.2  # metal is bright


@pytest.mark.parametrize("bits", [8, 12, 14, 16])
def test_to_stored_bits_and_monochrome1(bits: int) -> None:
    img = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    mono2 = to_stored(img, bits, monochrome1=False)
    mono1 = to_stored(img, bits, monochrome1=True)
    top = 2**bits - 1
    assert mono2.dtype == (np.uint8 if bits <= 8 else np.uint16)
    assert int(mono2.min()) == 0 and int(mono2.max()) == top
    assert np.array_equal(mono1.astype(np.int64), top - mono2.astype(np.int64))  # white is 0 in MONOCHROME1
    assert int(mono1[0, 0]) == top and int(mono1[-1, -1]) == 0
    assert np.array_equal(to_stored(np.array([[-0.5, 1.5]]), bits, False), np.array([[0, top]]))


def test_to_stored_rejects_bad_bits() -> None:
    with pytest.raises(ValueError, match="bits_stored"):
        to_stored(np.zeros((2, 2)), 17, False)


@pytest.mark.parametrize("name", ["sternotomy", "aortic calcification", "hiatal hernia", "cholecystectomy clips"])
def test_incidental_finding_is_drawn_where_it_belongs_and_moves_no_box(name: Incidental) -> None:
    """Wires, clips, calcification and hernia add pixels near the midline or below the right dome, change no box."""
    plain = _render(ALL)
    out = _render(replace(ALL, incidental=(name,)))
    assert out.boxes == plain.boxes
    diff = np.abs(out.image - plain.image) > 0.03
    rows, cols = np.nonzero(diff)
    assert rows.size > 0, name
    heart = plain.anatomy["heart"]
    if name == "cholecystectomy clips":  # right upper quadrant: the image's left, below the right lung
        right_lung = plain.anatomy["right lung"]
        assert cols.max() < SIZE / 2 and rows.min() > right_lung.y + 0.6 * right_lung.h
    else:  # sternum, aortic knob, retrocardiac: within the mediastinum's width of the midline
        assert np.abs(cols - out.image.shape[1] / 2).max() < heart.w, name


def test_lung_volumes_change_the_lungs_height() -> None:
    """Low volumes shorten the lungs, hyperinflation lengthens them; scoliosis leaves them alone."""
    height = {name: _render(CxrFindings(incidental=names)).anatomy["right lung"].h
              for name, names in (("normal", ()), ("low", ("low lung volumes",)), ("copd", ("hyperinflation",)),
                                  ("scoliosis", ("dextroconvex scoliosis",)))}
    assert height["low"] < 0.92 * height["normal"] < 0.92 * 1.1 * height["normal"] < height["copd"]
    assert height["scoliosis"] == height["normal"]


def test_scoliosis_bows_the_spine_toward_its_convex_side() -> None:
    """Dextroconvex (convex to the patient's right) moves the upper thoracic spine to the image's left."""
    plain = _render(CxrFindings(), acq=replace(ACQ, noise=0.0))
    band = slice(int(0.02 * SIZE), int(0.12 * SIZE))  # above the lungs, between the clavicles: the spine is visible

    def spine_col(image: np.ndarray) -> float:
        w = image.shape[1]
        mid = image[band, w // 2 - 25:w // 2 + 25].mean(axis=0)
        return float(np.argmax(mid)) + w // 2 - 25

    dextro = _render(CxrFindings(incidental=("dextroconvex scoliosis",)), acq=replace(ACQ, noise=0.0))
    levo = _render(CxrFindings(incidental=("levoconvex scoliosis",)), acq=replace(ACQ, noise=0.0))
    assert spine_col(dextro.image) < spine_col(plain.image) < spine_col(levo.image)
