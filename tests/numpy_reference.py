"""NumPy versions of UniSRec's formulas, written from the paper and the official code."""

import math

import numpy as np

erf = np.vectorize(math.erf)


def whitening(x, bias, kernel):
    return (x - bias) @ kernel


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def moe(x, biases, kernels, gate_kernel):
    experts = np.stack([whitening(x, b, w) for b, w in zip(biases, kernels, strict=True)], axis=-2)
    gates = softmax(x @ gate_kernel)
    return (gates[..., None] * experts).sum(-2)


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def transformer_block(x, mask, w, num_heads, eps):
    """Post-LN block; `w` maps names to arrays (Keras MultiHeadAttention kernel layout)."""
    b, t, h = x.shape
    d = h // num_heads

    def proj(name):
        return np.einsum("bth,hnd->btnd", x, w[f"{name}/kernel"]) + w[f"{name}/bias"]

    q, k, v = proj("query"), proj("key"), proj("value")
    scores = np.einsum("bqnd,bknd->bnqk", q, k) / np.sqrt(d)
    scores = np.where(mask[:, None], scores, -1e9)
    context = np.einsum("bnqk,bknd->bqnd", softmax(scores), v)
    attended = np.einsum("btnd,ndh->bth", context, w["attention_output/kernel"])
    attended += w["attention_output/bias"]
    x = layer_norm(x + attended, w["attention_norm/gamma"], w["attention_norm/beta"], eps)
    inner = gelu(x @ w["inner_dense/kernel"] + w["inner_dense/bias"])
    ffn = inner @ w["outer_dense/kernel"] + w["outer_dense/bias"]
    return layer_norm(x + ffn, w["ffn_norm/gamma"], w["ffn_norm/beta"], eps)


def block_weights(block):
    """A Keras block's weights keyed like `query/kernel`, `attention_norm/gamma`, ..."""
    return {"/".join(w.name.split(":")[0].split("/")[-2:]): w.numpy() for w in block.weights}


def causal_padding_mask(length, t):
    pos = np.arange(t)
    return (pos[None, :, None] >= pos[None, None, :]) & (pos[None, None, :] < length[:, None, None])


def l2_normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def contrastive_loss(queries, candidates, ids, temperature):
    """Mean in-batch softmax loss; candidates sharing the query's target id are excluded."""
    logits = queries @ candidates.T / temperature
    n = len(queries)
    losses = []
    for i in range(n):
        keep = (ids != ids[i]) | (np.arange(n) == i)
        row = logits[i][keep]
        pos = logits[i, i]
        losses.append(-(pos - np.log(np.exp(row - row.max()).sum()) - row.max()))
    return float(np.mean(losses))


def full_softmax_loss(queries, items, targets, temperature):
    logits = queries @ items[1:].T / temperature
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(targets)), targets - 1]))


def sampled_softmax_loss(queries, candidates, ids, probability, temperature):
    """Mean logQ-corrected softmax: query i's positive is candidate i; candidates sharing its
    id elsewhere (accidental hits) are left out; `probability[j]` is candidate j's."""
    logits = queries @ candidates.T / temperature - np.log(probability)[None, :]
    losses = []
    for i in range(len(queries)):
        keep = (ids != ids[i]) | (np.arange(len(ids)) == i)
        row = logits[i][keep]
        losses.append(-(logits[i, i] - np.log(np.exp(row - row.max()).sum()) - row.max()))
    return float(np.mean(losses))
