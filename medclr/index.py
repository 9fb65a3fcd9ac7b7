"""Embedding store and exact search: ``medclr index`` builds it from ``medclr embed``'s parquet; the app queries it.

An INDEX_DIR holds three files, written together atomically (a temporary folder beside it, then a rename)::

    index.json           format version, the run's metadata (loss, embed_dim, modalities, labels ...), row counts
    vectors.safetensors  per modality: "vectors/<m>" [n_m, D] float32 and "positions/<m>" [n_m] int64 (no pickle)
    rows.parquet         the n studies: study_id, subject_id, split, cxr_path, ecg_path, report, label/<Name>

Only studies that have modality m appear in ``vectors/<m>``; ``positions/<m>`` maps each vector to its row.

Search scores with the run's own objective (:func:`medclr.losses.scoring.score_fn`): cosine for ConVIRT, the
multilinear inner product for Symile, the negative Gram volume for GRAM. Given several modalities (X-ray + ECG ->
report) the query is joint, as in the two-to-one retrieval task. The default backend is exact and streams the
candidates in chunks (``torch.topk`` per chunk, merged), so memory is O(queries x chunk), not the full score
matrix. ``backend="faiss"`` uses faiss's exact ``IndexFlatIP`` on unit vectors (the ``index`` extra), which
reproduces the cosine scores, so only ConVIRT runs queried with one modality can use it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import Tensor

from medclr.errors import MedclrInputError
from medclr.losses.scoring import SCORES, ScoreFn, cosine_scores, score_fn

FORMAT = "medclr-index"
FORMAT_VERSION = 1
METADATA_KEY = b"medclr_embeddings"  # schema metadata of the `medclr embed` parquet
EMB_PREFIX = "emb/"
INDEX_JSON, VECTORS_FILE, ROWS_FILE = "index.json", "vectors.safetensors", "rows.parquet"
REQUIRED_META = ("loss", "embed_dim", "modalities")
SCORE_ELEMENTS = 1 << 22  # query x candidate scores per exact-search chunk at most (16 MiB of float32)
CHUNK_ELEMENTS = 1 << 20  # candidate values per chunk at most (4 MiB of float32: 2,048 rows at D = 512)
MERGE_EVERY = 64  # chunk winners kept before they are merged
BUILD_FIX = "rebuild it with `medclr index EMBEDDINGS.parquet --out INDEX_DIR`"
Backend = Literal["exact", "faiss"]


@dataclass
class SearchResult:
    """Top-k matches of one query, best first."""

    ids: list[str]  # [k] study ids
    scores: np.ndarray  # [k] float32, higher = better (the run's score function)
    rows: np.ndarray  # [k] int64 row positions in EmbeddingIndex.rows


@dataclass
class EmbeddingIndex:
    """Embeddings of n studies: ``vectors[m]`` ``[n_m, D]`` float32 belong to rows ``positions[m]`` ``[n_m]``."""

    ids: np.ndarray  # [n] study_id (object array of str)
    vectors: dict[str, np.ndarray]  # {m: [n_m, D] float32}
    positions: dict[str, np.ndarray]  # {m: [n_m] int64 row of each vector}
    rows: pd.DataFrame  # [n] study_id, subject_id, split, cxr_path, ecg_path, report, label/<Name>
    meta: dict[str, Any]  # the run's metadata from `medclr embed` (loss, embed_dim, modalities, label_names ...)
    _faiss: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def loss(self) -> str:
        return str(self.meta["loss"])

    @property
    def embed_dim(self) -> int:
        return int(self.meta["embed_dim"])

    @property
    def modalities(self) -> list[str]:
        return [str(m) for m in self.meta["modalities"]]

    def query_of(self, row: int, modalities: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """The stored vectors ``{m: [D]}`` of row ``row`` (a study of the index as the query)."""
        out = {}
        for m in modalities if modalities is not None else self.modalities:
            at = int(np.searchsorted(self.positions[m], row))  # positions are increasing
            if at < len(self.positions[m]) and self.positions[m][at] == row:
                out[m] = self.vectors[m][at]
        return out

    def _queries(self, given: Mapping[str, np.ndarray | Tensor], target: str) -> list[Tensor]:
        """The given vectors as ``[Q, D]`` float32 tensors, in the run's modality order."""
        if target not in self.vectors:
            raise MedclrInputError(None, f"this index has no '{target}' embeddings",
                                   f"search one of: {', '.join(self.vectors)}")
        unknown = [m for m in given if m not in self.vectors or (m == target and len(given) > 1)]
        if not given or unknown:
            raise MedclrInputError(None, f"cannot query '{target}' with modalities {list(given)}",
                                   f"give one or more of {[m for m in self.modalities if m != target]}, or "
                                   f"'{target}' alone (similar cases)")
        out = []
        for m in (m for m in self.modalities if m in given):
            q = torch.as_tensor(given[m]).detach().to("cpu", torch.float32)
            q = q[None] if q.ndim == 1 else q  # [D] -> [1, D]
            if q.ndim != 2 or q.shape[1] != self.embed_dim:
                raise MedclrInputError(None, f"'{m}' query has shape {tuple(q.shape)}; expected [Q, "
                                       f"{self.embed_dim}] or [{self.embed_dim}]", "embed with the index's run")
            out.append(q)
        if len({q.shape[0] for q in out}) != 1:
            raise MedclrInputError(None, f"given modalities have different numbers of queries "
                                   f"{[q.shape[0] for q in out]}", "give one row per query in every modality")
        return out

    def search(self, given: Mapping[str, np.ndarray | Tensor], target: str, k: int = 10, *,
               exclude: Collection[str] | None = None, backend: Backend = "exact",
               chunk: int | None = None) -> list[SearchResult]:
        """Top-``k`` ``target`` items for each query: ``given`` ``{m: [Q, D] or [D]}`` -> Q results.

        ``exclude``: study ids left out of every query's results (e.g. the query study itself); fewer than k
        results come back when fewer candidates remain. ``chunk``: candidates scored at a time (default: see
        :func:`exact_topk`). ``backend="faiss"``: exact faiss ``IndexFlatIP`` (ConVIRT runs, one given modality).
        """
        if k < 1:
            raise MedclrInputError(None, f"k must be >= 1; got {k}", "ask for at least one result")
        queries = self._queries(given, target)
        blocked = None
        if isinstance(exclude, str):  # one id, not its characters
            exclude = [exclude]
        if exclude:
            blocked = np.isin(self.ids[self.positions[target]], np.asarray(list(exclude), dtype=object))
        if backend == "faiss":
            scores, found = self._faiss_search(queries, target, k, blocked)
        elif backend == "exact":
            scores, found = exact_topk(queries, torch.from_numpy(self.vectors[target]), score_fn(self.loss), k,
                                       None if blocked is None else torch.from_numpy(blocked), chunk)
        else:
            raise MedclrInputError(None, f"unknown search backend '{backend}'", "use 'exact' or 'faiss'")
        results = []
        for s, f in zip(scores, found, strict=True):
            rows = self.positions[target][f]
            results.append(SearchResult([str(i) for i in self.ids[rows]], s.astype(np.float32), rows))
        return results

    def _faiss_search(self, queries: list[Tensor], target: str, k: int,
                      blocked: np.ndarray | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if score_fn(self.loss) is not cosine_scores or len(queries) != 1:  # inner products of unit vectors only
            raise MedclrInputError(None, f"the faiss backend serves ConVIRT runs queried with one modality (cosine); "
                                   f"this is a '{self.loss}' index queried with {len(queries)} modalities",
                                   "use backend='exact'")
        try:
            import faiss
        except ImportError:
            raise MedclrInputError(None, "faiss is not installed", "pip install 'medclr[index]' or use "
                                   "backend='exact'") from None
        if target not in self._faiss:
            flat = faiss.IndexFlatIP(self.embed_dim)
            flat.add(np.ascontiguousarray(_unit(self.vectors[target])))
            self._faiss[target] = flat
        flat = self._faiss[target]
        n_blocked = 0 if blocked is None else int(blocked.sum())
        want = min(k + n_blocked, flat.ntotal)
        if want == 0:
            return [np.zeros(0, np.float32)] * len(queries[0]), [np.zeros(0, np.int64)] * len(queries[0])
        scores, found = flat.search(np.ascontiguousarray(_unit(queries[0].numpy())), want)  # [Q, want]
        keep = found >= 0
        if blocked is not None:
            keep &= ~blocked[np.where(keep, found, 0)]
        return ([s[m][:k] for s, m in zip(scores, keep, strict=True)],
                [f[m][:k].astype(np.int64) for f, m in zip(found, keep, strict=True)])


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


@torch.no_grad()
def exact_topk(given: list[Tensor], candidates: Tensor, score: ScoreFn, k: int, blocked: Tensor | None = None,
               chunk: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Exact top-``k`` of ``score(given, candidates)`` per query, ``chunk`` candidates at a time.

    Each chunk's ``[Q, chunk]`` scores are reduced by ``torch.topk`` to ``[Q, k]``; the chunk winners are merged
    by one more ``topk`` (every ``MERGE_EVERY`` chunks and at the end). ``blocked`` ``[C]`` bool candidates
    never come back. Default ``chunk``: at most ``SCORE_ELEMENTS`` scores and ``CHUNK_ELEMENTS`` candidate values,
    so that the score function's copies of a chunk stay in cache. Returns per query (scores [<=k], indices).
    """
    n_q, n_c = given[0].shape[0], candidates.shape[0]
    step = chunk or max(1, min(SCORE_ELEMENTS // max(n_q, 1), CHUNK_ELEMENTS // max(candidates.shape[1], 1)))
    parts_s = [torch.full((n_q, 0), float("-inf"))]
    parts_i = [torch.zeros((n_q, 0), dtype=torch.long)]
    for start in range(0, n_c, step):
        stop = min(n_c, start + step)
        s = score(given, candidates[start:stop]).float()  # [Q, c]
        if blocked is not None:
            s.masked_fill_(blocked[start:stop][None], float("-inf"))
        top_s, top_i = s.topk(min(k, stop - start), dim=1)  # [Q, <=k]
        parts_s.append(top_s)
        parts_i.append(top_i + start)
        if len(parts_s) > MERGE_EVERY:
            merged_s, merged_i = _merge(parts_s, parts_i, k)
            parts_s, parts_i = [merged_s], [merged_i]
    best_s, best_i = _merge(parts_s, parts_i, k)
    keep = torch.ones_like(best_i, dtype=torch.bool) if blocked is None else ~blocked[best_i]
    return ([s[m].numpy() for s, m in zip(best_s, keep, strict=True)],
            [i[m].numpy() for i, m in zip(best_i, keep, strict=True)])


def _merge(parts_s: list[Tensor], parts_i: list[Tensor], k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` ``[Q, <=k]`` of the concatenated chunk winners (scores, candidate indices)."""
    all_s, all_i = torch.cat(parts_s, 1), torch.cat(parts_i, 1)
    best_s, pick = all_s.topk(min(k, all_s.shape[1]), dim=1)
    return best_s, all_i.gather(1, pick)


# --------------------------------------------------------------------------------------------------- build / load


def _read_embeddings(path: Path) -> tuple[pa.Table, dict[str, Any]]:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise MedclrInputError(path, f"cannot read the embeddings parquet ({err})",
                               "write it with `medclr embed RUN_DIR --manifest M --out FILE`") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise MedclrInputError(path, "not a `medclr embed` file (no medclr_embeddings schema metadata)",
                               "write it with `medclr embed RUN_DIR --manifest M --out FILE`")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise MedclrInputError(path, f"corrupt medclr_embeddings metadata ({err})", "re-run `medclr embed`") from None
    _check_meta(path, meta)
    missing = [c for c in ("study_id", *(f"{EMB_PREFIX}{m}" for m in meta["modalities"]))
               if c not in table.column_names]
    if missing:
        raise MedclrInputError(path, f"missing columns {missing}", "re-run `medclr embed`")
    return table, meta


def _check_meta(path: Path, meta: Any) -> None:
    if not isinstance(meta, dict) or any(key not in meta for key in REQUIRED_META):
        raise MedclrInputError(path, f"embedding metadata lacks {[k for k in REQUIRED_META if k not in meta]}"
                               if isinstance(meta, dict) else "embedding metadata is not a JSON object",
                               "re-run `medclr embed` with this version of medclr")
    if meta["loss"] not in SCORES:
        raise MedclrInputError(path, f"unknown loss '{meta['loss']}' in the metadata",
                               f"expected one of {', '.join(SCORES.names())}")
    if not isinstance(meta["embed_dim"], int) or meta["embed_dim"] < 1 or not isinstance(meta["modalities"], list):
        raise MedclrInputError(path, f"bad embed_dim {meta['embed_dim']!r} or modalities {meta['modalities']!r}",
                               "re-run `medclr embed`")


def _column_vectors(path: Path, table: pa.Table, m: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``([n_m, D] float32, [n_m] int64 positions)`` of the non-null ``emb/<m>`` lists."""
    column = table.column(f"{EMB_PREFIX}{m}").combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
            or pa.types.is_fixed_size_list(column.type)):
        raise MedclrInputError(path, f"column {EMB_PREFIX}{m} is {column.type}, not a list of floats",
                               "re-run `medclr embed`")
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    positions = np.flatnonzero(valid).astype(np.int64)
    lists = column.filter(pa.array(valid))
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != dim).any():
        bad = int(positions[np.flatnonzero(lengths != dim)[0]])
        raise MedclrInputError(path, f"row {bad}: {EMB_PREFIX}{m} has {lengths[lengths != dim][0]} values; "
                               f"expected embed_dim = {dim}", "re-run `medclr embed`")
    vectors = lists.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    if not np.isfinite(vectors).all():
        bad = int(positions[np.flatnonzero(~np.isfinite(vectors).all(1))[0]])
        raise MedclrInputError(path, f"row {bad}: {EMB_PREFIX}{m} has NaN or infinite values",
                               "check the model and re-run `medclr embed`")
    return vectors, positions


@contextmanager
def _atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out`` by renames.

    A previous index is moved aside before the new one is renamed in, then deleted: readers see the old index or
    the new one, never half of one (only during the two renames is there briefly no folder at all).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_index(embeddings_parquet: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> EmbeddingIndex:
    """Validate ``medclr embed``'s parquet and write INDEX_DIR ``out_dir`` atomically (see the module docstring)."""
    from safetensors.numpy import save_file

    src, out = Path(embeddings_parquet), Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / INDEX_JSON).is_file())):
        raise MedclrInputError(out, "exists and is not a medclr index; refusing to replace it",
                               "choose a new --out folder or remove this one")
    table, meta = _read_embeddings(src)
    dim = int(meta["embed_dim"])
    ids = table.column("study_id").to_numpy(zero_copy_only=False)
    if pd.isna(ids).any():
        raise MedclrInputError(src, f"row {int(np.flatnonzero(pd.isna(ids))[0])} has no study_id",
                               "re-run `medclr embed` on a valid manifest")
    tensors: dict[str, np.ndarray] = {}
    for m in meta["modalities"]:
        tensors[f"vectors/{m}"], tensors[f"positions/{m}"] = _column_vectors(src, table, m, dim)
    rows = table.drop_columns([c for c in table.column_names if c.startswith(EMB_PREFIX)])
    rows = rows.replace_schema_metadata(None)
    info = {"format": FORMAT, "format_version": FORMAT_VERSION, "embeddings_file": str(src), "n_rows": table.num_rows,
            "embed_dim": dim, "counts": {m: len(tensors[f"positions/{m}"]) for m in meta["modalities"]},
            "meta": meta}
    with _atomic_dir(out) as tmp:
        save_file(tensors, str(tmp / VECTORS_FILE), metadata={"format": FORMAT})
        pq.write_table(rows, tmp / ROWS_FILE)
        (tmp / INDEX_JSON).write_text(json.dumps(info, indent=2))
    return load_index(out)


def _load_json(folder: Path) -> dict[str, Any]:
    path = folder / INDEX_JSON
    if not folder.is_dir():
        raise MedclrInputError(folder, "no such index folder", f"build it with `medclr index EMBEDDINGS.parquet --out "
                               f"{folder}`")
    try:
        info = json.loads(path.read_text())
    except OSError:
        raise MedclrInputError(path, "missing; this folder is not a medclr index", BUILD_FIX) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MedclrInputError(path, f"corrupt index description ({err})", BUILD_FIX) from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise MedclrInputError(path, "not a medclr index description", BUILD_FIX)
    if info.get("format_version") != FORMAT_VERSION:
        raise MedclrInputError(path, f"index format version {info.get('format_version')}; this medclr reads "
                               f"version {FORMAT_VERSION}", BUILD_FIX)
    if not all(k in info for k in ("n_rows", "counts", "meta", "embed_dim")):
        raise MedclrInputError(path, "index description lacks n_rows, counts, meta or embed_dim", BUILD_FIX)
    _check_meta(path, info["meta"])
    return info


def _load_vectors(path: Path, info: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise MedclrInputError(path, f"cannot read the index vectors ({err})", BUILD_FIX) from None
    vectors, positions = {}, {}
    n, dim = int(info["n_rows"]), int(info["embed_dim"])
    for m in info["meta"]["modalities"]:
        v, p = tensors.get(f"vectors/{m}"), tensors.get(f"positions/{m}")
        count = int(info["counts"].get(m, -1))
        if v is None or p is None or v.dtype != np.float32 or v.shape != (count, dim) or p.shape != (count,):
            raise MedclrInputError(path, f"'{m}' vectors do not match index.json (expected [{count}, {dim}] float32 "
                                   f"and {count} positions)", BUILD_FIX)
        if count and (p.min() < 0 or p.max() >= n or (np.diff(p) <= 0).any()):
            raise MedclrInputError(path, f"'{m}' row positions are out of range or unordered", BUILD_FIX)
        vectors[m], positions[m] = v, p.astype(np.int64)
    return vectors, positions


def load_index(index_dir: str | os.PathLike[str]) -> EmbeddingIndex:
    """Read and validate an INDEX_DIR; :class:`MedclrInputError` names the bad file and how to fix it."""
    folder = Path(index_dir)
    info = _load_json(folder)
    try:
        rows = pq.read_table(folder / ROWS_FILE).to_pandas()
    except (OSError, pa.ArrowException) as err:
        raise MedclrInputError(folder / ROWS_FILE, f"cannot read the index rows ({err})", BUILD_FIX) from None
    if len(rows) != int(info["n_rows"]) or "study_id" not in rows:
        raise MedclrInputError(folder / ROWS_FILE, f"{len(rows)} rows (study_id column: {'study_id' in rows}); "
                               f"index.json says {info['n_rows']}", BUILD_FIX)
    vectors, positions = _load_vectors(folder / VECTORS_FILE, info)
    meta = {**info["meta"], "embeddings_file": info.get("embeddings_file")}
    return EmbeddingIndex(rows["study_id"].to_numpy(dtype=object), vectors, positions, rows, meta)
