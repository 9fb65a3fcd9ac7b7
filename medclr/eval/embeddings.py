"""Embed a manifest with a trained run, exactly as training saw the data, and store the result.

``embed_manifest(run_dir, manifest)`` builds (or reuses) the preprocessed cache of ``manifest`` with the *run's*
data settings (image size, ECG rate and length: a model must be fed what it was trained on), runs every tower
over the chosen splits in eval mode, and returns :class:`Embeddings`::

    emb.vectors["cxr"]    # [n, D] float32 unit vectors (zero rows where the study has no X-ray)
    emb.present["cxr"]    # [n] bool
    emb.labels            # [n, K] float32, NaN = unknown; columns emb.label_names
    emb.rows              # the manifest rows (study_id, subject_id, split, cxr_path, ecg_path, report)

``save_embeddings`` writes the parquet that ``medclr embed`` produces and ``medclr index`` reads: the manifest
columns above, ``label/<Name>`` and ``emb/<modality>`` (list<float32> of length D, null where absent), with the
run, loss, embedding size and logit scale in the schema metadata under ``medclr_embeddings``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from medclr.atomic import atomic_path
from medclr.config import load_config
from medclr.data.cache import CacheSettings, build_cache
from medclr.data.collate import Collator, ReportTokenizer
from medclr.data.dataset import StudyDataset
from medclr.data.manifest import LABEL_PREFIX, read_manifest
from medclr.errors import MedclrInputError
from medclr.models import MedClr
from medclr.models.encoders.report import ReportEncoder
from medclr.train.validate import embed_batches

log = logging.getLogger(__name__)

METADATA_KEY = b"medclr_embeddings"
EMB_PREFIX = "emb/"
ROW_COLUMNS = ("study_id", "subject_id", "split", "cxr_path", "ecg_path", "report")


@dataclass
class Embeddings:
    """Unit embeddings of n manifest rows per modality, with presence masks, labels and the rows themselves."""

    vectors: dict[str, np.ndarray]  # {m: [n, D] float32}
    present: dict[str, np.ndarray]  # {m: [n] bool}
    labels: np.ndarray  # [n, K] float32, NaN = unknown
    label_names: list[str]
    rows: pd.DataFrame  # [n] manifest rows, ROW_COLUMNS
    loss: str  # the run's objective, which fixes the score function (medclr.losses.scoring)
    logit_scale: float
    meta: dict[str, Any] = field(default_factory=dict)  # run_dir, manifest, label_sets, label_descriptions ...

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def modalities(self) -> list[str]:
        return list(self.vectors)

    def label(self, name: str) -> np.ndarray:
        """``[n]`` float32 column of label ``name`` (NaN = unknown)."""
        if name not in self.label_names:
            raise KeyError(f"no label '{name}'; the manifest has: {', '.join(self.label_names)}")
        return self.labels[:, self.label_names.index(name)]

    def subset(self, mask: np.ndarray) -> Embeddings:
        """The rows where ``mask`` [n] is True."""
        return Embeddings({m: v[mask] for m, v in self.vectors.items()}, {m: p[mask] for m, p in self.present.items()},
                          self.labels[mask], self.label_names, self.rows[mask].reset_index(drop=True), self.loss,
                          self.logit_scale, self.meta)


def run_cache_settings(run_dir: Path, modalities: Sequence[str]) -> CacheSettings:
    """The preprocessing the run was trained with (from its ``config.yaml``)."""
    if not (run_dir / "config.yaml").is_file():
        raise MedclrInputError(run_dir, "not a medclr run directory (no config.yaml)",
                               "pass the folder `medclr train` wrote")
    data = load_config(run_dir / "config.yaml").data
    return CacheSettings(tuple(modalities), data.image_size, data.cxr_dtype, data.ecg_fs, data.ecg_samples,
                         data.ecg_crop)


@torch.no_grad()
def embed_manifest(model: MedClr, run_dir: str | Path, manifest: str | Path, *, splits: Sequence[str] | None = None,
                   modalities: Sequence[str] | None = None, batch_size: int = 64, cache_dir: str | Path | None = None,
                   max_rows: int | None = None, progress: bool = True) -> Embeddings:
    """Embed the rows of ``splits`` (all rows when None) of ``manifest`` with ``model`` (see the module docstring)."""
    run = Path(run_dir)
    m = read_manifest(manifest)
    mods = _modalities(model, manifest, modalities)
    dataset, loader = _study_loader(model, run, manifest, splits, mods, mods, batch_size, cache_dir, max_rows,
                                    progress)
    model.eval()
    batches = tqdm(loader, desc="embed", unit="batch", disable=not progress)
    vectors, present, _ = embed_batches(model, batches, next(model.parameters()).device, mods)
    rows = m.frame.iloc[dataset.index].reset_index(drop=True)
    rows = pd.DataFrame({c: rows[c].astype(object).where(rows[c].notna(), None) if c in rows else None
                         for c in ROW_COLUMNS})
    meta = {"run_dir": str(run), "manifest": str(manifest), "source": m.info.source,
            "label_sets": m.info.label_sets, "label_policy": m.info.label_policy,
            "label_descriptions": m.info.extra.get("label_descriptions", {}), "splits": list(splits or [])}
    loss = load_config(run / "config.yaml").loss.name
    return Embeddings(vectors, present, dataset.labels.copy(), dataset.label_names, rows, loss,
                      model.logit_scale.item(), meta)


def _modalities(model: MedClr, manifest: str | Path, wanted: Sequence[str] | None = None) -> list[str]:
    """The model's modalities (or those of ``wanted`` it has) that the manifest has (all of them if none)."""
    mods = [x for x in (wanted or model.modalities) if x in model.modalities]
    return [x for x in mods if x in read_manifest(manifest).modalities] or mods


def _study_loader(model: MedClr, run: Path, manifest: str | Path, splits: Sequence[str] | None, mods: list[str],
                  cache_mods: list[str], batch_size: int, cache_dir: str | Path | None, max_rows: int | None,
                  progress: bool) -> tuple[StudyDataset, torch.utils.data.DataLoader]:
    """The rows of ``splits`` (all when None) preprocessed as the run was trained, batched in manifest order;
    ``cache_mods``: the modalities of the cache to use (its key; the one :func:`embed_manifest` built)."""
    cache = build_cache(manifest, run_cache_settings(run, cache_mods), cache_dir, progress=progress)
    dataset = StudyDataset(cache, list(splits) if splits else None, mods, max_rows=max_rows)
    tokenizer = None
    if "report" in mods and isinstance(model.tower("report").encoder, ReportEncoder):
        tokenizer = ReportTokenizer.from_encoder(model.tower("report").encoder)
    return dataset, torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                                collate_fn=Collator(mods, tokenizer))


@dataclass
class TokenGrids:
    """Unit projected token grids of n manifest rows per modality, as the run's token-level loss sees them."""

    tokens: dict[str, Tensor]  # {m: [n, N, D] float32 unit vectors; zero rows where the study lacks m}
    mask: dict[str, Tensor]  # {m: [n, N] bool: real tokens (a report's padding and, with word_tokens=words,
    #                            its non-words are False); all False where the study lacks m}
    study_ids: list[str]  # [n] the rows' study ids, in manifest order


@torch.no_grad()
def embed_token_grids(model: MedClr, run_dir: str | Path, manifest: str | Path, modalities: Sequence[str], *,
                      splits: Sequence[str] | None = None, batch_size: int = 64, cache_dir: str | Path | None = None,
                      max_rows: int | None = None, progress: bool = True) -> TokenGrids:
    """The token grids (:meth:`MedClr.encode_batch` with ``token_modalities``) of the same rows, in the same order,
    as :func:`embed_manifest` with the same ``splits`` and ``max_rows``. Memory: n x N x D floats per modality
    (the demo's X-ray grid: 256 x 128 floats = 128 KiB per study). Reports are padded to the longest one."""
    mods = list(modalities)
    dataset, loader = _study_loader(model, Path(run_dir), manifest, splits, mods, _modalities(model, manifest),
                                    batch_size, cache_dir, max_rows, progress)
    model.eval()
    device = next(model.parameters()).device
    parts: dict[str, list[tuple[Tensor, Tensor] | int]] = {m: [] for m in mods}  # int: a batch without m
    for batch in tqdm(loader, desc="token grids", unit="batch", disable=not progress):
        _, grids = model.encode_batch(batch.to(device), token_modalities=mods)
        for m in mods:
            out = grids.get(m)
            if out is None or out.tokens is None or out.token_mask is None:
                parts[m].append(batch.size)
            else:
                parts[m].append((out.tokens.float().cpu(), out.token_mask.bool().cpu()))
    tokens, mask = {}, {}
    for m, chunks in parts.items():
        real = [c for c in chunks if not isinstance(c, int)]
        if not real:
            raise MedclrInputError(manifest, f"no row of split(s) {list(splits or ['all'])} has {m}",
                                   f"evaluate rows that have {m}")
        width, dim = max(t.shape[1] for t, _ in real), real[0][0].shape[2]
        filled = [(torch.zeros(c, width, dim), torch.zeros(c, width, dtype=torch.bool)) if isinstance(c, int) else c
                  for c in chunks]
        tokens[m] = torch.cat([F.pad(t, (0, 0, 0, width - t.shape[1])) for t, _ in filled])  # [n, N, D]
        mask[m] = torch.cat([F.pad(k, (0, width - k.shape[1])) for _, k in filled])  # [n, N]
    return TokenGrids(tokens, mask, [str(s) for s in dataset.ids])


def save_embeddings(emb: Embeddings, path: str | Path) -> Path:
    """Write ``emb`` as the ``medclr embed`` parquet (atomically); see the module docstring for the layout."""
    columns: dict[str, pa.Array] = {c: pa.array(emb.rows[c].tolist(), pa.string()) for c in ROW_COLUMNS}
    for k, name in enumerate(emb.label_names):
        columns[f"{LABEL_PREFIX}{name}"] = pa.array(emb.labels[:, k], pa.float32())
    for m, vectors in emb.vectors.items():
        dim = vectors.shape[1]
        values = pa.array(vectors.astype(np.float32).ravel(), pa.float32())
        lists = pa.FixedSizeListArray.from_arrays(values, dim)
        columns[f"{EMB_PREFIX}{m}"] = pa.array(
            [row if ok else None for row, ok in zip(lists.to_pylist(), emb.present[m], strict=True)],
            pa.list_(pa.float32(), dim))
    table = pa.table(columns)
    meta = {**emb.meta, "loss": emb.loss, "logit_scale": emb.logit_scale, "modalities": emb.modalities,
            "label_names": emb.label_names,
            "embed_dim": int(next(iter(emb.vectors.values())).shape[1]) if emb.vectors else 0}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(meta)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def load_embeddings(path: str | Path) -> Embeddings:
    """Read a ``medclr embed`` parquet back into :class:`Embeddings`."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise MedclrInputError(path, f"cannot read the embeddings parquet ({err})", "re-run `medclr embed`") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise MedclrInputError(path, "not an embeddings file (no medclr_embeddings metadata)",
                               "write it with `medclr embed RUN_DIR --manifest M --out FILE`")
    meta = json.loads(raw)
    frame = table.to_pandas()
    vectors, present = {}, {}
    dim = int(meta["embed_dim"])
    for m in meta["modalities"]:
        column = frame[f"{EMB_PREFIX}{m}"]
        present[m] = column.notna().to_numpy()
        vectors[m] = np.zeros((len(frame), dim), np.float32)
        if present[m].any():
            vectors[m][present[m]] = np.stack(column[present[m]].to_numpy()).astype(np.float32)
    names = list(meta["label_names"])
    labels = frame[[f"{LABEL_PREFIX}{n}" for n in names]].to_numpy(np.float32).reshape(len(frame), len(names))
    rest = {k: v for k, v in meta.items() if k not in ("loss", "logit_scale", "modalities", "label_names", "embed_dim")}
    return Embeddings(vectors, present, labels, names, frame[list(ROW_COLUMNS)].copy(), meta["loss"],
                      float(meta["logit_scale"]), rest)
