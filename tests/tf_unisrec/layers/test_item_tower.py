import numpy as np
import pytest
import tensorflow as tf
from round_trips import assert_config_round_trip

from tf_unisrec.layers import ItemTower


def make_tower(mode="text", word_drop=False, num_items=5, text_dim=4):
    tower = ItemTower(
        num_items=num_items, hidden_dim=6, mode=mode, text_dim=text_dim, word_drop=word_drop
    )
    tower.build(None)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(num_items + 1, text_dim)).astype("float32")
    features[0] = 0
    if mode != "id":
        tower.set_text_features(features, features * -1 if word_drop else None)
    return tower, features


def test_text_mode_is_adaptor_of_text_table_and_padding_is_zero():
    tower, features = make_tower()
    out = tower(tf.constant([[2, 5, 0]])).numpy()
    np.testing.assert_allclose(out[0, :2], tower.adaptor(features[[2, 5]]), rtol=1e-5)
    np.testing.assert_array_equal(out[0, 2], 0)
    assert not tower.text_table.trainable
    assert all(w is not tower.text_table for w in tower.trainable_weights)


def test_transductive_adds_id_embedding():
    tower, features = make_tower("text+id")
    out = tower(tf.constant([3])).numpy()
    expected = tower.adaptor(features[[3]]).numpy() + tower.id_embedding.embeddings.numpy()[[3]]
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_id_mode_is_sasrec_embedding():
    tower, _ = make_tower("id")
    np.testing.assert_allclose(
        tower(tf.constant([1, 4])), tower.id_embedding.embeddings.numpy()[[1, 4]]
    )
    assert not hasattr(tower, "adaptor")


def test_word_drop_mask_selects_the_augmented_table():
    tower, features = make_tower(word_drop=True)
    indices = tf.constant([[1, 2]])
    out = tower(indices, word_drop_mask=tf.constant([[True, False]])).numpy()
    np.testing.assert_allclose(out[0, 0], tower.adaptor(-features[[1]])[0], rtol=1e-5)
    np.testing.assert_allclose(out[0, 1], tower.adaptor(features[[2]])[0], rtol=1e-5)


def test_rejects_bad_feature_shapes_and_modes():
    tower = ItemTower(num_items=3, text_dim=4)
    tower.build(None)
    with pytest.raises(ValueError, match=r"expected \(4, 4\)"):
        tower.set_text_features(np.zeros([3, 4], np.float32))
    with pytest.raises(ValueError, match="mode"):
        ItemTower(num_items=3, mode="ids")


def test_config_round_trip():
    tower = ItemTower(num_items=9, hidden_dim=8, mode="text+id", text_dim=5, num_experts=2)
    assert_config_round_trip(tower)
