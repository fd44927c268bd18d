import numpy as np
import numpy_reference as ref
import tensorflow as tf
from model_factory import tiny_batch, tiny_model

from tf_unisrec.objectives import InBatchContrastive, full_softmax_loss


def test_in_batch_contrastive_masks_shared_targets():
    rng = np.random.default_rng(0)
    queries = ref.l2_normalize(rng.normal(size=(8, 5))).astype("float32")
    candidates = ref.l2_normalize(rng.normal(size=(8, 5))).astype("float32")
    ids = np.array([3, 7, 3, 1, 9, 7, 2, 3])
    loss = InBatchContrastive(temperature=0.07)(queries, candidates, tf.constant(ids))
    expected = ref.contrastive_loss(queries, candidates, ids, 0.07)
    np.testing.assert_allclose(float(loss) / 8, expected, rtol=1e-5)
    unmasked = ref.contrastive_loss(queries, candidates, np.arange(8), 0.07)
    assert abs(unmasked - expected) > 1e-3


def test_full_softmax_excludes_padding():
    rng = np.random.default_rng(1)
    queries = ref.l2_normalize(rng.normal(size=(4, 6))).astype("float32")
    items = ref.l2_normalize(rng.normal(size=(11, 6))).astype("float32")
    targets = np.array([1, 10, 4, 4])
    loss = full_softmax_loss(queries, items, tf.constant(targets), 0.07)
    expected = ref.full_softmax_loss(queries, items, targets, 0.07)
    np.testing.assert_allclose(float(loss) / 4, expected, rtol=1e-5)


def test_pretrain_loss_is_seq_item_plus_lambda_seq_seq():
    model = tiny_model("pretrain")
    batch = tiny_batch()
    queries = model.sequence_vectors(batch["history"], batch["length"]).numpy()
    items = model.item_vectors().numpy()[batch["target"].numpy()]
    views = model.sequence_vectors(
        batch["history_aug"], batch["length_aug"], word_drop_mask=batch["word_drop"]
    ).numpy()
    plain = model.sequence_vectors(batch["history_aug"], batch["length_aug"]).numpy()
    assert not np.allclose(views[0], plain[0])  # the word-drop table is in effect
    targets = batch["target"].numpy()
    expected = ref.contrastive_loss(queries, items, targets, 0.07) + 1e-3 * ref.contrastive_loss(
        queries, views, targets, 0.07
    )
    np.testing.assert_allclose(float(model.compute_loss(batch)), expected, rtol=1e-5)


def test_fine_tuning_loss_matches_reference():
    for stage in ("inductive", "transductive"):
        model = tiny_model(stage)
        batch = tiny_batch()
        queries = model.sequence_vectors(batch["history"], batch["length"]).numpy()
        np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
        expected = ref.full_softmax_loss(
            queries, model.item_vectors().numpy(), batch["target"].numpy(), 0.07
        )
        np.testing.assert_allclose(float(model.compute_loss(batch)), expected, rtol=1e-5)


def test_sasrec_loss_is_recbole_cross_entropy_over_raw_dot_products():
    model = tiny_model("sasrec")
    batch = tiny_batch()
    # RecBole's SASRec: the encoder's output at the last position against the raw ID
    # embeddings, softmax over every item, no normalisation and no temperature.
    outputs = model.sequence_encoder(
        model.item_tower(batch["history"]), length=batch["length"]
    ).numpy()
    table = model.item_tower.id_embedding.embeddings.numpy()
    expected = ref.full_softmax_loss(outputs, table, batch["target"].numpy(), 1.0)
    np.testing.assert_allclose(float(model.compute_loss(batch)), expected, rtol=1e-5)
    assert abs(np.linalg.norm(outputs, axis=1) - 1).max() > 0.1  # really not normalised
    cosine = tiny_model("sasrec", scoring="cosine")  # the UniSRec-loss variant, kept as a flag
    queries = cosine.sequence_vectors(batch["history"], batch["length"]).numpy()
    expected = ref.full_softmax_loss(
        queries, cosine.item_vectors().numpy(), batch["target"].numpy(), 0.07
    )
    np.testing.assert_allclose(float(cosine.compute_loss(batch)), expected, rtol=1e-5)


def test_freeze_for_fine_tuning_leaves_adaptor_norm_and_ids_trainable():
    model = tiny_model("transductive")
    model.compute_loss(tiny_batch())
    model.freeze_for_fine_tuning()
    names = {v.name.split(":")[0] for v in model.trainable_variables}
    assert any("moe_adaptor" in n for n in names)
    assert any("input_norm" in n for n in names)
    assert any("id_embedding" in n for n in names)
    assert not any("block_" in n or "position_embedding" in n for n in names)


def test_bucketing_by_length_is_exact():
    model = tiny_model("transductive")
    batch = tiny_batch()
    model.bucket_by_length = False
    plain = model.sequence_vectors(batch["history"], batch["length"]).numpy()
    plain_loss = float(model.compute_loss(batch))
    model.bucket_by_length = True
    bucketed = model.sequence_vectors(batch["history"], batch["length"]).numpy()
    np.testing.assert_allclose(bucketed, plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(model.compute_loss(batch)), plain_loss, rtol=1e-5)


def test_length_boundaries_cover_every_length():
    from tf_unisrec.model import length_boundaries

    bounds = length_boundaries(50)
    assert bounds[0] == 1 and bounds[-1] == 50 and bounds == sorted(set(bounds))
    assert len(bounds) < 20
