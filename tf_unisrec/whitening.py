"""BERT-whitening (Su et al., 2021), the non-parametric whitening that UniSRec's parametric
whitening generalises: the paper's Algorithm 1, "Whitening-k"."""

from __future__ import annotations

import numpy as np

_CHUNK_ROWS = 65536


def bert_whitening(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`(mu, W)` such that `(x - mu) W` has zero mean and identity covariance on `k` dimensions.

    `mu` is the mean and `Sigma` the covariance of the rows; with `U, Lambda = SVD(Sigma)`,
    `W = (U sqrt(Lambda^-1))[:, :k]` keeps the `k` directions of largest variance.

    Args:
        features: float `[n, d]`, one text vector per item (no padding row).
        k: output dimensions, at most `d`.

    Returns:
        `mu` float32 `[d]` and `W` float32 `[d, k]`.
    """
    features = np.asarray(features)
    n, d = features.shape
    if not 0 < k <= d:
        raise ValueError(f"BERT-whitening keeps 1 to {d} dimensions of {d}-d vectors, not {k}")
    if n < 2:
        raise ValueError("BERT-whitening needs at least two vectors")
    # Float64 sums over row chunks: a million-item table is never copied whole.
    chunks = [features[start : start + _CHUNK_ROWS] for start in range(0, n, _CHUNK_ROWS)]
    mu = sum(chunk.sum(axis=0, dtype=np.float64) for chunk in chunks) / n
    scatter = np.zeros((d, d))
    for chunk in chunks:
        centred = chunk.astype(np.float64) - mu
        scatter += centred.T @ centred
    sigma = scatter / (n - 1)
    u, lam, _ = np.linalg.svd(sigma)
    if lam[k - 1] <= 1e-12 * lam[0]:
        raise ValueError(f"the vectors span fewer than {k} dimensions: cannot whiten to {k}")
    w = u[:, :k] / np.sqrt(lam[:k])
    return mu.astype(np.float32), w.astype(np.float32)


def random_rotations(count: int, k: int, seed: int | None) -> np.ndarray:
    """`count` orthogonal `[k, k]` matrices, the first the identity (seeded).

    Rotating a whitened vector keeps it white, so experts that start from `W_k R_e` are each an
    exact whitening and still differ from one another.
    """
    rng = np.random.default_rng(seed)
    rotations = [np.eye(k)]
    for _ in range(count - 1):
        q, r = np.linalg.qr(rng.normal(size=(k, k)))
        rotations.append(q * np.sign(np.diag(r)))
    return np.stack(rotations).astype(np.float32)
