"""Slow, obvious references for the losses: Python loops over rows, candidates and dimensions, float64.

Written from the loss semantics of docs/ARCHITECTURE.md, independently of medclr.losses (no shared helpers).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

from torch import Tensor

Vec = list[float]


def rows(x: Tensor) -> list[Vec]:
    return [[float(v) for v in row] for row in x.detach().double()]


def dot(*vs: Vec) -> float:
    """Multilinear inner product sum_d prod_m v_m[d] (the dot product for two vectors)."""
    return sum(math.prod(v[d] for v in vs) for d in range(len(vs[0])))


def log_softmax(logits: Sequence[float]) -> list[float]:
    top = max(logits)
    log_z = top + math.log(sum(math.exp(z - top) for z in logits))
    return [z - log_z for z in logits]


def cross_entropy(logits: Sequence[float], targets: Sequence[int], smoothing: float = 0.0) -> float:
    """CE against the uniform distribution over ``targets`` mixed with ``smoothing`` of the uniform over all."""
    logp = log_softmax(logits)
    c = len(logits)
    q = [(1 - smoothing) * (1.0 / len(targets) if j in targets else 0.0) + smoothing / c for j in range(c)]
    return -sum(qj * lj for qj, lj in zip(q, logp, strict=True))


def decoupled(logits: Sequence[float], targets: Sequence[int]) -> float:
    negatives = [z for j, z in enumerate(logits) if j not in targets]
    if not negatives:
        return 0.0
    top = max(negatives)
    lse = top + math.log(sum(math.exp(z - top) for z in negatives))
    return lse - sum(logits[t] for t in targets) / len(targets)


def hard_negative(logits: Sequence[float], targets: Sequence[int], beta: float) -> float:
    """HN-NCE: CE over the targets with each negative's exp(z) weighted by M exp(beta z) / sum_neg exp(beta z)."""
    negatives = [j for j in range(len(logits)) if j not in targets]
    if not negatives:
        return cross_entropy(logits, targets)
    norm = sum(math.exp(beta * logits[j]) for j in negatives)
    weighted = [math.exp(z) * (len(negatives) * math.exp(beta * z) / norm if j in negatives else 1.0)
                for j, z in enumerate(logits)]
    log_z = math.log(sum(weighted))
    return -sum(logits[t] - log_z for t in targets) / len(targets)


def same(groups: dict[str, list[int]] | None, m: str, i: int, j: int) -> bool:
    return i == j or (groups is not None and m in groups and groups[m][i] == groups[m][j])


def convirt(emb: dict[str, Tensor], pairs: Sequence[tuple[str, str]], lam: float, s: float,
            groups: dict[str, list[int]] | None = None, dcl: bool = False, beta: float = 0.0,
            memory: Mapping[str, tuple[Tensor, Sequence[int] | None]] | None = None) -> float:
    """mean over pairs of lam * CE(s a b^T) + (1 - lam) * CE(s b a^T), loops only.

    ``memory["<a>-<b>/<m>"] = (rows [M, D], ids or None)``: extra negatives for the queries of the pair's other
    modality, except rows whose id equals the query row's ``groups`` id (of b, else of a)."""
    total = []
    for a, b in pairs:
        va, vb = rows(emb[a]), rows(emb[b])
        n = len(va)
        parts = []
        grouped = next((m for m in (b, a) if groups is not None and m in groups), None)
        for x, y, target in ((va, vb, b), (vb, va, a)):
            extra, extra_ids = memory.get(f"{a}-{b}/{target}", (None, None)) if memory else (None, None)
            row_losses = []
            for i in range(n):
                logits = [s * dot(x[i], y[j]) for j in range(n)]
                for k, row in enumerate(rows(extra) if extra is not None else []):
                    own = extra_ids is not None and grouped is not None and groups is not None \
                        and extra_ids[k] == groups[grouped][i]
                    if not own:
                        logits.append(s * dot(x[i], row))
                pos = [j for j in range(n) if same(groups, a, i, j) or same(groups, b, i, j)]
                row_losses.append(decoupled(logits, pos) if dcl else hard_negative(logits, pos, beta) if beta
                                  else cross_entropy(logits, pos))
            parts.append(sum(row_losses) / n)
        total.append(lam * parts[0] + (1 - lam) * parts[1])
    return sum(total) / len(total)


def symile_n_squared(emb: Sequence[Tensor], s: float) -> float:
    """Each modality anchors; candidates are all N^(k-1) tuples of the others (itertools.product order)."""
    vs = [rows(x) for x in emb]
    n, k = len(vs[0]), len(vs)
    per_anchor = []
    for a in range(k):
        others = [vs[m] for m in range(k) if m != a]
        tuples = list(itertools.product(range(n), repeat=k - 1))
        losses = []
        for i in range(n):
            logits = [s * dot(vs[a][i], *(o[j] for o, j in zip(others, t, strict=True))) for t in tuples]
            losses.append(cross_entropy(logits, [tuples.index((i,) * (k - 1))]))
        per_anchor.append(sum(losses) / n)
    return sum(per_anchor) / k


def symile_n(emb: Sequence[Tensor], s: float, perms: Sequence[Sequence[Sequence[int]]]) -> float:
    """O(N) negatives: candidate j of anchor a is prod_m others_m[perms[a][m][j]]; row i's own tuple at column i."""
    vs = [rows(x) for x in emb]
    n, k = len(vs[0]), len(vs)
    per_anchor = []
    for a in range(k):
        others = [vs[m] for m in range(k) if m != a]
        losses = []
        for i in range(n):
            logits = []
            for j in range(n):
                picks = [i] * (k - 1) if j == i else [perms[a][m][j] for m in range(k - 1)]
                logits.append(s * dot(vs[a][i], *(o[p] for o, p in zip(others, picks, strict=True))))
            losses.append(cross_entropy(logits, [i]))
        per_anchor.append(sum(losses) / n)
    return sum(per_anchor) / k


def det(m: list[list[float]]) -> float:
    """Laplace expansion along the first row."""
    if len(m) == 1:
        return m[0][0]
    return sum((-1) ** c * m[0][c] * det([row[:c] + row[c + 1:] for row in m[1:]]) for c in range(len(m)))


def volume(vectors: Sequence[Vec]) -> float:
    gram = [[dot(u, v) for v in vectors] for u in vectors]
    return math.sqrt(max(det(gram), 0.0))


def gram(emb: dict[str, Tensor], anchor: str, s: float, smoothing: float,
         groups: dict[str, list[int]] | None = None) -> float:
    """(CE(-s vol) + CE(-s vol^T)) / 2 with label smoothing; vol(i, j) = volume(anchor_i, others_j)."""
    others = [m for m in emb if m != anchor]
    va, vo = rows(emb[anchor]), [rows(emb[m]) for m in others]
    n = len(va)
    vol = [[volume([va[i], *(o[j] for o in vo)]) for j in range(n)] for i in range(n)]

    def positives(i: int) -> list[int]:
        return [j for j in range(n) if same(groups, anchor, i, j) or all(same(groups, m, i, j) for m in others)]

    forward = sum(cross_entropy([-s * vol[i][j] for j in range(n)], positives(i), smoothing) for i in range(n))
    backward = sum(cross_entropy([-s * vol[i][j] for i in range(n)], positives(j), smoothing) for j in range(n))
    return (forward / n + backward / n) / 2
