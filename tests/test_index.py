"""The embedding index: build from a `medclr embed` parquet, load with validation, search against brute force."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from medclr import index as index_module
from medclr.errors import MedclrInputError
from medclr.index import INDEX_JSON, ROWS_FILE, VECTORS_FILE, EmbeddingIndex, build_index, load_index
from medclr.losses.scoring import score_fn

MODS = ("cxr", "ecg", "report")
DIM = 8


def write_embeddings(path: Path, n: int = 30, loss: str = "convirt", seed: int = 0, fixed_size: bool = False,
                     modalities: Sequence[str] = MODS, dim: int = DIM, meta: dict | None = None) -> dict:
    """A `medclr embed`-style parquet of n studies; returns the arrays written (vectors [n, D], present [n])."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    vectors = {m: base + rng.normal(size=(n, dim)) for m in modalities}
    vectors = {m: (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32) for m, v in vectors.items()}
    present = {m: rng.random(n) < 0.8 for m in modalities}
    list_type = pa.list_(pa.float32(), dim) if fixed_size else pa.list_(pa.float32())
    columns = {
        "study_id": pa.array([f"s{i:03d}" for i in range(n)], pa.string()),
        "subject_id": pa.array([f"p{i // 2}" if i % 5 else None for i in range(n)], pa.string()),
        "split": pa.array(["test"] * n, pa.string()),
        "cxr_path": pa.array([f"cxr/{i}.dcm" for i in range(n)], pa.string()),
        "ecg_path": pa.array([f"ecg/{i}" for i in range(n)], pa.string()),
        "report": pa.array([f"report {i}" if i % 7 else None for i in range(n)], pa.string()),
        "label/Cardiomegaly": pa.array(np.where(rng.random(n) < 0.2, np.nan, rng.random(n) < 0.3), pa.float32()),
    }
    for m in modalities:
        columns[f"emb/{m}"] = pa.array([v.tolist() if ok else None for v, ok in zip(vectors[m], present[m],
                                                                                   strict=True)], list_type)
    info = {"run_dir": "runs/x", "loss": loss, "embed_dim": dim, "modalities": list(modalities),
            "manifest": "m.parquet", "label_names": ["Cardiomegaly"], "logit_scale": 14.3, **(meta or {})}
    table = pa.table(columns).replace_schema_metadata({b"medclr_embeddings": json.dumps(info)})
    pq.write_table(table, path)
    return {"vectors": vectors, "present": present, "ids": np.array([f"s{i:03d}" for i in range(n)])}


def brute_force(written: dict, given: dict[str, np.ndarray], target: str, loss: str, k: int,
                exclude: Sequence[str] = ()) -> list[tuple[list[str], np.ndarray]]:
    """Full score matrix over all present target rows, sorted in Python."""
    rows = [i for i in np.flatnonzero(written["present"][target]) if written["ids"][i] not in exclude]
    cand = torch.from_numpy(written["vectors"][target][rows])
    order = [m for m in MODS if m in given]
    full = score_fn(loss)([torch.from_numpy(np.atleast_2d(given[m])) for m in order], cand).numpy()
    out = []
    for s in full:
        best = sorted(range(len(rows)), key=lambda j: -float(s[j]))[:k]
        out.append(([str(written["ids"][rows[j]]) for j in best], s[best]))
    return out


@pytest.fixture
def embeddings(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "emb.parquet"
    return path, write_embeddings(path)


def test_build_and_load_round_trip(tmp_path: Path, embeddings: tuple[Path, dict]) -> None:
    path, written = embeddings
    built = build_index(path, tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == sorted([INDEX_JSON, ROWS_FILE, VECTORS_FILE])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.parquet", "index"]  # no temporary folders left
    loaded = load_index(tmp_path / "index")
    assert len(loaded) == 30 and loaded.loss == "convirt" and loaded.embed_dim == DIM
    assert loaded.modalities == list(MODS)
    assert loaded.ids.tolist() == written["ids"].tolist()
    for m in MODS:
        np.testing.assert_array_equal(loaded.positions[m], np.flatnonzero(written["present"][m]))
        np.testing.assert_array_equal(loaded.vectors[m], written["vectors"][m][written["present"][m]])
        np.testing.assert_array_equal(built.vectors[m], loaded.vectors[m])
        assert loaded.vectors[m].dtype == np.float32
    assert list(loaded.rows.columns) == ["study_id", "subject_id", "split", "cxr_path", "ecg_path", "report",
                                         "label/Cardiomegaly"]
    assert loaded.rows["report"].isna().sum() == 5 and loaded.meta["label_names"] == ["Cardiomegaly"]
    info = json.loads((tmp_path / "index" / INDEX_JSON).read_text())
    assert info["format_version"] == 1 and info["counts"]["cxr"] == int(written["present"]["cxr"].sum())
    assert b"pickle" not in (tmp_path / "index" / VECTORS_FILE).read_bytes()[:200]
    row = int(np.flatnonzero(written["present"]["ecg"])[3])
    np.testing.assert_array_equal(loaded.query_of(row)["ecg"], written["vectors"]["ecg"][row])


def test_fixed_size_lists_as_written_by_medclr_embed(tmp_path: Path) -> None:
    written = write_embeddings(tmp_path / "e.parquet", fixed_size=True)
    index = build_index(tmp_path / "e.parquet", tmp_path / "index")
    np.testing.assert_array_equal(index.vectors["report"], written["vectors"]["report"][written["present"]["report"]])


def test_rebuild_replaces_an_existing_index(tmp_path: Path) -> None:
    write_embeddings(tmp_path / "a.parquet", n=30)
    write_embeddings(tmp_path / "b.parquet", n=12, seed=1)
    build_index(tmp_path / "a.parquet", tmp_path / "index")
    assert len(build_index(tmp_path / "b.parquet", tmp_path / "index")) == 12
    assert len(load_index(tmp_path / "index")) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet", "index"]


@pytest.mark.parametrize("loss", ["convirt", "symile", "gram"])
@pytest.mark.parametrize("given_mods", [("cxr",), ("cxr", "ecg")])
def test_search_matches_brute_force(tmp_path: Path, loss: str, given_mods: tuple[str, ...]) -> None:
    written = write_embeddings(tmp_path / "e.parquet", n=40, loss=loss, seed=2)
    index = build_index(tmp_path / "e.parquet", tmp_path / "index")
    rng = np.random.default_rng(5)
    given = {m: rng.normal(size=(4, DIM)).astype(np.float32) for m in given_mods}
    for chunk in (None, 3):
        results = index.search(given, "report", k=6, chunk=chunk)
        expected = brute_force(written, given, "report", loss, 6)
        assert len(results) == 4
        for got, (ids, scores) in zip(results, expected, strict=True):
            assert got.ids == ids
            np.testing.assert_allclose(got.scores, scores, rtol=1e-5, atol=1e-6)
            assert index.ids[got.rows].tolist() == ids and got.rows.dtype == np.int64


def test_many_chunk_merges_match_brute_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "MERGE_EVERY", 2)
    written = write_embeddings(tmp_path / "e.parquet", n=40, loss="gram", seed=4)
    index = build_index(tmp_path / "e.parquet", tmp_path / "index")
    given = {"report": written["vectors"]["report"][:3]}
    for got, (ids, _) in zip(index.search(given, "ecg", k=5, chunk=2), brute_force(written, given, "ecg", "gram", 5),
                             strict=True):
        assert got.ids == ids


def test_search_single_vector_exclude_and_k_beyond_the_candidates(tmp_path: Path) -> None:
    written = write_embeddings(tmp_path / "e.parquet", n=20, loss="symile")
    index = build_index(tmp_path / "e.parquet", tmp_path / "index")
    query = {"ecg": torch.from_numpy(written["vectors"]["ecg"][0])}  # [D] tensor = one query
    n_cxr = int(written["present"]["cxr"].sum())
    everything = index.search(query, "cxr", k=100)
    assert len(everything) == 1 and len(everything[0].ids) == n_cxr
    drop = everything[0].ids[:2]
    kept = index.search(query, "cxr", k=100, exclude=set(drop))[0]
    assert kept.ids == everything[0].ids[2:]
    assert index.search(query, "cxr", k=100, exclude=drop[0])[0].ids == everything[0].ids[1:]
    assert kept.ids == brute_force(written, {"ecg": written["vectors"]["ecg"][0]}, "cxr", "symile", 100, drop)[0][0]


def test_search_rejects_bad_queries(tmp_path: Path, embeddings: tuple[Path, dict]) -> None:
    index = build_index(embeddings[0], tmp_path / "index")
    q = np.zeros(DIM, np.float32)
    with pytest.raises(MedclrInputError, match="no 'labs' embeddings"):
        index.search({"cxr": q}, "labs")
    with pytest.raises(MedclrInputError, match="cannot query 'report'"):
        index.search({"report": q, "cxr": q}, "report")  # the target itself only alone (similar cases)
    assert len(index.search({"report": q}, "report", k=1)) == 1
    with pytest.raises(MedclrInputError, match=r"expected \[Q, 8\]"):
        index.search({"cxr": np.zeros(5, np.float32)}, "report")
    with pytest.raises(MedclrInputError, match="different numbers of queries"):
        index.search({"cxr": np.zeros((2, DIM)), "ecg": np.zeros((3, DIM))}, "report")
    with pytest.raises(MedclrInputError, match="unknown search backend"):
        index.search({"cxr": q}, "report", backend="annoy")  # type: ignore[arg-type]


def test_faiss_backend_matches_exact(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    written = write_embeddings(tmp_path / "e.parquet", n=50, seed=3)
    index = build_index(tmp_path / "e.parquet", tmp_path / "index")
    queries = {"report": written["vectors"]["report"][:5] * 3.0}  # unnormalised: still cosine
    exact = index.search(queries, "cxr", k=7, exclude=["s001", "s002"])
    fast = index.search(queries, "cxr", k=7, exclude=["s001", "s002"], backend="faiss")
    for a, b in zip(exact, fast, strict=True):
        assert a.ids == b.ids and "s001" not in b.ids
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_array_equal(a.rows, b.rows)
    assert len(index.search(queries, "cxr", k=500, backend="faiss")[0].ids) == int(written["present"]["cxr"].sum())


def test_faiss_backend_serves_only_single_modality_convirt(tmp_path: Path) -> None:
    write_embeddings(tmp_path / "e.parquet", loss="gram")
    index = build_index(tmp_path / "e.parquet", tmp_path / "index")
    with pytest.raises(MedclrInputError, match="faiss backend serves ConVIRT"):
        index.search({"cxr": np.zeros(DIM, np.float32)}, "report", backend="faiss")


def damage(folder: Path, what: str) -> None:
    if what == "no index.json":
        (folder / INDEX_JSON).unlink()
    elif what == "corrupt index.json":
        (folder / INDEX_JSON).write_text("{not json")
    elif what == "newer version":
        info = json.loads((folder / INDEX_JSON).read_text())
        (folder / INDEX_JSON).write_text(json.dumps({**info, "format_version": 99}))
    elif what == "count mismatch":
        info = json.loads((folder / INDEX_JSON).read_text())
        info["counts"]["cxr"] += 1
        (folder / INDEX_JSON).write_text(json.dumps(info))
    elif what == "corrupt vectors":
        (folder / VECTORS_FILE).write_bytes(b"\x00" * 40)
    elif what == "no rows":
        (folder / ROWS_FILE).unlink()


@pytest.mark.parametrize(("what", "file", "message"), [
    ("no index.json", INDEX_JSON, "not a medclr index"),
    ("corrupt index.json", INDEX_JSON, "corrupt index description"),
    ("newer version", INDEX_JSON, "format version 99"),
    ("count mismatch", VECTORS_FILE, "'cxr' vectors do not match"),
    ("corrupt vectors", VECTORS_FILE, "cannot read the index vectors"),
    ("no rows", ROWS_FILE, "cannot read the index rows"),
])
def test_load_index_names_the_bad_file_and_the_fix(tmp_path: Path, embeddings: tuple[Path, dict], what: str,
                                                   file: str, message: str) -> None:
    build_index(embeddings[0], tmp_path / "index")
    damage(tmp_path / "index", what)
    with pytest.raises(MedclrInputError, match=message) as err:
        load_index(tmp_path / "index")
    assert err.value.path == str(tmp_path / "index" / file) and "medclr index" in err.value.fix


def test_load_index_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MedclrInputError, match="no such index folder"):
        load_index(tmp_path / "nowhere")


def test_build_index_rejects_bad_embeddings(tmp_path: Path) -> None:
    pq.write_table(pa.table({"study_id": ["a"]}), tmp_path / "plain.parquet")
    with pytest.raises(MedclrInputError, match="no medclr_embeddings"):
        build_index(tmp_path / "plain.parquet", tmp_path / "i1")
    write_embeddings(tmp_path / "wrong_dim.parquet", meta={"embed_dim": 4})
    with pytest.raises(MedclrInputError, match="expected embed_dim = 4"):
        build_index(tmp_path / "wrong_dim.parquet", tmp_path / "i2")
    write_embeddings(tmp_path / "loss.parquet", meta={"loss": "clip"})
    with pytest.raises(MedclrInputError, match="unknown loss 'clip'"):
        build_index(tmp_path / "loss.parquet", tmp_path / "i3")
    write_embeddings(tmp_path / "mods.parquet", meta={"modalities": ["cxr", "labs"]})
    with pytest.raises(MedclrInputError, match="missing columns"):
        build_index(tmp_path / "mods.parquet", tmp_path / "i4")
    (tmp_path / "not_parquet.parquet").write_text("hello")
    with pytest.raises(MedclrInputError, match="cannot read the embeddings parquet"):
        build_index(tmp_path / "not_parquet.parquet", tmp_path / "i5")
    assert not any(p.name.startswith(("i", ".i")) for p in tmp_path.iterdir())  # nothing half-written


def test_build_index_rejects_nan_vectors(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    write_embeddings(path, n=5)
    table = pq.read_table(path)
    bad = pa.array([[float("nan")] * DIM] * 5, pa.list_(pa.float32()))
    table = table.set_column(table.column_names.index("emb/ecg"), "emb/ecg", bad)
    pq.write_table(table, path)
    with pytest.raises(MedclrInputError, match="row 0: emb/ecg has NaN"):
        build_index(path, tmp_path / "index")


def test_build_index_refuses_to_replace_a_folder_that_is_not_an_index(tmp_path: Path,
                                                                       embeddings: tuple[Path, dict]) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x")
    with pytest.raises(MedclrInputError, match="not a medclr index; refusing"):
        build_index(embeddings[0], tmp_path / "precious")
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "x"


def test_index_with_an_absent_modality(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    write_embeddings(path, n=6)
    table = pq.read_table(path)
    table = table.set_column(table.column_names.index("emb/ecg"), "emb/ecg",
                             pa.array([None] * 6, pa.list_(pa.float32())))
    pq.write_table(table, path)
    build_index(path, tmp_path / "index")
    index = load_index(tmp_path / "index")
    assert isinstance(index, EmbeddingIndex) and index.vectors["ecg"].shape == (0, DIM)
    assert index.search({"cxr": np.ones(DIM, np.float32)}, "ecg", k=3)[0].ids == []
