"""BERT-whitening (the paper's Algorithm 1) against NumPy, and as the experts' start."""

import numpy as np
import pytest
from model_factory import tiny_model

from tf_unisrec import whitening
from tf_unisrec.layers import MoEAdaptor
from tf_unisrec.whitening import bert_whitening, random_rotations


def correlated(n=500, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0).astype(np.float32)


def test_output_has_zero_mean_and_identity_covariance():
    x = correlated()
    mu, w = bert_whitening(x, k=7)
    assert mu.shape == (12,) and w.shape == (12, 7)
    white = (x - mu) @ w
    np.testing.assert_allclose(white.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(7), atol=1e-4)
    # Algorithm 1: W = (U sqrt(Lambda^-1))[:, :k], the directions of largest variance first.
    u, lam, _ = np.linalg.svd(np.cov(x, rowvar=False))
    np.testing.assert_allclose(np.abs(w), np.abs(u[:, :7] / np.sqrt(lam[:7])), rtol=1e-3)


def test_chunked_sums_equal_one_pass(monkeypatch):
    x = correlated(n=1000)
    whole = bert_whitening(x, k=7)
    monkeypatch.setattr(whitening, "_CHUNK_ROWS", 96)  # 11 chunks, the last one short
    chunked = bert_whitening(x, k=7)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bad_k_and_degenerate_vectors_are_errors():
    with pytest.raises(ValueError, match="1 to 12"):
        bert_whitening(correlated(), k=13)
    flat = np.repeat(correlated()[:, :2], 6, axis=1)  # rank 2 in 12 dimensions
    with pytest.raises(ValueError, match="fewer than 5"):
        bert_whitening(flat, k=5)


def test_rotations_are_orthogonal_and_seeded():
    r = random_rotations(4, 6, seed=3)
    np.testing.assert_allclose(r[0], np.eye(6))
    for q in r:
        np.testing.assert_allclose(q @ q.T, np.eye(6), atol=1e-5)
    np.testing.assert_array_equal(r, random_rotations(4, 6, seed=3))
    assert not np.allclose(r[1], r[2])


def test_whitening_init_starts_every_expert_white_and_different():
    model = tiny_model(
        "inductive", text_dim=16, whitening_init="bert", num_experts=3, adaptor_dropout=0.0
    )
    tower = model.item_tower
    table = tower.text_table.numpy()[1:]
    white = []
    for expert in tower.adaptor.experts:
        out = expert(table, training=False).numpy()
        np.testing.assert_allclose(np.cov(out, rowvar=False), np.eye(8), atol=1e-3)
        white.append(out)
    assert not np.allclose(white[0], white[1])
    mu, w = bert_whitening(table, 8)
    np.testing.assert_allclose(white[0], (table - mu) @ w, rtol=1e-4, atol=1e-4)
    assert all(v.trainable for e in tower.adaptor.experts for v in e.weights)


def test_bert_whitening_is_one_fixed_expert():
    model = tiny_model(
        "inductive",
        text_dim=16,
        whitening="bert",
        num_experts=1,
        gating=False,
        adaptor_dropout=0.0,
    )
    tower = model.item_tower
    assert not tower.adaptor.trainable_weights and tower.adaptor.non_trainable_weights
    table = tower.text_table.numpy()[1:]
    mu, w = bert_whitening(table, 8)
    np.testing.assert_allclose(
        tower.adaptor(table, training=False).numpy(), (table - mu) @ w, rtol=1e-4, atol=1e-4
    )
    with pytest.raises(ValueError, match="one expert without a gate"):
        MoEAdaptor(output_dim=4, num_experts=2, whitening="bert")
