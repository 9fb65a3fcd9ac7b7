"""Engine: load a trained run once; read uploads by content; embed, diagnose (zero-shot), retrieve and ground.

Shared by the Streamlit app (``apps/``) and the command line. Inputs are preprocessed exactly as training saw them
(:func:`medclr.eval.embeddings.run_cache_settings`: the X-ray resized + padded and quantised to the cache's dtype,
the ECG resampled, cropped and rounded through float16), and every score uses the run's own objective::

    engine = Engine.from_run("runs/demo", index_dir="runs/demo/index")
    up = engine.read_upload("scan.dcm", data)                 # Upload(kind="cxr", array [H, W] in [0, 1], ...)
    engine.diagnose(cxr=up)["cxr"].scores                    # CheXzero pair softmax per CheXpert finding
    engine.retrieve({"cxr": up}, "report", k=5)              # top-5 reports (joint with {"cxr":..., "ecg":...})
    engine.ground_cxr(up.array, "pleural effusion")          # [H0, W0] score map in original pixels

Uploads are read, validated and de-identified by :mod:`medclr.uploads` (by content, never the name; size
capped; decoded in a RAM-backed temporary folder that is deleted at once); its public names are re-exported
here, so the app imports :mod:`medclr.inference` only.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medclr.data.cache import CacheSettings
from medclr.data.transforms import fit_ecg, quantize, resize_pad
from medclr.errors import MedclrError, MedclrInputError
from medclr.eval.grounding import (
    MAP_LABELS,
    MAP_READOUTS,
    MapReadout,
    _ecg_offset_s,
    cxr_similarity_map,
    ecg_similarity_maps,
    map_kind,
    map_readouts,
)
from medclr.eval.prompts import DEFAULT_PROMPTS, QUERY_MODALITIES, PromptSet, builtin_prompt_path, load_prompts
from medclr.eval.zero_shot import PromptEmbeddings, embed_prompts, prompt_scores
from medclr.index import EmbeddingIndex, load_index
from medclr.io.leads import STANDARD_LEADS
from medclr.models import MedClr
from medclr.types import Geometry
from medclr.uploads import MAX_UPLOAD_BYTES, CxrView, Upload, ram_dir, read_file, read_upload, read_uploads

__all__ = ["LEADS", "MAX_UPLOAD_BYTES", "Case", "CxrView", "Diagnosis", "EcgGrounding", "Engine", "Hit",
           "LabelScore", "MapReadout", "MedclrError", "PromptSet", "Upload", "check_run_dir"]

LEADS: tuple[str, ...] = tuple(STANDARD_LEADS)


@dataclass(frozen=True)
class LabelScore:
    """One label's zero-shot score: a probability in [0, 1] when it has a negative prompt (CheXzero pair softmax),
    else the scaled similarity ``s * f(query, positive)``."""

    label: str
    score: float
    probability: bool


@dataclass(frozen=True)
class Diagnosis:
    """Zero-shot scores of one query (``cxr``, ``ecg`` or ``joint``) against a prompt set, in the prompts' order."""

    query: str
    prompts: str
    scores: list[LabelScore]


@dataclass(frozen=True)
class EcgGrounding:
    """Cosine of a phrase with every lead x time token: ``map [12, T]`` on the model's samples (``fs``), which
    start ``offset_s`` seconds into the record. ``lead_axis`` False: one time profile broadcast to every lead."""

    map: np.ndarray
    fs: float
    offset_s: float
    lead_axis: bool

    @property
    def lead_scores(self) -> np.ndarray:
        """``[12]`` the best similarity of each lead over time."""
        return self.map.max(axis=1)

    def segments(self, fraction: float = 0.75, min_s: float = 0.08) -> list[tuple[float, float]]:
        """Record times (s) where the lead-wise best similarity exceeds ``fraction`` of the map's range."""
        profile = self.map.max(axis=0)  # [T]
        lo, hi = float(profile.min()), float(profile.max())
        above = np.concatenate([[False], profile >= lo + fraction * (hi - lo), [False]]) if hi > lo else None
        if above is None:
            return []
        edges = np.flatnonzero(np.diff(above.astype(np.int8)))  # starts and stops alternate
        spans = zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True)
        t0, fs = self.offset_s, self.fs
        return [(t0 + a / fs, t0 + b / fs) for a, b in spans if (b - a) / fs >= min_s]


@dataclass(frozen=True)
class Hit:
    """One retrieved study: its rank (1 = best), score (the run's objective), report, positive labels, files."""

    rank: int
    study_id: str
    score: float
    report: str
    labels: list[str]
    split: str
    cxr_path: Path | None
    ecg_path: Path | None


@dataclass(frozen=True)
class Case:
    """A study of the index loaded as a query: its X-ray and ECG (when the files are reachable) and report."""

    study_id: str
    cxr: Upload | None
    ecg: Upload | None
    report: str


def check_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    """``run_dir`` as an absolute path if it holds a trained run (config, model.yaml, a checkpoint); else an error."""
    run = Path(run_dir).expanduser().resolve()
    missing = [n for n in ("config.yaml", "model.yaml", "checkpoints") if not (run / n).exists()]
    if not run.is_dir() or missing:
        why = "no such folder" if not run.is_dir() else f"not a trained medclr run (missing {', '.join(missing)})"
        raise MedclrInputError(run, why, "pass the run directory `medclr train` printed, e.g. --run runs/demo")
    return run


class Engine:
    """A loaded run (model, preprocessing, objective) and optionally its retrieval index; thread-safe."""

    def __init__(self, model: MedClr, settings: CacheSettings, loss: str, index: EmbeddingIndex | None = None,
                 max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.model, self.settings, self.loss, self.index = model.eval(), settings, loss, index
        self.logit_scale = float(model.logit_scale.detach())
        self.max_upload_bytes = max_upload_bytes
        self._lock = threading.RLock()
        self._memo: OrderedDict[tuple[Any, ...], Any] = OrderedDict()  # vectors, texts, prompt embeddings
        self._large: OrderedDict[tuple[Any, ...], Any] = OrderedDict()  # maps in original pixels, index files
        self._manifest: Any = None

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike[str], index_dir: str | os.PathLike[str] | None = None,
                 checkpoint: str = "best", device: str = "cpu") -> Engine:
        """Load ``run_dir``'s model and preprocessing once, and ``index_dir`` (default ``RUN_DIR/index`` if present)."""
        from medclr import load_model
        from medclr.config import load_config
        from medclr.eval.embeddings import run_cache_settings

        run = check_run_dir(run_dir)
        model = load_model(run, checkpoint=checkpoint, device=device)
        folder = Path(index_dir) if index_dir is not None else (run / "index" if (run / "index").is_dir() else None)
        index = load_index(folder) if folder is not None else None
        if index is not None and index.embed_dim != model.embed_dim:
            raise MedclrInputError(folder, f"index vectors have {index.embed_dim} dimensions; the run embeds in "
                                   f"{model.embed_dim}", "build the index from this run: medclr embed + medclr index")
        return cls(model, run_cache_settings(run, model.modalities), load_config(run / "config.yaml").loss.name, index)

    def forget(self) -> None:
        """Drop cached embeddings, maps and files (prompt embeddings stay: they do not depend on the inputs)."""
        with self._lock:
            self._large.clear()
            for key in [k for k in self._memo if k[0] != "prompts"]:
                del self._memo[key]

    def warm_up(self) -> None:
        """Embed the default prompts of every query this run can answer (the first diagnosis is then fast)."""
        for query, mods in QUERY_MODALITIES.items():
            if all(m in self.model.modalities for m in (*mods, "report")):
                self._prompt_embeddings(self.default_prompts(query))

    # ------------------------------------------------------------------------------------------------ uploads
    def read_upload(self, name: str, data: bytes, *, csv_fs: float | None = None) -> Upload:
        """One file (or a zip of one record) -> :class:`Upload`; see :meth:`read_uploads`."""
        return read_upload(name, data, csv_fs=csv_fs, max_bytes=self.max_upload_bytes)

    def read_uploads(self, files: Sequence[tuple[str, bytes]], *, csv_fs: float | None = None) -> list[Upload]:
        """Uploaded ``(name, bytes)`` -> validated uploads, in order (:func:`medclr.uploads.read_uploads`, capped
        at ``max_upload_bytes``): judged by content, WFDB headers paired with their signal files, zips in memory."""
        return read_uploads(files, csv_fs=csv_fs, max_bytes=self.max_upload_bytes)

    # ------------------------------------------------------------------------------------------------ embedding
    def preprocess_cxr(self, image: np.ndarray) -> tuple[torch.Tensor, Geometry]:
        """``[H, W]`` in [0, 1] -> ``[1, 1, S, S]`` exactly as the cache stores it, and the resize/pad geometry."""
        resized, g = resize_pad(image, self.settings.image_size)
        stored = quantize(resized, self.settings.cxr_dtype)
        scale = np.float32(1.0 / (255.0 if stored.dtype == np.uint8 else 65535.0))
        return torch.from_numpy(stored.astype(np.float32) * scale)[None, None], g.geometry()

    def preprocess_ecg(self, signal: np.ndarray, fs: float | None = None) -> torch.Tensor:
        """``[12, T]`` mV at ``fs`` (default: the run's rate) -> ``[1, 12, T']`` as the cache stores it."""
        st = self.settings
        x = fit_ecg(signal, fs or st.ecg_fs, st.ecg_fs, st.ecg_samples, st.ecg_crop)
        return torch.from_numpy(x.astype(np.float16).astype(np.float32))[None]

    def embed_cxr(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """Unit embedding ``[D]`` of an X-ray ``[H, W]`` and the geometry that maps network pixels back."""
        x, geometry = self.preprocess_cxr(image)
        return self._encode("cxr", x, _digest(image)), geometry

    def embed_ecg(self, signal: np.ndarray, fs: float | None = None) -> np.ndarray:
        """Unit embedding ``[D]`` of an ECG ``[12, T]`` in mV sampled at ``fs`` Hz."""
        return self._encode("ecg", self.preprocess_ecg(signal, fs), _digest(signal, fs))

    def embed_text(self, text: str) -> np.ndarray:
        """Unit embedding ``[D]`` of a report sentence or phrase."""
        if not text.strip():
            raise MedclrInputError(None, "empty text", "type a phrase, e.g. 'pleural effusion'")
        return self._encode("report", [text], ("text", text))

    def _encode(self, modality: str, x: Any, key: tuple[Any, ...]) -> np.ndarray:
        if modality not in self.model.modalities:
            raise MedclrInputError(None, f"this run has no {modality} tower", f"use one of {self.model.modalities}")
        return self._cached((modality, *key), lambda: self.model.encode(modality, x)[0].float().cpu().numpy())

    def _cached(self, key: tuple[Any, ...], compute: Any, *, large: bool = False) -> Any:
        """``compute()`` once per key: small results in an LRU of 512, large ones (maps, images) in one of 16."""
        memo, size = (self._large, 16) if large else (self._memo, 512)
        with self._lock, torch.no_grad():
            if key not in memo:
                memo[key] = compute()
                while len(memo) > size:
                    memo.popitem(last=False)
            memo.move_to_end(key)
            return memo[key]

    def vector(self, modality: str, value: Any) -> np.ndarray:
        """``[D]`` for an :class:`Upload`, an X-ray ``[H, W]``, an ECG ``[12, T]`` at the run's rate, a text, or a
        ready ``[D]`` vector."""
        if isinstance(value, Upload):
            if value.kind != modality:
                raise MedclrInputError(None, f"a {value.kind} upload cannot be the {modality} query", "swap them")
            return self.embed_cxr(value.array)[0] if modality == "cxr" else self.embed_ecg(value.array, value.fs)
        if isinstance(value, str):
            return self.embed_text(value)
        array = np.asarray(value, dtype=np.float32)
        if array.ndim == 1:
            return array
        return self.embed_cxr(array)[0] if modality == "cxr" else self.embed_ecg(array)

    # ------------------------------------------------------------------------------------------------ zero-shot
    @staticmethod
    def prompt_file(query: str) -> Path:
        """``configs/prompts/chexpert.yaml`` (X-ray), ``ecg.yaml`` (ECG), ``joint.yaml`` (X-ray + ECG)."""
        return builtin_prompt_path(DEFAULT_PROMPTS[query])

    def default_prompts(self, query: str) -> PromptSet:
        """The prompt set of :meth:`prompt_file`."""
        return load_prompts(self.prompt_file(query))

    def prompts_from_yaml(self, text: str) -> PromptSet:
        """Parse an edited prompt file (the ``configs/prompts/*.yaml`` format) with the same checks as the files."""
        from medclr.models.config import MedclrConfigError

        with tempfile.TemporaryDirectory(dir=ram_dir()) as tmp:
            path = Path(tmp) / "prompts.yaml"
            path.write_text(text)
            try:
                return load_prompts(path)
            except MedclrConfigError as err:
                raise MedclrInputError(None, str(err).replace(str(path), "prompts"), "fix the YAML") from None

    def _prompt_embeddings(self, prompts: PromptSet) -> PromptEmbeddings:
        key = ("prompts", tuple((k, c.positive, c.negative) for k, c in prompts.labels.items()))
        return self._cached(key, lambda: embed_prompts(self.model, prompts))

    def diagnose(self, cxr: Any = None, ecg: Any = None,
                 prompts: Mapping[str, PromptSet] | None = None) -> dict[str, Diagnosis]:
        """Zero-shot scores per query the inputs allow: ``cxr``, ``ecg`` and, with both, ``joint`` (the X-ray and the
        ECG together against the joint prompts, scored with the run's objective). ``prompts`` overrides per query."""
        given = {m: self.vector(m, v) for m, v in (("cxr", cxr), ("ecg", ecg)) if v is not None}
        out = {}
        for query, mods in QUERY_MODALITIES.items():
            if all(m in given for m in mods):
                chosen = (prompts or {}).get(query) or self.default_prompts(query)
                text = self._prompt_embeddings(chosen)
                vectors = [torch.from_numpy(given[m])[None] for m in mods]  # [1, D] each
                scores = prompt_scores(vectors, text, self.loss, self.logit_scale)[0]  # [K]
                out[query] = Diagnosis(query, chosen.name, [LabelScore(x, float(s), bool(n)) for x, s, n in
                                                            zip(text.labels, scores, text.has_negative, strict=True)])
        return out

    # ------------------------------------------------------------------------------------------------ retrieval
    def retrieve(self, query: Mapping[str, Any], target: str, k: int = 8) -> list[Hit]:
        """Top-``k`` ``target`` studies of the index for ``query`` ``{modality: Upload | array | text | [D]}``
        (``report`` takes text). Several modalities make a joint query (Symile MIP / GRAM volume / mean cosine);
        the target modality alone finds similar cases."""
        if self.index is None:
            raise MedclrInputError(None, "no retrieval index is loaded", "start the app with --index INDEX_DIR "
                                   "(built by `medclr embed` + `medclr index`)")
        given = {m: self.vector(m, v) for m, v in query.items() if v is not None}
        result = self.index.search(given, target, k)[0]
        rows = self.index.rows
        labels = [c for c in rows.columns if c.startswith("label/") and ":" not in c]
        out = []
        for rank, (study, score, row) in enumerate(zip(result.ids, result.scores, result.rows, strict=True), 1):
            r = rows.iloc[int(row)]
            out.append(Hit(rank, study, float(score), str(r.get("report") or ""),
                           [c[6:] for c in labels if float(r[c]) >= 0.5], str(r.get("split") or ""),
                           self._resolve("cxr", r.get("cxr_path")), self._resolve("ecg", r.get("ecg_path"))))
        return out

    def _resolve(self, modality: Literal["cxr", "ecg"], cell: Any) -> Path | None:
        """The absolute file of an index row's ``cxr_path``/``ecg_path`` (through the embedded manifest's roots)."""
        if not isinstance(cell, str) or not cell or self.index is None:
            return None
        if self._manifest is None:
            from medclr.data.manifest import read_manifest

            try:
                self._manifest = read_manifest(str(self.index.meta.get("manifest")))
            except MedclrError:
                self._manifest = False
        return self._manifest.resolve(modality, cell) if self._manifest else None

    def load_case(self, study_id: str) -> Case:
        """Study ``study_id`` of the index with its X-ray and ECG read from their files (when reachable)."""
        if self.index is None or study_id not in set(self.index.ids):
            raise MedclrInputError(None, f"no study '{study_id}' in the index", "pick one of the listed studies")
        row = self.index.rows.iloc[int(np.flatnonzero(self.index.ids == study_id)[0])]
        files = {m: self._resolve(m, row.get(f"{m}_path")) for m in ("cxr", "ecg")}
        read = {m: self._cached(("file", str(p)), lambda p=p, m=m: read_file(p, m), large=True)
                for m, p in files.items() if p is not None and (p.exists() or Path(f"{p}.hea").exists())}
        return Case(study_id, read.get("cxr"), read.get("ecg"), str(row.get("report") or ""))

    # ------------------------------------------------------------------------------------------------ grounding
    def map_label(self, modality: str, readout: MapReadout = "auto") -> str:
        """What the grounding maps of ``modality`` hold with ``readout``
        (:func:`medclr.eval.grounding_maps.map_kind`)."""
        return MAP_LABELS[map_kind(self.model, modality, readout)]

    def map_readouts(self, modalities: Sequence[str]) -> tuple[MapReadout, ...]:
        """The map readouts every tower of ``modalities`` supports (:func:`medclr.eval.grounding_maps.map_readouts`),
        in their canonical order."""
        supported = [set(map_readouts(self.model, m)) for m in modalities]
        return tuple(r for r in MAP_READOUTS if all(r in s for s in supported))

    def ground_cxr(self, image: np.ndarray, phrase: str, readout: MapReadout = "auto", smooth: float = 0.0
                   ) -> np.ndarray:
        """The phrase's score map (:meth:`map_label`), as float32 ``[H0, W0]`` in the image's pixels; ``smooth``: a
        Gaussian blur of the token grid, sigma in cells (0: none; BioViL's engine: 1.5; ValueError if negative)."""
        x, geometry = self.preprocess_cxr(image)
        text = torch.from_numpy(self.embed_text(phrase))
        return self._cached(("ground_cxr", _digest(image), phrase, readout, smooth),
                            lambda: cxr_similarity_map(self.model, x, geometry, text, readout, smooth), large=True)

    def ground_ecg(self, signal: np.ndarray, phrase: str, fs: float | None = None, readout: MapReadout = "auto"
                   ) -> EcgGrounding:
        """The phrase's score map (:meth:`map_label`) on the lead x time tokens of ``signal [12, T]`` (mV at
        ``fs``); see EcgGrounding."""
        x, text = self.preprocess_ecg(signal, fs), torch.from_numpy(self.embed_text(phrase))
        maps, lead_axis = self._cached(("ground_ecg", _digest(signal, fs), phrase, readout),
                                       lambda: ecg_similarity_maps(self.model, x, [text[None]], readout), large=True)
        offset = _ecg_offset_s(signal.shape[1], fs or self.settings.ecg_fs, self.settings)
        return EcgGrounding(maps[0][0], self.settings.ecg_fs, offset, bool(lead_axis))


def _digest(array: np.ndarray, *extra: Any) -> tuple[Any, ...]:
    a = np.ascontiguousarray(array)
    return (hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest(), a.shape, str(a.dtype), *extra)
