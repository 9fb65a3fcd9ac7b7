"""Phrase grounding: where on an X-ray (or on which ECG leads and beats) does a phrase's embedding point?

The similarity maps and their geometry (token grid -> original pixels or ECG samples) are in
:mod:`medclr.eval.grounding_maps`; CNR, pointing game, mIoU and the ECG metrics, with their definitions, in
:mod:`medclr.eval.grounding_metrics`. This module evaluates them (X-ray phrases with boxes from an
MS-CXR-style manifest, ECG findings from a synthetic world's ``truth.csv``), with percentile-bootstrap 95% CIs
of the headline means over phrases (X-ray) and over findings (ECG), and draws overlay PNGs. It re-exports the
public names of both modules.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from medclr.data.cache import CacheSettings, build_cache
from medclr.data.dataset import StudyDataset
from medclr.data.manifest import read_manifest
from medclr.data.sources.ms_cxr import CATEGORIES as MS_CXR_CATEGORIES
from medclr.data.transforms import fit_ecg
from medclr.errors import MedclrInputError
from medclr.eval.grounding_maps import (
    BIOVIL_SMOOTHING_SIGMA,
    MAP_DESCRIPTIONS,
    MAP_LABELS,
    MAP_READOUTS,
    MapReadout,
    _eval_mode,
    cxr_grid_peaks,
    cxr_grid_to_original,
    cxr_similarity_grids,
    cxr_similarity_map,
    cxr_similarity_maps,
    ecg_grid_to_signal,
    ecg_similarity_map,
    ecg_similarity_maps,
    map_kind,
    map_readouts,
    smooth_grid,
)
from medclr.eval.grounding_metrics import (
    BIOVIL_THRESHOLDS,
    MIOU_THRESHOLDS,
    POINTING_TOLERANCE_PX,
    Boxes,
    _lead_index,
    _region,
    boxes_mask,
    cnr,
    ecg_lead_auroc,
    ecg_pointing_game_lead,
    ecg_pointing_game_segment,
    miou,
    near_region,
    pointing_game,
    pointing_game_key,
    segments_mask,
)
from medclr.eval.metrics import bootstrap_mean_ci
from medclr.io.leads import STANDARD_LEADS
from medclr.models.model import MedClr

if TYPE_CHECKING:
    from medclr.eval.tasks import EvalContext

__all__ = [  # this module's public names and those of grounding_maps and grounding_metrics (re-exported)
    "BIOVIL_SMOOTHING_SIGMA", "BIOVIL_THRESHOLDS", "MAP_LABELS", "MAP_READOUTS", "MIOU_THRESHOLDS",
    "POINTING_TOLERANCE_PX", "Boxes", "MapReadout", "boxes_mask", "cnr", "cxr_grid_peaks", "cxr_grid_to_original",
    "cxr_similarity_grids", "cxr_similarity_map", "cxr_similarity_maps", "ecg_grid_to_signal", "ecg_lead_auroc",
    "ecg_overlay_png", "ecg_pointing_game_lead", "ecg_pointing_game_segment", "ecg_similarity_map",
    "ecg_similarity_maps", "evaluate_cxr_grounding", "evaluate_ecg_grounding", "evaluate_grounding",
    "evaluate_grounding_task", "map_kind", "map_readouts", "miou", "near_region", "overlay_png", "pointing_game",
    "pointing_game_key", "segments_mask", "smooth_grid", "world_truth",
]


# ------------------------------------------------------------------------------------------------- evaluation
def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _summary(records: list[dict[str, Any]], metrics: Sequence[str], headline: Sequence[str], prefix: str = "", *,
             reps: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean of each metric over the records (NaN skipped); for the ``headline`` metrics also the mean per ``label``
    and a percentile-bootstrap 95% CI of the overall mean over the records with a value (``_ci_low``,
    ``_ci_high``: ``reps`` resamples drawn with ``seed``; NaN when ``reps`` is 0 or no record has a value)."""
    out = {f"{prefix}{k}": _nanmean([r[k] for r in records]) for k in metrics}
    for k in headline:
        values = np.array([r[k] for r in records], dtype=np.float64)
        values = values[~np.isnan(values)]  # [n] records with a value
        low, high = bootstrap_mean_ci(values[:, None], reps, seed) if reps > 0 and len(values) \
            else (np.full(1, np.nan),) * 2
        out[f"{prefix}{k}_ci_low"], out[f"{prefix}{k}_ci_high"] = float(low[0]), float(high[0])
    return out | _per_label(records, headline, prefix)


def _per_label(records: list[dict[str, Any]], metrics: Sequence[str], prefix: str = "") -> dict[str, float]:
    """``<prefix><metric>/<label>``: each metric's mean (NaN skipped) over the records of each label."""
    out: dict[str, float] = {}
    for label in sorted({r["label"] for r in records}):
        mine = [r for r in records if r["label"] == label]
        out.update({f"{prefix}{k}/{label}": _nanmean([r[k] for r in mine]) for k in metrics})
    return out


def _phrases(cell: str, where: Path, study: str) -> list[dict[str, Any]]:
    try:
        entries = json.loads(cell)
        return [{"phrase": str(e["phrase"]), "label": str(e["label"]),
                 "boxes": [[float(v) for v in box] for box in e["boxes"]],
                 "image_size": [float(v) for v in e.get("image_size") or ()]} for e in entries]
    except (ValueError, TypeError, KeyError) as err:
        raise MedclrInputError(where, f"study {study}: grounding is not the MS-CXR JSON list ({err})",
                               "re-create the manifest with `medclr prepare ms-cxr`") from err


def _scale_boxes(boxes: list[list[float]], image_size: list[float], original: tuple[int, int]) -> list[list[float]]:
    """Boxes drawn on an image of ``image_size [W, H]`` onto the image as read (``original (H0, W0)``)."""
    if len(image_size) != 2 or (image_size[0] == original[1] and image_size[1] == original[0]):
        return boxes
    sx, sy = original[1] / image_size[0], original[0] / image_size[1]
    return [[x * sx, y * sy, w * sx, h * sy] for x, y, w, h in boxes]


def _split_mask(values: np.ndarray, splits: Sequence[str] | None) -> np.ndarray:
    return np.ones(len(values), dtype=bool) if splits is None else np.isin(values.astype(str), list(splits))


def evaluate_cxr_grounding(model: MedClr, manifest: str | Path, settings: CacheSettings, *,
                           splits: Sequence[str] | None = None, max_rows: int | None = None,
                           cache_dir: str | Path | None = None, batch_size: int = 16, progress: bool = False,
                           plots_dir: str | Path | None = None, max_plots: int = 4, reps: int = 1000,
                           seed: int = 0, exclude_images: Collection[Path] = (),
                           pointing_tolerance: float = POINTING_TOLERANCE_PX, readout: MapReadout = "cosine",
                           categories: Collection[str] | None = MS_CXR_CATEGORIES, smooth: float = 0.0
                           ) -> dict[str, float]:
    """X-ray phrase grounding over the rows of ``manifest`` that have a ``grounding`` JSON (MS-CXR, or the synthetic
    world's ``ms-cxr/`` prepared with ``medclr prepare ms-cxr``) in ``splits`` (None: every such row; MS-CXR v1.0
    was a zero-shot benchmark as a whole). Images come from the preprocessed cache built with the run's
    ``settings`` (the training path, geometry included). Keys: ``cnr``, ``miou``, ``miou/biovil``,
    ``pointing_game``, ``pointing_game_chance`` (mean box area fraction), ``pointing_game_reachable`` (the share
    of phrases whose boxes hold a token-grid cell centre, :func:`cxr_grid_peaks`: the grid's own ceiling on the
    pointing game), ``pointing_game@<T>px`` and its ``_chance`` (the maximum within ``pointing_tolerance`` = T
    original pixels of a box: Zhang et al.'s tolerant game; 0 leaves it out), ``n_phrases``, ``n_images``,
    ``cnr|miou|pointing_game[@<T>px]/<label>`` and ``..._ci_low|_ci_high`` (percentile bootstrap over
    phrases, ``reps`` resamples drawn with ``seed``; NaN for ``reps=0``). ``plots_dir``: overlays of the first
    ``max_plots`` phrases. ``exclude_images``: resolved image paths to leave out (those a run trained on), counted
    in ``n_images_excluded``. ``readout``: the maps (:func:`map_kind`; default ``cosine``, MS-CXR's protocol as
    BioViL published it; ``auto``: contributions where the score decomposes, else cosine); ``smooth``: a Gaussian
    blur of the token grid, sigma in cells (:func:`smooth_grid`; 0: none, BioViL's engine: 1.5). ``categories``: the
    findings the headline means and CIs cover (default MS-CXR's eight; None: every phrase). Phrases of other
    findings (the synthetic world also boxes support devices) keep their ``/<label>`` means, are counted in
    ``n_phrases_other``, and join every phrase in the ``all_categories/<metric>`` means; ``n_phrases`` counts the
    headline's phrases, ``n_phrases/<label>`` each finding's.
    """
    map_label = MAP_LABELS[map_kind(model, "cxr", readout)]  # a readout the tower cannot give fails here, first
    path = Path(manifest)
    m = read_manifest(path)
    frame = m.frame
    if "grounding" not in frame.columns or not frame["grounding"].notna().any():
        raise MedclrInputError(path, "the manifest has no phrase grounding boxes (column grounding)",
                               "prepare MS-CXR: medclr prepare ms-cxr --root DIR/ms-cxr --out ms-cxr.parquet")
    wanted = frame["grounding"].notna().to_numpy() & _split_mask(frame["split"].to_numpy(), splits)
    excluded = np.zeros(len(frame), dtype=bool)
    if exclude_images:
        skip = set(exclude_images)
        excluded = wanted & np.array([isinstance(p, str) and m.resolve("cxr", p).resolve() in skip
                                      for p in frame["cxr_path"]], dtype=bool)
        wanted &= ~excluded
    needed = settings if "cxr" in settings.modalities else replace(settings, modalities=(*settings.modalities, "cxr"))
    cache = build_cache(path, needed, cache_dir, progress=progress)
    rows = np.flatnonzero(wanted & cache.rows["cxr_ok"].to_numpy())[:max_rows]  # cache rows = manifest rows
    dataset = StudyDataset(cache, None, ["cxr"])
    tolerant = pointing_game_key(pointing_tolerance) if pointing_tolerance > 0 else None
    records: list[dict[str, Any]] = []
    for start in range(0, len(rows), batch_size):
        chunk = [int(r) for r in rows[start : start + batch_size]]
        samples = [dataset[r] for r in chunk]
        entries = [_phrases(str(frame["grounding"].iat[r]), path, str(frame["study_id"].iat[r])) for r in chunk]
        with _eval_mode(model):
            text = model.encode("report", [e["phrase"] for es in entries for e in es])  # [P, D]
        bounds = np.cumsum([0, *(len(es) for es in entries)])
        grids, layout = cxr_similarity_grids(model, torch.stack([s["cxr"] for s in samples]),
                                             [text[a:b] for a, b in itertools.pairwise(bounds)], readout, smooth)
        for row, es, phrase_grids, sample in zip(chunk, entries, grids, samples, strict=True):
            geometry = sample["cxr_geometry"]
            peaks = cxr_grid_peaks(phrase_grids.shape[1:], layout, geometry)  # [H0, W0]
            for e, grid in zip(es, phrase_grids, strict=True):
                sim = cxr_grid_to_original(grid, layout, geometry)  # [H0, W0], one phrase at a time
                boxes = _scale_boxes(e["boxes"], e["image_size"], geometry.original_size)
                mask, _ = _region(sim, boxes)
                records.append({"label": e["label"], "cnr": cnr(sim, mask), "pointing_game": pointing_game(sim, mask),
                                "miou": miou(sim, mask), "pointing_game_chance": float(mask.mean()),
                                "pointing_game_reachable": float((mask & peaks).any()),
                                "miou/biovil": miou(sim, mask, BIOVIL_THRESHOLDS, normalize=False)})
                if tolerant:
                    near = near_region(mask, pointing_tolerance)
                    records[-1] |= {tolerant: pointing_game(sim, near), f"{tolerant}_chance": float(near.mean())}
                if plots_dir is not None and len(records) <= max_plots:
                    _plot_cxr(m.resolve("cxr", str(frame["cxr_path"].iat[row])), sim, boxes, e,
                              Path(plots_dir) / f"grounding_cxr_{len(records):02d}.png", map_label)
    tolerant_keys = [tolerant] if tolerant else []
    headline = ["cnr", "miou", "pointing_game", *tolerant_keys]
    in_scope = [categories is None or r["label"] in categories for r in records]
    scored = [r for r, keep in zip(records, in_scope, strict=True) if keep]
    other = [r for r, keep in zip(records, in_scope, strict=True) if not keep]
    out = _summary(scored, ["miou/biovil", "pointing_game_chance", "pointing_game_reachable", *headline,
                            *(f"{k}_chance" for k in tolerant_keys)], headline, reps=reps, seed=seed)
    if other:
        out |= _per_label(other, headline)
        out |= {f"all_categories/{k}": _nanmean([r[k] for r in records]) for k in headline}
    counts = {f"n_phrases/{label}": float(n) for label, n in Counter(r["label"] for r in records).items()}
    return {**out, **counts, "n_phrases": float(len(scored)), "n_phrases_other": float(len(other)),
            "n_images": float(len(rows)), "n_images_excluded": float(excluded.sum())}


def _plot_cxr(path: Path, sim: np.ndarray, boxes: Boxes, entry: dict[str, Any], out: Path, label: str) -> None:
    from medclr.io import read_cxr

    image, _ = read_cxr(path)
    overlay_png(image, sim, boxes, out, f"{entry['label']}: {entry['phrase']}", label=label)


def _ecg_offset_s(n_in: int, fs: float, settings: CacheSettings) -> float:
    """Seconds from the record's start to the first sample :func:`fit_ecg` keeps (non-zero for a centre crop)."""
    n = n_in
    if not math.isclose(fs, settings.ecg_fs):
        ratio = Fraction(settings.ecg_fs / fs).limit_denominator(1000)
        n = math.ceil(n_in * ratio.numerator / ratio.denominator)  # scipy's resample_poly output length
    start = (n - settings.ecg_samples) // 2 if settings.ecg_crop == "center" and n > settings.ecg_samples else 0
    return start / settings.ecg_fs


def _read_ecg(path: Path, settings: CacheSettings) -> tuple[np.ndarray, float]:
    """``[12, T]`` exactly as the cache stores it (resampled, cropped, float16) and the kept window's offset (s)."""
    from medclr.io import read_ecg

    signal, meta = read_ecg(path)
    x = fit_ecg(signal, meta.fs, settings.ecg_fs, settings.ecg_samples, settings.ecg_crop)
    return x.astype(np.float16).astype(np.float32), _ecg_offset_s(signal.shape[1], meta.fs, settings)


def evaluate_ecg_grounding(model: MedClr, truth: str | Path, settings: CacheSettings, *,
                           splits: Sequence[str] | None = None, max_rows: int | None = None, batch_size: int = 16,
                           plots_dir: str | Path | None = None, max_plots: int = 4, reps: int = 1000,
                           seed: int = 0, readout: MapReadout = "cosine") -> dict[str, float]:
    """ECG phrase grounding on a synthetic world (``truth`` = its ``truth.csv``; ECG files beside it): every ECG with
    a localised finding (MI, STTC), read and preprocessed as the cache does with the run's ``settings``. ``splits``
    keep the patients of the world's patient-level split (:func:`medclr.synth.render.subject_split`, the split of
    its MIMIC-cohort manifests). Keys ``ecg/pointing_game_lead``, ``ecg/pointing_game_segment``, ``ecg/lead_auroc``,
    ``ecg/cnr``, their ``_chance`` levels, ``/<label>`` means and ``_ci_low``/``_ci_high`` (percentile bootstrap over
    findings, ``reps`` resamples drawn with ``seed``; NaN for ``reps=0``), and ``ecg/n`` (findings evaluated).
    ``readout``: the maps (:func:`map_kind`).
    """
    from medclr.io.tables import read_table
    from medclr.synth.render import subject_split

    path = Path(truth)
    map_label = MAP_LABELS[map_kind(model, "ecg", readout)]  # checked before any file is read
    table = read_table(path, "synthetic world truth table (truth.csv; worlds from before ECG grounding lack "
                       "ecg_findings: regenerate with `medclr synth`)", ["subject_id", "ecg_path", "ecg_findings"],
                       dtype={"ecg_path": str, "ecg_findings": str}, keep_default_na=False)
    table = table[(table["ecg_path"] != "") & (table["ecg_findings"] != "[]")]
    patient_split = np.array([subject_split(int(s)) for s in table["subject_id"]], dtype=str)
    table = table[_split_mask(patient_split, splits)].iloc[:max_rows]
    records: list[dict[str, Any]] = []
    for start in range(0, len(table), batch_size):
        chunk = table.iloc[start : start + batch_size]
        read = [_read_ecg(path.parent / p, settings) for p in chunk["ecg_path"]]
        findings = [json.loads(cell) for cell in chunk["ecg_findings"]]
        with _eval_mode(model):
            text = model.encode("report", [f["phrase"] for fs in findings for f in fs])  # [P, D]
        bounds = np.cumsum([0, *(len(fs) for fs in findings)])
        maps, lead_axis = ecg_similarity_maps(model, torch.from_numpy(np.stack([x for x, _ in read])),
                                              [text[a:b] for a, b in itertools.pairwise(bounds)], readout)
        for (signal, offset), fs, phrase_maps in zip(read, findings, maps, strict=True):
            for f, sim in zip(fs, phrase_maps, strict=True):
                records.append(_ecg_record(f, sim, settings.ecg_fs, offset, lead_axis))
                if plots_dir is not None and len(records) <= max_plots:
                    ecg_overlay_png(signal, sim, Path(plots_dir) / f"grounding_ecg_{len(records):02d}.png",
                                    f"{f['label']}: {f['phrase']}", fs=settings.ecg_fs, leads=f["leads"],
                                    segments_s=f["segments_s"], offset_s=offset, label=map_label)
    metrics = ["pointing_game_lead", "pointing_game_segment", "lead_auroc", "cnr"]
    out = _summary(records, [*metrics, "pointing_game_lead_chance", "pointing_game_segment_chance"], metrics, "ecg/",
                   reps=reps, seed=seed)
    return {**out, "ecg/n": float(len(records))}


def _ecg_record(finding: dict[str, Any], sim: np.ndarray, fs: float, offset_s: float, lead_axis: bool
                ) -> dict[str, Any]:
    """The metrics of one finding's ``[12, T]`` map (lead metrics NaN without a lead axis)."""
    leads: list[str] = list(finding["leads"])
    time = segments_mask(sim.shape[1], finding["segments_s"], fs, offset_s)  # [T]
    lead_mask = np.zeros(sim.shape[0], dtype=bool)
    lead_mask[_lead_index(leads)] = True
    region = (lead_mask[:, None] if lead_axis else np.ones((sim.shape[0], 1), dtype=bool)) & time[None, :]  # [12, T]
    nan = math.nan
    return {
        "label": finding["label"],
        "pointing_game_lead": ecg_pointing_game_lead(sim, leads) if lead_axis else nan,
        "pointing_game_segment": ecg_pointing_game_segment(sim, time) if time.any() else nan,
        "lead_auroc": ecg_lead_auroc(sim, leads) if lead_axis else nan,
        "cnr": cnr(sim, region),
        "pointing_game_lead_chance": float(lead_mask.mean()) if lead_axis else nan,
        "pointing_game_segment_chance": float(time.mean()) if time.any() else nan,
    }


def evaluate_grounding(model: MedClr, manifest: str | Path | None = None, *, settings: CacheSettings,
                       truth: str | Path | None = None, splits: Sequence[str] | None = None,
                       max_rows: int | None = None, cache_dir: str | Path | None = None, batch_size: int = 16,
                       progress: bool = False, plots_dir: str | Path | None = None, max_plots: int = 4,
                       reps: int = 1000, seed: int = 0, cxr_splits: Sequence[str] | None = None,
                       exclude_images: Collection[Path] = (),
                       pointing_tolerance: float = POINTING_TOLERANCE_PX, readout: MapReadout = "cosine",
                       smooth: float = 0.0) -> dict[str, float]:
    """X-ray grounding on ``manifest`` (rows with ``grounding``) and/or ECG grounding on a synthetic world's
    ``truth`` (``truth.csv``), merged into one flat dict (see :func:`evaluate_cxr_grounding` and
    :func:`evaluate_ecg_grounding`). ``settings``: the run's preprocessing
    (``medclr.eval.embeddings.run_cache_settings(run_dir, ...)``); ``max_rows`` caps images and ECGs each;
    ``plots_dir``: overlays of the first ``max_plots`` X-ray phrases and ECG findings; ``reps``, ``seed``: the
    bootstrap CIs of the headline metrics (``reps=0``: NaN). ``cxr_splits`` (default ``splits``) and
    ``exclude_images`` select the X-ray rows; ``pointing_tolerance``: the tolerant X-ray pointing game's pixels;
    ``readout``: the maps of both modalities (:func:`map_kind`); ``smooth``: the X-ray grid's Gaussian blur, sigma
    in cells (:func:`smooth_grid`; 0: none).
    """
    if manifest is None and truth is None:
        raise MedclrInputError(None, "grounding needs an MS-CXR-style manifest and/or a synthetic world's truth.csv",
                               "pass --manifest (rows with a grounding column) or the world's truth.csv")
    out: dict[str, float] = {}
    if manifest is not None:
        out.update(evaluate_cxr_grounding(model, manifest, settings, splits=cxr_splits or splits, max_rows=max_rows,
                                          cache_dir=cache_dir, batch_size=batch_size, progress=progress,
                                          plots_dir=plots_dir, max_plots=max_plots, reps=reps, seed=seed,
                                          exclude_images=exclude_images, pointing_tolerance=pointing_tolerance,
                                          readout=readout, smooth=smooth))
    if truth is not None:
        out.update(evaluate_ecg_grounding(model, truth, settings, splits=splits, max_rows=max_rows,
                                          batch_size=batch_size, plots_dir=plots_dir, max_plots=max_plots,
                                          reps=reps, seed=seed, readout=readout))
    return out


def world_truth(manifest: str | Path) -> Path | None:
    """The ``truth.csv`` (with ``ecg_findings``) of the synthetic world a manifest was prepared from, if any: the
    world folder holds the dataset roots the manifest records (``WORLD/mimic-cxr``, ``WORLD/mimic-iv-ecg``)."""
    for root in read_manifest(manifest).info.roots.values():
        for candidate in (Path(root).parent / "truth.csv", Path(root) / "truth.csv"):
            if candidate.is_file() and "ecg_findings" in pd.read_csv(candidate, nrows=0).columns:
                return candidate
    return None


def evaluate_grounding_task(ctx: EvalContext) -> dict[str, Any]:
    """``medclr eval RUN --task grounding --manifest M``: X-ray grounding on M's rows with boxes (MS-CXR) and, when M
    comes from a synthetic world whose ``truth.csv`` has ``ecg_findings``, ECG grounding on that world's ECGs; both
    on the context's evaluation split(s). Overlays go to the task's plots folder."""
    from medclr.eval.embeddings import run_cache_settings

    r = ctx.request
    settings = run_cache_settings(r.run_dir, [m for m in ("cxr", "ecg", "report") if m in ctx.model.modalities])
    frame = read_manifest(r.manifest).frame
    has_boxes = "grounding" in frame.columns and bool(frame["grounding"].notna().any())
    truth = world_truth(r.manifest) if "ecg" in ctx.model.modalities else None
    if not has_boxes and truth is None:
        raise MedclrInputError(r.manifest, "nothing to ground: no phrase boxes (column grounding) and no synthetic "
                               "world truth.csv with ecg_findings beside the manifest's roots",
                               "prepare MS-CXR (medclr prepare ms-cxr) or a world made by `medclr synth`")
    ctx.protocol["grounding_protocol"] = (
        f"maps (--grounding-map {r.grounding_map}): "
        + "; ".join(f"{m}: {MAP_DESCRIPTIONS[map_kind(ctx.model, m, r.grounding_map)]}" for m in ("cxr", "ecg")
                    if m in ctx.model.modalities)
        + (f"; X-ray token grid blurred by a Gaussian of sigma {r.grounding_smooth:g} cells (--grounding-smooth; "
           f"BioViL's engine: {BIOVIL_SMOOTHING_SIGMA:g})" if r.grounding_smooth > 0 else "")
        + "; bilinear on the token grid, mapped to original pixels through the recorded resize+pad; "
        "CNR = (mean_in - mean_out) / sqrt(var_in + var_out); pointing game = map maximum inside a box "
        "(pointing_game_reachable: share of phrases whose boxes hold a token-grid cell centre, the grid's ceiling)"
        f"; headline means and CIs over MS-CXR's eight findings ({', '.join(MS_CXR_CATEGORIES)}); phrases of other "
        "findings (n_phrases_other): their /<label> means, and with every phrase the all_categories/<metric> means"
        + (f"; {pointing_game_key(r.pointing_tolerance)} = map maximum within {r.pointing_tolerance:g} original pixels "
           "of a box (Zhang et al., 2016's tolerant pointing game)" if r.pointing_tolerance > 0 else "") + "; "
        "mIoU = mean IoU over thresholds "
        f"{list(MIOU_THRESHOLDS)} of the per-map min-max normalised map (miou/biovil: raw map, thresholds "
        f"{list(BIOVIL_THRESHOLDS)}); 95% CIs: percentile bootstrap over phrases (ECG: findings)"
        + (f"; ECG truth: {truth}" if truth is not None else ""))
    cxr_splits = ctx.splits
    if r.splits is None:  # MS-CXR is a zero-shot benchmark as a whole: every row the run did not train on
        cxr_splits = sorted(set(frame["split"].astype(str)))
        ctx.protocol["grounding_rows"] = ("X-ray: every phrase of the manifest except images in the run's training "
                                          "split (n_images_excluded)")
    return evaluate_grounding(ctx.model, r.manifest if has_boxes else None, settings=settings, truth=truth,
                              splits=ctx.splits, max_rows=r.max_rows, batch_size=min(r.batch_size, 32),
                              progress=r.progress, plots_dir=ctx.plots_dir, reps=r.reps, seed=r.seed,
                              cxr_splits=cxr_splits, exclude_images=ctx.training_images(),
                              pointing_tolerance=r.pointing_tolerance, readout=r.grounding_map,
                              smooth=r.grounding_smooth)


# --------------------------------------------------------------------------------------------------- overlays
def _save(fig: Any, out_path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from medclr.atomic import atomic_path

    FigureCanvasAgg(fig)  # the Agg canvas: no display, no pyplot global state
    out = Path(out_path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return out


def overlay_png(image: np.ndarray, sim_map: np.ndarray, boxes: Boxes, out_path: str | Path, title: str = "", *,
                alpha: float = 0.45, cmap: str = "jet", label: str = MAP_LABELS["cosine"]) -> Path:
    """The X-ray ``[H0, W0]`` in grey, the similarity map on top (``alpha``; NaN pixels clear), the boxes in green."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    h, w = image.shape
    fig = Figure(figsize=(6.0 * w / h + 1.2, 6.0), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(image, cmap="gray", interpolation="bilinear")
    finite = np.isfinite(sim_map)
    lo, hi = (float(np.nanmin(sim_map)), float(np.nanmax(sim_map))) if finite.any() else (0.0, 1.0)
    shown = ax.imshow(np.ma.masked_invalid(sim_map), cmap=cmap, alpha=alpha, vmin=lo, vmax=hi)
    for x, y, bw, bh in boxes:
        ax.add_patch(Rectangle((x, y), bw, bh, fill=False, edgecolor="lime", linewidth=2))
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label=label)
    ax.set_title(title)
    ax.set_axis_off()
    return _save(fig, out_path)


def ecg_overlay_png(signal: np.ndarray, sim_map: np.ndarray, out_path: str | Path, title: str = "", *,
                    fs: float = 100.0, leads: Sequence[str] = (), segments_s: Sequence[Sequence[float]] = (),
                    offset_s: float = 0.0, alpha: float = 0.5, cmap: str = "jet",
                    label: str = MAP_LABELS["cosine"]) -> Path:
    """The 12 leads ``[12, T]`` over their similarity map (one strip per lead); abnormal ``leads`` are named in red
    and the abnormal ``segments_s`` (seconds from the record's start) marked under those leads."""
    from matplotlib.figure import Figure

    n, length = signal.shape
    t_end = offset_s + length / fs
    fig = Figure(figsize=(12.0, 1.0 * n + 1.0), dpi=100)
    axes = list(fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0])
    lo, hi = float(np.nanmin(sim_map)), float(np.nanmax(sim_map))
    t = offset_s + np.arange(length) / fs
    shown = None
    for i, ax in enumerate(axes):
        y0, y1 = float(signal[i].min()) - 0.1, float(signal[i].max()) + 0.1
        shown = ax.imshow(sim_map[i][None, :], aspect="auto", extent=(offset_s, t_end, y0, y1), cmap=cmap,
                          alpha=alpha, vmin=lo, vmax=hi, interpolation="nearest")
        ax.plot(t, signal[i], color="black", linewidth=0.7)
        name = STANDARD_LEADS[i] if i < len(STANDARD_LEADS) else str(i)
        abnormal = name in leads
        ax.set_ylabel(name, rotation=0, labelpad=18, color="red" if abnormal else "black",
                      fontweight="bold" if abnormal else "normal")
        ax.set_yticks([])
        if abnormal:
            for t0, t1 in segments_s:
                ax.axvspan(t0, t1, ymin=0.0, ymax=0.1, color="black")
    axes[-1].set_xlabel("time (s)")
    axes[0].set_title(title)
    if shown is not None:
        fig.colorbar(shown, ax=axes, fraction=0.02, pad=0.01, label=label)
    return _save(fig, out_path)
